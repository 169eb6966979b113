//! Turning bus events into stream events for the hub.

use common::bus::consumer::{Delivered, Outcome};
use common::bus::{BusError, decode, routing};
use common::views::EventView;
use proto::v1;

use crate::hub::Hub;

fn to_view(delivered: &Delivered) -> Result<Option<EventView>, BusError> {
    let (properties, data) = (&delivered.properties, delivered.data.as_slice());
    Ok(match delivered.routing_key.as_str() {
        routing::QUESTION_ANSWERED => Some(EventView::from(&decode::<v1::QuestionAnswered>(
            properties, data,
        )?)),
        routing::QUIZ_COMPLETED => Some(EventView::from(&decode::<v1::QuizCompleted>(properties, data)?)),
        routing::QUIZ_FAILED => Some(EventView::from(&decode::<v1::QuizFailed>(properties, data)?)),
        _ => None,
    })
}

/// Consumer for this replica's event queue. Always acks: the event log in Redis
/// is the durable copy that clients catch up from.
pub async fn handle(hub: Hub, delivered: Delivered) -> Outcome {
    match to_view(&delivered) {
        Ok(Some(event)) => hub.publish(&event),
        Ok(None) => tracing::debug!(routing_key = %delivered.routing_key, "ignoring event"),
        Err(error) => tracing::warn!(%error, "undecodable event"),
    }
    Outcome::Ack
}
