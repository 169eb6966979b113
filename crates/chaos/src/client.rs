//! The gateway as a patient client sees it: submissions with an `Idempotency-Key`, retried
//! through connection errors, 503s and 5xx while the gateway or a broker is down, so each quiz
//! is accepted exactly once; and reads of a quiz's status and stats.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::workload::PlannedQuiz;

/// First pause between submission attempts; doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(200);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(2);
/// A single HTTP call's budget; the gateway answers in milliseconds when it is up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Gateway {
    base_url: String,
    api_key: String,
    http: reqwest::Client,
    /// Why attempts were retried, counted ("connection refused", "503", …).
    retries: Mutex<BTreeMap<String, u64>>,
}

/// A quiz as `GET /v1/quizzes/{id}` shows it.
pub struct QuizView {
    pub status: String,
    pub reason: Option<String>,
    pub body: Value,
}

impl QuizView {
    pub fn is_terminal(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed")
    }
}

impl Gateway {
    pub fn new(port: u16, api_key: &str, http: reqwest::Client) -> Self {
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            api_key: api_key.to_owned(),
            http,
            retries: Mutex::new(BTreeMap::new()),
        }
    }

    fn count_retry(&self, reason: String) {
        if let Ok(mut retries) = self.retries.lock() {
            *retries.entry(reason).or_default() += 1;
        }
    }

    pub fn retries(&self) -> BTreeMap<String, u64> {
        self.retries
            .lock()
            .map(|retries| retries.clone())
            .unwrap_or_default()
    }

    /// Submits until the gateway accepts (202) or `deadline`; returns the quiz id and the
    /// latency of the accepting call. 4xx other than 409-in-progress and 429 are final.
    pub async fn submit(&self, quiz: &PlannedQuiz, deadline: Instant) -> Result<(String, Duration)> {
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            let started = Instant::now();
            let reply = self
                .http
                .post(format!("{}/v1/quizzes", self.base_url))
                .bearer_auth(&self.api_key)
                .header("idempotency-key", &quiz.idempotency_key)
                .json(&quiz.body)
                .timeout(CALL_TIMEOUT)
                .send()
                .await;
            match reply {
                Ok(reply) if reply.status().as_u16() == 202 => {
                    let latency = started.elapsed();
                    let body: Value = reply.json().await.context("reading the 202 body")?;
                    let id = body["id"].as_str().context("the 202 body has no id")?.to_owned();
                    return Ok((id, latency));
                }
                Ok(reply) => {
                    let status = reply.status().as_u16();
                    let retryable = status == 429 || status == 409 || status >= 500;
                    if !retryable {
                        let text = reply.text().await.unwrap_or_default();
                        bail!("quiz {} refused with {status}: {text}", quiz.number);
                    }
                    self.count_retry(format!("http {status}"));
                }
                Err(error) => self.count_retry(classify(&error)),
            }
            if Instant::now() + pause > deadline {
                bail!("quiz {} not accepted before the submission deadline", quiz.number);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }

    /// `GET /v1/quizzes/{id}` with the key and the call timeout.
    fn quiz_request(&self, id: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/v1/quizzes/{id}", self.base_url))
            .bearer_auth(&self.api_key)
            .timeout(CALL_TIMEOUT)
    }

    /// The quiz now, or `None` while the gateway or Redis cannot say.
    pub async fn get(&self, id: &str) -> Option<QuizView> {
        let reply = self.quiz_request(id).send().await.ok()?;
        if !reply.status().is_success() {
            return None;
        }
        let body: Value = reply.json().await.ok()?;
        Some(QuizView {
            status: body["status"].as_str().unwrap_or_default().to_owned(),
            reason: body["reason"].as_str().map(str::to_owned),
            body,
        })
    }

    /// One timed read, for the soak's latency series: `Err` on anything but 200.
    pub async fn timed_get(&self, id: &str) -> Result<Duration> {
        let started = Instant::now();
        let reply = self.quiz_request(id).send().await?;
        let status = reply.status();
        reply.bytes().await?;
        if !status.is_success() {
            bail!("GET answered {status}");
        }
        Ok(started.elapsed())
    }
}

fn classify(error: &reqwest::Error) -> String {
    if error.is_connect() {
        "connect error".to_owned()
    } else if error.is_timeout() {
        "timeout".to_owned()
    } else {
        "connection lost".to_owned()
    }
}
