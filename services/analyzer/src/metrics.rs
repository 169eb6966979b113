//! The analyzer's metrics, one small function per instrument update.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

struct Instruments {
    llm_requests: Counter<u64>,
    llm_duration: Histogram<f64>,
    llm_tokens: Counter<u64>,
    cache_lookups: Counter<u64>,
    questions: Counter<u64>,
    quizzes: Counter<u64>,
    breaker_open: Gauge<u64>,
    coalesced: Counter<u64>,
    cost: Counter<f64>,
    swept: Counter<u64>,
    relayed: Counter<u64>,
    duplicate_jobs: Counter<u64>,
    budget_wait: Histogram<f64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = common::telemetry::meter();
        Instruments {
            llm_requests: meter
                .u64_counter("llm_requests")
                .with_description("LLM calls by outcome")
                .build(),
            llm_duration: meter
                .f64_histogram("llm_request_duration_seconds")
                .with_description("LLM call latency")
                .with_boundaries(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0])
                .build(),
            llm_tokens: meter
                .u64_counter("llm_tokens")
                .with_description("Tokens used, by kind")
                .build(),
            cache_lookups: meter
                .u64_counter("analysis_cache_lookups")
                .with_description("Answer cache lookups by result (hit, miss, error)")
                .build(),
            questions: meter
                .u64_counter("questions_answered")
                .with_description("Questions finished, by outcome")
                .build(),
            quizzes: meter
                .u64_counter("quizzes_finished")
                .with_description("Quizzes finished, by status")
                .build(),
            breaker_open: meter
                .u64_gauge("llm_breaker_open")
                .with_description("1 while the LLM circuit breaker is open")
                .build(),
            coalesced: meter
                .u64_counter("analysis_coalesced")
                .with_description("Questions answered by another caller's in-flight LLM call (single flight)")
                .build(),
            cost: meter
                .f64_counter("llm_cost_usd")
                .with_description("Estimated LLM spend from the price table")
                .build(),
            swept: meter
                .u64_counter("quizzes_swept")
                .with_description("Stuck quizzes failed by the sweeper (no progress past the deadline)")
                .build(),
            relayed: meter
                .u64_counter("events_relayed")
                .with_description(
                    "Logged events published again by the relay pass because the bus never confirmed them",
                )
                .build(),
            duplicate_jobs: meter
                .u64_counter("jobs_deduplicated")
                .with_description(
                    "Job deliveries acknowledged without work: an earlier delivery finished them",
                )
                .build(),
            budget_wait: meter
                .f64_histogram("llm_budget_wait_seconds")
                .with_description("Time calls waited for the requests- or tokens-per-minute budget")
                .with_boundaries(vec![0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0])
                .build(),
        }
    })
}

pub fn llm_request(outcome: &'static str, seconds: f64) {
    let labels = [KeyValue::new("outcome", outcome)];
    instruments().llm_requests.add(1, &labels);
    if seconds > 0.0 {
        instruments().llm_duration.record(seconds, &labels);
    }
}

pub fn llm_tokens(prompt: u32, completion: u32) {
    instruments()
        .llm_tokens
        .add(u64::from(prompt), &[KeyValue::new("kind", "prompt")]);
    instruments()
        .llm_tokens
        .add(u64::from(completion), &[KeyValue::new("kind", "completion")]);
}

pub fn cache_lookups(result: &'static str, count: usize) {
    instruments()
        .cache_lookups
        .add(count as u64, &[KeyValue::new("result", result)]);
}

pub fn question_finished(outcome: &'static str) {
    instruments()
        .questions
        .add(1, &[KeyValue::new("outcome", outcome)]);
}

pub fn quiz_finished(status: &'static str) {
    instruments().quizzes.add(1, &[KeyValue::new("status", status)]);
}

pub fn breaker_open(open: bool) {
    instruments().breaker_open.record(u64::from(open), &[]);
}

pub fn coalesced() {
    instruments().coalesced.add(1, &[]);
}

pub fn cost(usd: f64) {
    if usd > 0.0 {
        instruments().cost.add(usd, &[]);
    }
}

pub fn quiz_swept() {
    instruments().swept.add(1, &[]);
}

pub fn events_relayed(count: usize) {
    if count > 0 {
        instruments().relayed.add(count as u64, &[]);
    }
}

pub fn duplicate_job() {
    instruments().duplicate_jobs.add(1, &[]);
}

pub fn budget_wait(seconds: f64) {
    instruments().budget_wait.record(seconds, &[]);
}
