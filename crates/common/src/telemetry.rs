//! The one place that builds the log subscriber, the tracer and the meter provider.
//!
//! Logs: pretty or JSON through tracing-subscriber; each request or message span
//! records its OpenTelemetry `trace_id` as a field, so every line logged inside it
//! carries the id. Metrics: OpenTelemetry instruments exported through
//! opentelemetry-prometheus into one registry that `/metrics` encodes.

use std::sync::OnceLock;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::settings::{LogFormat, TelemetrySettings};

static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();
static LOGS: OnceLock<()> = OnceLock::new();

/// Installs the global subscriber once per process; later calls (tests that start
/// several services in one process) change nothing.
pub fn init(service: &'static str, settings: &TelemetrySettings) {
    metrics_registry();
    LOGS.get_or_init(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new(settings.log_filter.as_str()));
        // No span exporter: spans still get real W3C ids, which is what ties a
        // quiz's logs together and rides in AMQP headers. An OTLP exporter would
        // plug in here.
        let tracer_provider = SdkTracerProvider::builder().build();
        let tracer = tracer_provider.tracer(service);
        opentelemetry::global::set_tracer_provider(tracer_provider);
        let otel = tracing_opentelemetry::layer().with_tracer(tracer);
        let registry = tracing_subscriber::registry().with(filter).with(otel);
        let result = match settings.log_format {
            LogFormat::Json => registry
                .with(
                    tracing_subscriber::fmt::layer()
                        .json()
                        .with_current_span(true)
                        .with_span_list(true),
                )
                .try_init(),
            LogFormat::Pretty => registry
                .with(tracing_subscriber::fmt::layer().compact())
                .try_init(),
        };
        if result.is_err() {
            // Another subscriber is already global (a test harness); keep it.
        }
    });
}

/// The registry every service's `/metrics` encodes; created with the meter provider.
pub fn metrics_registry() -> &'static prometheus::Registry {
    REGISTRY.get_or_init(|| {
        let registry = prometheus::Registry::new();
        match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
        {
            Ok(exporter) => {
                let provider = SdkMeterProvider::builder().with_reader(exporter).build();
                opentelemetry::global::set_meter_provider(provider);
            }
            Err(error) => {
                tracing::error!(%error, "prometheus exporter could not be built, metrics are off");
            }
        }
        registry
    })
}

/// The shared meter for QuizStats instruments.
pub fn meter() -> opentelemetry::metrics::Meter {
    metrics_registry();
    opentelemetry::global::meter("quizstats")
}

/// Encodes every metric in the Prometheus text format.
pub fn encode_metrics() -> String {
    use prometheus::Encoder;
    let mut buffer = Vec::new();
    let families = metrics_registry().gather();
    if let Err(error) = prometheus::TextEncoder::new().encode(&families, &mut buffer) {
        tracing::warn!(%error, "metrics encoding failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

/// Records the span's trace id in its `trace_id` field (declared `Empty` by the caller).
pub fn record_trace_id(span: &tracing::Span) {
    let context = span.context();
    let trace_id = context.span().span_context().trace_id();
    if trace_id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(trace_id));
    }
}
