//! The end of a quiz that cannot finish: one way to fail it visibly, shared by every
//! service that can give up on a quiz (the analyzer, its dead-letter watch, the scraper).

use crate::bus::{Bus, BusError};
use crate::redis::RedisError;
use crate::relay::{self, RelayError};
use crate::store::QuizStore;
use crate::views::{EventView, QuizStatus};

#[derive(Debug, thiserror::Error)]
pub enum FailError {
    #[error("quiz state could not be written")]
    Store(#[from] RedisError),
    #[error("the failure could not be published")]
    Bus(#[from] BusError),
}

impl From<RelayError> for FailError {
    fn from(error: RelayError) -> Self {
        match error {
            RelayError::Store(error) => Self::Store(error),
            RelayError::Bus(error) => Self::Bus(error),
        }
    }
}

/// Marks the quiz failed with `reason`, logs the event for late subscribers and
/// publishes `quiz.failed`. A quiz that already ended is left alone: returns false.
/// When the publish fails the failure stands (and is logged); the analyzer's relay
/// publishes it later.
pub async fn fail_quiz(store: &QuizStore, bus: &Bus, quiz_id: &str, reason: &str) -> Result<bool, FailError> {
    match store.status(quiz_id).await? {
        Some(status) if !status.is_terminal() => {}
        _ => return Ok(false),
    }
    let event = EventView::QuizFailed {
        quiz_id: quiz_id.to_owned(),
        seq: 0,
        reason: reason.to_owned(),
    };
    // Numbering, logging and setting the status happen in one atomic step that refuses a
    // quiz someone else ended meanwhile (the status check above is only a shortcut), so
    // racing failers and finishers log and publish one terminal event between them.
    let Some(event) = store
        .end(quiz_id, QuizStatus::Failed, Some(reason), event)
        .await?
    else {
        return Ok(false);
    };
    relay::publish_logged(store, bus, quiz_id, std::slice::from_ref(&event)).await?;
    tracing::warn!(%reason, "quiz failed");
    Ok(true)
}
