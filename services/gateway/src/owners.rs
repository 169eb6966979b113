//! Which API key owns a quiz: `{prefix}quiz:{id}:owner` holds the key id, written right after
//! the quiz is created and expiring with the same retention (`redis.quiz_ttl_secs`).
//!
//! The quiz hash's TTL restarts on later writes (status changes), so an owner record can expire
//! up to one analysis earlier than its quiz; until the quiz also expires, only admin keys read it.

use common::keys::Keys;
use common::redis::RedisError;
use deadpool_redis::Pool;
use redis::AsyncCommands;

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

    fn key(&self, quiz_id: &str) -> String {
        format!("{}quiz:{quiz_id}:owner", self.keys.prefix())
    }

    /// Records `key_id` as the owner of `quiz_id`.
    pub async fn record(&self, quiz_id: &str, key_id: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        connection
            .set_ex::<_, _, ()>(self.key(quiz_id), key_id, self.ttl_secs)
            .await?;
        Ok(())
    }

    /// The owning key id, or `None` when the quiz is unknown (or its record expired).
    pub async fn owner(&self, quiz_id: &str) -> Result<Option<String>, RedisError> {
        let mut connection = self.pool.get().await?;
        Ok(connection.get(self.key(quiz_id)).await?)
    }

    /// Forgets the owner of a quiz that was refused after all.
    pub async fn forget(&self, quiz_id: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        connection.del::<_, ()>(self.key(quiz_id)).await?;
        Ok(())
    }
}
