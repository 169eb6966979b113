//! The quiz board: this replica's ring of the last quizzes it saw (submitted or
//! answered), the global activity numbers, and a channel of changes for
//! `subscribe_all` clients. Every change is serialised once and shared; each carries
//! the quiz's owner so a client is sent only the quizzes its key may read.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::views::EventView;
use proto::v1;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::access::Viewer;

/// Quizzes kept on the board; older ones fall off.
pub const RING_SIZE: usize = 50;
/// Window of the questions-per-second rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Board changes buffered per `subscribe_all` client; a client that lags gets a fresh snapshot.
const CHANGES_BUFFER: usize = 256;

/// One quiz as the board shows it.
#[derive(Debug, Clone, Serialize)]
pub struct QuizSummary {
    pub id: String,
    /// `queued`, `analyzing`, `completed` or `failed`.
    pub status: &'static str,
    /// Unknown when this replica missed the `quiz.submitted` event.
    pub n_questions: Option<u32>,
    pub answered: u32,
    pub failed: u32,
    pub source: Option<String>,
    pub has_answer_key: Option<bool>,
    pub submitted_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    /// The id of the API key that created the quiz (never sent); `None` when unknown, which
    /// only admin keys see.
    #[serde(skip)]
    pub owner: Option<Arc<str>>,
    /// The quiz's events already counted, so a republished one is not counted twice.
    #[serde(skip)]
    seen: SeenSeqs,
}

/// The sequence numbers of one quiz's events seen so far: everything up to `through`, and
/// the few beyond it that came early. Events can come twice (a publisher relaying what the
/// bus never confirmed) and out of order (that relay, or a catch-up from the log).
#[derive(Debug, Clone, Default)]
struct SeenSeqs {
    through: u64,
    beyond: std::collections::BTreeSet<u64>,
}

impl SeenSeqs {
    /// Notes `seq`; false when it was seen before.
    fn insert(&mut self, seq: u64) -> bool {
        if seq <= self.through || !self.beyond.insert(seq) {
            return false;
        }
        while self.beyond.remove(&(self.through + 1)) {
            self.through += 1;
        }
        true
    }
}

/// One board change, serialised once for every client that may see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub owner: Option<Arc<str>>,
    pub text: Arc<str>,
}

/// This replica's view of the whole system.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalView {
    /// Quizzes on the board that have not finished.
    pub in_flight: usize,
    /// Questions finished per second over the last `window_secs`.
    pub questions_per_sec: f64,
    pub window_secs: u64,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<QuizSummary>,
    finished_at: VecDeque<Instant>,
}

#[derive(Clone)]
pub struct Board {
    inner: Arc<Mutex<Inner>>,
    changes: broadcast::Sender<Change>,
}

impl Default for Board {
    fn default() -> Self {
        Self {
            inner: Arc::default(),
            changes: broadcast::channel(CHANGES_BUFFER).0,
        }
    }
}

impl Board {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes from now on, as ready-to-send JSON texts.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Whether the board already holds `quiz_id` (so its owner is known or was looked up).
    pub fn knows(&self, quiz_id: &str) -> bool {
        self.lock().ring.iter().any(|quiz| quiz.id == quiz_id)
    }

    /// The `quizzes` message: every quiz on the board `viewer` may see, newest first, and the
    /// global view (system-wide counts, no quiz in it).
    pub fn snapshot_json(&self, viewer: &Viewer) -> String {
        let mut inner = self.lock();
        let global = global_view(&mut inner);
        let quizzes: Vec<&QuizSummary> = inner
            .ring
            .iter()
            .rev()
            .filter(|quiz| viewer.sees(quiz.owner.as_deref()))
            .collect();
        json!({"type": "quizzes", "quizzes": quizzes, "global": global}).to_string()
    }

    /// The `global` message.
    pub fn global_json(&self) -> String {
        let global = global_view(&mut self.lock());
        json!({"type": "global", "global": global}).to_string()
    }

    pub fn global(&self) -> GlobalView {
        global_view(&mut self.lock())
    }

    /// A new quiz was accepted by the gateway; `owner` is the key that created it.
    pub fn submitted(&self, event: &v1::QuizSubmitted, owner: Option<&str>) {
        let Some(meta) = &event.meta else { return };
        let owner: Option<Arc<str>> = owner.map(Arc::from);
        let mut inner = self.lock();
        let (kind, summary) = match inner.ring.iter_mut().find(|quiz| quiz.id == meta.quiz_id) {
            Some(summary) => {
                summary.n_questions = Some(event.n_questions);
                summary.source = Some(event.source.clone());
                summary.has_answer_key = Some(event.has_answer_key);
                summary.submitted_at_ms = Some(meta.sent_at_ms);
                if summary.owner.is_none() {
                    summary.owner = owner;
                }
                ("quiz_updated", summary.clone())
            }
            None => {
                let summary = QuizSummary {
                    id: meta.quiz_id.clone(),
                    status: "queued",
                    n_questions: Some(event.n_questions),
                    answered: 0,
                    failed: 0,
                    source: Some(event.source.clone()),
                    has_answer_key: Some(event.has_answer_key),
                    submitted_at_ms: Some(meta.sent_at_ms),
                    updated_at_ms: meta.sent_at_ms,
                    owner,
                    seen: SeenSeqs::default(),
                };
                push(&mut inner.ring, summary.clone());
                ("quiz_added", summary)
            }
        };
        self.announce(kind, &summary);
    }

    /// A quiz's event: moves its status and counters on, once per event however often it
    /// comes. `owner` is used when the quiz is new to the board (this replica missed its
    /// `quiz.submitted`).
    pub fn observe(&self, event: &EventView, owner: Option<&str>) {
        let mut inner = self.lock();
        let now_ms = common::now_ms();
        let kind = if inner.ring.iter().any(|quiz| quiz.id == event.quiz_id()) {
            "quiz_updated"
        } else {
            push(
                &mut inner.ring,
                QuizSummary {
                    id: event.quiz_id().to_owned(),
                    status: "analyzing",
                    n_questions: None,
                    answered: 0,
                    failed: 0,
                    source: None,
                    has_answer_key: None,
                    submitted_at_ms: None,
                    updated_at_ms: now_ms,
                    owner: owner.map(Arc::from),
                    seen: SeenSeqs::default(),
                },
            );
            "quiz_added"
        };
        let Some(summary) = inner.ring.iter_mut().find(|quiz| quiz.id == event.quiz_id()) else {
            return;
        };
        if !summary.seen.insert(event.seq()) {
            return;
        }
        summary.updated_at_ms = now_ms;
        match event {
            EventView::QuestionAnswered { outcome, .. } => {
                if outcome.answer.is_some() {
                    summary.answered += 1;
                } else {
                    summary.failed += 1;
                }
                // A terminal status never goes back (events may be handled out of order).
                if !matches!(summary.status, "completed" | "failed") {
                    summary.status = "analyzing";
                }
            }
            EventView::QuizCompleted { .. } => summary.status = "completed",
            EventView::QuizFailed { .. } => summary.status = "failed",
        }
        let summary = summary.clone();
        if matches!(event, EventView::QuestionAnswered { .. }) {
            let now = Instant::now();
            inner.finished_at.push_back(now);
            prune(&mut inner.finished_at, now);
        }
        drop(inner);
        self.announce(kind, &summary);
    }

    /// The quizzes on the board that have not ended, each with the sequence number up to
    /// which the board has all of its events: what a catch-up from the log starts after.
    pub fn open_quizzes(&self) -> Vec<(String, u64)> {
        self.lock()
            .ring
            .iter()
            .filter(|quiz| !matches!(quiz.status, "completed" | "failed"))
            .map(|quiz| (quiz.id.clone(), quiz.seen.through))
            .collect()
    }

    fn announce(&self, kind: &str, summary: &QuizSummary) {
        let text = json!({"type": kind, "quiz": summary}).to_string();
        // No receivers is fine: nobody watches the board right now.
        let _ = self.changes.send(Change {
            owner: summary.owner.clone(),
            text: Arc::from(text),
        });
    }
}

fn push(ring: &mut VecDeque<QuizSummary>, summary: QuizSummary) {
    if ring.len() == RING_SIZE {
        ring.pop_front();
    }
    ring.push_back(summary);
}

fn prune(finished_at: &mut VecDeque<Instant>, now: Instant) {
    while finished_at
        .front()
        .is_some_and(|at| now.duration_since(*at) > RATE_WINDOW)
    {
        finished_at.pop_front();
    }
}

fn global_view(inner: &mut Inner) -> GlobalView {
    prune(&mut inner.finished_at, Instant::now());
    GlobalView {
        in_flight: inner
            .ring
            .iter()
            .filter(|quiz| !matches!(quiz.status, "completed" | "failed"))
            .count(),
        questions_per_sec: inner.finished_at.len() as f64 / RATE_WINDOW.as_secs_f64(),
        window_secs: RATE_WINDOW.as_secs(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use common::views::{QuestionOutcome, StatsView};

    use super::*;

    fn submitted(id: &str) -> v1::QuizSubmitted {
        v1::QuizSubmitted {
            meta: Some(common::views::new_meta(id)),
            n_questions: 2,
            source: "json".into(),
            has_answer_key: true,
            owner: "alice".into(),
        }
    }

    #[test]
    fn tracks_status_counters_and_the_ring() {
        let board = Board::default();
        let mut changes = board.subscribe();
        board.submitted(&submitted("a"), Some("alice"));
        board.observe(
            &EventView::QuestionAnswered {
                quiz_id: "a".into(),
                seq: 1,
                outcome: QuestionOutcome {
                    index: 0,
                    answer: None,
                    error: Some("x".into()),
                    agrees_with_key: None,
                },
            },
            None,
        );
        let added = changes.try_recv().unwrap();
        assert!(added.text.contains("\"quiz_added\""));
        assert_eq!(added.owner.as_deref(), Some("alice"));
        assert!(changes.try_recv().unwrap().text.contains("\"analyzing\""));
        assert_eq!(board.global().in_flight, 1);
        assert!(board.global().questions_per_sec > 0.0);
        board.observe(
            &EventView::QuizCompleted {
                quiz_id: "a".into(),
                seq: 2,
                stats: StatsView::default(),
            },
            None,
        );
        assert_eq!(board.global().in_flight, 0);
        for index in 0..RING_SIZE + 5 {
            board.submitted(&submitted(&format!("q{index}")), Some("alice"));
        }
        let snapshot: serde_json::Value =
            serde_json::from_str(&board.snapshot_json(&Viewer::Everything)).unwrap();
        let quizzes = snapshot["quizzes"].as_array().unwrap();
        assert_eq!(quizzes.len(), RING_SIZE);
        assert_eq!(quizzes[0]["id"], format!("q{}", RING_SIZE + 4));
        assert!(quizzes[0].get("owner").is_none(), "owners are never sent");
    }

    fn answered(id: &str, seq: u64) -> EventView {
        EventView::QuestionAnswered {
            quiz_id: id.into(),
            seq,
            outcome: QuestionOutcome {
                index: u32::try_from(seq).unwrap(),
                answer: None,
                error: Some("x".into()),
                agrees_with_key: None,
            },
        }
    }

    #[test]
    fn an_event_that_comes_twice_or_late_is_counted_once() {
        let board = Board::default();
        board.submitted(&submitted("a"), Some("alice"));
        let mut changes = board.subscribe();
        for seq in [2, 1, 2, 1, 3, 5] {
            board.observe(&answered("a", seq), None);
        }
        let snapshot: serde_json::Value =
            serde_json::from_str(&board.snapshot_json(&Viewer::Everything)).unwrap();
        assert_eq!(snapshot["quizzes"][0]["failed"], 4);
        // One change per new event, none for the copies.
        let mut announced = 0;
        while changes.try_recv().is_ok() {
            announced += 1;
        }
        assert_eq!(announced, 4);
        // Everything through 3 is here; 4 is missing, so a catch-up starts after 3.
        assert_eq!(board.open_quizzes(), vec![("a".to_owned(), 3)]);
        board.observe(&answered("a", 4), None);
        assert_eq!(board.open_quizzes(), vec![("a".to_owned(), 5)]);
        board.observe(
            &EventView::QuizCompleted {
                quiz_id: "a".into(),
                seq: 6,
                stats: StatsView::default(),
            },
            None,
        );
        assert!(board.open_quizzes().is_empty());
    }

    #[test]
    fn snapshots_hold_only_the_viewers_quizzes() {
        let board = Board::default();
        board.submitted(&submitted("a"), Some("alice"));
        board.submitted(&submitted("b"), Some("bob"));
        board.observe(
            &EventView::QuizCompleted {
                quiz_id: "c".into(),
                seq: 1,
                stats: StatsView::default(),
            },
            None,
        );
        let ids = |viewer: &Viewer| -> Vec<String> {
            let snapshot: serde_json::Value = serde_json::from_str(&board.snapshot_json(viewer)).unwrap();
            snapshot["quizzes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|quiz| quiz["id"].as_str().unwrap().to_owned())
                .collect()
        };
        assert_eq!(ids(&Viewer::Owner("alice".into())), ["a"]);
        assert_eq!(ids(&Viewer::Owner("bob".into())), ["b"]);
        assert_eq!(ids(&Viewer::Everything), ["c", "b", "a"]);
    }
}
