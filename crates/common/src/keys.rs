//! Every Redis key name QuizStats uses, built in one place.
//!
//! Layout under the configured prefix (default `qs:`):
//! - `quiz:{id}` hash: `spec` (JSON), `status`, `reason`, `created_at_ms`, `updated_at_ms`,
//!   `published_seq` (the last sequence number the bus confirmed)
//! - `quiz:{id}:answers` hash: question index → answer record (JSON)
//! - `quiz:{id}:events` sorted set: event JSON scored by its sequence number
//! - `quiz:{id}:seq` counter: the last sequence number handed out
//! - `answer:v1:{hash}` string: a cached LLM answer (JSON, with a TTL)
//! - `answer-lock:v1:{hash}` string: single-flight lease of the replica asking the LLM
//! - `answer-failed:v1:{hash}` string: a recent failure, so waiters fail with it (short TTL)
//! - `quiz:{id}:owner` string: the id of the API key that created the quiz (gateway)
//! - `quizzes:owner:{key_id}` sorted set: that key's quiz ids scored by creation time in ms (gateway)
//! - `quizzes:all` sorted set: every quiz id scored by creation time in ms, for admin listings (gateway)
//! - `idempotency:v1:{hash}` string: an `Idempotency-Key` record, the hash covering owner and key (gateway)
//! - `quizzes:open` sorted set: every quiz not yet completed or failed, scored by its last
//!   progress (ms); the analyzer's sweeper fails the ones that stopped moving
//! - `quizzes:outbox` sorted set: quizzes with logged events the bus may not have confirmed,
//!   scored by the last write (ms); the analyzer relays the ones left there too long
//! - `message:v1:{message_id}` string: a consumed job's claim (`running:{token}`, short
//!   lease) or `done` (TTL), so a redelivered or duplicated job does no work twice

/// Builds key names under one prefix; cheap to clone.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn quiz(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}", self.prefix)
    }

    pub fn quiz_answers(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}:answers", self.prefix)
    }

    pub fn quiz_events(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}:events", self.prefix)
    }

    pub fn quiz_seq(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}:seq", self.prefix)
    }

    /// A cached answer; `digest` is the hex hash of everything that changes the answer.
    /// The `v1` changes when the stored value's shape does.
    pub fn cached_answer(&self, digest: &str) -> String {
        format!("{}answer:v1:{digest}", self.prefix)
    }

    pub fn answer_lock(&self, digest: &str) -> String {
        format!("{}answer-lock:v1:{digest}", self.prefix)
    }

    pub fn answer_failure(&self, digest: &str) -> String {
        format!("{}answer-failed:v1:{digest}", self.prefix)
    }

    /// The index of open (not yet terminal) quizzes, scored by last progress in ms.
    pub fn open_quizzes(&self) -> String {
        format!("{}quizzes:open", self.prefix)
    }

    /// Quizzes whose logged events may not all be on the bus yet, scored by the last write
    /// in ms (see `store::log`).
    pub fn outbox(&self) -> String {
        format!("{}quizzes:outbox", self.prefix)
    }

    /// A job message's processing claim, by its `Meta.message_id`.
    pub fn message_claim(&self, message_id: &str) -> String {
        format!("{}message:v1:{message_id}", self.prefix)
    }

    /// The id of the API key that created the quiz.
    pub fn quiz_owner(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}:owner", self.prefix)
    }

    /// One key's quizzes (scores are creation times in ms).
    pub fn owner_quizzes(&self, key_id: &str) -> String {
        format!("{}quizzes:owner:{key_id}", self.prefix)
    }

    /// Every quiz, for admin listings (scores are creation times in ms).
    pub fn all_quizzes(&self) -> String {
        format!("{}quizzes:all", self.prefix)
    }

    /// An `Idempotency-Key` record; `digest` is the hex hash of the owner and the key.
    /// The `v1` changes when the stored value's shape does.
    pub fn idempotency(&self, digest: &str) -> String {
        format!("{}idempotency:v1:{digest}", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_prefix_and_keep_quizzes_apart() {
        let keys = Keys::new("t1:");
        assert_eq!(keys.quiz("a"), "t1:quiz:a");
        assert_eq!(keys.quiz_answers("a"), "t1:quiz:a:answers");
        assert_ne!(keys.quiz_events("a"), keys.quiz_events("b"));
        assert_eq!(keys.cached_answer("ff"), "t1:answer:v1:ff");
        assert_eq!(keys.quiz_owner("a"), "t1:quiz:a:owner");
        assert_ne!(keys.owner_quizzes("all"), keys.all_quizzes());
    }
}
