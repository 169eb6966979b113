//! Waiting for quizzes to finish: the synchronous legacy endpoint needs to know.
//!
//! Each gateway replica binds its own queue to `quiz.completed` and `quiz.failed`
//! and wakes the requests waiting on that quiz. Waiters also re-read the status
//! from Redis now and then, so a missed event (a reconnect) costs latency, not a hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::bus::consumer::{Delivered, Outcome};
use common::store::QuizStore;
use proto::v1;
use tokio::sync::oneshot;

/// How often a waiter re-reads the status from Redis.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Default, Clone)]
pub struct Completions {
    waiters: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>>,
}

impl Completions {
    /// Registers interest in `quiz_id`; call before publishing, so no event can slip by.
    pub fn register(&self, quiz_id: &str) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.entry(quiz_id.to_owned()).or_default().push(sender);
        }
        receiver
    }

    fn notify(&self, quiz_id: &str) {
        let senders = self
            .waiters
            .lock()
            .ok()
            .and_then(|mut waiters| waiters.remove(quiz_id));
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }

    /// Forgets waiters of a quiz (after a timeout), so the map cannot grow without bound.
    pub fn forget(&self, quiz_id: &str) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.remove(quiz_id);
        }
    }

    /// Waits until the quiz is finished or `deadline` passes; true when finished.
    pub async fn wait(
        &self,
        store: &QuizStore,
        quiz_id: &str,
        mut signal: oneshot::Receiver<()>,
        deadline: Duration,
    ) -> bool {
        let finished = tokio::time::timeout(deadline, async {
            loop {
                tokio::select! {
                    _ = &mut signal => return,
                    () = tokio::time::sleep(POLL_INTERVAL) => {
                        if matches!(store.status(quiz_id).await, Ok(Some(status)) if status.is_terminal()) {
                            return;
                        }
                    }
                }
            }
        })
        .await
        .is_ok();
        if !finished {
            self.forget(quiz_id);
        }
        finished
    }

    /// Consumer for this replica's terminal-event queue.
    pub async fn handle(self, delivered: Delivered) -> Outcome {
        let meta = match delivered.routing_key.as_str() {
            common::bus::routing::QUIZ_COMPLETED => {
                common::bus::decode::<v1::QuizCompleted>(&delivered.properties, &delivered.data)
                    .map(|event| event.meta)
            }
            _ => common::bus::decode::<v1::QuizFailed>(&delivered.properties, &delivered.data)
                .map(|event| event.meta),
        };
        match meta {
            Ok(Some(meta)) => self.notify(&meta.quiz_id),
            Ok(None) => tracing::warn!("terminal event without meta"),
            Err(error) => tracing::warn!(%error, "undecodable terminal event"),
        }
        // Waking waiters is best effort; there is nothing to redeliver for.
        Outcome::Ack
    }
}
