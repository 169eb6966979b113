//! Fan-out: one bounded broadcast channel per watched quiz. Each event is
//! serialised once and shared; a subscriber that lags past the buffer is told so
//! (and disconnected) instead of slowing the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::views::EventView;
use tokio::sync::{broadcast, watch};

/// An event ready to send: its JSON text, serialised once, and the event itself
/// for clients that fold it into live stats.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub json: String,
    pub event: EventView,
}

/// Below this many channels the hub never prunes.
const MIN_PRUNE_AT: usize = 64;

struct Channels {
    channels: HashMap<String, broadcast::Sender<Arc<Frame>>>,
    /// The map size that triggers the next pass over channels without receivers.
    prune_at: usize,
}

#[derive(Clone)]
pub struct Hub {
    quizzes: Arc<Mutex<Channels>>,
    buffer: usize,
    /// Bumped each time this replica's event queue is (re)consumed; see [`Hub::resync`].
    resyncs: Arc<watch::Sender<u64>>,
}

impl Hub {
    pub fn new(buffer: usize) -> Self {
        Self {
            quizzes: Arc::new(Mutex::new(Channels {
                channels: HashMap::new(),
                prune_at: MIN_PRUNE_AT,
            })),
            buffer: buffer.max(1),
            resyncs: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Tells every stream to catch up from the Redis log. Called whenever the replica's
    /// event queue is consumed again after a broker outage: that queue is exclusive and
    /// auto-deleted, so events published while it did not exist reached nobody, and a stream
    /// whose quiz got its last events in that window would otherwise wait forever (found by
    /// `cargo xtask chaos`: a RabbitMQ restart, the analyzer back before the broadcaster).
    pub fn resync(&self) {
        self.resyncs.send_modify(|epoch| *epoch = epoch.wrapping_add(1));
    }

    /// Resync requests from now on.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.resyncs.subscribe()
    }

    /// Live frames of one quiz from now on.
    pub fn subscribe(&self, quiz_id: &str) -> broadcast::Receiver<Arc<Frame>> {
        let mut quizzes = self
            .quizzes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // A client of a quiz that already ended (snapshot, then close) leaves a channel no
        // event will ever come to remove. Dropping every channel without receivers whenever
        // the map has doubled since the last such pass keeps the map bounded by twice the
        // watched quizzes at an amortised O(1) per subscribe.
        if quizzes.channels.len() >= quizzes.prune_at {
            quizzes.channels.retain(|_, sender| sender.receiver_count() > 0);
            quizzes.prune_at = (quizzes.channels.len() * 2).max(MIN_PRUNE_AT);
        }
        quizzes
            .channels
            .entry(quiz_id.to_owned())
            .or_insert_with(|| broadcast::channel(self.buffer).0)
            .subscribe()
    }

    /// Sends an event to the quiz's live subscribers, if any.
    pub fn publish(&self, event: &EventView) {
        let mut quizzes = self
            .quizzes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(sender) = quizzes.channels.get(event.quiz_id()) else {
            return;
        };
        if sender.receiver_count() == 0 {
            quizzes.channels.remove(event.quiz_id());
            return;
        }
        match serde_json::to_string(event) {
            Ok(json) => {
                let _ = sender.send(Arc::new(Frame {
                    seq: event.seq(),
                    json,
                    event: event.clone(),
                }));
                // Nothing follows a terminal event, so this was the last chance to drop the
                // channel: kept, it held the quiz's frames forever once its clients left (the
                // broadcaster grew ~0.35 MiB a minute in `cargo xtask soak`). Receivers still
                // drain what was sent; a later subscriber reads the log.
                if event.is_terminal() {
                    quizzes.channels.remove(event.quiz_id());
                }
            }
            Err(error) => tracing::error!(%error, "event not serialisable"),
        }
    }

    /// Quizzes with at least one channel open; for metrics and tests.
    pub fn watched_quizzes(&self) -> usize {
        self.quizzes
            .lock()
            .map(|quizzes| quizzes.channels.len())
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn a_terminal_event_drops_the_quiz_channel_and_its_clients_still_get_it() {
        let hub = Hub::new(8);
        let mut receiver = hub.subscribe("q1");
        hub.publish(&EventView::QuizFailed {
            quiz_id: "q1".to_owned(),
            seq: 1,
            reason: "test".to_owned(),
        });
        assert_eq!(hub.watched_quizzes(), 0);
        assert_eq!(receiver.try_recv().unwrap().seq, 1);
    }

    #[test]
    fn channels_of_quizzes_nobody_watches_any_more_are_pruned() {
        let hub = Hub::new(8);
        // Snapshot-only clients of ended quizzes: subscribed, then gone, no event follows.
        for index in 0..10 * MIN_PRUNE_AT {
            drop(hub.subscribe(&format!("ended-{index}")));
        }
        assert!(hub.watched_quizzes() <= MIN_PRUNE_AT, "{}", hub.watched_quizzes());
        // A watched quiz keeps its channel through every pass.
        let mut kept = hub.subscribe("watched");
        for index in 0..10 * MIN_PRUNE_AT {
            drop(hub.subscribe(&format!("more-{index}")));
        }
        hub.publish(&EventView::QuizFailed {
            quiz_id: "watched".to_owned(),
            seq: 1,
            reason: "test".to_owned(),
        });
        assert_eq!(kept.try_recv().unwrap().seq, 1);
    }
}
