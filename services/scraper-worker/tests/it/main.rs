//! Integration tests of the scraper-worker against real Chromium (one test binary).
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod corpus;
mod crash;
mod helpers;
mod pool;
mod ssrf;
