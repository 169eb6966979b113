//! The analyzer's settings.

use common::settings::{
    AmqpSettings, AuditSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub llm: LlmSettings,
    pub cache: CacheSettings,
    pub audit: AuditSettings,
    pub reliability: ReliabilitySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8081),
            amqp: AmqpSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
            llm: LlmSettings::default(),
            cache: CacheSettings::default(),
            audit: AuditSettings::default(),
            reliability: ReliabilitySettings::default(),
        }
    }
}

impl Settings {
    /// Loads every layer; `OPENAI_API_KEY` (or `_FILE`) fills `llm.api_key` when unset.
    pub fn load() -> Result<Self, common::settings::SettingsError> {
        let mut settings: Self = common::settings::load(&Sources::from_env("analyzer"))?;
        if settings.llm.api_key.is_none() {
            settings.llm.api_key = common::settings::secret_from_env("QUIZSTATS_LLM__API_KEY")
                .or_else(|| common::settings::secret_from_env("OPENAI_API_KEY"));
        }
        Ok(settings)
    }
}

/// How the provider wants structured output asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dialect {
    /// OpenAI: `response_format: {"type": "json_schema", "json_schema": {...}}`.
    Openai,
    /// llama-cpp-python's server: `{"type": "json_object", "schema": {...}}`; it rejects `json_schema`.
    LlamaCpp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmSettings {
    /// OpenAI-compatible base URL, up to and including `/v1`.
    pub base_url: String,
    /// Model name sent in each request (and part of every cache key).
    pub model: String,
    /// Bearer key; also read from `OPENAI_API_KEY`. Never logged.
    #[serde(skip_serializing)]
    pub api_key: Option<SecretString>,
    /// Structured-output dialect; `None` picks by URL (api.openai.com → openai, else llama_cpp).
    pub dialect: Option<Dialect>,
    /// Ask for token logprobs and derive confidence from them.
    pub logprobs: bool,
    /// Per-call timeout, in milliseconds.
    pub timeout_ms: u64,
    /// Completion budget per question; the reply is a short JSON object.
    pub max_tokens: u32,
    pub temperature: f32,
    /// LLM calls in flight at once, across all quizzes of this replica.
    pub max_concurrency: usize,
    /// Attempts per call for transient failures (429, 5xx, timeouts), first included.
    pub max_attempts: u32,
    /// Calls per minute this replica may make to the model (unset: no budget); spread evenly
    /// over the minute with one second's share as burst. Give each replica its share.
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (prompt estimate + completion cap, charged before each call).
    pub tokens_per_minute: Option<u32>,
    /// Questions per LLM call; a batch reply that leaves a question out or gets it wrong
    /// falls back to one call for that question. Default 1: on the local model, over 200
    /// questions with the two sizes interleaved, batches of 4 took 1.09-1.10x as long per
    /// question and saved 2% of prompt tokens while spending 2% more completion tokens (8
    /// was 1.42x as slow on 48); docs/analyzer.md has the measurements.
    pub batch_size: usize,
    /// Sampling temperature for self-consistency votes (a vote at temperature 0 repeats itself).
    pub vote_temperature: f32,
    /// A panel of models (same endpoint) that share a quiz's `votes` when it asks for more than
    /// one: vote i goes to `vote_models[i % len]`, at `temperature` for each model's first vote
    /// and `vote_temperature` for repeats. Empty (default): every vote samples `model`. The
    /// budgets and the price table apply per model.
    pub vote_models: Vec<String>,
    /// Consecutive provider failures (5xx, timeouts, unreachable) that open the circuit breaker.
    pub breaker_threshold: u32,
    /// How long the breaker stays open before one probe call, in milliseconds.
    pub breaker_cooldown_ms: u64,
    /// Prices per model, in US dollars per million tokens; models not listed cost nothing
    /// (a local server). Check your provider's current price list.
    pub prices: std::collections::BTreeMap<String, Price>,
}

/// What a model costs, in US dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub prompt_per_million: f64,
    pub completion_per_million: f64,
}

impl Price {
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        (f64::from(prompt_tokens) * self.prompt_per_million
            + f64::from(completion_tokens) * self.completion_per_million)
            / 1_000_000.0
    }
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8088/v1".to_owned(),
            model: "smollm2".to_owned(),
            api_key: None,
            dialect: None,
            logprobs: true,
            timeout_ms: 60_000,
            max_tokens: 160,
            temperature: 0.0,
            max_concurrency: 4,
            max_attempts: 3,
            requests_per_minute: None,
            tokens_per_minute: None,
            batch_size: 1,
            vote_temperature: 0.8,
            vote_models: Vec::new(),
            breaker_threshold: 5,
            breaker_cooldown_ms: 30_000,
            prices: [
                (
                    "gpt-4o-mini",
                    Price {
                        prompt_per_million: 0.15,
                        completion_per_million: 0.60,
                    },
                ),
                (
                    "gpt-4o",
                    Price {
                        prompt_per_million: 2.50,
                        completion_per_million: 10.00,
                    },
                ),
            ]
            .into_iter()
            .map(|(model, price)| (model.to_owned(), price))
            .collect(),
        }
    }
}

impl LlmSettings {
    /// What a call cost with the configured model's price, zero when it has none.
    pub fn cost(&self, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        self.cost_of(&self.model, prompt_tokens, completion_tokens)
    }

    /// What a call to `model` cost with its price, zero when it has none.
    pub fn cost_of(&self, model: &str, prompt_tokens: u32, completion_tokens: u32) -> f64 {
        self.prices
            .get(model)
            .map_or(0.0, |price| price.cost(prompt_tokens, completion_tokens))
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
            .unwrap_or(if self.base_url.contains("api.openai.com") {
                Dialect::Openai
            } else {
                Dialect::LlamaCpp
            })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// How long a cached answer lives, in seconds (default 30 days).
    pub ttl_secs: u64,
    /// Single flight: how long an LLM call holds its question's lease before another
    /// replica may take over, in milliseconds; the holder renews it while it works.
    pub lock_ttl_ms: u64,
    /// How often a caller waiting on another's call checks for the answer, in milliseconds.
    pub lock_poll_ms: u64,
    /// How long a failed answer is remembered so waiters fail with it instead of retrying, in seconds.
    pub failure_ttl_secs: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_secs: 30 * 24 * 3600,
            lock_ttl_ms: 10_000,
            lock_poll_ms: 50,
            failure_ttl_secs: 30,
        }
    }
}

/// The stuck-quiz sweeper and job de-duplication (docs/reliability.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReliabilitySettings {
    /// How often the sweeper looks for quizzes that stopped moving, in milliseconds.
    pub sweep_interval_ms: u64,
    /// A quiz that is neither completed nor failed and made no progress (created, status
    /// change, an answer recorded) for this long is failed with "timed out: no progress for
    /// N s". Must exceed the longest silent stretch of a healthy quiz: one LLM call with its
    /// retries (3 × 60 s by default) plus the wait in a backlogged queue. Default 10 minutes.
    pub quiz_deadline_secs: u64,
    /// Stuck quizzes failed per sweep at most; the rest wait for the next sweep.
    pub sweep_batch: usize,
    /// How long a finished job's message id is remembered, so a duplicate or late
    /// redelivery is acknowledged without work, in seconds (default one day).
    pub message_dedup_ttl_secs: u64,
    /// How long a replica's claim on a job lasts unless renewed (it renews every third of
    /// it while working); a duplicate waits for the claim, and takes over if the holder
    /// died, in milliseconds.
    pub message_lease_ms: u64,
    /// Logged events still unconfirmed on the bus this long after their quiz's last log
    /// write are published again by the sweeper's relay pass (every `sweep_interval_ms`),
    /// in milliseconds. A healthy publish confirms within `amqp.confirm_timeout_ms`.
    pub relay_after_ms: u64,
}

impl Default for ReliabilitySettings {
    fn default() -> Self {
        Self {
            sweep_interval_ms: 15_000,
            quiz_deadline_secs: 600,
            sweep_batch: 100,
            message_dedup_ttl_secs: 24 * 3600,
            message_lease_ms: 30_000,
            relay_after_ms: 10_000,
        }
    }
}
