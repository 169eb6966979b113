//! Quiz state in Redis: the spec, the status, each question's outcome and the event log.
//!
//! Writers: the gateway creates a quiz; the analyzer records outcomes and events
//! and moves the status on. Readers: the gateway (`GET /v1/quizzes/{id}`) and the
//! broadcaster (snapshots and resume). Every key expires `quiz_ttl_secs` after
//! its last write.
//!
//! Open quizzes (neither completed nor failed) are also indexed in one sorted set
//! scored by their last progress (creation, a status change, a recorded outcome),
//! so the analyzer's sweeper can fail those that stopped moving (docs/reliability.md).
//!
//! The event log, its sequence numbers and the outbox of logged events not yet
//! confirmed on the bus are in [`log`].

mod log;

use crate::redis::Pool;
use redis::AsyncCommands;

use crate::keys::Keys;
use crate::redis::RedisError;
use crate::views::{QuestionOutcome, QuizSpec, QuizStatus};

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
        self.create_with(id, spec, |_| {}).await
    }

    /// [`Self::create`], with the commands `also` adds written in the same atomic step (the
    /// gateway records the quiz's owner so, in the same round trip).
    pub async fn create_with(
        &self,
        id: &str,
        spec: &QuizSpec,
        also: impl FnOnce(&mut redis::Pipeline),
    ) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        let key = self.keys.quiz(id);
        let now = crate::now_ms();
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset_multiple(
                &key,
                &[
                    ("spec", serde_json::to_string(spec)?),
                    ("status", QuizStatus::Queued.as_str().to_owned()),
                    ("created_at_ms", now.to_string()),
                    ("updated_at_ms", now.to_string()),
                ],
            )
            .ignore()
            .expire(&key, self.ttl_secs)
            .ignore()
            .zadd(self.keys.open_quizzes(), id, now)
            .ignore();
        also(&mut pipe);
        pipe.query_async::<()>(&mut connection).await?;
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
        connection.zrem::<_, _, ()>(self.keys.open_quizzes(), id).await?;
        connection.zrem::<_, _, ()>(self.keys.outbox(), id).await?;
        Ok(())
    }

    /// The current status, or `None` for an unknown quiz.
    pub async fn status(&self, id: &str) -> Result<Option<QuizStatus>, RedisError> {
        let mut connection = self.pool.get().await?;
        let status: Option<String> = connection.hget(self.keys.quiz(id), "status").await?;
        Ok(status.as_deref().and_then(QuizStatus::parse))
    }

    /// Moves the status on; a terminal status is never overwritten. Returns the status found
    /// (the one overwritten, or the terminal one kept), or `None` for an unknown quiz.
    pub async fn set_status(
        &self,
        id: &str,
        status: QuizStatus,
        reason: Option<&str>,
    ) -> Result<Option<QuizStatus>, RedisError> {
        // One round trip that checks and writes atomically, so a late `analyzing`
        // from a redelivery cannot undo `completed`. A status change is progress for the
        // open-quiz index (XX: never re-adds a quiz that already left it); a terminal
        // one takes the quiz out of the index.
        const SCRIPT: &str = r"
            local current = redis.call('HGET', KEYS[1], 'status')
            if current == false then return '' end
            if current == 'completed' or current == 'failed' then return current end
            redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at_ms', ARGV[2])
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[3]) end
            if ARGV[1] == 'completed' or ARGV[1] == 'failed' then
                redis.call('ZREM', KEYS[2], ARGV[4])
            else
                redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[4])
            end
            return current";
        let mut connection = self.pool.get().await?;
        let found: String = redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .key(self.keys.open_quizzes())
            .arg(status.as_str())
            .arg(crate::now_ms())
            .arg(reason.unwrap_or(""))
            .arg(id)
            .invoke_async(&mut connection)
            .await?;
        Ok(QuizStatus::parse(&found))
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
        let outcomes = parse_outcomes(&answers)?;
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

    /// The outcomes recorded so far, by question index, or `None` when the quiz is unknown:
    /// all a finished quiz's answers without reading (and parsing) its spec.
    pub async fn existing_outcomes(&self, id: &str) -> Result<Option<Vec<QuestionOutcome>>, RedisError> {
        let mut connection = self.pool.get().await?;
        let (exists, answers): (bool, Vec<String>) = redis::pipe()
            .exists(self.keys.quiz(id))
            .hvals(self.keys.quiz_answers(id))
            .query_async(&mut connection)
            .await?;
        if !exists {
            return Ok(None);
        }
        parse_outcomes(&answers).map(Some)
    }

    /// The outcomes recorded so far, by question index.
    pub async fn outcomes(&self, id: &str) -> Result<Vec<QuestionOutcome>, RedisError> {
        let mut connection = self.pool.get().await?;
        let answers: Vec<String> = connection.hvals(self.keys.quiz_answers(id)).await?;
        parse_outcomes(&answers)
    }
}

/// The open-quiz index the sweeper reads.
impl QuizStore {
    /// Up to `limit` open quizzes whose last progress is at or before `cutoff_ms`.
    pub async fn open_before(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<String>, RedisError> {
        self.ids_scored_before(&self.keys.open_quizzes(), cutoff_ms, limit)
            .await
    }

    /// Up to `limit` members of the sorted set `key` scored at or before `cutoff_ms`, lowest
    /// first: the quiz indexes (open quizzes, the outbox) are scored by a time in ms.
    async fn ids_scored_before(
        &self,
        key: &str,
        cutoff_ms: i64,
        limit: usize,
    ) -> Result<Vec<String>, RedisError> {
        let mut connection = self.pool.get().await?;
        let ids: Vec<String> = connection
            .zrangebyscore_limit(
                key,
                "-inf",
                cutoff_ms,
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await?;
        Ok(ids)
    }

    /// Claims an open quiz that made no progress since `cutoff_ms`: atomically checks it is
    /// still that old and moves its score to `retry_at_ms`, so no other sweeper takes it,
    /// and if the claimer dies before ending it, it comes due again later. False when
    /// another sweeper claimed it first or it made progress meanwhile.
    pub async fn claim_stale(&self, id: &str, cutoff_ms: i64, retry_at_ms: i64) -> Result<bool, RedisError> {
        const SCRIPT: &str = r"
            local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
            if score == false or tonumber(score) > tonumber(ARGV[2]) then return 0 end
            redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
            return 1";
        let mut connection = self.pool.get().await?;
        let claimed: i64 = redis::Script::new(SCRIPT)
            .key(self.keys.open_quizzes())
            .arg(id)
            .arg(cutoff_ms)
            .arg(retry_at_ms)
            .invoke_async(&mut connection)
            .await?;
        Ok(claimed == 1)
    }

    /// Drops a quiz from the open index (it ended, expired or was deleted).
    pub async fn forget_open(&self, id: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        connection.zrem::<_, _, ()>(self.keys.open_quizzes(), id).await?;
        Ok(())
    }

    /// The last progress of an open quiz in ms, `None` when it is not open.
    pub async fn open_since(&self, id: &str) -> Result<Option<i64>, RedisError> {
        let mut connection = self.pool.get().await?;
        let score: Option<f64> = connection.zscore(self.keys.open_quizzes(), id).await?;
        Ok(score.map(|score| score as i64))
    }

    /// Re-opens a failed quiz so its job can run again (`cargo xtask dlq requeue`): status
    /// back to `queued`, reason cleared, its `quiz_failed` events dropped from the log so
    /// a replay does not stop at the old failure, and back in the open index. Returns
    /// false, changing nothing, unless the quiz exists and is `failed`.
    pub async fn reopen(&self, id: &str) -> Result<bool, RedisError> {
        const SCRIPT: &str = r#"
            if redis.call('HGET', KEYS[1], 'status') ~= 'failed' then return 0 end
            redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at_ms', ARGV[1])
            redis.call('HDEL', KEYS[1], 'reason')
            for _, event in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
                if string.find(event, '"type":"quiz_failed"', 1, true) then
                    redis.call('ZREM', KEYS[2], event)
                end
            end
            redis.call('ZADD', KEYS[3], ARGV[1], ARGV[2])
            return 1"#;
        let mut connection = self.pool.get().await?;
        let reopened: i64 = redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .key(self.keys.quiz_events(id))
            .key(self.keys.open_quizzes())
            .arg(crate::now_ms())
            .arg(id)
            .invoke_async(&mut connection)
            .await?;
        Ok(reopened == 1)
    }
}

/// Stored outcomes (the answers hash's values), by question index.
fn parse_outcomes(answers: &[String]) -> Result<Vec<QuestionOutcome>, RedisError> {
    let mut outcomes = answers
        .iter()
        .map(|text| serde_json::from_str::<QuestionOutcome>(text))
        .collect::<Result<Vec<_>, _>>()?;
    outcomes.sort_by_key(|outcome| outcome.index);
    Ok(outcomes)
}
