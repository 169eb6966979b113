//! Fan-out: one bounded broadcast channel per watched quiz. Each event is
//! serialised once and shared; a subscriber that lags past the buffer is told so
//! (and disconnected) instead of slowing the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::views::EventView;
use tokio::sync::broadcast;

/// An event ready to send: its JSON text, serialised once, and the event itself
/// for clients that fold it into live stats.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub json: String,
    pub event: EventView,
}

#[derive(Clone)]
pub struct Hub {
    quizzes: Arc<Mutex<HashMap<String, broadcast::Sender<Arc<Frame>>>>>,
    buffer: usize,
}

impl Hub {
    pub fn new(buffer: usize) -> Self {
        Self {
            quizzes: Arc::default(),
            buffer: buffer.max(1),
        }
    }

    /// Live frames of one quiz from now on.
    pub fn subscribe(&self, quiz_id: &str) -> broadcast::Receiver<Arc<Frame>> {
        let mut quizzes = self
            .quizzes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        quizzes
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
        let Some(sender) = quizzes.get(event.quiz_id()) else {
            return;
        };
        if sender.receiver_count() == 0 {
            quizzes.remove(event.quiz_id());
            return;
        }
        match serde_json::to_string(event) {
            Ok(json) => {
                let _ = sender.send(Arc::new(Frame {
                    seq: event.seq(),
                    json,
                    event: event.clone(),
                }));
            }
            Err(error) => tracing::error!(%error, "event not serialisable"),
        }
    }

    /// Quizzes with at least one channel open; for metrics and tests.
    pub fn watched_quizzes(&self) -> usize {
        self.quizzes.lock().map(|quizzes| quizzes.len()).unwrap_or(0)
    }
}
