//! A scripted OpenAI-compatible chat server on loopback: the one test double
//! QuizStats allows. Tests queue replies (answers, latency, 429s, 500s, broken
//! bodies) and read back how many calls arrived and what they asked. The chaos
//! suite turns on [`RandomFaults`] instead: a seeded share of calls fails.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What the server does with one call.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A completion whose message content is exactly this text.
    Content(String),
    /// An error status with an OpenAI-style error body, optionally with `Retry-After`.
    Status {
        status: u16,
        message: String,
        retry_after_secs: Option<u64>,
    },
    /// A 200 whose body is not JSON at all.
    MalformedBody,
    /// Waits this long before the default answer (longer than a client timeout = a timeout).
    Delay(Duration),
}

/// A seeded share of calls that fail, for chaos runs: each call not answered by a queued
/// [`Reply`] fails with probability `probability`, the kind picked uniformly from [`FaultKind`].
#[derive(Debug, Clone)]
pub struct RandomFaults {
    /// Share of calls that fail, 0.0 to 1.0.
    pub probability: f64,
    /// Seed of the generator, so a run's faults can be reproduced (given the same call order).
    pub seed: u64,
    /// How long a [`FaultKind::Timeout`] waits before answering; make it longer than the
    /// client's timeout so the client gives up first.
    pub hang: Duration,
    /// `Retry-After` of a [`FaultKind::RateLimited`] reply, in seconds.
    pub retry_after_secs: u64,
}

/// The faults [`RandomFaults`] injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// 429 with `Retry-After`.
    RateLimited,
    /// 500 with an OpenAI-style error body.
    ServerError,
    /// The answer, but only after [`RandomFaults::hang`].
    Timeout,
    /// A 200 whose body is not JSON.
    MalformedBody,
    /// A well-formed completion whose message content is not the JSON the schema asks for.
    MalformedContent,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::RateLimited,
        FaultKind::ServerError,
        FaultKind::Timeout,
        FaultKind::MalformedBody,
        FaultKind::MalformedContent,
    ];

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::RateLimited => "429",
            FaultKind::ServerError => "500",
            FaultKind::Timeout => "timeout",
            FaultKind::MalformedBody => "malformed body",
            FaultKind::MalformedContent => "malformed content",
        }
    }
}

/// The random-fault configuration with its generator state.
struct FaultState {
    config: RandomFaults,
    rng: SplitMix64,
}

/// splitmix64: a tiny, good-enough seeded generator, so testkit needs no `rand` for one coin flip.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1), from the top 53 bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Default)]
struct Shared {
    calls: AtomicUsize,
    /// Calls being answered now, and the most there ever were at once.
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    faults: Mutex<Option<FaultState>>,
    /// Faults injected so far, indexed like [`FaultKind::ALL`].
    faults_injected: [AtomicUsize; 5],
    /// Every distinct question text asked (single-question calls), to compare with `calls`.
    questions_seen: Mutex<HashSet<String>>,
    queue: Mutex<VecDeque<Reply>>,
    latency: Mutex<Duration>,
    /// Question text → the indices the default reply chooses.
    answers: Mutex<HashMap<String, Vec<u32>>>,
    requests: Mutex<Vec<Value>>,
    /// When each call arrived and when its reply was ready, in the order they were answered.
    timeline: Mutex<Vec<CallTimes>>,
}

/// When one call reached the handler (its JSON body read) and when its reply left it.
#[derive(Debug, Clone, Copy)]
pub struct CallTimes {
    pub arrived: std::time::Instant,
    pub replied: std::time::Instant,
}

pub struct ScriptedLlm {
    address: SocketAddr,
    shared: Arc<Shared>,
    handle: ServerHandle,
}

impl ScriptedLlm {
    /// Starts the server on an ephemeral loopback port.
    pub fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let data = web::Data::from(Arc::clone(&shared));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .app_data(web::JsonConfig::default().limit(4 * 1024 * 1024))
                .route("/v1/chat/completions", web::post().to(chat))
                .route("/v1/models", web::get().to(models))
        })
        .workers(2)
        .disable_signals()
        // Small frames (events, JSON answers) must not wait for Nagle.
        .tcp_nodelay(true)
        .listen(listener)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(Self {
            address,
            shared,
            handle,
        })
    }

    /// The base URL to configure as `llm.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Chat calls received so far.
    pub fn calls(&self) -> usize {
        self.shared.calls.load(Ordering::SeqCst)
    }

    /// The most calls that were being answered at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.shared.max_in_flight.load(Ordering::SeqCst)
    }

    /// The JSON bodies received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared
            .requests
            .lock()
            .map(|requests| requests.clone())
            .unwrap_or_default()
    }

    /// Arrival and reply times of every call answered so far (a call whose client hung up
    /// first is missing), in the order they were answered: benchmarks split a quiz's time
    /// into the LLM's share and the gaps around it.
    pub fn timeline(&self) -> Vec<CallTimes> {
        self.shared
            .timeline
            .lock()
            .map(|timeline| timeline.clone())
            .unwrap_or_default()
    }

    /// Queues replies for the next calls; once drained, calls get the default answer.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        if let Ok(mut queue) = self.shared.queue.lock() {
            queue.extend(replies);
        }
    }

    /// Adds a fixed delay before every reply.
    pub fn set_latency(&self, latency: Duration) {
        if let Ok(mut current) = self.shared.latency.lock() {
            *current = latency;
        }
    }

    /// Makes the default reply to `question_text` choose `selected`.
    pub fn answer(&self, question_text: &str, selected: &[u32]) {
        if let Ok(mut answers) = self.shared.answers.lock() {
            answers.insert(question_text.to_owned(), selected.to_vec());
        }
    }

    /// Turns random faults on (or off with `None`) for every call no queued [`Reply`] answers.
    pub fn set_random_faults(&self, faults: Option<RandomFaults>) {
        if let Ok(mut current) = self.shared.faults.lock() {
            *current = faults.map(|config| FaultState {
                rng: SplitMix64(config.seed),
                config,
            });
        }
    }

    /// How many faults of each kind [`RandomFaults`] injected so far.
    pub fn faults_injected(&self) -> Vec<(FaultKind, usize)> {
        FaultKind::ALL
            .iter()
            .zip(&self.shared.faults_injected)
            .map(|(kind, count)| (*kind, count.load(Ordering::SeqCst)))
            .collect()
    }

    /// How many distinct question texts the calls asked (a batch call counts each of its questions).
    pub fn distinct_questions(&self) -> usize {
        self.shared
            .questions_seen
            .lock()
            .map(|seen| seen.len())
            .unwrap_or_default()
    }

    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// Draws the next random fault, if fault mode is on and the coin says so; counts it.
fn draw_fault(shared: &Shared) -> Option<(FaultKind, RandomFaults)> {
    let mut guard = shared.faults.lock().ok()?;
    let state = guard.as_mut()?;
    if state.rng.next_f64() >= state.config.probability {
        return None;
    }
    let pick = (state.rng.next_u64() % FaultKind::ALL.len() as u64) as usize;
    shared.faults_injected[pick].fetch_add(1, Ordering::SeqCst);
    Some((FaultKind::ALL[pick], state.config.clone()))
}

async fn fault_reply(shared: &Shared, body: &Value, kind: FaultKind, config: &RandomFaults) -> HttpResponse {
    match kind {
        FaultKind::RateLimited => error_reply(429, "rate limited (chaos)", Some(config.retry_after_secs)),
        FaultKind::ServerError => error_reply(500, "internal error (chaos)", None),
        FaultKind::Timeout => {
            tokio::time::sleep(config.hang).await;
            default_reply(shared, body)
        }
        FaultKind::MalformedBody => malformed_body(),
        FaultKind::MalformedContent => completion(body, "sure! the answer is probably the first one", false),
    }
}

fn error_reply(status: u16, message: &str, retry_after_secs: Option<u64>) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    if let Some(seconds) = retry_after_secs {
        response.insert_header(("Retry-After", seconds.to_string()));
    }
    response
        .json(json!({"error": {"message": message, "type": "scripted_error", "param": null, "code": null}}))
}

fn malformed_body() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{\"choices\": [oops")
}

async fn models() -> HttpResponse {
    HttpResponse::Ok().json(json!({"object": "list", "data": [{"id": "scripted", "object": "model"}]}))
}

async fn chat(shared: web::Data<Shared>, body: web::Json<Value>) -> HttpResponse {
    // The latency counts from the request's arrival, bookkeeping included.
    let arrived = std::time::Instant::now();
    let reply = answer_call(&shared, body.into_inner(), arrived).await;
    if let Ok(mut timeline) = shared.timeline.lock() {
        timeline.push(CallTimes {
            arrived,
            replied: std::time::Instant::now(),
        });
    }
    reply
}

async fn answer_call(shared: &Shared, body: Value, arrived: std::time::Instant) -> HttpResponse {
    shared.calls.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight::enter(shared);
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push(body.clone());
    }
    if let Ok(mut seen) = shared.questions_seen.lock() {
        let batch = batch_questions(&body);
        if batch.is_empty() {
            seen.insert(question_text(&body));
        } else {
            seen.extend(batch);
        }
    }
    let latency = shared.latency.lock().map(|latency| *latency).unwrap_or_default();
    if !latency.is_zero() {
        sleep_until_precisely(arrived + latency).await;
    }
    let scripted = shared.queue.lock().ok().and_then(|mut queue| queue.pop_front());
    match scripted {
        Some(Reply::Content(content)) => completion(&body, &content, false),
        Some(Reply::Status {
            status,
            message,
            retry_after_secs,
        }) => error_reply(status, &message, retry_after_secs),
        Some(Reply::MalformedBody) => malformed_body(),
        Some(Reply::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            default_reply(shared, &body)
        }
        None => match draw_fault(shared) {
            Some((kind, config)) => fault_reply(shared, &body, kind, &config).await,
            None => default_reply(shared, &body),
        },
    }
}

/// Counts one call as in flight until it is answered, whichever way it ends.
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> Self {
        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn default_reply(shared: &Shared, body: &Value) -> HttpResponse {
    let answers = shared
        .answers
        .lock()
        .map(|answers| answers.clone())
        .unwrap_or_default();
    let choose = |text: &str| answers.get(text).cloned().unwrap_or_else(|| vec![0]);
    let answer =
        |selected: Vec<u32>| json!({"answer": selected, "confidence": 0.8, "rationale": "scripted answer"});
    let batch = batch_questions(body);
    let content = if batch.is_empty() {
        answer(choose(&question_text(body))).to_string()
    } else {
        let entries: serde_json::Map<String, Value> = batch
            .iter()
            .enumerate()
            .map(|(position, text)| (format!("q{}", position + 1), answer(choose(text))))
            .collect();
        Value::Object(entries).to_string()
    };
    completion(body, &content, true)
}

/// The question texts of a batch request (`q1: …` lines), empty for a single question.
fn batch_questions(body: &Value) -> Vec<String> {
    let is_batch = body.pointer("/response_format/schema/properties/q1").is_some()
        || body
            .pointer("/response_format/json_schema/schema/properties/q1")
            .is_some();
    if !is_batch {
        return Vec::new();
    }
    let content = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| messages.iter().rev().find(|message| message["role"] == "user"))
        .and_then(|message| message["content"].as_str())
        .unwrap_or_default();
    content
        .lines()
        .filter_map(|line| {
            let (label, text) = line.split_once(": ")?;
            let number = label.strip_prefix('q')?;
            number.parse::<u32>().ok().map(|_| text.to_owned())
        })
        .collect()
}

/// The text after `Question: ` in the latest user message that has one, up to the end of its line.
fn question_text(body: &Value) -> String {
    body.get("messages")
        .and_then(Value::as_array)
        .and_then(|messages| {
            messages
                .iter()
                .rev()
                .filter(|message| message["role"] == "user")
                .find_map(|message| {
                    let content = message["content"].as_str()?;
                    content.split("Question: ").nth(1)?.lines().next()
                })
        })
        .unwrap_or_default()
        .to_owned()
}

fn completion(request: &Value, content: &str, with_logprobs: bool) -> HttpResponse {
    let mut choice = json!({
        "index": 0,
        "message": {"role": "assistant", "content": content},
        "finish_reason": "stop",
    });
    // Logprobs as a real server sends them: one entry per token, the texts
    // concatenating to the content. Every answer digit gets probability 0.7.
    if with_logprobs && request.get("logprobs") == Some(&Value::Bool(true)) {
        let mut tokens = Vec::new();
        let mut rest = content;
        while let Some(open) = rest.find('[') {
            let close = rest[open..].find(']').map_or(rest.len(), |end| open + end);
            tokens.push(json!({"token": &rest[..=open], "logprob": -0.01, "top_logprobs": []}));
            tokens.push(json!({"token": &rest[open + 1..close], "logprob": 0.7f64.ln(), "top_logprobs": []}));
            rest = &rest[close..];
        }
        tokens.push(json!({"token": rest, "logprob": -0.02, "top_logprobs": []}));
        choice["logprobs"] = json!({"content": tokens});
    }
    HttpResponse::Ok().json(json!({
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": request.get("model").cloned().unwrap_or(Value::Null),
        "choices": [choice],
        "usage": {"prompt_tokens": 50, "completion_tokens": 12, "total_tokens": 62},
    }))
}

/// Sleeps until `deadline`, give or take tens of microseconds. tokio's timer rounds a sleep
/// up to its next millisecond tick, so a "fixed 100 ms" LLM would really take 100–101 ms per
/// call, and the overhead benchmark would charge that slack to the analyzer. The last ten
/// milliseconds are slept by a blocking-pool thread, which can wake on time.
async fn sleep_until_precisely(deadline: std::time::Instant) {
    let coarse = deadline
        .saturating_duration_since(std::time::Instant::now())
        .checked_sub(Duration::from_millis(10));
    if let Some(coarse) = coarse {
        tokio::time::sleep(coarse).await;
    }
    if deadline > std::time::Instant::now() {
        let _ = tokio::task::spawn_blocking(move || {
            // `nanosleep` overshoots, the more the longer it sleeps (~170 µs for 100 ms,
            // ~70 µs for 1 ms on these VMs): a long sleep to 300 µs short of the deadline, a
            // short one to 80 µs short, then yield the rest. Spinning there would starve
            // the replies of earlier calls on a 2-core machine.
            loop {
                let remaining = deadline.saturating_duration_since(std::time::Instant::now());
                let margin = if remaining > Duration::from_millis(2) {
                    Duration::from_micros(300)
                } else {
                    Duration::from_micros(80)
                };
                if remaining <= margin {
                    break;
                }
                std::thread::sleep(remaining - margin);
            }
            while std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
        })
        .await;
    }
}
