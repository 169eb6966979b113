//! Job de-duplication by message id: a job that is redelivered while another delivery of
//! it is still being worked on (a consumer channel died mid-analysis), or that was
//! published twice, is worked on by one delivery at a time, and not at all once done.
//!
//! Without this, two deliveries of one job would both find the same questions unanswered
//! and both record and publish them, each under a fresh sequence number: clients would
//! see every answer twice and the broadcaster would count it twice.
//!
//! The claim lives at `message:v1:{message_id}`: `running:{token}` with a short lease that
//! the holder renews while it works, then `done` for `message_dedup_ttl_secs`. A duplicate
//! that finds the claim taken waits with its delivery unacknowledged (so the broker does
//! not count a delivery against the limit) until the holder finishes or its lease lapses.

use std::time::Duration;

use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use redis::AsyncCommands;

/// Where a delivery stands with its job.
pub enum Claim {
    /// This delivery holds the job; finish with [`ClaimGuard::done`] or [`ClaimGuard::release`].
    Acquired(ClaimGuard),
    /// An earlier delivery finished it: acknowledge without work.
    Done,
}

#[derive(Clone)]
pub struct MessageClaims {
    pool: Pool,
    keys: Keys,
    lease: Duration,
    done_ttl_secs: u64,
}

/// How often a waiting duplicate looks at the claim again.
const WAIT_POLL: Duration = Duration::from_millis(200);

impl MessageClaims {
    pub fn new(pool: Pool, keys: Keys, lease: Duration, done_ttl_secs: u64) -> Self {
        Self {
            pool,
            keys,
            lease: lease.max(Duration::from_millis(300)),
            done_ttl_secs: done_ttl_secs.max(1),
        }
    }

    /// Waits until this delivery may work on `message_id`, or learns that it was done.
    pub async fn claim(&self, message_id: &str) -> Result<Claim, RedisError> {
        let key = self.keys.message_claim(message_id);
        let token = format!("running:{:032x}", rand::random::<u128>());
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut waited = false;
        loop {
            let mut connection = self.pool.get().await?;
            let acquired: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(lease_ms)
                .query_async(&mut connection)
                .await?;
            if acquired.is_some() {
                return Ok(Claim::Acquired(ClaimGuard::start(self.clone(), key, token)));
            }
            let current: Option<String> = connection.get(&key).await?;
            drop(connection);
            match current.as_deref() {
                Some("done") => return Ok(Claim::Done),
                // Released between our SET and GET: try again at once.
                None => continue,
                Some(_) => {
                    if !waited {
                        tracing::info!("another delivery of this job is in progress, waiting for it");
                        waited = true;
                    }
                    tokio::time::sleep(WAIT_POLL).await;
                }
            }
        }
    }
}

/// A held claim; its lease is renewed in the background until it is dropped.
pub struct ClaimGuard {
    claims: MessageClaims,
    key: String,
    token: String,
    renewal: tokio::task::JoinHandle<()>,
}

impl ClaimGuard {
    fn start(claims: MessageClaims, key: String, token: String) -> Self {
        let renewal = tokio::spawn(renew(claims.clone(), key.clone(), token.clone()));
        Self {
            claims,
            key,
            token,
            renewal,
        }
    }

    /// The job's side effects are durable: remember it as done.
    pub async fn done(self) -> Result<(), RedisError> {
        self.renewal.abort();
        let mut connection = self.claims.pool.get().await?;
        connection
            .set_ex::<_, _, ()>(&self.key, "done", self.claims.done_ttl_secs)
            .await?;
        Ok(())
    }

    /// The job will be retried: let the next delivery take it at once.
    pub async fn release(self) {
        self.renewal.abort();
        const SCRIPT: &str = r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
            return 0";
        let released = async {
            let mut connection = self.claims.pool.get().await?;
            redis::Script::new(SCRIPT)
                .key(&self.key)
                .arg(&self.token)
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, RedisError>(())
        };
        if let Err(error) = released.await {
            // The lease runs out by itself; the next delivery waits at most that long.
            tracing::warn!(error = %error, "job claim not released");
        }
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// Extends the lease every third of it while the claim is still ours.
async fn renew(claims: MessageClaims, key: String, token: String) {
    const SCRIPT: &str = r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
        return 0";
    let lease_ms = u64::try_from(claims.lease.as_millis()).unwrap_or(u64::MAX);
    loop {
        tokio::time::sleep(claims.lease / 3).await;
        let renewed = async {
            let mut connection = claims.pool.get().await?;
            redis::Script::new(SCRIPT)
                .key(&key)
                .arg(&token)
                .arg(lease_ms)
                .invoke_async::<i64>(&mut connection)
                .await
                .map_err(RedisError::from)
        };
        match renewed.await {
            Ok(1) => {}
            Ok(_) => {
                tracing::warn!("job claim lost (lease lapsed); a duplicate delivery may take over");
                return;
            }
            Err(error) => tracing::warn!(error = %error, "job claim not renewed, trying again"),
        }
    }
}
