//! Test helpers shared by every crate's integration tests.
//!
//! Real RabbitMQ and Redis are used as they are; this crate only makes tests
//! isolated from each other ([`unique_prefix`]), scripts the one thing tests may
//! script (the LLM, [`scripted_llm`]) and cuts connections on demand
//! ([`fault_proxy`]).

pub mod fault_proxy;
pub mod scripted_llm;
pub mod static_pages;

use std::future::Future;
use std::time::{Duration, Instant};

/// A prefix no other test uses, for AMQP names and Redis keys.
pub fn unique_prefix(label: &str) -> String {
    format!("test-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// Starts telemetry once per test binary, quietly unless `RUST_LOG` says otherwise.
pub fn init_telemetry() {
    let settings = common::settings::TelemetrySettings {
        log_format: common::settings::LogFormat::Pretty,
        log_filter: "warn".to_owned(),
    };
    common::telemetry::init("tests", &settings);
}

/// Polls `check` until it yields `Some` or `deadline` passes; tests never sleep and hope.
pub async fn eventually<T, F, Fut>(deadline: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if started.elapsed() > deadline {
            anyhow::bail!("condition not met within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deletes every Redis key under `prefix`: the test's own keys only, never a flush.
pub async fn cleanup_redis(url: &str, prefix: &str) -> anyhow::Result<()> {
    let settings = common::settings::RedisSettings {
        url: url.to_owned(),
        ..Default::default()
    };
    let pool = common::redis::pool(&settings)?;
    let mut connection = pool.get().await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = deadpool_redis::redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(500)
            .query_async(&mut connection)
            .await?;
        if !keys.is_empty() {
            deadpool_redis::redis::cmd("DEL")
                .arg(&keys)
                .query_async::<()>(&mut connection)
                .await?;
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}
