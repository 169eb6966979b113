//! The operations routes `common::http::configure_ops` serves on every service. Their handlers
//! live in `common`, so the document describes them through these signatures; the system tests
//! read their real answers into the schemas named here.
#![allow(dead_code, reason = "documentation of routes served by common::http")]

use super::responses::NotReady;
use super::schemas::{Health, Ready};

/// Liveness
///
/// 200 while the process runs. Needs no API key.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process runs.", body = Health))
)]
fn healthz() {}

/// Readiness
///
/// 200 when RabbitMQ and Redis are reachable, else 503 naming what is down. Needs no API key.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "The broker and Redis are reachable.", body = Ready),
        (status = 503, response = NotReady),
    )
)]
fn readyz() {}

/// Prometheus metrics
///
/// The Prometheus text exposition format. Needs no API key (keep it off the public network:
/// the nginx in front of the services answers 404 for it).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((
        status = 200,
        description = "Every metric of the gateway, e.g. `http_requests_total`.",
        body = String,
        content_type = "text/plain"
    ))
)]
fn metrics() {}
