//! `cargo xtask bench analyzer`: what the analyzer adds, how fast it serves cache hits,
//! what its prompts cost, and how valid and accurate its answers are.
//!
//! Sections (`BENCH_SECTIONS`, comma-separated, default all):
//! - `overhead`: the scripted LLM answers in a fixed 100 ms; a 50-question quiz must finish
//!   within (sequential LLM round trips × 100 ms) + 15 ms.
//!   Each quiz's time is split at the scripted server (before its first call, the calls,
//!   after the last reply), and each reply's turnaround to the next call is set beside
//!   those of the same call pattern from a bare client and through the LLM client alone.
//! - `client`: one call through the analyzer's LLM client against a bare HTTP call, the
//!   scripted server answering at once: what the client itself costs per call.
//! - `throughput`: questions/s through one analyzer with every answer cached, in several
//!   batches, next to the Redis and RabbitMQ round-trip floors measured in the same run and
//!   the cores each process kept busy.
//! - `prompt`: prompt tokens per question on `BENCH_QUESTIONS` MMLU questions with the local
//!   model's tokenizer (the llama.cpp server's `usage`), for our prompt at several batch sizes
//!   and for the original system's whole-quiz JSON prompt (`BENCH_BATCH_SIZES`, default 1,4,8);
//!   `BENCH_INTERLEAVE=k` alternates the batch sizes every k questions and compares their
//!   times chunk by chunk.
//! - `accuracy`: valid-answer rate and accuracy against the key, with and without `votes: 3`.
//!
//! `prompt` and `accuracy` ask the local SmolLM2 server unless `QUIZSTATS_BENCH_LLM_URL`,
//! `QUIZSTATS_BENCH_LLM_MODEL` (and `QUIZSTATS_BENCH_LLM_API_KEY`) name another model.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use analyzer::llm::LlmClient;
use analyzer::settings::{Dialect, LlmSettings};
use bench::mmlu::{self, MmluQuestion};
use bench::{QueueKind, Summary, amqp_floor, amqp_floor_through, ms, redis_floor};
use common::bus::consumer::{self, Outcome, QueueSource};
use common::bus::{Bus, Outgoing, routing};
use common::store::QuizStore;
use common::views::{self, QuestionKind, QuestionSpec, QuizSpec};
use futures::StreamExt;
use serde_json::{Value, json};
use system_tests::{Options, spawn_app_with};
use tokio_util::sync::CancellationToken;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sections = std::env::var("BENCH_SECTIONS")
        .unwrap_or_else(|_| "overhead,client,throughput,prompt,accuracy".into());
    let wants = |name: &str| sections.split(',').any(|section| section.trim() == name);
    if wants("overhead") {
        overhead().await?;
    }
    if wants("client") {
        client_cost().await?;
    }
    if wants("throughput") {
        throughput().await?;
    }
    let llm = RealLlm::from_env();
    let n_questions: usize = env_or("BENCH_QUESTIONS", 200);
    if wants("prompt") {
        prompt_economy(&llm, n_questions).await?;
    }
    if wants("accuracy") {
        accuracy(&llm, n_questions).await?;
    }
    Ok(())
}

fn fresh_questions(label: &str, count: usize) -> Vec<Value> {
    let run = std::process::id();
    (0..count)
        .map(|i| json!({"question": format!("{label} {run} question {i}: which option?"), "answers": ["w", "x", "y", "z"]}))
        .collect()
}

async fn overhead() -> anyhow::Result<()> {
    let app = spawn_app_with(Options::default()).await?;
    app.scripted().set_latency(Duration::from_millis(100));
    let concurrency = analyzer::settings::LlmSettings::default().max_concurrency;
    let n: usize = env_or("BENCH_OVERHEAD_QUESTIONS", 50);
    let round_trips = n.div_ceil(concurrency);
    let runs = env_or("BENCH_OVERHEAD_RUNS", 5usize);
    // The terminal status write's time, read back after each run, places the quiz's end.
    let redis_pool = common::redis::pool(&common::settings::RedisSettings {
        url: system_tests::redis_url(),
        ..Default::default()
    })?;
    let mut samples = Vec::new();
    let mut splits = Vec::new();
    for run in 0..runs {
        let quiz = json!({"questions": fresh_questions(&format!("overhead{run}"), n)});
        let calls_before = app.scripted().timeline().len();
        let started = Instant::now();
        let started_ms = common::now_ms();
        let response = app.post_json("/api/analyze", &quiz).await?;
        let elapsed = started.elapsed();
        anyhow::ensure!(
            response.status() == 200,
            "overhead run answered {}",
            response.status()
        );
        samples.push(elapsed);
        let reply: Value = response.json().await?;
        let quiz_id = reply["quizId"].as_str().unwrap_or_default();
        let finished_ms = finished_at_ms(&redis_pool, &app.keys, quiz_id).await?;
        let calls = app.scripted().timeline().split_off(calls_before);
        splits.push(QuizSplit::of(
            started,
            elapsed,
            &calls,
            concurrency,
            finished_ms - started_ms,
        )?);
    }
    let summary = Summary::of(samples);
    // The scripted server's own round trip, measured: HTTP on loopback and waking from a
    // 100 ms sleep add ~0.5 ms on these VMs. At least 13 calls, so one outlier cannot set
    // the p50.
    let http = reqwest::Client::new();
    let body =
        json!({"model": "m", "messages": [{"role": "user", "content": "Question: floor?"}], "stream": false});
    let mut calls = Vec::new();
    for _ in 0..round_trips.max(13) {
        let started = Instant::now();
        http.post(format!("{}/chat/completions", app.scripted().base_url()))
            .json(&body)
            .send()
            .await?
            .bytes()
            .await?;
        calls.push(started.elapsed());
    }
    let call = Summary::of(calls);
    // The quiz's own call pattern without the analyzer: the same number of calls, as many
    // in flight, from a bare HTTP client. It pays the same wake-ups between one reply and
    // the next call that the VM charges any client, so what the pipeline adds on top of it
    // is the pipeline's.
    let url = format!("{}/chat/completions", app.scripted().base_url());
    let (shape, bare_turnarounds) = {
        let (http, url, body) = (&http, &url, &body);
        call_pattern(app.scripted(), runs, n, concurrency, move |_, _| async move {
            http.post(url).json(body).send().await?.bytes().await
        })
        .await?
    };
    // The same pattern through the analyzer's LLM client (prompt, schema, permits, budgets,
    // breaker, async-openai, reply validation, logprobs) and nothing else: between the bare
    // client and the quiz, it says how much of the difference is the client's and how much
    // the pipeline's around it (single flight, recording, events, the job itself).
    let client = scripted_client(app.scripted().base_url(), concurrency);
    let (client_shape, client_turnarounds) = {
        let client = &client;
        call_pattern(app.scripted(), runs, n, concurrency, move |run, i| async move {
            let question = QuestionSpec {
                text: format!(
                    "client pattern {} {run} question {i}: which option?",
                    std::process::id()
                ),
                options: vec!["w".into(), "x".into(), "y".into(), "z".into()],
                kind: QuestionKind::Single,
            };
            client.answer(&question, 0.0).await
        })
        .await?
    };
    // The fixed part of a quiz's path goes through the broker twice with a confirm (the job
    // into its quorum queue, the completion event out) and through Redis a few times.
    let redis = redis_floor(&system_tests::redis_url(), 200).await?;
    let classic = amqp_floor(&system_tests::amqp_url(), 200).await?;
    let quorum = amqp_floor_through(&system_tests::amqp_url(), 200, QueueKind::Quorum).await?;
    let nominal = Duration::from_millis(100 * round_trips as u64);
    // p50 like the figure it is compared with: one slow outlier among 13 calls would move a mean.
    let measured = call.p50 * u32::try_from(round_trips).unwrap_or(1);
    let budget = nominal + Duration::from_millis(15);
    println!(
        "== overhead: {n} new questions, scripted LLM at 100 ms, {concurrency} calls in flight, {runs} runs"
    );
    println!("{}", call.line("floor: one bare call to the scripted LLM"));
    println!("{}", redis.line("floor: redis GET round trip"));
    println!(
        "{}",
        classic.line("floor: rabbitmq publish(confirm)->consume, classic queue")
    );
    println!(
        "{}",
        quorum.line("floor: rabbitmq publish(confirm)->consume, quorum queue")
    );
    println!(
        "{}",
        shape.line(&format!("floor: {n} bare calls, {concurrency} in flight"))
    );
    println!(
        "{}",
        client_shape.line(&format!(
            "floor: {n} calls through LlmClient::answer, {concurrency} in flight"
        ))
    );
    println!("{}", summary.line("submit->completed"));
    println!(
        "sequential LLM round trips: {round_trips}; nominal floor {:.0} ms (budget {:.0} ms): p50 {}; measured floor {:.1} ms: analyzer adds {:.1} ms in all, {:.3} ms per question",
        ms(nominal),
        ms(budget),
        if summary.p50 <= budget {
            "within budget"
        } else {
            "OVER budget"
        },
        ms(measured),
        ms(summary.p50) - ms(measured),
        (ms(summary.p50) - ms(measured)) / n as f64
    );
    println!(
        "against the same {n} calls from a bare client ({:.1} ms): the pipeline adds {:.1} ms in all, {:.3} ms per question",
        ms(shape.p50),
        ms(summary.p50) - ms(shape.p50),
        (ms(summary.p50) - ms(shape.p50)) / n as f64
    );
    println!(
        "of that, the LLM client's own pattern adds {:.1} ms over the bare client, and the rest of the pipeline {:.1} ms over the client's",
        ms(client_shape.p50) - ms(shape.p50),
        ms(summary.p50) - ms(client_shape.p50),
    );
    QuizSplit::report(&mut splits);
    let quiz_turnarounds: Vec<Duration> = splits
        .iter()
        .flat_map(|split| split.turnarounds.clone())
        .collect();
    println!(
        "{}",
        Summary::of(quiz_turnarounds).line("turnaround: a reply -> the next call, quiz")
    );
    println!(
        "{}",
        Summary::of(client_turnarounds).line("turnaround: a reply -> the next call, LlmClient")
    );
    println!(
        "{}",
        Summary::of(bare_turnarounds).line("turnaround: a reply -> the next call, bare")
    );
    app.stop().await
}

/// The analyzer's LLM client against a scripted server at `base_url`, configured as the
/// system tests' analyzer is (llama.cpp dialect, 2 s timeout).
fn scripted_client(base_url: String, max_concurrency: usize) -> LlmClient {
    LlmClient::new(&LlmSettings {
        base_url,
        model: "scripted-model".into(),
        dialect: Some(Dialect::LlamaCpp),
        timeout_ms: 2_000,
        max_concurrency,
        ..Default::default()
    })
}

/// `runs` times, `n` calls with `concurrency` in flight (call `i` of run `run` is
/// `call(run, i)`): how long each run took, and every turnaround the scripted server saw.
async fn call_pattern<F, Fut, T, E>(
    scripted: &testkit::scripted_llm::ScriptedLlm,
    runs: usize,
    n: usize,
    concurrency: usize,
    call: F,
) -> anyhow::Result<(Summary, Vec<Duration>)>
where
    F: Fn(usize, usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let mut took = Vec::with_capacity(runs);
    let mut slot_turnarounds = Vec::new();
    for run in 0..runs {
        let calls_before = scripted.timeline().len();
        let started = Instant::now();
        let replies: Vec<Result<T, E>> = futures::stream::iter(0..n)
            .map(|i| call(run, i))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for reply in replies {
            reply.map_err(Into::into)?;
        }
        took.push(started.elapsed());
        slot_turnarounds.extend(turnarounds(
            &scripted.timeline().split_off(calls_before),
            concurrency,
        ));
    }
    Ok((Summary::of(took), slot_turnarounds))
}

/// The quiz's `updated_at_ms` (wall clock), which its terminal status write sets.
async fn finished_at_ms(
    pool: &common::redis::Pool,
    keys: &common::keys::Keys,
    quiz_id: &str,
) -> anyhow::Result<i64> {
    let mut connection = pool.get().await?;
    let updated: Option<i64> = deadpool_redis::redis::cmd("HGET")
        .arg(keys.quiz(quiz_id))
        .arg("updated_at_ms")
        .query_async(&mut connection)
        .await?;
    updated.ok_or_else(|| anyhow::anyhow!("quiz {quiz_id} has no updated_at_ms"))
}

/// Where one quiz's time went: before its first LLM call, between the first call's arrival
/// and the last reply, and after that until the response.
#[derive(Debug, Clone)]
struct QuizSplit {
    total: Duration,
    /// Submit → the scripted server holds the first call.
    to_first_call: Duration,
    /// First call's arrival → last reply ready (the LLM's share, with the gaps between calls).
    calls: Duration,
    /// Last reply ready → the response is in the client's hands.
    after_last_reply: Duration,
    /// Submit → the quiz's terminal status written, by the wall clock (ms resolution).
    to_finished_ms: i64,
    /// Each reply → the next call's arrival, at the server (see [`turnarounds`]).
    turnarounds: Vec<Duration>,
}

/// How long each slot stayed empty: with `concurrency` calls in flight, the k-th reply to
/// be ready frees the slot the (k + concurrency)-th call to arrive takes, so the time
/// between them is the client's turnaround (the reply's way back, whatever the client does
/// with it, and the next request's way out), as the server saw it.
fn turnarounds(calls: &[testkit::scripted_llm::CallTimes], concurrency: usize) -> Vec<Duration> {
    let mut arrivals: Vec<Instant> = calls.iter().map(|call| call.arrived).collect();
    let mut replies: Vec<Instant> = calls.iter().map(|call| call.replied).collect();
    arrivals.sort_unstable();
    replies.sort_unstable();
    replies
        .iter()
        .zip(arrivals.iter().skip(concurrency))
        .map(|(replied, next)| next.saturating_duration_since(*replied))
        .collect()
}

impl QuizSplit {
    fn of(
        started: Instant,
        total: Duration,
        calls: &[testkit::scripted_llm::CallTimes],
        concurrency: usize,
        to_finished_ms: i64,
    ) -> anyhow::Result<Self> {
        let first = calls.iter().map(|call| call.arrived).min();
        let last = calls.iter().map(|call| call.replied).max();
        let (Some(first), Some(last)) = (first, last) else {
            anyhow::bail!("the quiz made no LLM call");
        };
        let ended = started + total;
        Ok(Self {
            total,
            to_first_call: first.saturating_duration_since(started),
            calls: last.saturating_duration_since(first),
            after_last_reply: ended.saturating_duration_since(last),
            to_finished_ms,
            turnarounds: turnarounds(calls, concurrency),
        })
    }

    /// Medians of each part, then the slowest quizzes part by part, so a stall shows where it was.
    fn report(splits: &mut [QuizSplit]) {
        let median = |part: fn(&QuizSplit) -> Duration, splits: &[QuizSplit]| {
            Summary::of(splits.iter().map(part).collect()).p50
        };
        println!(
            "split (p50 of each part): submit->first call {:.1} ms, first call->last reply {:.1} ms, last reply->response {:.1} ms",
            ms(median(|split| split.to_first_call, splits)),
            ms(median(|split| split.calls, splits)),
            ms(median(|split| split.after_last_reply, splits)),
        );
        splits.sort_by_key(|split| std::cmp::Reverse(split.total));
        for split in splits.iter().take(3) {
            println!(
                "  slow quiz: {:.1} ms = {:.1} to first call + {:.1} calls + {:.1} after last reply; terminal status written at {} ms",
                ms(split.total),
                ms(split.to_first_call),
                ms(split.calls),
                ms(split.after_last_reply),
                split.to_finished_ms,
            );
        }
    }
}

/// One call at a time, the scripted server answering at once, alternately from a bare
/// reqwest client and through [`LlmClient::answer`] (prompt, schema, budgets, breaker,
/// async-openai, reply validation, logprobs): the difference is the client's own cost.
async fn client_cost() -> anyhow::Result<()> {
    let scripted = testkit::scripted_llm::ScriptedLlm::start()?;
    let client = scripted_client(scripted.base_url(), LlmSettings::default().max_concurrency);
    let http = reqwest::Client::new();
    let url = format!("{}/chat/completions", scripted.base_url());
    let n = env_or("BENCH_CLIENT_CALLS", 500usize);
    let mut bare = Vec::with_capacity(n);
    let mut ours = Vec::with_capacity(n);
    for i in 0..n {
        let question = QuestionSpec {
            text: format!("client {} {i}: which option?", std::process::id()),
            options: vec!["w".into(), "x".into(), "y".into(), "z".into()],
            kind: QuestionKind::Single,
        };
        let body = json!({
            "model": "m",
            "messages": [{"role": "user", "content": format!("Question: {}", question.text)}],
            "stream": false,
            "logprobs": true,
        });
        let started = Instant::now();
        http.post(&url).json(&body).send().await?.bytes().await?;
        bare.push(started.elapsed());
        let started = Instant::now();
        client.answer(&question, 0.0).await?;
        ours.push(started.elapsed());
    }
    let (bare, ours) = (Summary::of(bare), Summary::of(ours));
    println!("== client: {n} calls each, scripted LLM answering at once");
    println!("{}", bare.line("floor: one bare call"));
    println!("{}", ours.line("one call through LlmClient::answer"));
    println!(
        "the client adds {:.3} ms per call (p50)",
        ms(ours.p50) - ms(bare.p50)
    );
    scripted.stop().await;
    Ok(())
}

async fn throughput() -> anyhow::Result<()> {
    let app = spawn_app_with(Options::default()).await?;
    let per_quiz = 100usize;
    let n_quizzes: usize = env_or("BENCH_THROUGHPUT_QUIZZES", 100);
    let distinct = 2_000usize;
    let questions: Vec<QuestionSpec> = (0..distinct)
        .map(|i| QuestionSpec {
            text: format!("Throughput {} question {i}?", std::process::id()),
            options: vec!["a".into(), "b".into(), "c".into(), "d".into()],
            kind: QuestionKind::Single,
        })
        .collect();
    // Warm the cache through the whole system.
    for chunk in questions.chunks(per_quiz) {
        let body = json!({"questions": chunk.iter().map(|q| json!({"question": q.text, "answers": q.options})).collect::<Vec<_>>()});
        let response = app.post_json("/api/analyze", &body).await?;
        anyhow::ensure!(response.status() == 200, "warm-up answered {}", response.status());
    }
    let calls_after_warmup = app.scripted().calls();

    // Then feed the analyzer directly: records in Redis, jobs on the bus, and count the
    // quiz.completed events, so the figure is the analyzer's, not the gateway's.
    let amqp = common::settings::AmqpSettings {
        url: system_tests::amqp_url(),
        prefix: app.prefix.clone(),
        ..Default::default()
    };
    let bus = Bus::new(&amqp, "bench");
    let stop = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop.clone()));
    while !bus.is_connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let completed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&completed);
    tokio::spawn(consumer::run(
        bus.clone(),
        QueueSource::Replica {
            name: bus.topology().replica_queue("bench"),
            exchange: bus.topology().events_exchange(),
            bindings: vec![routing::QUIZ_COMPLETED],
        },
        256,
        move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Outcome::Ack }
        },
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pool = common::redis::pool(&common::settings::RedisSettings {
        url: system_tests::redis_url(),
        ..Default::default()
    })?;
    let store = QuizStore::new(pool, app.keys.clone(), 600);
    // One run of 10,000 questions lasts well under a second, so a hiccup on the shared
    // cores moves it by a quarter: several runs, each reported, and their median.
    let repeats = env_or("BENCH_THROUGHPUT_REPEATS", 3usize).max(1);
    let total = n_quizzes * per_quiz;
    let mut rates = Vec::with_capacity(repeats);
    let mut lines = Vec::with_capacity(repeats);
    let cpu_before = bench::cpu::CpuSnapshot::take();
    let mut feeding = Duration::ZERO;
    for repeat in 0..repeats {
        let mut jobs = Vec::with_capacity(n_quizzes);
        for quiz in 0..n_quizzes {
            let start = (quiz * 37 + repeat) % (distinct - per_quiz);
            let spec = QuizSpec {
                questions: questions[start..start + per_quiz].to_vec(),
                answer_key: None,
                votes: 1,
            };
            let id = format!("bench-{repeat}-{quiz}-{}", std::process::id());
            store.create(&id, &spec).await?;
            let meta = views::new_meta(&id);
            jobs.push(
                Outgoing::new(
                    bus.topology().jobs_exchange(),
                    routing::ANALYSIS_REQUESTED,
                    &meta.message_id,
                    &spec.to_analysis_request(meta.clone()),
                )
                .mandatory(),
            );
        }
        let expected = (repeat + 1) * n_quizzes;
        let started = Instant::now();
        bus.publish_all(jobs).await?;
        while completed.load(Ordering::SeqCst) < expected {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "throughput run did not finish"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = started.elapsed();
        feeding += elapsed;
        let rate = total as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        lines.push(format!(
            "  run {}: {total} questions in {:.1} ms, {rate:.0} questions/s ({:.1} us per question)",
            repeat + 1,
            ms(elapsed),
            elapsed.as_secs_f64() * 1e6 / total as f64,
        ));
    }
    // Counted over the whole stretch of runs, quiz creation between them included.
    let cpu_after = bench::cpu::CpuSnapshot::take();
    let cpu_window = cpu_after.since(&cpu_before);
    let cpu = cpu_after.line_since(
        &cpu_before,
        "this process (analyzer, broadcaster, gateway, feeder)",
    );
    anyhow::ensure!(
        app.scripted().calls() == calls_after_warmup,
        "a cached question reached the LLM"
    );
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    let redis = redis_floor(&system_tests::redis_url(), 500).await?;
    let amqp_round_trip = amqp_floor(&system_tests::amqp_url(), 500).await?;
    println!(
        "== throughput: {n_quizzes} quizzes x {per_quiz} cached questions through one analyzer, {repeats} runs"
    );
    println!("{}", redis.line("floor: redis GET round trip"));
    println!(
        "{}",
        amqp_round_trip.line("floor: rabbitmq publish(confirm)->consume")
    );
    for line in lines {
        println!("{line}");
    }
    let per_question = 1.0 / median;
    println!(
        "median {median:.0} questions/s, slowest run {:.0} ({:.1} us per question at the median; {:.1} redis round trips' worth), target >= 10000: {}",
        rates[0],
        per_question * 1e6,
        per_question / redis.p50.as_secs_f64().max(1e-9),
        if median >= 10_000.0 { "met" } else { "NOT met" }
    );
    println!(
        "{cpu}; over the runs and the set-up between them ({:.0}% of it feeding)",
        100.0 * feeding.as_secs_f64() / cpu_window.as_secs_f64().max(1e-9)
    );
    stop.cancel();
    app.stop().await
}

/// The real model the `prompt` and `accuracy` sections ask: SmolLM2 on the server `cargo
/// xtask up` starts, unless `QUIZSTATS_BENCH_LLM_URL` and `QUIZSTATS_BENCH_LLM_MODEL` name
/// another OpenAI-compatible endpoint and model (a second llama.cpp server, or a hosted
/// model, with its key in `QUIZSTATS_BENCH_LLM_API_KEY`). The structured-output dialect
/// follows the URL, as the analyzer's does.
struct RealLlm {
    url: String,
    model: String,
    api_key: Option<secrecy::SecretString>,
}

impl RealLlm {
    fn from_env() -> Self {
        Self {
            url: std::env::var("QUIZSTATS_BENCH_LLM_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8088/v1".into()),
            model: std::env::var("QUIZSTATS_BENCH_LLM_MODEL").unwrap_or_else(|_| "smollm2".into()),
            api_key: common::settings::secret_from_env("QUIZSTATS_BENCH_LLM_API_KEY"),
        }
    }

    /// `request` with the endpoint's key, when there is one.
    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => request.bearer_auth(secrecy::ExposeSecret::expose_secret(key)),
            None => request,
        }
    }
}

fn real_client(llm: &RealLlm, batch_temperature: f32) -> LlmClient {
    LlmClient::new(&LlmSettings {
        base_url: llm.url.clone(),
        model: llm.model.clone(),
        api_key: llm.api_key.clone(),
        max_concurrency: 1,
        // A slow model (or one stuck behind abandoned calls: llama-cpp-python finishes a
        // request whose client gave up, one at a time) needs longer (`BENCH_LLM_TIMEOUT_MS`).
        timeout_ms: env_or("BENCH_LLM_TIMEOUT_MS", 120_000),
        vote_temperature: batch_temperature,
        ..Default::default()
    })
}

async fn check_llm(llm: &RealLlm) -> anyhow::Result<()> {
    let llm_url = &llm.url;
    let response = llm
        .authorized(reqwest::Client::new().get(format!("{llm_url}/models")))
        .send()
        .await;
    match response {
        Ok(response) if response.status().is_success() => Ok(()),
        // A key the endpoint refuses is not a missing server.
        Ok(response) => anyhow::bail!(
            "{llm_url}/models answered {} (check QUIZSTATS_BENCH_LLM_API_KEY and QUIZSTATS_BENCH_LLM_MODEL)",
            response.status()
        ),
        Err(_) => anyhow::bail!(
            "no LLM server at {llm_url} (start it with `cargo xtask up` or set QUIZSTATS_BENCH_LLM_URL)"
        ),
    }
}

#[derive(Default)]
struct Tally {
    questions: usize,
    /// Answers a batch reply got right the first time (before any fallback).
    batch_entries_valid: usize,
    /// Calls that failed outright (for the original, counted with the tokenizer instead).
    failed_calls: usize,
    valid: usize,
    correct: usize,
    prompt_tokens: u64,
    completion_tokens: u64,
    elapsed: Duration,
}

impl Tally {
    /// Adds `other`'s counts and time to this tally's (one chunk of an interleaved run).
    fn absorb(&mut self, other: &Tally) {
        self.questions += other.questions;
        self.batch_entries_valid += other.batch_entries_valid;
        self.failed_calls += other.failed_calls;
        self.valid += other.valid;
        self.correct += other.correct;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.elapsed += other.elapsed;
    }

    fn line(&self, label: &str) -> String {
        let n = self.questions.max(1) as f64;
        format!(
            "{label:<40} prompt tokens/q {:>7.1}  completion tokens/q {:>6.1}  valid {:>3}/{:<3} ({:>5.1}%)  accuracy {:>5.1}%  {:>7.0} ms/q  [batch entries valid first time: {}; failed calls: {}]",
            self.prompt_tokens as f64 / n,
            self.completion_tokens as f64 / n,
            self.valid,
            self.questions,
            100.0 * self.valid as f64 / n,
            100.0 * self.correct as f64 / n,
            ms(self.elapsed) / n,
            self.batch_entries_valid,
            self.failed_calls
        )
    }
}

/// Our pipeline as the analyzer runs it: batches of `batch_size`, and every question a
/// batch reply leaves out or gets wrong asked again on its own. Tokens are what the
/// calls cost in all, fallbacks included; `valid` counts answers the pipeline ends with.
async fn ours(client: &LlmClient, questions: &[MmluQuestion], batch_size: usize) -> Tally {
    let mut tally = Tally {
        questions: questions.len(),
        ..Tally::default()
    };
    let started = Instant::now();
    for chunk in questions.chunks(batch_size.max(1)) {
        let mut results: Vec<Option<analyzer::llm::LlmAnswer>> = vec![None; chunk.len()];
        if chunk.len() > 1 {
            let specs: Vec<&QuestionSpec> = chunk.iter().map(|q| &q.question).collect();
            match client.answer_batch(&specs).await {
                Ok(reply) => {
                    tally.prompt_tokens += u64::from(reply.prompt_tokens);
                    tally.completion_tokens += u64::from(reply.completion_tokens);
                    tally.batch_entries_valid += reply.answers.iter().filter(|answer| answer.is_ok()).count();
                    for (slot, answer) in results.iter_mut().zip(reply.answers) {
                        *slot = answer.ok();
                    }
                }
                Err(_) => tally.failed_calls += 1,
            }
        }
        for (question, slot) in chunk.iter().zip(results.iter_mut()) {
            if slot.is_none() {
                match client.answer(&question.question, 0.0).await {
                    Ok(answer) => {
                        tally.prompt_tokens += u64::from(answer.prompt_tokens);
                        tally.completion_tokens += u64::from(answer.completion_tokens);
                        *slot = Some(answer);
                    }
                    Err(_) => tally.failed_calls += 1,
                }
            }
        }
        for (question, answer) in chunk.iter().zip(&results) {
            if let Some(answer) = answer {
                tally.valid += 1;
                tally.correct += usize::from(answer.reply.selected == [question.answer]);
            }
        }
    }
    tally.elapsed = started.elapsed();
    tally
}

/// The original system: the whole quiz as 2-space-indented JSON of `{question, answers}`,
/// a system prompt asking for a JSON array of 1-based indices, and `JSON.parse` of the reply.
async fn original(llm: &RealLlm, questions: &[MmluQuestion], quiz_size: usize) -> anyhow::Result<Tally> {
    const SYSTEM: &str = "You are a quiz-solving assistant. For each question, choose the correct answer. \
Respond only with a JSON array of the 1-based indices of the correct answers, one per question, in order.";
    let http = reqwest::Client::new();
    let mut tally = Tally {
        questions: questions.len(),
        ..Tally::default()
    };
    let started = Instant::now();
    for quiz in questions.chunks(quiz_size) {
        let payload: Vec<Value> = quiz
            .iter()
            .map(|q| json!({"question": q.question.text, "answers": q.question.options}))
            .collect();
        let pretty = serde_json::to_string_pretty(&payload)?;
        let body = json!({
            "model": llm.model,
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": pretty}],
            "temperature": 0.0,
            "max_tokens": 16 * quiz.len(),
        });
        let response: Value = llm
            .authorized(http.post(format!("{}/chat/completions", llm.url)).json(&body))
            .send()
            .await?
            .json()
            .await?;
        match response["usage"]["prompt_tokens"].as_u64() {
            Some(tokens) => {
                tally.prompt_tokens += tokens;
                tally.completion_tokens += response["usage"]["completion_tokens"].as_u64().unwrap_or(0);
            }
            None => {
                // The call failed (whole quizzes can overflow the context): count what the
                // prompt would have cost with the model's tokenizer and SmolLM2's ChatML
                // template (another model's template differs by a few tokens), instead of
                // silently counting nothing.
                tally.failed_calls += 1;
                let rendered = format!(
                    "<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{pretty}<|im_end|>\n<|im_start|>assistant\n"
                );
                let base = llm.url.trim_end_matches("/v1");
                let tokens: Value = http
                    .post(format!("{base}/extras/tokenize"))
                    .json(&json!({"input": rendered}))
                    .send()
                    .await?
                    .json()
                    .await?;
                let count = tokens["tokens"].as_array().map_or(0, Vec::len) as u64;
                anyhow::ensure!(
                    count > 0,
                    "original call failed and its prompt could not be tokenized: {response}"
                );
                tally.prompt_tokens += count;
                continue;
            }
        }
        let content = response["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default();
        // JSON.parse of the whole reply, as the original did: anything else is a 500.
        if let Ok(Value::Array(indices)) = serde_json::from_str::<Value>(content.trim())
            && indices.len() == quiz.len()
        {
            for (question, index) in quiz.iter().zip(indices) {
                let Some(index) = index.as_u64() else { continue };
                if (1..=question.question.options.len() as u64).contains(&index) {
                    tally.valid += 1;
                    tally.correct += usize::from(index - 1 == u64::from(question.answer));
                }
            }
        }
    }
    tally.elapsed = started.elapsed();
    Ok(tally)
}

async fn prompt_economy(llm: &RealLlm, n: usize) -> anyhow::Result<()> {
    check_llm(llm).await?;
    let questions = mmlu::sample(n)?;
    let client = real_client(llm, 0.8);
    println!(
        "== prompt economy and batching: {} MMLU questions, model {} at {}, one call at a time",
        questions.len(),
        llm.model,
        llm.url
    );
    let baseline = original(llm, &questions, 10).await?;
    println!("{}", baseline.line("original: quiz of 10 as pretty JSON"));
    // BENCH_BATCH_SIZES=1 measures the production default alone (a batch-8 pass on 200
    // questions takes the local model the better part of an hour on two cores).
    let batch_sizes: Vec<usize> = std::env::var("BENCH_BATCH_SIZES")
        .unwrap_or_else(|_| "1,4,8".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .filter(|size| *size > 0)
        .collect();
    anyhow::ensure!(
        !batch_sizes.is_empty() && !questions.is_empty(),
        "BENCH_BATCH_SIZES and BENCH_QUESTIONS must name at least one batch size and question"
    );
    // BENCH_INTERLEAVE=k runs every batch size on k questions, then the next k, reversing
    // the order each time: the model's speed drifts by up to 2x between VMs and within a
    // run, and whole passes one after another would charge that drift to whichever ran later.
    let interleave: usize = env_or("BENCH_INTERLEAVE", 0);
    let chunk_size = if interleave == 0 {
        questions.len().max(1)
    } else {
        interleave
    };
    if let Some(size) = batch_sizes.iter().find(|size| chunk_size % **size != 0) {
        println!("    note: chunks of {chunk_size} do not split evenly into batches of {size}");
    }
    let mut tallies: Vec<Tally> = batch_sizes.iter().map(|_| Tally::default()).collect();
    // Per chunk, each batch size's time over the first's: paired, so drift between chunks cancels.
    let mut paired: Vec<Vec<f64>> = batch_sizes.iter().map(|_| Vec::new()).collect();
    for (index, chunk) in questions.chunks(chunk_size).enumerate() {
        let mut order: Vec<usize> = (0..batch_sizes.len()).collect();
        if index % 2 == 1 {
            order.reverse();
        }
        let mut times = vec![Duration::ZERO; batch_sizes.len()];
        for slot in order {
            let tally = ours(&client, chunk, batch_sizes[slot]).await;
            times[slot] = tally.elapsed;
            tallies[slot].absorb(&tally);
        }
        for (slot, time) in times.iter().enumerate() {
            paired[slot].push(time.as_secs_f64() / times[0].as_secs_f64().max(1e-9));
        }
    }
    for (slot, ((batch_size, tally), ratios)) in batch_sizes.iter().zip(&tallies).zip(&mut paired).enumerate()
    {
        println!("{}", tally.line(&format!("ours: batch size {batch_size}")));
        println!(
            "    prompt tokens per question vs original: {:.2}x",
            tally.prompt_tokens as f64
                / tally.questions.max(1) as f64
                / (baseline.prompt_tokens as f64 / baseline.questions.max(1) as f64).max(1e-9)
        );
        if slot > 0 && interleave > 0 {
            ratios.sort_unstable_by(f64::total_cmp);
            println!(
                "    time vs batch size {} over {} interleaved chunks of {chunk_size}: in all {:.3}x; per chunk median {:.3}x, min {:.3}x, max {:.3}x",
                batch_sizes[0],
                ratios.len(),
                tally.elapsed.as_secs_f64() / tallies[0].elapsed.as_secs_f64().max(1e-9),
                ratios[ratios.len() / 2],
                ratios[0],
                ratios[ratios.len() - 1],
            );
        }
    }
    Ok(())
}

async fn accuracy(llm: &RealLlm, n: usize) -> anyhow::Result<()> {
    check_llm(llm).await?;
    let questions = mmlu::sample(n)?;
    let client = real_client(llm, 0.8);
    println!(
        "== valid answers and accuracy: {} MMLU questions (4 options: chance is 25%), model {}",
        questions.len(),
        llm.model
    );
    let single = ours(&client, &questions, 1).await;
    println!("{}", single.line("votes 1 (temperature 0)"));
    let mut voted = Tally {
        questions: questions.len(),
        ..Tally::default()
    };
    let started = Instant::now();
    for question in &questions {
        if let Ok(answer) = client.answer_with_votes(&question.question, 3).await {
            voted.valid += 1;
            voted.correct += usize::from(answer.reply.selected == [question.answer]);
            voted.prompt_tokens += u64::from(answer.prompt_tokens);
            voted.completion_tokens += u64::from(answer.completion_tokens);
        }
    }
    voted.elapsed = started.elapsed();
    println!("{}", voted.line("votes 3 (temperature 0.8, majority)"));
    Ok(())
}
