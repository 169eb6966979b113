//! HTTP plumbing every service shares: `/healthz`, `/readyz`, `/metrics`, request
//! spans, security headers on every response, and the fallback that turns actix's own
//! errors into problem+json.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{ErrorHandlerResponse, ErrorHandlers, Next};
use actix_web::{HttpResponse, web};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::Instrument;

use crate::bus::Bus;
use crate::problem::{PROBLEM_JSON, Problem};

/// Serves a service's routes with the shared plumbing every service wants: request
/// spans and metrics, problem+json for actix's own errors, security headers (no HSTS),
/// `/healthz`, `/readyz` and `/metrics` (its `configure` registers `web::Data<Readiness>`
/// and its own routes), no Nagle delay, and no signal handling of its own (the service's
/// shutdown token decides). `workers` 0 means one per core.
pub fn serve<F>(
    listener: std::net::TcpListener,
    workers: usize,
    configure: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    serve_with_security(listener, workers, SecurityHeaderSettings::default(), configure)
}

/// [`serve`], with the service's `[security_headers]` settings (HSTS when configured).
pub fn serve_with_security<F>(
    listener: std::net::TcpListener,
    workers: usize,
    security: SecurityHeaderSettings,
    configure: F,
) -> std::io::Result<actix_web::dev::Server>
where
    F: Fn(&mut web::ServiceConfig) + Clone + Send + 'static,
{
    let mut server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(trace_requests))
            .wrap(problem_fallback())
            // Outermost, so problem documents and every middleware's answer carry the headers too.
            .wrap(actix_web::middleware::from_fn(security_headers))
            .app_data(security.clone())
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

/// The `Content-Security-Policy` an HTML response gets unless its handler set its own:
/// everything from the page's own origin only (WebSockets included: CSP 3 lets `'self'`
/// match `ws:`/`wss:` on the same host), no inline script or style, no plugins, never framed,
/// no `<base>` or form posts. A page that needs more says so in its own header.
pub const HTML_CONTENT_SECURITY_POLICY: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// The `[security_headers]` settings: what every response carries beyond the fixed
/// `nosniff`, `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityHeaderSettings {
    /// `Strict-Transport-Security: max-age=<this>; includeSubDomains`, in seconds; 0 (the
    /// default) sends none. Only for deployments reached over HTTPS (prod: 2 years, the
    /// value the HSTS preload list asks for); browsers ignore it over plain HTTP.
    pub hsts_max_age_secs: u64,
}

impl SecurityHeaderSettings {
    fn hsts(&self) -> Option<HeaderValue> {
        (self.hsts_max_age_secs > 0)
            .then(|| format!("max-age={}; includeSubDomains", self.hsts_max_age_secs))
            .and_then(|value| HeaderValue::from_str(&value).ok())
    }
}

/// Middleware: security headers on every response, errors included, never replacing a
/// header the handler set itself (the dashboard sets its own CSP). Reads the service's
/// [`SecurityHeaderSettings`] from app data (`App::app_data`); without it, no HSTS.
/// Use with `actix_web::middleware::from_fn(common::http::security_headers)`, wrapped last.
pub async fn security_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let hsts = request
        .app_data::<SecurityHeaderSettings>()
        .and_then(SecurityHeaderSettings::hsts);
    // Handler errors arrive here as responses already (actix renders them in the handler);
    // only a failing middleware's error passes by, and actix renders that one itself.
    let mut response = next.call(request).await?;
    let headers = response.headers_mut();
    let fixed = [
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
    ];
    for (name, value) in fixed
        .into_iter()
        .chain(hsts.map(|value| (header::STRICT_TRANSPORT_SECURITY, value)))
    {
        if !headers.contains_key(&name) {
            headers.insert(name, value);
        }
    }
    let is_html = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("text/html"));
    if is_html && !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(HTML_CONTENT_SECURITY_POLICY),
        );
    }
    Ok(response)
}

/// What `/readyz` checks: the dependencies this service cannot work without.
#[derive(Clone, Default)]
pub struct Readiness {
    pub bus: Option<Bus>,
    pub redis: Option<crate::redis::Pool>,
}

/// Adds `/healthz`, `/readyz` and `/metrics`; needs `web::Data<Readiness>` in the app.
pub fn configure_ops(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/healthz")
                .route(web::get().to(healthz))
                .default_service(method_not_allowed("GET")),
        )
        .service(
            web::resource("/readyz")
                .route(web::get().to(readyz))
                .default_service(method_not_allowed("GET")),
        )
        .service(
            web::resource("/metrics")
                .route(web::get().to(metrics))
                .default_service(method_not_allowed("GET")),
        );
}

/// A resource's answer to a method it does not serve: 405 problem+json naming the methods it
/// does in `Allow`, which RFC 9110 §15.5.6 requires (actix's own 405 has none).
pub fn method_not_allowed(allow: &'static str) -> actix_web::Route {
    use actix_web::http::StatusCode;
    use actix_web::http::header::{ALLOW, HeaderValue};
    web::to(move || async move {
        let mut response = crate::problem::Problem::from_status(StatusCode::METHOD_NOT_ALLOWED)
            .with_detail(format!("this resource answers {allow}"))
            .to_response();
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        response
    })
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use actix_web::{App, test};

    use super::*;

    fn value(headers: &actix_web::http::header::HeaderMap, name: header::HeaderName) -> &str {
        headers
            .get(&name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    async fn html() -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body("<p>hi</p>")
    }

    async fn own_policy() -> HttpResponse {
        HttpResponse::Ok()
            .content_type("text/html")
            .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'"))
            .insert_header((header::X_FRAME_OPTIONS, "SAMEORIGIN"))
            .body("<p>mine</p>")
    }

    async fn failing() -> Result<HttpResponse, actix_web::Error> {
        Err(actix_web::error::ErrorBadRequest("no"))
    }

    #[actix_web::test]
    async fn every_response_gets_the_headers_and_html_a_policy() {
        let app = test::init_service(
            App::new()
                .wrap(problem_fallback())
                .wrap(actix_web::middleware::from_fn(security_headers))
                .route("/json", web::get().to(healthz))
                .route("/html", web::get().to(html))
                .route("/own", web::get().to(own_policy))
                .route("/fail", web::get().to(failing)),
        )
        .await;
        for path in ["/json", "/html", "/own", "/fail", "/missing"] {
            let response = test::call_service(&app, test::TestRequest::get().uri(path).to_request()).await;
            let headers = response.headers();
            assert_eq!(
                value(headers, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff",
                "{path}"
            );
            assert_eq!(value(headers, header::REFERRER_POLICY), "no-referrer", "{path}");
            assert!(
                !headers.contains_key(header::STRICT_TRANSPORT_SECURITY),
                "{path}: hsts is opt-in"
            );
        }
        let json = test::call_service(&app, test::TestRequest::get().uri("/json").to_request()).await;
        assert_eq!(value(json.headers(), header::X_FRAME_OPTIONS), "DENY");
        assert!(!json.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let html = test::call_service(&app, test::TestRequest::get().uri("/html").to_request()).await;
        assert_eq!(
            value(html.headers(), header::CONTENT_SECURITY_POLICY),
            HTML_CONTENT_SECURITY_POLICY
        );
        let own = test::call_service(&app, test::TestRequest::get().uri("/own").to_request()).await;
        assert_eq!(
            value(own.headers(), header::CONTENT_SECURITY_POLICY),
            "default-src 'none'"
        );
        assert_eq!(value(own.headers(), header::X_FRAME_OPTIONS), "SAMEORIGIN");
        let failed = test::call_service(&app, test::TestRequest::get().uri("/fail").to_request()).await;
        assert_eq!(failed.status(), StatusCode::BAD_REQUEST);
        assert_eq!(value(failed.headers(), header::CONTENT_TYPE), PROBLEM_JSON);
    }

    #[actix_web::test]
    async fn hsts_only_when_configured() {
        let app = test::init_service(
            App::new()
                .wrap(actix_web::middleware::from_fn(security_headers))
                .app_data(SecurityHeaderSettings {
                    hsts_max_age_secs: 63_072_000,
                })
                .route("/json", web::get().to(healthz)),
        )
        .await;
        let response = test::call_service(&app, test::TestRequest::get().uri("/json").to_request()).await;
        assert_eq!(
            value(response.headers(), header::STRICT_TRANSPORT_SECURITY),
            "max-age=63072000; includeSubDomains"
        );
    }
}
