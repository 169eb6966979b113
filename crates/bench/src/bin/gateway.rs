//! `cargo xtask bench gateway`: the gateway's read path and the original system's
//! `/api/analyze` against a bare actix-web handler, all driven by wrk in one run.
//!
//! 1. wrk at max throughput (closed loop) against: a bare actix-web `GET /hello` with the
//!    gateway's worker count (the baseline), `GET /v1/quizzes/{id}` on a completed quiz with
//!    an API key that may read it, and `POST /api/analyze` of 10 questions whose answers are
//!    all cached (warmed by one call first; the scripted LLM must see no call during the run).
//!    The three run back to back in `BENCH_ROUNDS` rounds (3); each figure is the median, and
//!    each share of the baseline the median of the per-round shares.
//! 2. The read path again, open loop at half its measured rate, for its p99
//!    ([`bench::constant_rate`]: wrk2's method; Debian has no wrk2).
//!
//! Targets (issue #6): read path ≥ 35% of the baseline's requests/s; p99 < 5 ms at half that load.
//! The gateway is the real one, in-process with the analyzer and broadcaster
//! (`system_tests::spawn_app_with`), against the real Redis and RabbitMQ; its per-key rate
//! limits are raised far above anything wrk reaches, so no request is refused for them.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use bench::constant_rate;
use bench::wrk::{self, Load, Request, WrkReport};
use serde_json::{Value, json};
use system_tests::{Options, spawn_app_with};

/// Actix workers for both servers: `system_tests` starts the gateway with 2, one per core here.
const WORKERS: usize = 2;
/// Questions in the `/api/analyze` body and in the completed quiz.
const QUESTIONS: usize = 10;
/// Connections the constant-rate generator spreads its requests over.
const OPEN_LOOP_CONNECTIONS: usize = 32;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Per-key budgets no run reaches (wrk does tens of thousands of calls per second at most
/// here), so rate limiting never refuses a benchmark request; the limiter still runs.
fn tune_gateway(settings: &mut gateway::Settings) {
    settings.http.workers = WORKERS;
    settings.rate_limit = gateway::settings::RateLimitSettings {
        requests_per_second: 10_000_000,
        burst: 10_000_000,
        submissions_per_minute: 600_000_000,
        submission_burst: 10_000_000,
    };
}

fn legacy_quiz() -> Value {
    let questions: Vec<Value> = (0..QUESTIONS)
        .map(|i| json!({"question": format!("Gateway benchmark question {i}: which option is right?"), "answers": ["alpha", "beta", "gamma", "delta"]}))
        .collect();
    json!({"questions": questions})
}

fn v1_quiz() -> Value {
    let questions: Vec<Value> = (0..QUESTIONS)
        .map(|i| json!({"text": format!("Gateway benchmark question {i}: which option is right?"), "options": ["alpha", "beta", "gamma", "delta"]}))
        .collect();
    json!({"questions": questions})
}

/// The baseline: actix-web with nothing but a handler, same worker count, same `TCP_NODELAY`.
fn start_bare_server() -> anyhow::Result<(SocketAddr, actix_web::dev::ServerHandle)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let server = HttpServer::new(|| App::new().route("/hello", web::get().to(|| async { "hello" })))
        .workers(WORKERS)
        .disable_signals()
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
    let handle = server.handle();
    tokio::spawn(server);
    Ok((address, handle))
}

/// wrk for a short warm-up (if any), then for the measurement.
async fn measure(url: String, script: PathBuf, load: Load, warm_up: Duration) -> anyhow::Result<WrkReport> {
    tokio::task::spawn_blocking(move || {
        if !warm_up.is_zero() {
            wrk::run(
                &url,
                &script,
                Load {
                    duration: warm_up,
                    ..load
                },
            )?;
        }
        wrk::run(&url, &script, load)
    })
    .await?
}

/// The run with the median requests/s (its latencies come with it).
fn median(runs: &[WrkReport]) -> anyhow::Result<WrkReport> {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.requests_per_sec.total_cmp(&b.requests_per_sec));
    sorted
        .get(sorted.len() / 2)
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no runs"))
}

/// The median of `ratio(round)` over the rounds: each ratio compares runs seconds apart,
/// so a build that starts on the shared machine mid-benchmark skews one round, not all.
fn median_ratio(numerators: &[WrkReport], denominators: &[WrkReport]) -> f64 {
    let mut ratios: Vec<f64> = numerators
        .iter()
        .zip(denominators)
        .map(|(top, bottom)| top.requests_per_sec / bottom.requests_per_sec.max(1e-9))
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios.get(ratios.len() / 2).copied().unwrap_or(0.0)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn wrk_line(label: &str, report: &WrkReport, share: f64) -> String {
    format!(
        "{label:<38} {:>10.0} req/s  {:>6.1}% of bare  p50 {:>7.3} ms  p99 {:>7.3} ms  ({} requests, {} non-2xx, {} socket errors)",
        report.requests_per_sec,
        100.0 * share,
        ms(report.p50),
        ms(report.p99),
        report.requests,
        report.non_2xx,
        report.socket_errors
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    anyhow::ensure!(
        wrk::available(),
        "wrk is not installed (Debian: apt-get install -y wrk)"
    );
    let seconds: u64 = env_or("BENCH_SECS", 5);
    let rounds: usize = env_or("BENCH_ROUNDS", 3).max(1);
    let load = Load {
        threads: env_or("BENCH_WRK_THREADS", 1),
        connections: env_or("BENCH_WRK_CONNECTIONS", 64),
        duration: Duration::from_secs(seconds),
    };
    let warm_up = Duration::from_secs(env_or("BENCH_WARMUP_SECS", 2));

    let app = spawn_app_with(Options {
        tune_gateway: Some(tune_gateway),
        ..Default::default()
    })
    .await?;
    let (bare, bare_handle) = start_bare_server()?;

    // A completed quiz owned by the submit+read key, which therefore may read it.
    let id = app.submit(&v1_quiz()).await?;
    let quiz = app.wait_finished(&id, Duration::from_secs(30)).await?;
    anyhow::ensure!(quiz["status"] == "completed", "the quiz ended {}", quiz["status"]);
    // Warm the cache: this call pays the (scripted) LLM, every later one is all hits.
    let warm = app.post_json("/api/analyze", &legacy_quiz()).await?;
    anyhow::ensure!(warm.status() == 200, "warm-up answered {}", warm.status());
    let calls_after_warmup = app.scripted().calls();

    let scripts = std::env::temp_dir().join(format!("bench-gateway-{}", std::process::id()));
    std::fs::create_dir_all(&scripts)?;
    let key = app.api_keys.submit_read.clone();
    let bearer = format!("Bearer {key}");
    let bare_script = wrk::write_script(
        &scripts,
        "bare",
        &Request {
            method: "GET",
            headers: &[],
            body: None,
        },
    )?;
    let read_script = wrk::write_script(
        &scripts,
        "read",
        &Request {
            method: "GET",
            headers: &[("Authorization", &bearer)],
            body: None,
        },
    )?;
    let analyze_body = legacy_quiz().to_string();
    let analyze_script = wrk::write_script(
        &scripts,
        "analyze",
        &Request {
            method: "POST",
            headers: &[("Content-Type", "application/json"), ("X-API-Key", &key)],
            body: Some(&analyze_body),
        },
    )?;

    let read_path = format!("/v1/quizzes/{id}");
    let load_before = bench::load_average();
    // Rounds of bare, read, analyze back to back, so each ratio compares neighbours in time.
    let (mut bare_runs, mut read_runs, mut analyze_runs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let warm = if round == 0 { warm_up } else { Duration::ZERO };
        let url = format!("http://{bare}/hello");
        bare_runs.push(measure(url, bare_script.clone(), load, warm).await?);
        let url = app.gateway_url(&read_path);
        read_runs.push(measure(url, read_script.clone(), load, warm).await?);
        let url = app.gateway_url("/api/analyze");
        analyze_runs.push(measure(url, analyze_script.clone(), load, warm).await?);
    }
    let llm_calls = app.scripted().calls() - calls_after_warmup;
    let (baseline, read, analyze) = (median(&bare_runs)?, median(&read_runs)?, median(&analyze_runs)?);
    let read_share = median_ratio(&read_runs, &bare_runs);
    let analyze_share = median_ratio(&analyze_runs, &bare_runs);

    // Half the measured read rate, open loop.
    let half_rate = read.requests_per_sec / 2.0;
    let request = format!(
        "GET {read_path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {bearer}\r\n\r\n",
        app.gateway
    );
    let open_loop_secs = Duration::from_secs(env_or("BENCH_OPEN_LOOP_SECS", 10));
    let open_loop = constant_rate::run(
        app.gateway,
        request.into_bytes(),
        half_rate,
        OPEN_LOOP_CONNECTIONS,
        open_loop_secs,
    )
    .await?;
    // The floor for that figure: the bare handler at the same rate, through the same
    // generator on the same two cores. What it shows is the machine's and the generator's.
    let bare_request = format!("GET /hello HTTP/1.1\r\nHost: {bare}\r\n\r\n");
    let bare_open_loop = constant_rate::run(
        bare,
        bare_request.into_bytes(),
        half_rate,
        OPEN_LOOP_CONNECTIONS,
        open_loop_secs,
    )
    .await?;

    println!(
        "bench gateway: wrk {} thread(s), {} connections, {rounds} rounds of {seconds} s per target (first after {} s warm-up); \
         {WORKERS} actix workers in both servers; per-key rate limits raised to 10M/s (not reached); \
         2 shared cores, wrk and the servers on the same machine; load average {load_before} -> {}",
        load.threads,
        load.connections,
        warm_up.as_secs(),
        bench::load_average()
    );
    for round in 0..rounds {
        println!(
            "  round {round}: bare {:.0} req/s, read {:.0} req/s ({:.1}%), analyze {:.0} req/s ({:.2}%)",
            bare_runs[round].requests_per_sec,
            read_runs[round].requests_per_sec,
            100.0 * read_runs[round].requests_per_sec / bare_runs[round].requests_per_sec.max(1e-9),
            analyze_runs[round].requests_per_sec,
            100.0 * analyze_runs[round].requests_per_sec / bare_runs[round].requests_per_sec.max(1e-9),
        );
    }
    println!("medians over the rounds (share = median of the per-round ratios):");
    println!(
        "{}",
        wrk_line("baseline: bare actix-web GET /hello", &baseline, 1.0)
    );
    println!(
        "{}",
        wrk_line("GET /v1/quizzes/{id} (completed)", &read, read_share)
    );
    println!(
        "{}",
        wrk_line(
            &format!("POST /api/analyze ({QUESTIONS} cached)"),
            &analyze,
            analyze_share
        )
    );
    println!(
        "    /api/analyze: {} LLM calls during the runs (0 expected: every answer cached)",
        llm_calls
    );
    println!(
        "GET /v1/quizzes/{{id}} open loop at {:.0} req/s (half the read rate), {OPEN_LOOP_CONNECTIONS} connections: \
         achieved {:.0} req/s, {} responses ({} non-200); {}",
        open_loop.target_rate,
        open_loop.achieved_rate,
        open_loop.responses,
        open_loop.non_200,
        latencies(&open_loop),
    );
    println!(
        "baseline: bare GET /hello open loop at the same {:.0} req/s: achieved {:.0} req/s; {}",
        bare_open_loop.target_rate,
        bare_open_loop.achieved_rate,
        latencies(&bare_open_loop),
    );
    println!(
        "    read path p99 / bare p99 at the same rate: {:.2}x",
        ms(open_loop.quantile(0.99)) / ms(bare_open_loop.quantile(0.99)).max(1e-9)
    );
    let share = read_share;
    let clean = read_runs
        .iter()
        .all(|run| run.non_2xx == 0 && run.socket_errors == 0)
        && open_loop.non_200 == 0;
    println!(
        "target read path >= 35% of bare req/s: {} ({:.1}%)",
        if share >= 0.35 && clean { "met" } else { "NOT met" },
        share * 100.0
    );
    let p99 = open_loop.quantile(0.99);
    let kept_up = open_loop.achieved_rate >= 0.95 * open_loop.target_rate;
    println!(
        "target read path p99 < 5 ms at half load: {} (p99 {:.3} ms{})",
        if p99 < Duration::from_millis(5) && kept_up && clean {
            "met"
        } else {
            "NOT met"
        },
        ms(p99),
        if kept_up { "" } else { "; the rate was not reached" }
    );
    if !clean {
        println!("    errors during the read runs: the read figures do not count");
    }

    bare_handle.stop(true).await;
    let _ = std::fs::remove_dir_all(&scripts);
    app.stop().await?;
    Ok(())
}

/// An open-loop run's latency quantiles, as one report fragment.
fn latencies(report: &constant_rate::RateReport) -> String {
    format!(
        "latency p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
        ms(report.quantile(0.50)),
        ms(report.quantile(0.90)),
        ms(report.quantile(0.99)),
        ms(report.quantile(0.999)),
        ms(report.quantile(1.0)),
    )
}
