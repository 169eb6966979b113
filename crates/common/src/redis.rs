//! The Redis connection pool.

use std::time::Duration;

use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

use crate::settings::RedisSettings;

pub use deadpool_redis::Connection;

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("redis pool could not be built")]
    Build(#[from] deadpool_redis::CreatePoolError),
    #[error("no redis connection available")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("redis command failed")]
    Command(#[from] redis::RedisError),
    #[error("stored value is not valid json")]
    Json(#[from] serde_json::Error),
    /// A value this code built does not have the shape a script relies on (a bug).
    #[error("value not storable: {0}")]
    Unstorable(String),
}

/// Builds the pool; it connects lazily, so building succeeds while Redis is down.
pub fn pool(settings: &RedisSettings) -> Result<Pool, RedisError> {
    let timeout = Some(Duration::from_millis(settings.timeout_ms));
    let mut config = Config::from_url(settings.url.clone());
    config.pool = Some(PoolConfig {
        max_size: settings.pool_size,
        timeouts: Timeouts {
            wait: timeout,
            create: timeout,
            recycle: timeout,
        },
        ..PoolConfig::default()
    });
    Ok(config.create_pool(Some(Runtime::Tokio1))?)
}

/// True when a `PING` round trip succeeds; used by `/readyz`.
pub async fn ping(pool: &Pool) -> bool {
    let Ok(mut connection) = pool.get().await else {
        return false;
    };
    redis::cmd("PING")
        .query_async::<String>(&mut connection)
        .await
        .is_ok()
}
