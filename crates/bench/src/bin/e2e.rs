//! `cargo xtask bench e2e`: a 20-question quiz whose answers are all cached, timed from
//! submit to completed over 200 runs, next to a bare Redis GET and a bare RabbitMQ
//! publish→consume measured in the same run. Target: p50 under 10 ms.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::time::{Duration, Instant};

use bench::{Summary, amqp_floor, ms, redis_floor};
use futures::StreamExt;
use serde_json::{Value, json};

const RUNS: usize = 200;
const QUESTIONS: usize = 20;

fn quiz() -> Value {
    let questions: Vec<Value> = (0..QUESTIONS)
        .map(|i| json!({"question": format!("Benchmark question {i}: which option is right?"), "answers": ["alpha", "beta", "gamma", "delta"]}))
        .collect();
    json!({"questions": questions})
}

fn v1_quiz() -> Value {
    let questions: Vec<Value> = (0..QUESTIONS)
        .map(|i| json!({"text": format!("Benchmark question {i}: which option is right?"), "options": ["alpha", "beta", "gamma", "delta"]}))
        .collect();
    json!({"questions": questions})
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let app = system_tests::spawn_app().await?;
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(RUNS);

    // Warm the cache: the first run pays the (scripted) LLM, every later one is all hits.
    let warm = app.post_json("/api/analyze", &quiz()).await?;
    anyhow::ensure!(warm.status() == 200, "warm-up answered {}", warm.status());
    let calls_after_warmup = app.scripted().calls();

    // Submit → completed, as the synchronous original contract sees it.
    let mut synchronous = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let response = app.post_json("/api/analyze", &quiz()).await?;
        anyhow::ensure!(response.status() == 200, "run answered {}", response.status());
        let _: Value = response.json().await?;
        synchronous.push(started.elapsed());
    }

    // Submit over /v1/quizzes, then follow the WebSocket until `quiz_completed`.
    let mut streamed = Vec::with_capacity(runs / 2);
    for _ in 0..runs / 2 {
        let started = Instant::now();
        let id = app.submit(&v1_quiz()).await?;
        let url = format!(
            "ws://{}/v1/ws?quiz_id={id}&token={}",
            app.broadcaster, app.api_keys.submit_read
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        loop {
            match socket.next().await {
                Some(Ok(message))
                    if message.is_text() && message.to_text()?.contains("\"quiz_completed\"") =>
                {
                    break;
                }
                Some(Ok(_)) => {}
                other => anyhow::bail!("stream ended early: {other:?}"),
            }
        }
        streamed.push(started.elapsed());
    }
    anyhow::ensure!(
        app.scripted().calls() == calls_after_warmup,
        "a cached question reached the LLM"
    );

    let redis = redis_floor(&system_tests::redis_url(), runs).await?;
    let amqp = amqp_floor(&system_tests::amqp_url(), runs).await?;
    let synchronous = Summary::of(synchronous);
    let streamed = Summary::of(streamed);
    println!(
        "bench e2e: {QUESTIONS}-question quiz, every answer cached, {runs} runs (debug-free release build)"
    );
    println!("{}", redis.line("floor: redis GET round trip"));
    println!("{}", amqp.line("floor: rabbitmq publish(confirm)->consume"));
    println!("{}", synchronous.line("submit->completed (POST /api/analyze)"));
    println!("{}", streamed.line("submit->completed (POST /v1/quizzes + ws)"));
    println!(
        "ratios (p50): submit->completed = {:.1}x redis GET, {:.1}x amqp round trip",
        ms(synchronous.p50) / ms(redis.p50).max(1e-9),
        ms(synchronous.p50) / ms(amqp.p50).max(1e-9)
    );
    let target = Duration::from_millis(10);
    println!(
        "target p50 < 10 ms: {} (p50 {:.3} ms)",
        if synchronous.p50 < target {
            "met"
        } else {
            "NOT met"
        },
        ms(synchronous.p50)
    );
    app.stop().await?;
    Ok(())
}
