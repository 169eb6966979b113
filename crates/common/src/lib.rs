//! What every QuizStats service shares: settings, telemetry, the bus, Redis, HTTP plumbing.

pub mod auth;
pub mod bus;
pub mod http;
pub mod keys;
pub mod lifecycle;
pub mod problem;
pub mod redis;
pub mod relay;
pub mod settings;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod views;

/// Milliseconds since the Unix epoch, the one timestamp format on the bus and in Redis.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
