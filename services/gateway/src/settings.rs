//! The gateway's settings.

use common::settings::{
    AmqpSettings, AuditSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings,
};
use serde::{Deserialize, Serialize};

pub use common::http::SecurityHeaderSettings;

pub use crate::auth::settings::{ApiKeyEntry, AuthMode, AuthSettings, Scope};
pub use crate::cors::CorsSettings;
pub use crate::finished::ReadCacheSettings;
pub use crate::idempotency::IdempotencySettings;
pub use crate::rate_limit::RateLimitSettings;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub limits: LimitSettings,
    pub legacy: LegacySettings,
    pub audit: AuditSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub idempotency: IdempotencySettings,
    pub cors: CorsSettings,
    pub security_headers: SecurityHeaderSettings,
    pub read_cache: ReadCacheSettings,
    pub extract: ExtractSettings,
}

impl Settings {
    pub fn load() -> Result<Self, common::settings::SettingsError> {
        common::settings::load(&Sources::from_env("gateway"))
    }
}

/// Input limits; each breach is a 413 or 422 naming what was too big.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    /// Largest JSON body, in bytes.
    pub max_json_bytes: usize,
    pub max_questions: usize,
    pub max_options: usize,
    /// Longest question text, in characters.
    pub max_question_chars: usize,
    /// Longest option text, in characters.
    pub max_option_chars: usize,
    /// Most samples per question a quiz may ask for (each is a paid LLM call).
    pub max_votes: u32,
    /// Largest `source.html`, in bytes (the JSON body may be this large plus 64 KiB).
    pub max_html_bytes: usize,
    /// Longest `source.url`, in characters.
    pub max_url_chars: usize,
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_json_bytes: 512 * 1024,
            max_questions: 200,
            max_options: 26,
            max_question_chars: 4_000,
            max_option_chars: 1_000,
            max_votes: 9,
            max_html_bytes: 2 * 1024 * 1024,
            max_url_chars: 2_048,
        }
    }
}

/// The original system's synchronous `POST /api/analyze`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LegacySettings {
    /// How long the call waits for the quiz to finish before answering 504, in milliseconds.
    /// The quiz still completes; its id is in the 504's detail.
    pub wait_timeout_ms: u64,
}

impl Default for LegacySettings {
    fn default() -> Self {
        Self {
            wait_timeout_ms: 120_000,
        }
    }
}

/// The synchronous `POST /v1/extract`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ExtractSettings {
    /// How long a call waits for a scraper-worker's reply before answering 504, in milliseconds.
    /// Covers the queue wait and the page (`scrape.page_load_timeout_ms` 20 s + settle 5 s, twice
    /// when the browser fails once), with room to spare.
    pub timeout_ms: u64,
}

impl Default for ExtractSettings {
    fn default() -> Self {
        Self { timeout_ms: 60_000 }
    }
}
