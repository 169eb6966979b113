//! The dead-letter watch: a job that could never be handled (poison, undecodable, or
//! past its delivery limit) fails its quiz visibly instead of leaving it stuck.
//!
//! RabbitMQ copies every dead letter to `{p}.dead` (kept for operators) and to
//! `{p}.dead.watch` (consumed here).

use std::sync::Arc;

use common::bus::consumer::{Delivered, Outcome};
use prost::Message;
use proto::v1;

use crate::analysis::Analyzer;

/// The quiz a dead job was about: every job opens with `Meta` (field 1), so reading
/// just that field works for any job type, even one whose body no longer fits its type.
#[derive(Clone, PartialEq, Message)]
struct MetaOnly {
    #[prost(message, optional, tag = "1")]
    meta: Option<v1::Meta>,
}

pub async fn handle(analyzer: Arc<Analyzer>, delivered: Delivered) -> Outcome {
    if delivered.routing_key == common::bus::routing::EXTRACT_REQUESTED {
        // An extraction belongs to no quiz and its caller has timed out by now: nothing to
        // fail. The copy in `{p}.dead` stays for operators.
        let (why, deaths, queue) = common::bus::death(&delivered.properties).unwrap_or_default();
        tracing::warn!(%why, deaths, %queue, "extract request dead-lettered; its caller got a timeout");
        return Outcome::Ack;
    }
    let Some(meta) = MetaOnly::decode(delivered.data.as_slice())
        .ok()
        .and_then(|job| job.meta)
    else {
        tracing::error!(routing_key = %delivered.routing_key, "dead letter without a quiz id; only operators can look at it");
        return Outcome::Ack;
    };
    tracing::Span::current().record("quiz_id", meta.quiz_id.as_str());
    let (why, deaths, queue) = common::bus::death(&delivered.properties).unwrap_or_default();
    let job = match delivered.routing_key.as_str() {
        common::bus::routing::SCRAPE_REQUESTED => "scrape",
        _ => "analysis",
    };
    let reason = match why.as_str() {
        "delivery_limit" => format!("{job} job gave up after {deaths} failed deliveries from {queue}"),
        "rejected" => format!("{job} job rejected as unprocessable by {queue}"),
        other => format!("{job} job dead-lettered ({other}) from {queue}"),
    };
    match analyzer.fail(&meta.quiz_id, &reason).await {
        Ok(()) => Outcome::Ack,
        Err(error) => {
            tracing::warn!(error = %error, "could not fail the quiz of a dead letter, retrying");
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            Outcome::Retry
        }
    }
}
