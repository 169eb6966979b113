//! Quiz state in Redis: the spec, the status, each question's outcome and the event log.
//!
//! Writers: the gateway creates a quiz; the analyzer records outcomes and events
//! and moves the status on. Readers: the gateway (`GET /v1/quizzes/{id}`) and the
//! broadcaster (snapshots and resume). Every key expires `quiz_ttl_secs` after
//! its last write.

use deadpool_redis::Pool;
use redis::AsyncCommands;

use crate::keys::Keys;
use crate::redis::RedisError;
use crate::views::{EventView, QuestionOutcome, QuizSpec, QuizStatus};

/// A quiz as stored.
#[derive(Debug, Clone)]
pub struct StoredQuiz {
    pub id: String,
    pub spec: QuizSpec,
    pub status: QuizStatus,
    pub reason: Option<String>,
    pub created_at_ms: i64,
    /// Outcomes recorded so far, by question index.
    pub outcomes: Vec<QuestionOutcome>,
}

#[derive(Clone)]
pub struct QuizStore {
    pool: Pool,
    keys: Keys,
    ttl_secs: i64,
}

impl QuizStore {
    pub fn new(pool: Pool, keys: Keys, ttl_secs: u64) -> Self {
        Self {
            pool,
            keys,
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Records a new quiz as `queued`.
    pub async fn create(&self, id: &str, spec: &QuizSpec) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        let key = self.keys.quiz(id);
        let now = crate::now_ms();
        redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("spec", serde_json::to_string(spec)?),
                    ("status", QuizStatus::Queued.as_str().to_owned()),
                    ("created_at_ms", now.to_string()),
                    ("updated_at_ms", now.to_string()),
                ],
            )
            .expire(&key, self.ttl_secs)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    /// Removes a quiz and everything recorded about it.
    pub async fn delete(&self, id: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        connection
            .del::<_, ()>(&[
                self.keys.quiz(id),
                self.keys.quiz_answers(id),
                self.keys.quiz_events(id),
                self.keys.quiz_seq(id),
            ])
            .await?;
        Ok(())
    }

    /// The current status, or `None` for an unknown quiz.
    pub async fn status(&self, id: &str) -> Result<Option<QuizStatus>, RedisError> {
        let mut connection = self.pool.get().await?;
        let status: Option<String> = connection.hget(self.keys.quiz(id), "status").await?;
        Ok(status.as_deref().and_then(QuizStatus::parse))
    }

    /// Moves the status on; a terminal status is never overwritten.
    pub async fn set_status(
        &self,
        id: &str,
        status: QuizStatus,
        reason: Option<&str>,
    ) -> Result<(), RedisError> {
        // One round trip that checks and writes atomically, so a late `analyzing`
        // from a redelivery cannot undo `completed`.
        const SCRIPT: &str = r"
            local current = redis.call('HGET', KEYS[1], 'status')
            if current == false or current == 'completed' or current == 'failed' then return 0 end
            redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at_ms', ARGV[2])
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[3]) end
            return 1";
        let mut connection = self.pool.get().await?;
        redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .arg(status.as_str())
            .arg(crate::now_ms())
            .arg(reason.unwrap_or(""))
            .invoke_async::<i64>(&mut connection)
            .await?;
        Ok(())
    }

    /// Loads a quiz with its outcomes, or `None` when it does not exist.
    pub async fn load(&self, id: &str) -> Result<Option<StoredQuiz>, RedisError> {
        let mut connection = self.pool.get().await?;
        let (fields, answers): (std::collections::HashMap<String, String>, Vec<String>) = redis::pipe()
            .hgetall(self.keys.quiz(id))
            .hvals(self.keys.quiz_answers(id))
            .query_async(&mut connection)
            .await?;
        let Some(spec) = fields.get("spec") else {
            return Ok(None);
        };
        let mut outcomes = answers
            .iter()
            .map(|text| serde_json::from_str::<QuestionOutcome>(text))
            .collect::<Result<Vec<_>, _>>()?;
        outcomes.sort_by_key(|outcome| outcome.index);
        Ok(Some(StoredQuiz {
            id: id.to_owned(),
            spec: serde_json::from_str(spec)?,
            status: fields
                .get("status")
                .and_then(|status| QuizStatus::parse(status))
                .unwrap_or(QuizStatus::Queued),
            reason: fields.get("reason").cloned(),
            created_at_ms: fields
                .get("created_at_ms")
                .and_then(|value| value.parse().ok())
                .unwrap_or(0),
            outcomes,
        }))
    }

    /// The outcomes recorded so far, by question index.
    pub async fn outcomes(&self, id: &str) -> Result<Vec<QuestionOutcome>, RedisError> {
        let mut connection = self.pool.get().await?;
        let answers: Vec<String> = connection.hvals(self.keys.quiz_answers(id)).await?;
        let mut outcomes = answers
            .iter()
            .map(|text| serde_json::from_str::<QuestionOutcome>(text))
            .collect::<Result<Vec<_>, _>>()?;
        outcomes.sort_by_key(|outcome| outcome.index);
        Ok(outcomes)
    }

    /// Reserves `count` consecutive sequence numbers; returns the first.
    pub async fn reserve_seq(&self, id: &str, count: u64) -> Result<u64, RedisError> {
        let mut connection = self.pool.get().await?;
        let key = self.keys.quiz_seq(id);
        let (last,): (u64,) = redis::pipe()
            .incr(&key, count)
            .expire(&key, self.ttl_secs)
            .ignore()
            .query_async(&mut connection)
            .await?;
        Ok(last + 1 - count)
    }

    /// Writes outcomes and their events in one atomic round trip.
    pub async fn record(
        &self,
        id: &str,
        outcomes: &[QuestionOutcome],
        events: &[EventView],
    ) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        let mut pipe = redis::pipe();
        pipe.atomic();
        let answers_key = self.keys.quiz_answers(id);
        let events_key = self.keys.quiz_events(id);
        for outcome in outcomes {
            pipe.hset(&answers_key, outcome.index, serde_json::to_string(outcome)?)
                .ignore();
        }
        for event in events {
            pipe.zadd(&events_key, serde_json::to_string(event)?, event.seq())
                .ignore();
        }
        pipe.expire(&answers_key, self.ttl_secs).ignore();
        pipe.expire(&events_key, self.ttl_secs).ignore();
        pipe.query_async::<()>(&mut connection).await?;
        Ok(())
    }

    /// Events with a sequence number above `after`, in order.
    pub async fn events_after(&self, id: &str, after: u64) -> Result<Vec<EventView>, RedisError> {
        let mut connection = self.pool.get().await?;
        let texts: Vec<String> = connection
            .zrangebyscore(self.keys.quiz_events(id), format!("({after}"), "+inf")
            .await?;
        texts
            .iter()
            .map(|text| serde_json::from_str(text).map_err(RedisError::from))
            .collect()
    }
}
