//! The analyzer's settings.

use common::settings::{AmqpSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings};
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
        }
    }
}

impl LlmSettings {
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
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl_secs: 30 * 24 * 3600,
        }
    }
}
