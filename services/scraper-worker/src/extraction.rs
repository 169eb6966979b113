//! The consumer of `extract.requested`: one page's quiz for the gateway's synchronous
//! `POST /v1/extract`, sent back to the requester's reply queue. No quiz is created and nothing
//! is analysed; a failure is a typed reason in the reply, never a redelivery the caller cannot wait for.

use std::time::Instant;

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{BusError, Outgoing, check_meta, decode};
use common::views;
use proto::v1::{self, ExtractFailure, ExtractFailureKind, extract_replied};

use crate::error::ScrapeError;
use crate::metrics;
use crate::worker::ScrapeWorker;

/// Every `outcome` label of `scrape_extract_jobs_total`.
pub const OUTCOMES: &[&str] = &[
    "ok",
    "refused",
    "unreachable",
    "http_status",
    "not_html",
    "no_questions",
    "too_large",
    "timeout",
    "browser",
    "internal",
    "expired",
    "invalid",
];

impl ScrapeWorker {
    #[tracing::instrument(skip_all, fields(message_id = tracing::field::Empty, source = tracing::field::Empty))]
    pub async fn handle_extract(&self, delivered: Delivered) -> Outcome {
        let request: v1::ExtractRequested = match decode(&delivered.properties, &delivered.data) {
            Ok(request) => request,
            Err(error) => {
                tracing::error!(%error, "undecodable extract request");
                metrics::extract_job("invalid", None);
                return Outcome::Reject;
            }
        };
        let Ok(meta) = check_meta(request.meta.as_ref()) else {
            tracing::error!("extract request without valid meta");
            metrics::extract_job("invalid", None);
            return Outcome::Reject;
        };
        let correlation_id = meta.message_id.clone();
        let span = tracing::Span::current();
        span.record("message_id", correlation_id.as_str());
        if request.reply_to.is_empty() {
            tracing::error!("extract request without a reply queue");
            metrics::extract_job("invalid", None);
            return Outcome::Reject;
        }
        if expired(request.deadline_ms) {
            // The gateway answered 504 already; a browser spent on it would be wasted.
            tracing::info!("extract request expired before it was started; dropped");
            metrics::extract_job("expired", None);
            return Outcome::Ack;
        }
        let source = request.source.and_then(|source| source.source);
        span.record(
            "source",
            match &source {
                Some(v1::source::Source::Url(_)) => "url",
                Some(v1::source::Source::Html(_)) => "html",
                None => "none",
            },
        );
        let started = Instant::now();
        let result = match self.extract(source.clone()).await {
            // The first try outlived the caller's wait: nobody reads a retry's answer.
            Err(error) if !error.is_permanent() && expired(request.deadline_ms) => {
                tracing::info!(%error, "browser failure after the request expired; not retried");
                Err(error)
            }
            // A crashed session or chromedriver is replaced by the pool; one more try in a
            // fresh session, since the caller cannot wait for a redelivery.
            Err(error) if !error.is_permanent() => {
                tracing::warn!(%error, "browser failure, extracting once more");
                metrics::extract_retry();
                self.extract(source).await
            }
            other => other,
        };
        let (label, outcome) = match result.and_then(|quiz| {
            if quiz.questions.is_empty() {
                return Err(ScrapeError::NoQuestions);
            }
            serde_json::to_string(&quiz).map_err(|error| ScrapeError::BadExtractorOutput(error.to_string()))
        }) {
            Ok(json) => ("ok", extract_replied::Outcome::QuizJson(json)),
            Err(error) => {
                let kind = error.extract_failure_kind();
                tracing::info!(reason = %error, "extraction failed");
                (
                    outcome_label(kind),
                    extract_replied::Outcome::Failure(ExtractFailure {
                        kind: kind as i32,
                        reason: error.to_string(),
                    }),
                )
            }
        };
        metrics::extract_job(label, Some(started.elapsed()));
        let reply_meta = views::new_meta("");
        let reply = v1::ExtractReplied {
            meta: Some(reply_meta.clone()),
            correlation_id,
            outcome: Some(outcome),
        };
        let message = Outgoing::to_queue(&request.reply_to, &reply_meta.message_id, &reply).mandatory();
        match self.bus.publish(message).await {
            Ok(()) => Outcome::Ack,
            Err(BusError::Unroutable(_)) => {
                // The requesting replica stopped (or reconnected, which renames nothing but
                // drops its exclusive queue for a moment): its caller got an error already.
                tracing::info!("the requester's reply queue is gone; reply dropped");
                Outcome::Ack
            }
            Err(error) => {
                tracing::warn!(%error, "cannot publish the extract reply, retrying the request");
                Outcome::Retry
            }
        }
    }
}

/// Whether the requester stopped waiting (`deadline_ms` 0: no deadline).
fn expired(deadline_ms: i64) -> bool {
    deadline_ms > 0 && common::now_ms() >= deadline_ms
}

/// The metrics label of a failure kind.
pub fn outcome_label(kind: ExtractFailureKind) -> &'static str {
    match kind {
        ExtractFailureKind::Refused => "refused",
        ExtractFailureKind::Unreachable => "unreachable",
        ExtractFailureKind::HttpStatus => "http_status",
        ExtractFailureKind::NotHtml => "not_html",
        ExtractFailureKind::NoQuestions => "no_questions",
        ExtractFailureKind::TooLarge => "too_large",
        ExtractFailureKind::Timeout => "timeout",
        ExtractFailureKind::Browser => "browser",
        ExtractFailureKind::Internal | ExtractFailureKind::Unspecified => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_maps_to_a_documented_label() {
        let errors = [
            ScrapeError::UrlNotAllowed("x".into()),
            ScrapeError::Refused("x".into()),
            ScrapeError::Unreachable("x".into()),
            ScrapeError::HttpStatus(404),
            ScrapeError::NotHtml("application/pdf".into()),
            ScrapeError::NoQuestions,
            ScrapeError::TooManyNodes { count: 2, limit: 1 },
            ScrapeError::TextTooLong { count: 2, limit: 1 },
            ScrapeError::PageLoadTimeout(std::time::Duration::from_secs(1)),
            ScrapeError::BrowserCrashed("x".into()),
            ScrapeError::BadExtractorOutput("x".into()),
        ];
        let labels: Vec<&str> = errors
            .iter()
            .map(|error| outcome_label(error.extract_failure_kind()))
            .collect();
        assert_eq!(
            labels,
            [
                "refused",
                "refused",
                "unreachable",
                "http_status",
                "not_html",
                "no_questions",
                "too_large",
                "too_large",
                "timeout",
                "browser",
                "internal"
            ]
        );
        assert!(labels.iter().all(|label| OUTCOMES.contains(label)));
    }
}
