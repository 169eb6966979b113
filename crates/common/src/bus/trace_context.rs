//! W3C trace context in AMQP headers, so that one quiz is one trace across services.

use lapin::types::{AMQPValue, FieldTable, LongString};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct HeaderInjector<'a>(&'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(LongString::from(value)));
    }
}

struct HeaderExtractor<'a>(&'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.inner().iter().find_map(|(name, value)| {
            if name.as_str() != key {
                return None;
            }
            match value {
                AMQPValue::LongString(text) => std::str::from_utf8(text.as_bytes()).ok(),
                AMQPValue::ShortString(text) => Some(text.as_str()),
                _ => None,
            }
        })
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|key| key.as_str()).collect()
    }
}

/// Writes the current span's context into `headers` (`traceparent`, `tracestate`).
pub fn inject_current(headers: &mut FieldTable) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut HeaderInjector(headers));
}

/// Makes `span` a child of the context carried in `headers`, if any, and records its trace id.
pub fn adopt_parent(span: &tracing::Span, headers: Option<&FieldTable>) {
    if let Some(headers) = headers {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
    crate::telemetry::record_trace_id(span);
}
