//! The analyzer alone on the real RabbitMQ and Redis, with the scripted LLM.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod dead_letters;
