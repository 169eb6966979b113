//! The end of a quiz that cannot finish: one way to fail it visibly, shared by every
//! service that can give up on a quiz (the analyzer, its dead-letter watch, the scraper).

use proto::v1;

use crate::bus::{Bus, BusError, Outgoing, routing};
use crate::redis::RedisError;
use crate::store::QuizStore;
use crate::views::{self, EventView, QuizStatus};

#[derive(Debug, thiserror::Error)]
pub enum FailError {
    #[error("quiz state could not be written")]
    Store(#[from] RedisError),
    #[error("the failure could not be published")]
    Bus(#[from] BusError),
}

/// Marks the quiz failed with `reason`, logs the event for late subscribers and
/// publishes `quiz.failed`. A quiz that already ended is left alone: returns false.
pub async fn fail_quiz(store: &QuizStore, bus: &Bus, quiz_id: &str, reason: &str) -> Result<bool, FailError> {
    match store.status(quiz_id).await? {
        Some(status) if !status.is_terminal() => {}
        _ => return Ok(false),
    }
    let seq = store.reserve_seq(quiz_id, 1).await?;
    let meta = views::new_meta(quiz_id);
    let event = EventView::QuizFailed {
        quiz_id: quiz_id.to_owned(),
        seq,
        reason: reason.to_owned(),
    };
    // Logging the event and setting the status happen in one atomic step that refuses a
    // quiz someone else ended meanwhile (the status check above is only a shortcut), so
    // racing failers and finishers log and publish one terminal event between them.
    if !store
        .end(quiz_id, QuizStatus::Failed, Some(reason), &event)
        .await?
    {
        return Ok(false);
    }
    let message = Outgoing::new(
        bus.topology().events_exchange(),
        routing::QUIZ_FAILED,
        &meta.message_id,
        &v1::QuizFailed {
            meta: Some(meta.clone()),
            seq,
            reason: reason.to_owned(),
        },
    );
    bus.publish(message).await?;
    tracing::warn!(%reason, "quiz failed");
    Ok(true)
}
