//! Request/reply over the broker for `POST /v1/extract`: the gateway publishes an
//! `ExtractRequested` naming this replica's reply queue, a scraper-worker extracts the page and
//! answers with an `ExtractReplied` carrying the request's message id, and the waiting request is
//! woken by that correlation id.
//!
//! Each replica consumes its own exclusive, auto-delete reply queue (`{p}.replies.gateway.{uuid}`),
//! reached through the default exchange. RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to`) would
//! need the requests published on the channel that consumes the replies, while the bus publishes
//! on one shared confirm channel and consumes on channels of its own; a plain queue keeps
//! confirms, `mandatory` and the consumer's re-subscription after a reconnect.
//!
//! A waiting request holds a [`PendingReply`]: whether it gets its answer, times out, or its
//! caller goes away (actix drops the handler's future), dropping the guard removes its entry, so
//! the map holds only requests someone still waits for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{Bus, BusError, Outgoing, decode, routing};
use common::views;
use proto::v1::{self, ExtractFailureKind, extract_replied};
use tokio::sync::{oneshot, watch};

use crate::error::ApiError;

/// The longest a request waits for this replica's reply queue to be consumed (after a start or a
/// reconnect) before answering 503.
const REPLY_QUEUE_WAIT: Duration = Duration::from_secs(5);

/// The requests of this replica waiting for their replies.
#[derive(Clone)]
pub struct Extractions {
    inner: Arc<Inner>,
}

struct Inner {
    reply_queue: String,
    pending: Mutex<HashMap<String, oneshot::Sender<v1::ExtractReplied>>>,
    /// True while the reply queue exists and is consumed (`consumer::run_reporting`).
    consuming: watch::Receiver<bool>,
}

/// One request waiting for its reply; dropping it forgets the request.
pub struct PendingReply {
    extractions: Extractions,
    correlation_id: String,
    receiver: oneshot::Receiver<v1::ExtractReplied>,
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        self.extractions.forget(&self.correlation_id);
    }
}

impl Extractions {
    /// Waiters for replies on `reply_queue`; the consumer of that queue reports through the sender.
    pub fn new(reply_queue: String) -> (Self, watch::Sender<bool>) {
        let (consuming_sender, consuming) = watch::channel(false);
        let extractions = Self {
            inner: Arc::new(Inner {
                reply_queue,
                pending: Mutex::new(HashMap::new()),
                consuming,
            }),
        };
        (extractions, consuming_sender)
    }

    pub fn reply_queue(&self) -> &str {
        &self.inner.reply_queue
    }

    /// Requests waiting right now.
    pub fn pending(&self) -> usize {
        self.inner.pending.lock().map_or(0, |pending| pending.len())
    }

    /// Registers interest in the reply to `correlation_id`; call before publishing the request.
    pub fn register(&self, correlation_id: &str) -> PendingReply {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.insert(correlation_id.to_owned(), sender);
        }
        PendingReply {
            extractions: self.clone(),
            correlation_id: correlation_id.to_owned(),
            receiver,
        }
    }

    fn forget(&self, correlation_id: &str) {
        if let Ok(mut pending) = self.inner.pending.lock() {
            pending.remove(correlation_id);
        }
    }

    /// Hands a reply to its waiter; false when nobody waits for it any more.
    fn deliver(&self, reply: v1::ExtractReplied) -> bool {
        let sender = self
            .inner
            .pending
            .lock()
            .ok()
            .and_then(|mut pending| pending.remove(&reply.correlation_id));
        sender.is_some_and(|sender| sender.send(reply).is_ok())
    }

    /// Consumer of this replica's reply queue.
    pub async fn handle(self, delivered: Delivered) -> Outcome {
        match decode::<v1::ExtractReplied>(&delivered.properties, &delivered.data) {
            Ok(reply) => {
                let correlation_id = reply.correlation_id.clone();
                if !self.deliver(reply) {
                    tracing::info!(%correlation_id, "extract reply for a request nobody waits for (timed out or gone)");
                }
            }
            Err(error) => tracing::warn!(%error, "undecodable extract reply"),
        }
        // The reply queue is this replica's alone: there is nothing to redeliver to.
        Outcome::Ack
    }

    /// Asks a scraper-worker to extract `source` and waits up to `timeout` for the answer: the
    /// extracted quiz as JSON, or the failure as an `ApiError`.
    #[tracing::instrument(skip_all, fields(message_id = tracing::field::Empty))]
    pub async fn extract(
        &self,
        bus: &Bus,
        source: v1::source::Source,
        timeout: Duration,
    ) -> Result<serde_json::Value, ApiError> {
        let started = Instant::now();
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        // The worker is told to drop the request once the caller stops waiting, which is
        // `timeout` from here, not from when it is published: waiting for the reply queue
        // below can take seconds after a (re)connection, and a deadline counted from the
        // publish would let a worker open the page for a caller that already got its 504.
        let deadline_ms = common::now_ms().saturating_add(i64::try_from(timeout_ms).unwrap_or(i64::MAX));
        if !bus.is_connected() {
            return Err(ApiError::BrokerUnavailable(BusError::Unavailable));
        }
        // The reply queue is declared by its consumer after every (re)connection; a request
        // published before that would have its reply returned as unroutable.
        let mut consuming = self.inner.consuming.clone();
        let wait = REPLY_QUEUE_WAIT.min(timeout);
        if !matches!(
            tokio::time::timeout(wait, consuming.wait_for(|consuming| *consuming)).await,
            Ok(Ok(_))
        ) {
            tracing::warn!("the reply queue is not consumed; refusing the extraction");
            return Err(ApiError::BrokerUnavailable(BusError::Unavailable));
        }
        let meta = views::new_meta("");
        tracing::Span::current().record("message_id", meta.message_id.as_str());
        let request = v1::ExtractRequested {
            meta: Some(meta.clone()),
            source: Some(v1::Source { source: Some(source) }),
            reply_to: self.inner.reply_queue.clone(),
            deadline_ms,
        };
        let mut pending = self.register(&meta.message_id);
        let message = Outgoing::new(
            bus.topology().jobs_exchange(),
            routing::EXTRACT_REQUESTED,
            &meta.message_id,
            &request,
        )
        .mandatory();
        bus.publish(message).await.map_err(|error| {
            tracing::warn!(%error, "extract request not confirmed");
            ApiError::BrokerUnavailable(error)
        })?;
        let remaining = timeout.saturating_sub(started.elapsed());
        let reply = match tokio::time::timeout(remaining, &mut pending.receiver).await {
            Ok(Ok(reply)) => reply,
            // The sender went without a reply: only a replaced registration does that.
            Ok(Err(_)) | Err(_) => {
                return Err(ApiError::ExtractTimedOut {
                    waited_ms: timeout_ms,
                });
            }
        };
        drop(pending);
        into_result(reply)
    }
}

/// A reply as the HTTP answer's body, or the failure it reports.
fn into_result(reply: v1::ExtractReplied) -> Result<serde_json::Value, ApiError> {
    match reply.outcome {
        Some(extract_replied::Outcome::QuizJson(json)) => {
            serde_json::from_str(&json).map_err(|error| ApiError::ExtractFailed {
                kind: ExtractFailureKind::Internal,
                reason: format!("the scraper's answer is not json: {error}"),
            })
        }
        Some(extract_replied::Outcome::Failure(failure)) => Err(ApiError::ExtractFailed {
            kind: ExtractFailureKind::try_from(failure.kind).unwrap_or(ExtractFailureKind::Unspecified),
            reason: failure.reason,
        }),
        None => Err(ApiError::ExtractFailed {
            kind: ExtractFailureKind::Internal,
            reason: "the scraper's reply has no outcome".to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn reply(correlation_id: &str, outcome: extract_replied::Outcome) -> v1::ExtractReplied {
        v1::ExtractReplied {
            meta: Some(views::new_meta("")),
            correlation_id: correlation_id.to_owned(),
            outcome: Some(outcome),
        }
    }

    #[tokio::test]
    async fn a_reply_wakes_its_waiter_and_leaves_nothing_behind() {
        let (extractions, _consuming) = Extractions::new("replies".into());
        let mut pending = extractions.register("a");
        let _other = extractions.register("b");
        assert_eq!(extractions.pending(), 2);
        let json = r#"{"title":null,"questions":[]}"#.to_owned();
        assert!(extractions.deliver(reply("a", extract_replied::Outcome::QuizJson(json))));
        let got = (&mut pending.receiver).await.unwrap();
        assert_eq!(got.correlation_id, "a");
        drop(pending);
        assert_eq!(extractions.pending(), 1);
        // A reply nobody waits for is dropped, not kept.
        assert!(!extractions.deliver(reply("zzz", extract_replied::Outcome::QuizJson("{}".into()))));
        assert_eq!(extractions.pending(), 1);
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_is_forgotten() {
        let (extractions, _consuming) = Extractions::new("replies".into());
        // A handler future dropped while it waits (the client disconnected, or a timeout).
        let waiting = {
            let extractions = extractions.clone();
            async move {
                let mut pending = extractions.register("gone");
                let _ = (&mut pending.receiver).await;
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_millis(20), waiting)
                .await
                .is_err()
        );
        assert_eq!(extractions.pending(), 0);
        assert!(!extractions.deliver(reply("gone", extract_replied::Outcome::QuizJson("{}".into()))));
    }

    #[test]
    fn failures_keep_their_kind_and_reason() {
        let failure = v1::ExtractFailure {
            kind: ExtractFailureKind::Refused as i32,
            reason: "refused: 127.0.0.2 is a loopback address".into(),
        };
        match into_result(reply("a", extract_replied::Outcome::Failure(failure))) {
            Err(ApiError::ExtractFailed { kind, reason }) => {
                assert_eq!(kind, ExtractFailureKind::Refused);
                assert!(reason.contains("127.0.0.2"));
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(matches!(
            into_result(reply("a", extract_replied::Outcome::QuizJson("not json".into()))),
            Err(ApiError::ExtractFailed {
                kind: ExtractFailureKind::Internal,
                ..
            })
        ));
        let unknown = v1::ExtractFailure {
            kind: 99,
            reason: "new".into(),
        };
        assert!(matches!(
            into_result(reply("a", extract_replied::Outcome::Failure(unknown))),
            Err(ApiError::ExtractFailed {
                kind: ExtractFailureKind::Unspecified,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn without_a_broker_it_is_503_and_registers_nothing() {
        let (extractions, _consuming) = Extractions::new("replies".into());
        let bus = Bus::new(&common::settings::AmqpSettings::default(), "gateway");
        let result = extractions
            .extract(
                &bus,
                v1::source::Source::Html("<p>".into()),
                Duration::from_secs(1),
            )
            .await;
        assert!(
            matches!(result, Err(ApiError::BrokerUnavailable(_))),
            "{result:?}"
        );
        assert_eq!(extractions.pending(), 0);
    }
}
