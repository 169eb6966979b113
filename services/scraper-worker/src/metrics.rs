//! The scraper-worker's metrics, one small function per instrument update.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::egress::Reason;

struct Instruments {
    egress_refusals: Counter<u64>,
    extract_jobs: Counter<u64>,
    extract_retries: Counter<u64>,
    extract_duration: Histogram<f64>,
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
            // Exported as `scrape_extract_jobs_total`.
            extract_jobs: meter
                .u64_counter("scrape_extract_jobs")
                .with_description("Synchronous extractions (POST /v1/extract) by outcome")
                .build(),
            // Exported as `scrape_extract_retries_total`: the browser (or chromedriver) failed
            // an extraction and it was tried once more in a fresh session.
            extract_retries: meter
                .u64_counter("scrape_extract_retries")
                .with_description("Synchronous extractions retried after a browser failure")
                .build(),
            extract_duration: meter
                .f64_histogram("scrape_extract_duration_seconds")
                .with_description("Time from taking an extract request to replying, by outcome")
                .with_boundaries(vec![0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0])
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

/// One extract request finished. `outcome` is one of [`crate::extraction::OUTCOMES`]: `ok`, a
/// failure kind, `expired` (nobody waited any more) or `invalid` (undecodable).
pub fn extract_job(outcome: &'static str, elapsed: Option<std::time::Duration>) {
    let labels = [KeyValue::new("outcome", outcome)];
    instruments().extract_jobs.add(1, &labels);
    if let Some(elapsed) = elapsed {
        instruments()
            .extract_duration
            .record(elapsed.as_secs_f64(), &labels);
    }
}

/// One extract request tried once more after its browser or chromedriver failed.
pub fn extract_retry() {
    instruments().extract_retries.add(1, &[]);
}
