//! Talking to an OpenAI-compatible chat endpoint: one question per call, a schema
//! that constrains the reply, validation on arrival and one corrective retry.

pub mod breaker;
pub mod budget;
pub mod prompt;
pub mod reply;
pub mod transport;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use common::views::QuestionSpec;
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::metrics;
use crate::settings::{Dialect, LlmSettings};
use reply::ParsedReply;

/// Why a question could not be answered by the model.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LlmError {
    #[error("llm provider answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("llm call timed out after {0} ms")]
    Timeout(u64),
    #[error("llm provider unreachable: {0}")]
    Transport(String),
    #[error("llm response is malformed: {0}")]
    Malformed(String),
    #[error("llm reply invalid after a corrective retry: {0}")]
    InvalidReply(String),
    #[error("llm provider circuit open after repeated failures; next probe in {retry_in_ms} ms")]
    CircuitOpen { retry_in_ms: u64 },
}

impl LlmError {
    /// Worth another attempt: rate limits, server errors, timeouts, broken bodies.
    /// Never 400/401/403 or an exhausted quota.
    fn is_transient(&self) -> bool {
        match self {
            Self::Status { status, message } => {
                (*status == 429 && !message.contains("insufficient_quota")) || *status >= 500
            }
            Self::Timeout(_) | Self::Transport(_) | Self::Malformed(_) => true,
            Self::InvalidReply(_) | Self::CircuitOpen { .. } => false,
        }
    }

    /// Counts against the provider's health: it is down or broken, not busy or strict.
    fn trips_breaker(&self) -> bool {
        match self {
            Self::Status { status, .. } => *status >= 500,
            Self::Timeout(_) | Self::Transport(_) | Self::Malformed(_) => true,
            Self::InvalidReply(_) | Self::CircuitOpen { .. } => false,
        }
    }

    fn outcome_label(&self) -> &'static str {
        match self {
            Self::Status { status: 429, .. } => "rate_limited",
            Self::Status { status, .. } if *status >= 500 => "server_error",
            Self::Status { .. } => "client_error",
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "unreachable",
            Self::Malformed(_) => "malformed",
            Self::InvalidReply(_) => "invalid_reply",
            Self::CircuitOpen { .. } => "circuit_open",
        }
    }
}

/// A validated answer with its cost.
#[derive(Debug, Clone)]
pub struct LlmAnswer {
    pub reply: ParsedReply,
    /// The model credited with the answer: the one called, or the vote panel (`a+b+c`).
    pub model: String,
    pub confidence: Option<f64>,
    /// `logprobs` or `model`.
    pub confidence_source: Option<&'static str>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency_ms: u32,
    /// Estimated spend from the configured price table, US dollars.
    pub cost_usd: f64,
}

/// What one batch call returned: a result per question, and what the call cost in all
/// (each answer also carries its even share).
#[derive(Debug)]
pub struct BatchReply {
    pub answers: Vec<Result<LlmAnswer, String>>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl BatchReply {
    /// One question's even share of the call's (prompt, completion) tokens.
    pub fn share(&self) -> (u32, u32) {
        even_share(self.prompt_tokens, self.completion_tokens, self.answers.len())
    }
}

/// A call's (prompt, completion) tokens split evenly over `questions`, rounded up.
fn even_share(prompt_tokens: u32, completion_tokens: u32, questions: usize) -> (u32, u32) {
    let n = u32::try_from(questions.max(1)).unwrap_or(u32::MAX);
    (prompt_tokens.div_ceil(n), completion_tokens.div_ceil(n))
}

/// One chat call: what to send and how the reply is constrained.
struct CallRequest<'a> {
    model: &'a str,
    messages: &'a [Value],
    schema: Value,
    temperature: f32,
    max_tokens: u32,
}

struct RawReply {
    content: String,
    prompt_tokens: u32,
    completion_tokens: u32,
    tokens: Vec<reply::Token>,
}

#[derive(Clone)]
pub struct LlmClient {
    client: Client<OpenAIConfig>,
    settings: Arc<LlmSettings>,
    in_flight: Arc<Semaphore>,
    breaker: Arc<breaker::Breaker>,
    /// One pair of budgets per model this client calls (the main one and any vote panel).
    budgets: Arc<std::collections::HashMap<String, budget::Budgets>>,
}

impl LlmClient {
    pub fn new(settings: &LlmSettings) -> Self {
        let mut config = OpenAIConfig::new().with_api_base(settings.base_url.trim_end_matches('/'));
        // Local servers need no key; async-openai would otherwise send an empty bearer.
        config = config.with_api_key(
            settings
                .api_key
                .as_ref()
                .map_or("no-key", |key| key.expose_secret()),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(settings.timeout_ms))
            .build()
            .unwrap_or_default();
        Self {
            client: Client::with_config(config).with_http_service(transport::service(http)),
            settings: Arc::new(settings.clone()),
            in_flight: Arc::new(Semaphore::new(settings.max_concurrency.max(1))),
            breaker: Arc::new(breaker::Breaker::new(
                settings.breaker_threshold,
                Duration::from_millis(settings.breaker_cooldown_ms),
            )),
            budgets: Arc::new(
                std::iter::once(&settings.model)
                    .chain(&settings.vote_models)
                    .map(|model| {
                        let budgets =
                            budget::Budgets::new(settings.requests_per_minute, settings.tokens_per_minute);
                        (model.clone(), budgets)
                    })
                    .collect(),
            ),
        }
    }

    pub fn model(&self) -> &str {
        &self.settings.model
    }

    /// The model an answer with `votes` is credited to (and cached under): the main model,
    /// or the vote panel joined with `+` when a panel shares the votes.
    pub fn model_for(&self, votes: u32) -> String {
        if votes > 1 && !self.settings.vote_models.is_empty() {
            self.settings.vote_models.join("+")
        } else {
            self.settings.model.clone()
        }
    }

    /// Answers one question with `votes` samples (self-consistency): the most frequent
    /// answer wins and its share of the votes is the confidence. One vote is one plain call.
    pub async fn answer_with_votes(
        &self,
        question: &QuestionSpec,
        votes: u32,
    ) -> Result<LlmAnswer, LlmError> {
        if votes <= 1 {
            return self.answer(question, self.settings.temperature).await;
        }
        let panel = &self.settings.vote_models;
        let samples = futures::future::join_all((0..votes as usize).map(|vote| {
            if panel.is_empty() {
                return self.answer_as(question, &self.settings.model, self.settings.vote_temperature);
            }
            // Each model's first vote is its considered answer; repeats need sampling to differ.
            let temperature = if vote < panel.len() {
                self.settings.temperature
            } else {
                self.settings.vote_temperature
            };
            self.answer_as(question, &panel[vote % panel.len()], temperature)
        }))
        .await;
        let mut answer = tally(samples, votes)?;
        answer.model = self.model_for(votes);
        Ok(answer)
    }

    /// Answers several questions in one call. `Err` means the call itself failed (the
    /// caller falls back to one call per question); otherwise each question has its own
    /// result (a reply unusable as a whole is an `Err` for each), tokens and cost shared evenly.
    pub async fn answer_batch(&self, questions: &[&QuestionSpec]) -> Result<BatchReply, LlmError> {
        let _permit = self.permit().await?;
        let started = Instant::now();
        let messages = prompt::batch_messages(questions);
        let request = CallRequest {
            model: &self.settings.model,
            messages: &messages,
            schema: prompt::batch_schema(questions),
            temperature: self.settings.temperature,
            max_tokens: self
                .settings
                .max_tokens
                .saturating_mul(u32::try_from(questions.len()).unwrap_or(u32::MAX)),
        };
        let raw = self.call_with_retries(&request).await?;
        let replies = match reply::parse_batch(&raw.content, questions) {
            Ok(replies) => replies,
            // The provider billed this reply even though none of it is usable: every
            // question gets the reason, and the caller charges each its share of the tokens.
            Err(problem) => questions.iter().map(|_| Err(problem.clone())).collect(),
        };
        let (prompt_tokens, completion_tokens) =
            even_share(raw.prompt_tokens, raw.completion_tokens, questions.len());
        let latency_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let answers = replies
            .into_iter()
            .zip(questions)
            .enumerate()
            .map(|(position, (parsed, question))| {
                let parsed = parsed?;
                let anchor = format!("\"q{}\"", position + 1);
                let from_logprobs =
                    reply::answer_probability_after(&raw.tokens, question.options.len(), &anchor);
                let (confidence, confidence_source) =
                    choose_confidence(from_logprobs, parsed.stated_confidence);
                Ok(LlmAnswer {
                    reply: parsed,
                    model: self.settings.model.clone(),
                    confidence,
                    confidence_source,
                    prompt_tokens,
                    completion_tokens,
                    latency_ms,
                    cost_usd: self.settings.cost(prompt_tokens, completion_tokens),
                })
            })
            .collect();
        Ok(BatchReply {
            answers,
            prompt_tokens: raw.prompt_tokens,
            completion_tokens: raw.completion_tokens,
        })
    }

    /// `answer` charged also with `share` tokens of a batch call that paid for its question
    /// without answering it, so the quiz's tokens and cost count everything the provider billed.
    pub fn charge_batch_share(&self, mut answer: LlmAnswer, (prompt, completion): (u32, u32)) -> LlmAnswer {
        answer.prompt_tokens = answer.prompt_tokens.saturating_add(prompt);
        answer.completion_tokens = answer.completion_tokens.saturating_add(completion);
        answer.cost_usd += self.settings.cost(prompt, completion);
        answer
    }

    /// A slot under the replica-wide cap on calls in flight.
    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, LlmError> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| LlmError::Transport("client closed".into()))
    }

    /// Answers one question; a reply that fails validation is shown its error once.
    pub async fn answer(&self, question: &QuestionSpec, temperature: f32) -> Result<LlmAnswer, LlmError> {
        self.answer_as(question, &self.settings.model, temperature).await
    }

    /// Answers one question with `model` (the main model or one of the vote panel).
    async fn answer_as(
        &self,
        question: &QuestionSpec,
        model: &str,
        temperature: f32,
    ) -> Result<LlmAnswer, LlmError> {
        let _permit = self.permit().await?;
        let started = Instant::now();
        let mut messages = prompt::messages(question);
        let (mut prompt_tokens, mut completion_tokens) = (0u32, 0u32);
        for attempt in 0..2 {
            let request = CallRequest {
                model,
                messages: &messages,
                schema: prompt::schema(question),
                temperature,
                max_tokens: self.settings.max_tokens,
            };
            let raw = self.call_with_retries(&request).await?;
            prompt_tokens = prompt_tokens.saturating_add(raw.prompt_tokens);
            completion_tokens = completion_tokens.saturating_add(raw.completion_tokens);
            match reply::parse(&raw.content, question) {
                Ok(parsed) => {
                    let from_logprobs = reply::answer_probability(&raw.tokens, question.options.len());
                    if parsed.repaired {
                        tracing::debug!(content = %raw.content, "reply repaired: answer kept from broken json");
                    }
                    let (confidence, confidence_source) =
                        choose_confidence(from_logprobs, parsed.stated_confidence);
                    return Ok(LlmAnswer {
                        reply: parsed,
                        model: model.to_owned(),
                        confidence,
                        confidence_source,
                        prompt_tokens,
                        completion_tokens,
                        latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
                        cost_usd: self.settings.cost_of(model, prompt_tokens, completion_tokens),
                    });
                }
                Err(problem) if attempt == 0 => {
                    tracing::info!(%problem, "invalid llm reply, asking again with the error");
                    messages.push(json!({"role": "assistant", "content": raw.content}));
                    messages.push(json!({
                        "role": "user",
                        "content": format!("That reply was invalid: {problem}. Reply again with only the JSON object."),
                    }));
                }
                Err(problem) => {
                    metrics::llm_request("invalid_reply", 0.0);
                    return Err(LlmError::InvalidReply(problem));
                }
            }
        }
        Err(LlmError::InvalidReply("no valid reply".into()))
    }

    async fn call_with_retries(&self, request: &CallRequest<'_>) -> Result<RawReply, LlmError> {
        let attempts = self.settings.max_attempts.max(1);
        let mut attempt = 1;
        loop {
            if let breaker::Admission::Rejected { retry_in } = self.breaker.admit() {
                metrics::llm_request("circuit_open", 0.0);
                return Err(LlmError::CircuitOpen {
                    retry_in_ms: retry_in.as_millis() as u64,
                });
            }
            // Every attempt is a request the provider counts, against its model's budgets.
            let waited = match self.budgets.get(request.model) {
                Some(budgets) => {
                    budgets
                        .admit(budget::estimate_tokens(request.messages, request.max_tokens))
                        .await?
                }
                None => Duration::ZERO,
            };
            if !waited.is_zero() {
                metrics::budget_wait(waited.as_secs_f64());
            }
            let started = Instant::now();
            let (result, retry_after) = transport::with_retry_hint(self.call(request)).await;
            let elapsed = started.elapsed().as_secs_f64();
            match result {
                Ok(raw) => {
                    self.breaker.record_success();
                    metrics::llm_request("ok", elapsed);
                    metrics::llm_tokens(raw.prompt_tokens, raw.completion_tokens);
                    // Charged per call, not per answer: a reply that fails validation, or a
                    // batch reply nobody could use, was billed all the same.
                    metrics::cost(self.settings.cost_of(
                        request.model,
                        raw.prompt_tokens,
                        raw.completion_tokens,
                    ));
                    return Ok(raw);
                }
                Err(error) => {
                    metrics::llm_request(error.outcome_label(), elapsed);
                    if error.trips_breaker() {
                        self.breaker.record_failure();
                    }
                    if !error.is_transient() || attempt >= attempts {
                        return Err(error);
                    }
                    let delay = match retry_after {
                        // The provider said when; asking earlier only earns another 429.
                        Some(hint) if hint <= transport::MAX_RETRY_AFTER => hint,
                        Some(hint) => {
                            return Err(LlmError::Status {
                                status: 429,
                                message: format!(
                                    "provider asked to wait {} s, longer than we hold a question",
                                    hint.as_secs()
                                ),
                            });
                        }
                        // Full jitter: uniform in [0, min(5 s, 250 ms · 2^attempt)].
                        None => {
                            let ceiling = (250u64 << attempt.min(5)).min(5_000);
                            Duration::from_millis(rand::rng().random_range(0..=ceiling))
                        }
                    };
                    tracing::warn!(%error, attempt, delay_ms = delay.as_millis() as u64, "llm call failed, retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }

    async fn call(&self, request: &CallRequest<'_>) -> Result<RawReply, LlmError> {
        let (messages, schema) = (request.messages, &request.schema);
        let response_format = match self.settings.dialect() {
            Dialect::Openai => json!({
                "type": "json_schema",
                "json_schema": {"name": "quiz_answer", "strict": true, "schema": schema},
            }),
            Dialect::LlamaCpp => json!({"type": "json_object", "schema": schema}),
        };
        let mut body = json!({
            "model": request.model,
            "messages": messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": false,
            "response_format": response_format,
        });
        if self.settings.logprobs {
            body["logprobs"] = json!(true);
            // Alternatives let the confidence be renormalised over valid options (20 is OpenAI's maximum).
            body["top_logprobs"] = json!(20);
        }
        let timeout = Duration::from_millis(self.settings.timeout_ms);
        let response: Value = tokio::time::timeout(timeout, self.client.chat().create_byot(body))
            .await
            .map_err(|_| LlmError::Timeout(self.settings.timeout_ms))?
            .map_err(classify)?;
        read_reply(&response, messages)
    }
}

/// Logprobs are the more honest measure; the model's own claim is the fallback.
fn choose_confidence(from_logprobs: Option<f64>, stated: Option<f64>) -> (Option<f64>, Option<&'static str>) {
    match (from_logprobs, stated) {
        (Some(probability), _) => (Some(probability), Some("logprobs")),
        (None, Some(stated)) => (Some(stated), Some("model")),
        (None, None) => (None, None),
    }
}

/// Majority vote over samples; failed samples count as votes for nobody.
fn tally(samples: Vec<Result<LlmAnswer, LlmError>>, votes: u32) -> Result<LlmAnswer, LlmError> {
    let mut first_error = None;
    let mut groups: Vec<(Vec<u32>, Vec<LlmAnswer>)> = Vec::new();
    let (mut prompt_tokens, mut completion_tokens, mut latency_ms, mut cost_usd) = (0u32, 0u32, 0u32, 0.0);
    for sample in samples {
        match sample {
            Ok(answer) => {
                prompt_tokens = prompt_tokens.saturating_add(answer.prompt_tokens);
                completion_tokens = completion_tokens.saturating_add(answer.completion_tokens);
                latency_ms = latency_ms.max(answer.latency_ms);
                cost_usd += answer.cost_usd;
                match groups
                    .iter_mut()
                    .find(|(selected, _)| *selected == answer.reply.selected)
                {
                    Some((_, members)) => members.push(answer),
                    None => groups.push((answer.reply.selected.clone(), vec![answer])),
                }
            }
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    // Most votes wins; a tie goes to the answer the model was surer of on average.
    let mean_confidence = |members: &[LlmAnswer]| {
        members.iter().filter_map(|member| member.confidence).sum::<f64>() / members.len().max(1) as f64
    };
    let winner = groups.into_iter().max_by(|(_, a), (_, b)| {
        a.len()
            .cmp(&b.len())
            .then(mean_confidence(a).total_cmp(&mean_confidence(b)))
    });
    let Some((_, members)) = winner else {
        return Err(first_error.unwrap_or_else(|| LlmError::InvalidReply("no votes".into())));
    };
    let agreement = members.len() as f64 / f64::from(votes.max(1));
    let Some(mut answer) = members.into_iter().next() else {
        return Err(LlmError::InvalidReply("no votes".into()));
    };
    answer.confidence = Some(agreement);
    answer.confidence_source = Some("votes");
    answer.prompt_tokens = prompt_tokens;
    answer.completion_tokens = completion_tokens;
    answer.latency_ms = latency_ms;
    answer.cost_usd = cost_usd;
    Ok(answer)
}

fn classify(error: OpenAIError) -> LlmError {
    match error {
        OpenAIError::ApiError(api) => LlmError::Status {
            status: api.status_code.as_u16(),
            message: format!(
                "{} {}",
                api.api_error.message,
                api.api_error.code.unwrap_or_default()
            ),
        },
        OpenAIError::Reqwest(error) if error.is_timeout() => LlmError::Timeout(0),
        OpenAIError::Reqwest(error) => LlmError::Transport(error.to_string()),
        OpenAIError::JSONDeserialize(_, content) => LlmError::Malformed(content.chars().take(120).collect()),
        other => LlmError::Transport(other.to_string()),
    }
}

fn read_reply(response: &Value, messages: &[Value]) -> Result<RawReply, LlmError> {
    let choice = response
        .pointer("/choices/0")
        .ok_or_else(|| LlmError::Malformed("no choices".into()))?;
    let content = choice
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| LlmError::Malformed("no message content".into()))?
        .to_owned();
    let tokens = choice
        .pointer("/logprobs/content")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(|entry| {
                    let alternatives = entry
                        .get("top_logprobs")
                        .and_then(Value::as_array)
                        .map(|alternatives| {
                            alternatives
                                .iter()
                                .filter_map(|alternative| {
                                    Some((
                                        alternative.get("token")?.as_str()?.to_owned(),
                                        alternative.get("logprob")?.as_f64()?,
                                    ))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    Some(reply::Token {
                        text: entry.get("token")?.as_str()?.to_owned(),
                        logprob: entry.get("logprob")?.as_f64()?,
                        alternatives,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let usage = |field: &str| {
        response
            .pointer(&format!("/usage/{field}"))
            .and_then(Value::as_u64)
            .and_then(|value| u32::try_from(value).ok())
    };
    // Without usage, estimate at four characters a token, the usual rule of thumb.
    let estimate = |text: usize| u32::try_from(text.div_ceil(4)).unwrap_or(u32::MAX);
    let prompt_chars: usize = messages
        .iter()
        .filter_map(|message| message.get("content").and_then(Value::as_str))
        .map(str::len)
        .sum();
    Ok(RawReply {
        prompt_tokens: usage("prompt_tokens").unwrap_or_else(|| estimate(prompt_chars)),
        completion_tokens: usage("completion_tokens").unwrap_or_else(|| estimate(content.len())),
        content,
        tokens,
    })
}
