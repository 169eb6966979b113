//! `chaos-driver soak --minutes N`: the same harness without faults, under a steady mixed load
//! (JSON and URL quizzes, a WebSocket watcher per quiz, reads of finished quizzes). Every
//! interval it samples each service's RSS and the p99 of submissions, reads and end-to-end
//! time; at the end it prints the series and fails if memory grew past the bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::Tuning;
use crate::harness::{Harness, Options};
use crate::watch::{self, Progress};
use crate::workload::{self, WorkloadSpec};

/// A quiz is submitted this often.
const SUBMIT_EVERY: Duration = Duration::from_millis(1500);
/// Reads of finished quizzes per second, spread evenly.
const READS_PER_SECOND: u64 = 10;
/// Memory bound: a service's RSS at the end may exceed its first sample after one interval
/// of warm-up (pools, caches and allocator arenas filled) by at most this share of it plus
/// [`RSS_SLACK_KIB`]. Under steady load memory should stay flat; the broadcaster's leak of one
/// channel per finished quiz (fixed in `hub.rs`) grew ~0.35 MiB a minute, which a 5-minute soak
/// does not catch but a 60-minute one does (about 20 MiB).
const RSS_GROWTH_SHARE: f64 = 0.10;
const RSS_SLACK_KIB: u64 = 4 * 1024;

/// What one interval measured.
#[derive(Clone)]
struct Window {
    submit: Histogram<u64>,
    read: Histogram<u64>,
    end_to_end: Histogram<u64>,
    errors: BTreeMap<String, u64>,
}

impl Window {
    fn new() -> Result<Self> {
        Ok(Self {
            submit: Histogram::new(3)?,
            read: Histogram::new(3)?,
            end_to_end: Histogram::new(3)?,
            errors: BTreeMap::new(),
        })
    }
}

struct Sample {
    at: Duration,
    rss_kib: Vec<Option<u64>>,
    window: Window,
}

pub async fn run(bin_dir: &Path, minutes: u64, seed: u64) -> Result<bool> {
    println!(
        "soak: {minutes} min, seed {seed} (reproduce: cargo xtask soak --minutes {minutes} --seed {seed})"
    );
    let options = Options {
        tuning: Tuning {
            llm_timeout_ms: 10_000,
            quiz_deadline_secs: 600,
            sweep_interval_ms: 15_000,
            message_lease_ms: 30_000,
        },
        llm_faults: None,
        llm_latency: Duration::from_millis(50),
    };
    let mut harness = Harness::start(bin_dir, options).await?;
    let outcome = drive(&mut harness, minutes, seed).await;
    harness.shutdown().await;
    let samples = outcome?;
    Ok(print(&samples))
}

async fn drive(harness: &mut Harness, minutes: u64, seed: u64) -> Result<Vec<Sample>> {
    let duration = Duration::from_secs(minutes.max(1) * 60);
    // Ten samples per run, at least every 15 s and at most every minute.
    let interval = (duration / 10).clamp(Duration::from_secs(15), Duration::from_secs(60));
    let n_quizzes = (duration.as_millis() / SUBMIT_EVERY.as_millis()) as usize + 1;
    let spec = WorkloadSpec {
        n_quizzes,
        questions_per_quiz: 10,
        url_share: 0.2,
        shared_share: 0.3,
    };
    let pages = &harness.pages;
    let quizzes = workload::plan(&spec, seed, &harness.pages_dir, |name| pages.url(name))?;
    let window = Arc::new(Mutex::new(Window::new()?));
    let finished: Arc<Mutex<Vec<String>>> = Arc::default();
    let progress = Arc::new(Progress::default());
    let started = Instant::now();
    let stop_at = started + duration;

    let submitter = {
        let (gateway, window, finished, progress) = (
            Arc::clone(&harness.gateway),
            Arc::clone(&window),
            Arc::clone(&finished),
            Arc::clone(&progress),
        );
        let (port, api_key) = (harness.broadcaster_port(), harness.config.api_key.clone());
        tokio::spawn(async move {
            for (position, quiz) in quizzes.into_iter().enumerate() {
                tokio::time::sleep_until((started + SUBMIT_EVERY * position as u32).into()).await;
                if Instant::now() >= stop_at {
                    break;
                }
                let (gateway, window, finished, progress, api_key) = (
                    Arc::clone(&gateway),
                    Arc::clone(&window),
                    Arc::clone(&finished),
                    Arc::clone(&progress),
                    api_key.clone(),
                );
                tokio::spawn(async move {
                    let submitted = Instant::now();
                    let deadline = submitted + Duration::from_secs(60);
                    let (id, latency) = match gateway.submit(&quiz, deadline).await {
                        Ok(accepted) => accepted,
                        Err(_) => return record_error(&window, "submission not accepted"),
                    };
                    record(&window, |w| &mut w.submit, latency);
                    let report = watch::watch(
                        port,
                        api_key,
                        id.clone(),
                        progress,
                        submitted + Duration::from_secs(300),
                    )
                    .await;
                    if !report.terminal {
                        return record_error(&window, "quiz did not end within 5 min");
                    }
                    if !report.anomalies.is_empty() {
                        record_error(&window, "websocket gap or duplicate");
                        println!("quiz {id}: websocket client saw {}", report.anomalies.join("; "));
                    }
                    record(&window, |w| &mut w.end_to_end, submitted.elapsed());
                    if let Some(view) = gateway.get(&id).await
                        && view.status == "failed"
                    {
                        record_error(&window, "quiz failed");
                    }
                    if let Ok(mut finished) = finished.lock() {
                        finished.push(id);
                    }
                });
            }
        })
    };
    let reader = {
        let (gateway, window, finished) = (
            Arc::clone(&harness.gateway),
            Arc::clone(&window),
            Arc::clone(&finished),
        );
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
            let mut ticker = tokio::time::interval(Duration::from_millis(1000 / READS_PER_SECOND));
            while Instant::now() < stop_at {
                ticker.tick().await;
                let id = finished
                    .lock()
                    .ok()
                    .and_then(|ids| (!ids.is_empty()).then(|| ids[rng.random_range(0..ids.len())].clone()));
                let Some(id) = id else { continue };
                match gateway.timed_get(&id).await {
                    Ok(latency) => record(&window, |w| &mut w.read, latency),
                    Err(error) => record_error(&window, &format!("read failed ({error})")),
                }
            }
        })
    };

    let mut samples = vec![Sample {
        at: Duration::ZERO,
        rss_kib: harness.services.iter().map(|service| service.rss_kib()).collect(),
        window: Window::new()?,
    }];
    let mut next = started + interval;
    while next <= stop_at + Duration::from_secs(1) {
        tokio::time::sleep_until(next.into()).await;
        for service in &mut harness.services {
            service.check_alive()?;
        }
        let window = std::mem::replace(
            &mut *window.lock().map_err(|_| anyhow::anyhow!("poisoned"))?,
            Window::new()?,
        );
        let sample = Sample {
            at: started.elapsed(),
            rss_kib: harness.services.iter().map(|service| service.rss_kib()).collect(),
            window,
        };
        print_row(&sample);
        samples.push(sample);
        next += interval;
    }
    submitter.abort();
    reader.abort();
    Ok(samples)
}

fn record(window: &Mutex<Window>, pick: fn(&mut Window) -> &mut Histogram<u64>, latency: Duration) {
    if let Ok(mut window) = window.lock() {
        let _ = pick(&mut window).record(latency.as_micros() as u64);
    }
}

fn record_error(window: &Mutex<Window>, what: &str) {
    if let Ok(mut window) = window.lock() {
        *window.errors.entry(what.to_owned()).or_default() += 1;
    }
}

fn p99_ms(histogram: &Histogram<u64>) -> String {
    if histogram.is_empty() {
        "-".to_owned()
    } else {
        format!("{:.1}", histogram.value_at_quantile(0.99) as f64 / 1000.0)
    }
}

fn mib(rss: Option<u64>) -> String {
    rss.map_or("?".to_owned(), |kib| format!("{:.1}", kib as f64 / 1024.0))
}

const HEADER: &str = "| t | RSS gateway MiB | RSS analyzer | RSS scraper-worker | RSS stats-broadcaster | submit p99 ms (n) | read p99 ms (n) | end-to-end p99 ms (n) | errors |\n|---|---|---|---|---|---|---|---|---|";

fn row(sample: &Sample) -> String {
    let window = &sample.window;
    let errors: Vec<String> = window
        .errors
        .iter()
        .map(|(what, count)| format!("{what}: {count}"))
        .collect();
    format!(
        "| {:.0}s | {} | {} | {} | {} | {} ({}) | {} ({}) | {} ({}) | {} |",
        sample.at.as_secs_f64(),
        mib(sample.rss_kib[0]),
        mib(sample.rss_kib[1]),
        mib(sample.rss_kib[2]),
        mib(sample.rss_kib[3]),
        p99_ms(&window.submit),
        window.submit.len(),
        p99_ms(&window.read),
        window.read.len(),
        p99_ms(&window.end_to_end),
        window.end_to_end.len(),
        if errors.is_empty() {
            "0".to_owned()
        } else {
            errors.join(", ")
        }
    )
}

fn print_row(sample: &Sample) {
    println!("{}", row(sample));
}

/// Prints the series and the verdict; true when every service's memory stayed in bound.
fn print(samples: &[Sample]) -> bool {
    println!("\n## Soak\n\n{HEADER}");
    for sample in samples {
        println!("{}", row(sample));
    }
    let names = crate::services::NAMES;
    let mut passed = true;
    // The first sample after warm-up is the baseline; the start (t=0) is shown for reference.
    let (Some(baseline), Some(last)) = (samples.get(1), samples.last()) else {
        println!("soak too short to judge memory");
        return false;
    };
    println!();
    for (index, name) in names.iter().enumerate() {
        let (Some(start), Some(end)) = (baseline.rss_kib[index], last.rss_kib[index]) else {
            println!("{name}: RSS unknown");
            passed = false;
            continue;
        };
        let bound = start + (start as f64 * RSS_GROWTH_SHARE) as u64 + RSS_SLACK_KIB;
        let verdict = if end <= bound { "ok" } else { "GREW" };
        passed &= end <= bound;
        let minutes = last.at.saturating_sub(baseline.at).as_secs_f64() / 60.0;
        let per_hour = if minutes > 0.0 {
            (end as f64 - start as f64) / 1024.0 / minutes * 60.0
        } else {
            0.0
        };
        println!(
            "{name}: RSS {} MiB after warm-up, {} MiB at the end (bound {} MiB, {per_hour:+.1} MiB/hour): {verdict}",
            mib(Some(start)),
            mib(Some(end)),
            mib(Some(bound))
        );
    }
    let errors: u64 = samples
        .iter()
        .flat_map(|sample| sample.window.errors.values())
        .sum();
    println!("errors over the run: {errors}");
    println!(
        "\nsoak {}",
        if passed {
            "PASSED"
        } else {
            "FAILED (memory grew past the bound)"
        }
    );
    passed
}
