//! Integration tests of the common crate against the real RabbitMQ and Redis.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod bus;
mod redis_pool;
mod store;

pub fn unique(label: &str) -> String {
    format!("test-{label}-{}", uuid::Uuid::new_v4().simple())
}
