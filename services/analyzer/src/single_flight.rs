//! Single flight across analyzer replicas: one LLM call per new question, however many
//! quizzes ask it at once.
//!
//! The first caller takes a lease (`SET NX PX`) on the question's digest and renews it
//! while its call runs; the others poll the cache until the answer lands. If the lease
//! holder dies, its lease expires and a waiter takes over. A failed call leaves a
//! short-lived failure marker, so waiters fail with the same reason instead of each
//! paying for the same failure again.

use std::time::Duration;

use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use redis::AsyncCommands;

/// Deletes the lease only if it is still ours (another replica may hold it after expiry).
const RELEASE: &str = r"
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
    return 0";

/// Extends the lease only if it is still ours.
const RENEW: &str = r"
    if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
    return 0";

#[derive(Clone)]
pub struct SingleFlight {
    pool: Pool,
    keys: Keys,
    lease: Duration,
    pub poll: Duration,
    failure_ttl_secs: u64,
}

/// A held lease; renewed in the background until released or dropped.
pub struct Lease {
    flight: SingleFlight,
    key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

/// What the waiter saw on one look.
pub enum Seen {
    /// Nobody holds the lease: try to take it.
    Free,
    /// Someone is working on it.
    Busy,
    /// The holder failed recently, with this reason.
    Failed(String),
}

impl SingleFlight {
    pub fn new(pool: Pool, keys: Keys, lease: Duration, poll: Duration, failure_ttl_secs: u64) -> Self {
        Self {
            pool,
            keys,
            lease,
            poll,
            failure_ttl_secs,
        }
    }

    /// Takes the lease on `digest`, or `None` if another caller holds it.
    pub async fn try_acquire(&self, digest: &str) -> Result<Option<Lease>, RedisError> {
        let key = self.keys.answer_lock(digest);
        let token = uuid_token();
        let mut connection = self.pool.get().await?;
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease))
            .query_async(&mut connection)
            .await?;
        if taken.is_none() {
            return Ok(None);
        }
        let renewal = tokio::spawn(renew_forever(self.clone(), key.clone(), token.clone()));
        Ok(Some(Lease {
            flight: self.clone(),
            key,
            token,
            renewal,
        }))
    }

    /// Takes the lease on `digest` and reads `cache_key` in one round trip: the answer
    /// may have landed between the caller's cache lookup and now.
    pub async fn acquire_or_read(
        &self,
        digest: &str,
        cache_key: &str,
    ) -> Result<(Option<Lease>, Option<String>), RedisError> {
        let key = self.keys.answer_lock(digest);
        let token = uuid_token();
        let mut connection = self.pool.get().await?;
        let (taken, cached): (Option<String>, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(millis(self.lease))
            .get(cache_key)
            .query_async(&mut connection)
            .await?;
        let lease = taken.map(|_| {
            let renewal = tokio::spawn(renew_forever(self.clone(), key.clone(), token.clone()));
            Lease {
                flight: self.clone(),
                key,
                token,
                renewal,
            }
        });
        Ok((lease, cached))
    }

    /// Whether the lease is held, and whether a recent attempt failed.
    pub async fn look(&self, digest: &str) -> Result<Seen, RedisError> {
        let mut connection = self.pool.get().await?;
        let (held, failure): (bool, Option<String>) = redis::pipe()
            .exists(self.keys.answer_lock(digest))
            .get(self.keys.answer_failure(digest))
            .query_async(&mut connection)
            .await?;
        Ok(match (held, failure) {
            (_, Some(reason)) => Seen::Failed(reason),
            (true, None) => Seen::Busy,
            (false, None) => Seen::Free,
        })
    }

    /// Remembers a failure for waiters, briefly.
    pub async fn record_failure(&self, digest: &str, reason: &str) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        connection
            .set_ex::<_, _, ()>(
                self.keys.answer_failure(digest),
                reason,
                self.failure_ttl_secs.max(1),
            )
            .await?;
        Ok(())
    }
}

impl Lease {
    /// Gives the lease up (after the answer is cached or the failure recorded).
    pub async fn release(self) {
        self.renewal.abort();
        let result = async {
            let mut connection = self.flight.pool.get().await?;
            redis::Script::new(RELEASE)
                .key(&self.key)
                .arg(&self.token)
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, RedisError>(())
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "single-flight lease not released; it will expire");
        }
    }
}

impl Lease {
    /// Gives the lease up without making the caller wait for it.
    pub fn release_in_background(self) {
        tokio::spawn(self.release());
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn renew_forever(flight: SingleFlight, key: String, token: String) {
    let interval = flight.lease / 3;
    loop {
        tokio::time::sleep(interval).await;
        let renewed = async {
            let mut connection = flight.pool.get().await?;
            redis::Script::new(RENEW)
                .key(&key)
                .arg(&token)
                .arg(millis(flight.lease))
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(RedisError::from)
        }
        .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => return, // no longer ours
            Err(error) => tracing::warn!(%error, "single-flight lease renewal failed"),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn uuid_token() -> String {
    use rand::Rng;
    format!("{:032x}", rand::rng().random::<u128>())
}
