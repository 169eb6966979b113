//! Turning bus events into stream events for the hub and the quiz board.

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{BusError, decode, routing};
use common::store::QuizStore;
use common::views::EventView;
use proto::v1;

use crate::board::Board;
use crate::hub::Hub;

/// What one delivery means to the broadcaster.
enum Incoming {
    Submitted(v1::QuizSubmitted),
    Event(EventView),
}

fn to_incoming(delivered: &Delivered) -> Result<Option<Incoming>, BusError> {
    let (properties, data) = (&delivered.properties, delivered.data.as_slice());
    Ok(match delivered.routing_key.as_str() {
        routing::QUIZ_SUBMITTED => Some(Incoming::Submitted(decode::<v1::QuizSubmitted>(
            properties, data,
        )?)),
        routing::QUESTION_ANSWERED => Some(Incoming::Event(EventView::from(
            &decode::<v1::QuestionAnswered>(properties, data)?,
        ))),
        routing::QUIZ_COMPLETED => Some(Incoming::Event(EventView::from(&decode::<v1::QuizCompleted>(
            properties, data,
        )?))),
        routing::QUIZ_FAILED => Some(Incoming::Event(EventView::from(&decode::<v1::QuizFailed>(
            properties, data,
        )?))),
        _ => None,
    })
}

/// Consumer for this replica's event queue. Always acks: the event log in Redis
/// is the durable copy that clients catch up from.
pub async fn handle(hub: Hub, board: Board, store: QuizStore, delivered: Delivered) -> Outcome {
    match to_incoming(&delivered) {
        Ok(Some(Incoming::Submitted(submitted))) => {
            let owner = if submitted.owner.is_empty() {
                let quiz_id = submitted.meta.as_ref().map_or("", |meta| meta.quiz_id.as_str());
                lookup_owner(&store, quiz_id).await
            } else {
                Some(submitted.owner.clone())
            };
            board.submitted(&submitted, owner.as_deref());
        }
        Ok(Some(Incoming::Event(event))) => {
            hub.publish(&event);
            // A quiz first seen here (its `quiz.submitted` went to a replica that was down):
            // its owner decides who sees it on the board.
            let owner = if board.knows(event.quiz_id()) {
                None
            } else {
                lookup_owner(&store, event.quiz_id()).await
            };
            board.observe(&event, owner.as_deref());
        }
        Ok(None) => tracing::debug!(routing_key = %delivered.routing_key, "ignoring event"),
        Err(error) => tracing::warn!(%error, "undecodable event"),
    }
    Outcome::Ack
}

/// Folds into the board every logged event of its open quizzes it has not seen: events
/// published while this replica's queue did not exist (a broker outage) reached nobody,
/// and a quiz whose last events fell in that window would stay "analyzing" on the board.
pub async fn catch_up_board(board: &Board, store: &QuizStore) {
    for (quiz_id, through) in board.open_quizzes() {
        match store.events_after(&quiz_id, through).await {
            Ok(events) => {
                for event in &events {
                    board.observe(event, None);
                }
            }
            Err(error) => tracing::warn!(%error, quiz_id, "board not caught up from the log"),
        }
    }
}

/// The quiz's owner from Redis; `None` (admins only) when it cannot be read.
async fn lookup_owner(store: &QuizStore, quiz_id: &str) -> Option<String> {
    match crate::ws::quiz::owner_of(store, quiz_id).await {
        Ok(owner) => owner,
        Err(error) => {
            tracing::warn!(%error, quiz_id, "cannot read the quiz owner; only admins see it on the board");
            None
        }
    }
}
