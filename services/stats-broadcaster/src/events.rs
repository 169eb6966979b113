//! Turning bus events into stream events for the hub and the quiz board.

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{BusError, decode, routing};
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
pub async fn handle(hub: Hub, board: Board, delivered: Delivered) -> Outcome {
    match to_incoming(&delivered) {
        Ok(Some(Incoming::Submitted(submitted))) => board.submitted(&submitted),
        Ok(Some(Incoming::Event(event))) => {
            hub.publish(&event);
            board.observe(&event);
        }
        Ok(None) => tracing::debug!(routing_key = %delivered.routing_key, "ignoring event"),
        Err(error) => tracing::warn!(%error, "undecodable event"),
    }
    Outcome::Ack
}
