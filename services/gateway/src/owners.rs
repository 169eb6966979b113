//! Which API key owns a quiz, and each key's list of quizzes.
//!
//! `quiz:{id}:owner` holds the key id, written right after the quiz is created and expiring with
//! the same retention (`redis.quiz_ttl_secs`). The quiz hash's TTL restarts on later writes
//! (status changes), so an owner record can expire up to one analysis earlier than its quiz;
//! until the quiz also expires, only admin keys read it.
//!
//! The same write adds the quiz id to two sorted sets scored by creation time (ms): the owner's
//! (`quizzes:owner:{key_id}`) and everyone's (`quizzes:all`, for admin listings). Entries of
//! expired quizzes are pruned when a listing meets them, and entries older than the retention
//! are trimmed on every write, so neither set grows without bound.

use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use redis::AsyncCommands;

/// Index entries are trimmed this long after the quiz's retention ran out: a quiz hash outlives
/// its creation by the retention plus its analysis (each status write restarts its TTL).
const INDEX_TRIM_MARGIN_MS: i64 = 3_600_000;

#[derive(Clone)]
pub struct QuizOwners {
    pool: Pool,
    keys: Keys,
    ttl_secs: u64,
}

impl QuizOwners {
    pub fn new(pool: Pool, keys: Keys, ttl_secs: u64) -> Self {
        Self { pool, keys, ttl_secs }
    }

    /// Records `key_id` as the owner of `quiz_id`, created at `created_at_ms`, and lists the
    /// quiz under its owner and under every quiz: commands added to `pipe`, which the gateway
    /// sends with the quiz's creation (`QuizStore::create_with`), in one atomic step.
    pub fn add_record(&self, pipe: &mut redis::Pipeline, quiz_id: &str, key_id: &str, created_at_ms: i64) {
        let ttl = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
        let trim_before = created_at_ms
            .saturating_sub(ttl.saturating_mul(1_000))
            .saturating_sub(INDEX_TRIM_MARGIN_MS);
        pipe.set_ex(self.keys.quiz_owner(quiz_id), key_id, self.ttl_secs)
            .ignore();
        for index in [self.keys.owner_quizzes(key_id), self.keys.all_quizzes()] {
            pipe.zadd(&index, quiz_id, created_at_ms)
                .ignore()
                .zrembyscore(&index, "-inf", format!("({trim_before}"))
                .ignore()
                .expire(&index, ttl)
                .ignore();
        }
    }

    /// The owning key id, or `None` when the quiz is unknown (or its record expired).
    pub async fn owner(&self, quiz_id: &str) -> Result<Option<String>, RedisError> {
        let mut connection = self.pool.get().await?;
        Ok(connection.get(self.keys.quiz_owner(quiz_id)).await?)
    }

    /// Forgets the owner and index entries of a quiz that was refused after all.
    pub async fn forget(&self, quiz_id: &str, key_id: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        redis::pipe()
            .atomic()
            .del(self.keys.quiz_owner(quiz_id))
            .ignore()
            .zrem(self.keys.owner_quizzes(key_id), quiz_id)
            .ignore()
            .zrem(self.keys.all_quizzes(), quiz_id)
            .ignore()
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }
}
