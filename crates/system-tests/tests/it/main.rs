//! End-to-end tests of the services together, as one test binary.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

mod analyzer;
mod auth;
mod cli;
mod config_drift;
mod extract;
mod flow;
mod gateway_api;
mod openapi;
mod outage;
mod real_llm;
mod reliability;
mod scrape;
mod validation;
