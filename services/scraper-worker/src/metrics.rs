//! The scraper-worker's metrics, one small function per instrument update.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;

use crate::egress::Reason;

struct Instruments {
    egress_refusals: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = common::telemetry::meter();
        Instruments {
            // Exported as `scrape_egress_refusals_total` (the exporter adds the suffix).
            egress_refusals: meter
                .u64_counter("scrape_egress_refusals")
                .with_description("Browser requests the egress proxy refused, by reason")
                .build(),
        }
    })
}

/// One request refused by the SSRF policy.
pub fn egress_refusal(reason: Reason) {
    instruments()
        .egress_refusals
        .add(1, &[KeyValue::new("reason", reason.label())]);
}
