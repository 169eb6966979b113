//! Settings parts shared by the services, and the one function that layers them.
//!
//! Layers, lowest first: `Default`, `config/base.toml`, `config/<QUIZSTATS_ENV>.toml`,
//! `QUIZSTATS_*` env, then `QUIZSTATS_<SERVICE>__*` env for one service only.
//! Nesting in env names uses `__` (`QUIZSTATS_REDIS__POOL_SIZE`), because a single
//! `_` would split field names that contain one.

use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Why settings could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(#[from] Box<figment::Error>);

/// Which config files and env to read; tests point it elsewhere.
#[derive(Debug, Clone)]
pub struct Sources {
    /// Folder holding `base.toml` and `<profile>.toml` (`QUIZSTATS_CONFIG_DIR`, default `config`).
    pub config_dir: PathBuf,
    /// Profile name (`QUIZSTATS_ENV`, default `dev`).
    pub profile: String,
    /// Service name for the per-service env prefix, e.g. `gateway`.
    pub service: String,
}

impl Sources {
    /// Reads the two locator variables from the process environment.
    pub fn from_env(service: &str) -> Self {
        Self {
            config_dir: std::env::var_os("QUIZSTATS_CONFIG_DIR")
                .map_or_else(|| PathBuf::from("config"), PathBuf::from),
            profile: std::env::var("QUIZSTATS_ENV").unwrap_or_else(|_| "dev".to_owned()),
            service: service.to_owned(),
        }
    }
}

/// Builds the layered figment for a settings type whose `Default` holds the defaults.
pub fn figment<T: Serialize + Default>(sources: &Sources) -> Figment {
    let service_prefix = format!("QUIZSTATS_{}__", sources.service.to_uppercase().replace('-', "_"));
    Figment::from(Serialized::defaults(T::default()))
        .merge(Toml::file(sources.config_dir.join("base.toml")))
        .merge(Toml::file(
            sources.config_dir.join(format!("{}.toml", sources.profile)),
        ))
        .merge(
            Env::prefixed("QUIZSTATS_")
                .split("__")
                // The locator variables and the per-service variables are not settings keys.
                .ignore(&["env", "config_dir"])
                .filter(|key| {
                    ![
                        "gateway__",
                        "analyzer__",
                        "scraper_worker__",
                        "stats_broadcaster__",
                    ]
                    .iter()
                    .any(|service| key.as_str().starts_with(service))
                }),
        )
        .merge(Env::prefixed(&service_prefix).split("__"))
}

/// Loads settings of type `T` from every layer.
pub fn load<T: Serialize + Default + DeserializeOwned>(sources: &Sources) -> Result<T, SettingsError> {
    figment::<T>(sources)
        .extract()
        .map_err(|error| SettingsError(Box::new(error)))
}

/// The HTTP listener every service has (health, readiness, metrics, and its own API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Address to bind.
    pub host: String,
    /// Port to bind; 0 picks a free one (tests).
    pub port: u16,
    /// Actix worker threads; 0 means one per core.
    pub workers: usize,
}

impl HttpSettings {
    /// Defaults for a service whose well-known port is `port`.
    pub fn on_port(port: u16) -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port,
            workers: 0,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::on_port(8080)
    }
}

/// RabbitMQ connection and topology names.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AmqpSettings {
    /// Broker URL; `%2f` is the default vhost `/`.
    pub url: String,
    /// Prefix of every exchange and queue name, so tests and tenants can share a broker.
    pub prefix: String,
    /// Unacknowledged deliveries a consumer holds at once.
    pub prefetch: u16,
    /// Deliveries of one message before it is dead-lettered (quorum `x-delivery-limit`).
    /// RabbitMQ 3.10 has no default limit, so a poison message would loop forever.
    pub delivery_limit: u32,
    /// Give up one connection attempt after this long, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest pause between reconnection attempts, in milliseconds.
    pub max_backoff_ms: u64,
    /// Wait at most this long for a publisher confirm, in milliseconds.
    pub confirm_timeout_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            prefix: "quizstats".to_owned(),
            prefetch: 32,
            delivery_limit: 5,
            connect_timeout_ms: 3_000,
            max_backoff_ms: 10_000,
            confirm_timeout_ms: 5_000,
        }
    }
}

/// Redis connection and key namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RedisSettings {
    /// Redis URL.
    pub url: String,
    /// Prefix of every key, so tests and tenants can share a server.
    pub key_prefix: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// Give up waiting for a pooled connection (and connecting) after this long, in milliseconds.
    pub timeout_ms: u64,
    /// How long a quiz, its answers and events are kept, in seconds (default 7 days).
    pub quiz_ttl_secs: u64,
}

impl Default for RedisSettings {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".to_owned(),
            key_prefix: "qs:".to_owned(),
            pool_size: 16,
            timeout_ms: 2_000,
            quiz_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// How an answer key is audited.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditSettings {
    /// A disagreement with the key at or above this confidence is listed as disputed.
    pub dispute_confidence: f64,
}

impl Default for AuditSettings {
    fn default() -> Self {
        Self {
            dispute_confidence: 0.8,
        }
    }
}

/// Log format and filter.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TelemetrySettings {
    /// `pretty` for people, `json` for log shippers.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive; `RUST_LOG` wins when set.
    pub log_filter: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Reads an optional secret, also from a `<NAME>_FILE` path so that orchestrators can mount it.
pub fn secret_from_env(name: &str) -> Option<SecretString> {
    if let Ok(value) = std::env::var(name)
        && !value.is_empty()
    {
        return Some(SecretString::from(value));
    }
    let path = std::env::var_os(format!("{name}_FILE"))?;
    std::fs::read_to_string(path)
        .ok()
        .map(|contents| SecretString::from(contents.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::result_large_err,
        reason = "tests; figment's Jail API fixes the error type"
    )]
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Demo {
        http: HttpSettings,
        redis: RedisSettings,
    }

    fn sources(dir: &std::path::Path) -> Sources {
        Sources {
            config_dir: dir.to_owned(),
            profile: "test".into(),
            service: "gateway".into(),
        }
    }

    #[test]
    fn layers_apply_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("base.toml", "[http]\nport = 9000\nhost = \"0.0.0.0\"")?;
            jail.create_file("test.toml", "[http]\nport = 9001")?;
            jail.set_env("QUIZSTATS_REDIS__POOL_SIZE", "3");
            jail.set_env("QUIZSTATS_GATEWAY__HTTP__PORT", "9002");
            jail.set_env("QUIZSTATS_ANALYZER__HTTP__PORT", "1");
            let demo: Demo = load(&sources(jail.directory())).unwrap();
            assert_eq!(demo.http.host, "0.0.0.0");
            assert_eq!(demo.http.port, 9002);
            assert_eq!(demo.redis.pool_size, 3);
            assert_eq!(demo.redis.key_prefix, "qs:");
            Ok(())
        });
    }

    #[test]
    fn bad_value_names_the_key() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("QUIZSTATS_HTTP__PORT", "eighty");
            let error = load::<Demo>(&sources(jail.directory())).unwrap_err().to_string();
            assert!(error.to_lowercase().contains("http.port"), "{error}");
            assert!(error.contains("QUIZSTATS_"), "{error}");
            Ok(())
        });
    }
}
