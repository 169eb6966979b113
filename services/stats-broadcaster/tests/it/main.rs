//! Integration tests of the stats-broadcaster: the real service in-process against
//! the real RabbitMQ and Redis, each test on its own AMQP prefix and Redis key prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod access;
mod browser;
mod dashboard;
mod fanout;
mod helpers;
mod resync;
mod stream;
