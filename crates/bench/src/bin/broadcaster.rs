//! `cargo xtask bench broadcaster`: 10,000 WebSocket clients on loopback follow one quiz
//! while its events are published on the events exchange, as the analyzer publishes them.
//!
//! - The broadcaster runs as its own process (this binary, re-executed in child mode: the
//!   service's `Application` with default workers), so `/proc/<pid>/status` gives its memory
//!   alone: VmRSS before the clients connect and with all of them connected and idle.
//! - The clients ([`bench::ws_fleet`]) and the publisher live in this process. Each event is
//!   recorded in the quiz's Redis log (as the analyzer does, so gap-filling works) before its
//!   step starts, then published on schedule; delivery latency runs from the time an event
//!   was *due* to be published (so a publisher that falls behind counts against the result)
//!   to its receipt by a client, matched by `seq`.
//! - Steps: 5 events/s first (50,000 deliveries/s with 10,000 clients), then double until p99
//!   passes 1 s (or a client is dropped, or a delivery is missing), then once halfway back.
//!
//! Targets (issue #5): p99 < 200 ms at 50,000 deliveries/s; < 20 KiB per idle connection.
//!
//! Sections (`BENCH_SECTIONS`, comma-separated, default both): `memory` (connect every client
//! and measure the broadcaster's VmRSS per idle connection) and `latency` (the steps). The
//! clients always connect; `BENCH_SECTIONS=memory` stops right after the memory figure, so
//! trying a change to the per-connection cost takes a minute instead of ten.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::event_feed::{EventFactory, Publisher, spec};
use bench::rss_kib;
use bench::ws_fleet::{self, Ledger, Target};
use common::auth::key_ring::sha256_hex;
use common::auth::{ApiKeyEntry, AuthMode, AuthSettings, Scope};
use common::bus::Topology;
use common::keys::Keys;
use common::settings::{AmqpSettings, HttpSettings, LogFormat, RedisSettings, TelemetrySettings};
use common::store::QuizStore;
use common::views::{EventView, QuestionOutcome, QuizStatus};
use futures::StreamExt;
use lapin::{Connection, ConnectionProperties};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::sync::CancellationToken;

// The broadcaster's own allocator, as its binary declares it (the clients in the parent
// process use it too).
#[global_allocator]
static ALLOCATOR: stats_broadcaster::Allocator = stats_broadcaster::Allocator;

/// Set in the child's environment: run the broadcaster instead of the benchmark.
const CHILD_ENV: &str = "BENCH_BROADCASTER_CHILD";
/// The id of the one API key the broadcaster accepts (read scope); it owns the quiz.
const KEY_ID: &str = "bench-reader";
/// Clients per task.
const GROUP_SIZE: usize = 100;
/// A step passes while its p99 stays at or under this.
const P99_LIMIT: Duration = Duration::from_secs(1);

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn main() -> anyhow::Result<()> {
    // As the broadcaster's `main` does (the clients in this process get it too);
    // `BENCH_JEMALLOC_DEFAULTS=1` leaves jemalloc as it comes, to compare.
    if std::env::var_os("BENCH_JEMALLOC_DEFAULTS").is_none() {
        stats_broadcaster::allocator::release_freed_pages_promptly()?;
    }
    run_main()
}

#[tokio::main]
async fn run_main() -> anyhow::Result<()> {
    if std::env::var_os(CHILD_ENV).is_some() {
        return child().await;
    }
    parent().await
}

/// The broadcaster as its `main` runs it, on port 0; stops when its stdin closes.
async fn child() -> anyhow::Result<()> {
    let prefix = std::env::var("BENCH_PREFIX")?;
    let api_key = std::env::var("BENCH_API_KEY")?;
    let settings = stats_broadcaster::Settings {
        // Watching needs a key with the read scope, as reading the quiz through the gateway does.
        auth: AuthSettings {
            mode: AuthMode::ApiKeys,
            keys: vec![ApiKeyEntry {
                id: KEY_ID.into(),
                sha256: sha256_hex(&api_key).into(),
                scopes: vec![Scope::Read],
            }],
            keys_file: None,
            jwt: None,
        },
        http: HttpSettings {
            host: "127.0.0.1".into(),
            port: 0,
            workers: 0,
        },
        amqp: AmqpSettings {
            url: system_tests::amqp_url(),
            prefix: prefix.clone(),
            ..Default::default()
        },
        redis: RedisSettings {
            url: system_tests::redis_url(),
            key_prefix: format!("{prefix}:"),
            ..Default::default()
        },
        ..Default::default()
    };
    let telemetry = TelemetrySettings {
        log_format: LogFormat::Pretty,
        log_filter: "warn".into(),
    };
    common::telemetry::init("stats-broadcaster", &telemetry);
    let application = stats_broadcaster::Application::build(settings).await?;
    println!("listening {}", application.local_addr());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        stop.cancel();
    });
    application.run_until_stopped(shutdown).await
}

async fn parent() -> anyhow::Result<()> {
    let clients: usize = env_or("BENCH_CLIENTS", 10_000);
    let nofile = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    anyhow::ensure!(
        nofile >= clients as u64 + 1_024,
        "RLIMIT_NOFILE is {nofile} even after raising it to the hard limit; {clients} clients need {}",
        clients + 1_024
    );
    testkit::init_telemetry();
    let prefix = testkit::unique_prefix("bench-broadcaster");
    let amqp = AmqpSettings {
        url: system_tests::amqp_url(),
        prefix: prefix.clone(),
        ..Default::default()
    };
    let redis = RedisSettings {
        url: system_tests::redis_url(),
        key_prefix: format!("{prefix}:"),
        ..Default::default()
    };
    let store = QuizStore::new(
        common::redis::pool(&redis)?,
        Keys::new(redis.key_prefix.clone()),
        3_600,
    );
    let outcome = run(&prefix, &amqp, &store, clients, nofile).await;
    // Clean up whatever happened: this run's exchanges, queues and keys only.
    let connection = Connection::connect(&amqp.url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    Topology::new(&amqp).delete_all(&channel).await?;
    let _ = connection.close(200, "done".into()).await;
    testkit::cleanup_redis(&redis.url, &redis.key_prefix).await?;
    outcome
}

async fn run(
    prefix: &str,
    amqp: &AmqpSettings,
    store: &QuizStore,
    clients: usize,
    nofile: u64,
) -> anyhow::Result<()> {
    let step_secs: f64 = env_or("BENCH_STEP_SECS", 10.0);
    let first_rate: f64 = env_or("BENCH_FIRST_RATE", 5.0);
    let max_steps: usize = env_or("BENCH_MAX_STEPS", 8);
    let sections = std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "memory,latency".into());
    let wants = |name: &str| sections.split(',').any(|section| section.trim() == name);

    let quiz_id = uuid::Uuid::now_v7().to_string();
    store.create(&quiz_id, &spec()).await?;
    store.set_status(&quiz_id, QuizStatus::Analyzing, None).await?;
    // The quiz belongs to the bench's key, as if that key had submitted it through the gateway.
    let mut redis = store.pool().get().await?;
    deadpool_redis::redis::cmd("SET")
        .arg(store.keys().quiz_owner(&quiz_id))
        .arg(KEY_ID)
        .arg("EX")
        .arg(3_600)
        .query_async::<()>(&mut redis)
        .await?;
    drop(redis);
    let api_key = format!("bench-key-{}", uuid::Uuid::new_v4().simple());

    let mut broadcaster = tokio::process::Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, "1")
        .env("BENCH_PREFIX", prefix)
        .env("BENCH_API_KEY", &api_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the broadcaster process")?;
    let pid = broadcaster.id().context("the broadcaster exited at once")?;
    let stdout = broadcaster.stdout.take().context("no stdout")?;
    let first_line = tokio::time::timeout(
        Duration::from_secs(60),
        BufReader::new(stdout).lines().next_line(),
    )
    .await
    .context("the broadcaster did not start within 60 s")??
    .context("the broadcaster exited before listening")?;
    let server: SocketAddr = first_line
        .strip_prefix("listening ")
        .with_context(|| format!("unexpected first line {first_line:?}"))?
        .parse()?;

    // Sequence numbers 1 (the probe) and the steps': doubling rates, plus one halfway step.
    let events_of = |rate: f64| (rate * step_secs).round().max(1.0) as u64;
    let max_seq = 1
        + (0..max_steps)
            .map(|step| events_of(first_rate * 2f64.powi(step as i32)))
            .sum::<u64>()
            * 2;
    let ledger = Arc::new(Ledger::new(max_seq as usize, max_steps + 1)?);
    let publisher = Publisher::connect(amqp).await?;
    let events = EventFactory {
        quiz_id: quiz_id.clone(),
    };
    probe(server, &api_key, &quiz_id, store, &publisher, &events).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (rss_before, _) = rss_kib(pid)?;
    let mapped_before = MappedRss::read(pid)?;
    let stop = CancellationToken::new();
    let target = Target {
        server,
        path: format!("/v1/ws?quiz_id={quiz_id}&after=1"),
        api_key: api_key.clone(),
    };
    let connecting = Instant::now();
    let groups: Vec<_> = (0..clients)
        .step_by(GROUP_SIZE)
        .map(|first| {
            let count = GROUP_SIZE.min(clients - first);
            tokio::spawn(ws_fleet::run_group(
                target.clone(),
                first,
                count,
                Arc::clone(&ledger),
                stop.clone(),
            ))
        })
        .collect();
    testkit::eventually(Duration::from_secs(180), || async {
        let settled =
            ledger.subscribed.load(Ordering::SeqCst) + ledger.failed_connects.load(Ordering::SeqCst);
        (settled >= clients).then_some(())
    })
    .await
    .context("the clients did not all connect")?;
    let connect_time = connecting.elapsed();
    let connected = ledger.subscribed.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (rss_idle, _) = rss_kib(pid)?;
    let mapped_idle = MappedRss::read(pid)?;
    let per_connection_kib = rss_idle.saturating_sub(rss_before) as f64 / connected.max(1) as f64;

    println!(
        "bench broadcaster: {clients} WebSocket clients on one quiz ({} tasks of {GROUP_SIZE}, loopback sources 127.0.0.1-4, \
         RLIMIT_NOFILE {nofile}); the broadcaster in its own process (pid {pid}, one actix worker per core); \
         publisher and clients in the bench process; 2 shared cores, load average {}",
        groups.len(),
        bench::load_average()
    );
    println!(
        "connect: {connected} subscribed in {:.1} s ({} failed to connect)",
        connect_time.as_secs_f64(),
        ledger.failed_connects.load(Ordering::SeqCst)
    );
    println!(
        "memory: broadcaster VmRSS {:.1} MiB before the clients, {:.1} MiB with {connected} idle clients: {per_connection_kib:.1} KiB per idle connection",
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0
    );
    println!(
        "memory by mapping, per idle connection: {}",
        mapped_idle.per_connection_since(&mapped_before, connected)
    );
    let memory_verdict = format!(
        "target < 20 KiB per idle connection: {} ({per_connection_kib:.1} KiB)",
        if per_connection_kib < 20.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    if !wants("latency") {
        println!("{memory_verdict}");
        return finish(stop, groups, broadcaster, pid, publisher).await;
    }
    println!(
        "{:>4} {:>9} {:>14} {:>21} {:>14} {:>10} {:>10} {:>10} {:>10} {:>6} {:>6}",
        "step",
        "events/s",
        "deliveries/s",
        "delivered/expected",
        "achieved/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "ended",
        "load"
    );

    // Double the rate while steps hold; after the first that does not, try once halfway
    // back (if every client is still connected), then stop.
    let mut next_seq = 2;
    let mut results: Vec<StepResult> = Vec::new();
    let mut rate = first_rate;
    let mut halved_back = false;
    for step in 0..=max_steps {
        let result = run_step(
            step, rate, step_secs, next_seq, &ledger, store, &publisher, &events, connected,
        )
        .await?;
        next_seq += result.events;
        println!("{}", result.line());
        let passed = result.passed();
        results.push(result);
        if halved_back || step + 1 >= max_steps {
            break;
        }
        if passed {
            rate *= 2.0;
            continue;
        }
        let last_pass = results.iter().rev().find(|result| result.passed());
        match last_pass {
            Some(pass) if ledger.ended.load(Ordering::SeqCst) == 0 => {
                rate = (pass.rate + rate) / 2.0;
                halved_back = true;
            }
            _ => break,
        }
    }

    let first = results.first().context("no step ran")?;
    let target_rate = first.rate * connected as f64;
    println!(
        "target p99 < 200 ms at {target_rate:.0} deliveries/s: {} (p99 {:.1} ms, {} of {} delivered, {} clients ended)",
        if first.passed() && first.p99 < Duration::from_millis(200) {
            "met"
        } else {
            "NOT met"
        },
        ms(first.p99),
        first.delivered,
        first.expected,
        first.ended
    );
    if wants("memory") {
        println!("{memory_verdict}");
    }
    match results
        .iter()
        .filter(|result| result.passed())
        .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
    {
        Some(best) => println!(
            "highest sustained: {:.0} deliveries/s ({} events/s x {connected} clients, p99 {:.1} ms); {}",
            best.achieved,
            best.rate,
            ms(best.p99),
            match results.iter().find(|result| !result.passed()) {
                Some(failed) => format!(
                    "{} events/s did not hold (p99 {:.1} ms, {} missing, {} clients ended)",
                    failed.rate,
                    ms(failed.p99),
                    failed.expected.saturating_sub(failed.delivered),
                    failed.ended
                ),
                None => "p99 never passed 1 s within the steps tried (BENCH_MAX_STEPS)".into(),
            }
        ),
        None => println!("highest sustained: none: even the first step did not hold"),
    }
    let reasons = ledger
        .end_reasons
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if !reasons.is_empty() {
        println!("why clients ended (first few): {reasons:?}");
    }

    finish(stop, groups, broadcaster, pid, publisher).await
}

/// Disconnects the clients, reports the broadcaster's peak memory and stops it.
async fn finish(
    stop: CancellationToken,
    groups: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    mut broadcaster: tokio::process::Child,
    pid: u32,
    publisher: Publisher,
) -> anyhow::Result<()> {
    stop.cancel();
    for group in groups {
        group.await??;
    }
    let (_, rss_peak) = rss_kib(pid)?;
    println!("broadcaster peak VmHWM {:.1} MiB", rss_peak as f64 / 1024.0);
    drop(broadcaster.stdin.take());
    if tokio::time::timeout(Duration::from_secs(20), broadcaster.wait())
        .await
        .is_err()
    {
        broadcaster.kill().await?;
    }
    publisher.close().await;
    Ok(())
}

/// The process's resident memory (KiB) by kind of mapping, from `/proc/<pid>/smaps`: where a
/// VmRSS delta went (the brk heap, anonymous mappings such as malloc arenas, thread stacks
/// and allocator segments, or files).
#[derive(Debug, Default)]
struct MappedRss {
    heap: u64,
    anonymous: u64,
    other: u64,
}

impl MappedRss {
    fn read(pid: u32) -> anyhow::Result<Self> {
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
        let mut totals = Self::default();
        let mut kind = 0;
        for line in smaps.lines() {
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            if let Some(kib) = line.strip_prefix("Rss:") {
                let kib: u64 = kib.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                match kind {
                    0 => totals.heap += kib,
                    1 => totals.anonymous += kib,
                    _ => totals.other += kib,
                }
            } else if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
                // A mapping's header: address range, perms, offset, device, inode, [path].
                kind = match words.nth(4) {
                    Some("[heap]") => 0,
                    None => 1,
                    Some(_) => 2,
                };
            }
        }
        Ok(totals)
    }

    fn per_connection_since(&self, before: &Self, connections: usize) -> String {
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / connections.max(1) as f64;
        format!(
            "heap (brk) {:.1} KiB, anonymous mappings {:.1} KiB, other {:.1} KiB",
            per(self.heap, before.heap),
            per(self.anonymous, before.anonymous),
            per(self.other, before.other)
        )
    }
}

/// Logs the events' outcomes; the log numbers them itself, which must give the numbers
/// the benchmark's prepared messages carry.
async fn log(
    store: &QuizStore,
    quiz_id: &str,
    outcomes: &[QuestionOutcome],
    expected: &[EventView],
) -> anyhow::Result<()> {
    let logged = store
        .record(quiz_id, outcomes)
        .await?
        .context("the benchmark quiz ended")?;
    anyhow::ensure!(
        logged == expected,
        "the log numbered the benchmark's events differently"
    );
    Ok(())
}

/// One probe client proves the broadcaster's queue is bound: events published before that
/// are dropped by RabbitMQ (events are not mandatory), so seq 1 is published until it arrives.
async fn probe(
    server: SocketAddr,
    api_key: &str,
    quiz_id: &str,
    store: &QuizStore,
    publisher: &Publisher,
    events: &EventFactory,
) -> anyhow::Result<()> {
    let url = format!("ws://{server}/v1/ws?quiz_id={quiz_id}&after=0");
    let (mut socket, _) =
        tokio_tungstenite::connect_async(ws_fleet::authorized_request(&url, api_key)?).await?;
    let (outcome, event, body) = events.make(1);
    log(store, quiz_id, &[outcome], &[event]).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the broadcaster never delivered the probe event"
        );
        publisher.publish(&body).await?;
        let waited = tokio::time::timeout(Duration::from_millis(500), async {
            while let Some(message) = socket.next().await {
                if message?.to_text()?.contains(r#""seq":1,"#) {
                    return anyhow::Ok(true);
                }
            }
            Ok(false)
        })
        .await;
        match waited {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => anyhow::bail!("the probe's socket closed"),
            Ok(Err(error)) => return Err(error),
            Err(_) => {}
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

struct StepResult {
    step: usize,
    rate: f64,
    events: u64,
    delivered: u64,
    expected: u64,
    /// Deliveries per second, from the step's first due time to its last receipt.
    achieved: f64,
    p50: Duration,
    p99: Duration,
    p999: Duration,
    max: Duration,
    /// Clients whose socket ended during the step.
    ended: usize,
    /// The machine's 1-minute load average when the step ended (2 cores).
    load: String,
}

impl StepResult {
    fn passed(&self) -> bool {
        self.p99 <= P99_LIMIT && self.delivered >= self.expected && self.ended == 0
    }

    fn line(&self) -> String {
        format!(
            "{:>4} {:>9} {:>14.0} {:>21} {:>14.0} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>6} {:>6}",
            self.step,
            self.rate,
            self.rate * (self.expected as f64 / self.events.max(1) as f64),
            format!("{}/{}", self.delivered, self.expected),
            self.achieved,
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            ms(self.max),
            self.ended,
            self.load
        )
    }
}

#[allow(
    clippy::too_many_arguments,
    reason = "one step of the benchmark needs all of its parts"
)]
async fn run_step(
    step: usize,
    rate: f64,
    step_secs: f64,
    first_seq: u64,
    ledger: &Ledger,
    store: &QuizStore,
    publisher: &Publisher,
    events: &EventFactory,
    connected: usize,
) -> anyhow::Result<StepResult> {
    let n = (rate * step_secs).round().max(1.0) as u64;
    anyhow::ensure!(first_seq + n <= ledger.max_seq() + 1, "the ledger is too small");
    let ended_before = ledger.ended.load(Ordering::SeqCst);
    // The step's events go into the quiz's log first (one round trip), as the analyzer
    // records before it publishes; only the publishes are timed.
    let made: Vec<_> = (first_seq..first_seq + n).map(|seq| events.make(seq)).collect();
    let outcomes: Vec<_> = made.iter().map(|(outcome, _, _)| outcome.clone()).collect();
    let logged: Vec<_> = made.iter().map(|(_, event, _)| event.clone()).collect();
    log(store, &events.quiz_id, &outcomes, &logged).await?;

    let start = Instant::now() + Duration::from_millis(50);
    for (i, (_, event, body)) in made.iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        ledger.schedule(event.seq(), step, due);
        publisher.publish(body).await?;
    }
    let published = Instant::now();
    // Drain: every client still connected gets every event, or the step ends 10 s later.
    let drained = testkit::eventually(Duration::from_secs(10), || async {
        let alive = connected.saturating_sub(ledger.ended.load(Ordering::SeqCst)) as u64;
        (ledger.delivered(step) >= n * alive).then_some(())
    })
    .await;
    if drained.is_ok() {
        // The groups flush every 100 ms; let the last flush land.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let alive = connected.saturating_sub(ledger.ended.load(Ordering::SeqCst)) as u64;
    let delivered = ledger.delivered(step);
    let latency = ledger.latency(step)?;
    let quantile = |quantile: f64| Duration::from_micros(latency.value_at_quantile(quantile));
    let last = ledger.last_receipt(step).unwrap_or(published);
    Ok(StepResult {
        step,
        rate,
        events: n,
        delivered,
        expected: n * alive,
        achieved: delivered as f64 / last.saturating_duration_since(start).as_secs_f64().max(1e-9),
        p50: quantile(0.50),
        p99: quantile(0.99),
        p999: quantile(0.999),
        max: Duration::from_micros(latency.max()),
        ended: ledger.ended.load(Ordering::SeqCst) - ended_before,
        load: bench::load_average()
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_owned(),
    })
}
