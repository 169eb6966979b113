//! Publishing a quiz's logged events on the bus, and publishing them again when a confirm
//! never came (the outbox in `store::log`).
//!
//! Every party that logs events (the analyzer recording answers and finishing quizzes, and
//! whoever fails a quiz) publishes through [`publish_logged`], which moves the quiz's
//! confirmed mark on. [`republish`] sends whatever the log holds past that mark: the
//! analyzer calls it when a job is redelivered and, for quizzes nothing will redeliver, from
//! its relay pass over the outbox. Subscribers drop events at or below the last sequence
//! number they have, so publishing an event twice is harmless; not publishing it at all
//! would leave live streams waiting.

use proto::v1;

use crate::bus::{Bus, BusError, Outgoing, routing};
use crate::redis::RedisError;
use crate::store::QuizStore;
use crate::views::{self, EventView};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("event log could not be read")]
    Store(#[from] RedisError),
    #[error("events could not be published")]
    Bus(#[from] BusError),
}

/// The bus message for a logged event, with a fresh message id.
pub fn outgoing(event: &EventView, exchange: String) -> Outgoing {
    let meta = views::new_meta(event.quiz_id());
    match event {
        EventView::QuestionAnswered { seq, outcome, .. } => Outgoing::new(
            exchange,
            routing::QUESTION_ANSWERED,
            &meta.message_id,
            &v1::QuestionAnswered {
                seq: *seq,
                index: outcome.index,
                outcome: Some(match (&outcome.answer, &outcome.error) {
                    (Some(answer), _) => v1::question_answered::Outcome::Answer(answer.to_proto()),
                    (None, error) => v1::question_answered::Outcome::Error(error.clone().unwrap_or_default()),
                }),
                agrees_with_key: outcome.agrees_with_key,
                meta: Some(meta.clone()),
            },
        ),
        EventView::QuizCompleted { seq, stats, .. } => Outgoing::new(
            exchange,
            routing::QUIZ_COMPLETED,
            &meta.message_id,
            &v1::QuizCompleted {
                meta: Some(meta.clone()),
                seq: *seq,
                stats: Some(stats.to_proto()),
            },
        ),
        EventView::QuizFailed { seq, reason, .. } => Outgoing::new(
            exchange,
            routing::QUIZ_FAILED,
            &meta.message_id,
            &v1::QuizFailed {
                meta: Some(meta.clone()),
                seq: *seq,
                reason: reason.clone(),
            },
        ),
    }
}

/// Publishes events just logged for `quiz_id` (in sequence order) and, once the broker
/// confirmed them, marks them published. A publish error leaves them in the outbox.
///
/// The mark is written in the background: it is bookkeeping that only saves a relay, and
/// waiting for it would put one more Redis round trip between every answer and the next
/// step of the quiz. A mark that never lands (Redis away, the process killed) costs one
/// harmless republish.
pub async fn publish_logged(
    store: &QuizStore,
    bus: &Bus,
    quiz_id: &str,
    events: &[EventView],
) -> Result<(), RelayError> {
    let Some(last) = events.iter().map(EventView::seq).max() else {
        return Ok(());
    };
    let exchange = bus.topology().events_exchange();
    bus.publish_all(
        events
            .iter()
            .map(|event| outgoing(event, exchange.clone()))
            .collect(),
    )
    .await?;
    let (store, quiz_id) = (store.clone(), quiz_id.to_owned());
    tokio::spawn(async move {
        if let Err(error) = store.mark_published(&quiz_id, last).await {
            tracing::warn!(%error, quiz_id, "confirmed events not marked published; the relay will send them again");
        }
    });
    Ok(())
}

/// Publishes every logged event of `quiz_id` the bus has not confirmed; returns how many.
pub async fn republish(store: &QuizStore, bus: &Bus, quiz_id: &str) -> Result<usize, RelayError> {
    let events = store.unpublished(quiz_id).await?;
    if events.is_empty() {
        return Ok(0);
    }
    publish_logged(store, bus, quiz_id, &events).await?;
    tracing::info!(
        quiz_id,
        events = events.len(),
        "republished logged events the bus had not confirmed"
    );
    Ok(events.len())
}

/// One relay pass: republishes the events of up to `limit` quizzes whose last log write is
/// at or before `cutoff_ms` and is still unconfirmed. Returns how many events it sent.
/// Quizzes whose broker is still away stay in the outbox for the next pass.
pub async fn relay_due(
    store: &QuizStore,
    bus: &Bus,
    cutoff_ms: i64,
    limit: usize,
) -> Result<usize, RedisError> {
    let mut sent = 0;
    for quiz_id in store.outbox_before(cutoff_ms, limit).await? {
        match republish(store, bus, &quiz_id).await {
            Ok(count) => sent += count,
            Err(RelayError::Store(error)) => return Err(error),
            Err(RelayError::Bus(error)) => {
                tracing::warn!(%quiz_id, %error, "logged events still not published; next pass retries");
            }
        }
    }
    Ok(sent)
}
