//! HTTP plumbing every service shares: `/healthz`, `/readyz`, `/metrics`, request
//! spans, and the fallback that turns actix's own errors into problem+json.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{HttpResponse, web};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use serde_json::json;
use tracing::Instrument;

use crate::bus::Bus;
use crate::problem::{PROBLEM_JSON, Problem};

/// Serves a service's routes with the shared plumbing every service wants: request
/// spans and metrics, problem+json for actix's own errors, `/healthz`, `/readyz` and
/// `/metrics` (its `configure` registers `web::Data<Readiness>` and its own routes),
/// no Nagle delay, and no signal handling of its own (the service's shutdown token
/// decides). `workers` 0 means one per core.
pub fn serve<F>(
    listener: std::net::TcpListener,
    workers: usize,
    configure: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(trace_requests))
            .wrap(problem_fallback())
            .configure(configure_ops)
            .configure(configure.clone())
    })
    .disable_signals()
    // Small frames (events, JSON answers) must not wait for Nagle.
    .tcp_nodelay(true)
    .listen(listener)?;
    if workers > 0 {
        server = server.workers(workers);
    }
    Ok(server.run())
}

/// What `/readyz` checks: the dependencies this service cannot work without.
#[derive(Clone, Default)]
pub struct Readiness {
    pub bus: Option<Bus>,
    pub redis: Option<deadpool_redis::Pool>,
}

/// Adds `/healthz`, `/readyz` and `/metrics`; needs `web::Data<Readiness>` in the app.
pub fn configure_ops(config: &mut web::ServiceConfig) {
    config
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    let broker = readiness.bus.as_ref().map(Bus::is_connected);
    let redis = match &readiness.redis {
        Some(pool) => Some(crate::redis::ping(pool).await),
        None => None,
    };
    let label = |state: Option<bool>| match state {
        Some(true) => "up",
        Some(false) => "down",
        None => "not used",
    };
    let ready = broker != Some(false) && redis != Some(false);
    let checks = json!({ "broker": label(broker), "redis": label(redis) });
    if ready {
        HttpResponse::Ok().json(json!({ "status": "ready", "checks": checks }))
    } else {
        let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not-ready", "Service not ready")
            .with_detail(format!("broker: {}, redis: {}", label(broker), label(redis)))
            .with_retry_after(1)
            .to_response();
        problem
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        problem
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::telemetry::encode_metrics())
}

/// Replaces the body of every error response that is not problem+json already
/// (actix's 404, 405, 413, payload errors) with a problem document.
pub fn problem_fallback<B: MessageBody + 'static>() -> ErrorHandlers<B> {
    ErrorHandlers::new().default_handler(|response: ServiceResponse<B>| {
        let already = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
        if already {
            return Ok(ErrorHandlerResponse::Response(response.map_into_left_body()));
        }
        let status = response.status();
        let mut problem = Problem::from_status(status);
        // Client errors explain themselves; server errors never leak internals.
        if status.is_client_error()
            && let Some(error) = response.response().error()
        {
            problem = problem.with_detail(error.to_string());
        }
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let (request, _) = response.into_parts();
        let mut replacement = problem.to_response();
        if let Some(value) = retry_after {
            replacement.headers_mut().insert(header::RETRY_AFTER, value);
        }
        Ok(ErrorHandlerResponse::Response(
            ServiceResponse::new(request, replacement).map_into_right_body(),
        ))
    })
}

struct HttpMetrics {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

fn http_metrics() -> &'static HttpMetrics {
    static METRICS: std::sync::OnceLock<HttpMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| {
        let meter = crate::telemetry::meter();
        HttpMetrics {
            requests: meter
                .u64_counter("http_requests")
                .with_description("HTTP requests served, by route pattern and status")
                .build(),
            duration: meter
                .f64_histogram("http_request_duration_seconds")
                .with_description("HTTP request latency")
                .with_boundaries(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ])
                .build(),
        }
    })
}

/// A span per request (adopting an incoming `traceparent`), plus request metrics.
/// Use with `actix_web::middleware::from_fn(common::http::trace_requests)`.
pub async fn trace_requests(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = request.match_pattern().unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let span = tracing::info_span!(
        "http",
        http.method = %method,
        http.route = %route,
        http.status = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    adopt_traceparent(&span, &request);
    let response = next.call(request).instrument(span.clone()).await?;
    let status = response.status();
    span.record("http.status", status.as_u16());
    let labels = [
        KeyValue::new("method", method),
        KeyValue::new("route", route.clone()),
        KeyValue::new("status", i64::from(status.as_u16())),
    ];
    let metrics = http_metrics();
    metrics.requests.add(1, &labels);
    metrics.duration.record(started.elapsed().as_secs_f64(), &labels);
    // A 503 from /readyz is the probe doing its job, not a failure to report.
    if status.is_server_error() && route != "/readyz" {
        span.in_scope(|| tracing::warn!(status = status.as_u16(), "request failed"));
    }
    Ok(response)
}

fn adopt_traceparent(span: &tracing::Span, request: &ServiceRequest) {
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let mut carrier = FieldTable::default();
    for name in ["traceparent", "tracestate"] {
        if let Some(value) = request.headers().get(name).and_then(|value| value.to_str().ok()) {
            carrier.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
        }
    }
    crate::bus::trace_context::adopt_parent(span, Some(&carrier));
}
