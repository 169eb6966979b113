//! End-to-end tests of the services together, as one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod analyzer;
mod auth;
mod config_drift;
mod flow;
mod outage;
mod real_llm;
mod scrape;
mod validation;
