//! `Idempotency-Key` on `POST /v1/quizzes`: a retried submission returns the first answer
//! instead of submitting (and paying for) the quiz again.
//!
//! Keys are scoped per API key: the record lives at `idempotency:v1:{sha256(owner, key)}`.
//! The first request claims it with `SET NX` as `pending` (a short lease, so a crashed replica
//! cannot block the key for a day), submits, then stores the answer (`done`) for
//! `idempotency.ttl_secs`. A later request with the key compares the SHA-256 of its canonical
//! body (object keys sorted, no whitespace): a different body is a 409; the same body gets the
//! stored answer, or, while the first is still being accepted, waits up to
//! `idempotency.wait_ms` for it and then answers 409 with `Retry-After`. A submission that fails
//! (Redis or the broker down) releases the key, so the retry really retries.

use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// The response header on a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Longest key accepted, in characters (Stripe's limit; a UUID is 36).
pub const MAX_KEY_CHARS: usize = 255;

/// How long a `pending` claim lives: far longer than accepting a quiz takes (a Redis write and
/// a publisher confirm, `amqp.confirm_timeout_ms` = 5 s), short enough that a replica that died
/// mid-request frees the key soon.
const PENDING_LEASE_MS: u64 = 60_000;

/// How often a duplicate re-reads a pending record while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdempotencySettings {
    /// How long an answer is kept for replay after the first request, in seconds (24 h).
    pub ttl_secs: u64,
    /// How long a duplicate waits for the first request with its key to be accepted before
    /// answering 409, in milliseconds.
    pub wait_ms: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            ttl_secs: 24 * 3600,
            wait_ms: 2_000,
        }
    }
}

/// A validated `Idempotency-Key` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// The key in the headers, if any: 1 to 255 characters from `A-Z a-z 0-9 - _ . : + / =`,
    /// optionally in double quotes (the structured-field string form of the IETF draft).
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<Self>, ApiError> {
        let mut values = headers.get_all(HEADER);
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(ApiError::BadIdempotencyKey(
                "send one Idempotency-Key header".into(),
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadIdempotencyKey("the key must be ascii".into()))?
            .trim();
        let text = text
            .strip_prefix('"')
            .and_then(|inner| inner.strip_suffix('"'))
            .unwrap_or(text);
        if text.is_empty() || text.len() > MAX_KEY_CHARS {
            return Err(ApiError::BadIdempotencyKey(format!(
                "the key must be 1 to {MAX_KEY_CHARS} characters, got {}",
                text.len()
            )));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-_.:+/=".contains(*c)))
        {
            return Err(ApiError::BadIdempotencyKey(format!(
                "the key may hold letters, digits and - _ . : + / =, not {bad:?}"
            )));
        }
        Ok(Some(Self(text.to_owned())))
    }
}

/// The answer given to the first request, replayed to later ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub quiz_id: String,
    pub body: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Record {
    Pending {
        token: String,
        body_sha256: String,
        written_at_ms: i64,
    },
    Done {
        body_sha256: String,
        answer: StoredAnswer,
        written_at_ms: i64,
    },
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// First use: submit, then [`Idempotency::complete`] (or [`Idempotency::release`] on failure).
    Fresh(Lease),
    /// Seen before with the same body: answer this.
    Replay(StoredAnswer),
}

/// The right to submit for one key, held while the first request is accepted.
#[derive(Debug)]
pub struct Lease {
    redis_key: String,
    /// The exact pending value written, compared before completing or releasing.
    pending: String,
    body_sha256: String,
}

#[derive(Clone)]
pub struct Idempotency {
    pool: Pool,
    keys: Keys,
    settings: IdempotencySettings,
}

impl Idempotency {
    pub fn new(pool: Pool, keys: Keys, settings: IdempotencySettings) -> Self {
        Self { pool, keys, settings }
    }

    /// Claims `key` for `owner`'s request with this body, or finds the earlier answer.
    pub async fn claim(&self, owner: &str, key: &IdempotencyKey, body: &Value) -> Result<Claim, ApiError> {
        let redis_key = self.keys.idempotency(&key_digest(owner, &key.0));
        let body_sha256 = body_digest(body);
        let pending = serde_json::to_string(&Record::Pending {
            token: uuid::Uuid::new_v4().simple().to_string(),
            body_sha256: body_sha256.clone(),
            written_at_ms: common::now_ms(),
        })
        .map_err(|error| ApiError::StoreUnavailable(error.into()))?;
        let started = Instant::now();
        let wait = Duration::from_millis(self.settings.wait_ms);
        let mut connection = self.pool.get().await.map_err(redis_error)?;
        loop {
            let claimed: Option<String> = redis::cmd("SET")
                .arg(&redis_key)
                .arg(&pending)
                .arg("NX")
                .arg("PX")
                .arg(PENDING_LEASE_MS)
                .query_async(&mut connection)
                .await
                .map_err(redis_error)?;
            if claimed.is_some() {
                return Ok(Claim::Fresh(Lease {
                    redis_key,
                    pending,
                    body_sha256,
                }));
            }
            let current: Option<String> = connection.get(&redis_key).await.map_err(redis_error)?;
            // Gone between the two calls (released or expired): claim again.
            let Some(current) = current else { continue };
            let record: Record =
                serde_json::from_str(&current).map_err(|error| ApiError::StoreUnavailable(error.into()))?;
            match record {
                Record::Pending {
                    body_sha256: theirs, ..
                }
                | Record::Done {
                    body_sha256: theirs, ..
                } if theirs != body_sha256 => {
                    return Err(ApiError::IdempotencyKeyReused);
                }
                Record::Done { answer, .. } => return Ok(Claim::Replay(answer)),
                Record::Pending { .. } if started.elapsed() >= wait => {
                    return Err(ApiError::IdempotencyInProgress);
                }
                Record::Pending { .. } => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    }

    /// Stores the first request's answer for replay, unless another request took the key over
    /// after this one's lease ran out.
    pub async fn complete(&self, lease: Lease, answer: StoredAnswer) -> Result<(), RedisError> {
        const SCRIPT: &str = r"
            local current = redis.call('GET', KEYS[1])
            if current ~= false and current ~= ARGV[1] then return 0 end
            redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
            return 1";
        let done = serde_json::to_string(&Record::Done {
            body_sha256: lease.body_sha256,
            answer,
            written_at_ms: common::now_ms(),
        })?;
        let mut connection = self.pool.get().await?;
        let stored: i64 = redis::Script::new(SCRIPT)
            .key(&lease.redis_key)
            .arg(&lease.pending)
            .arg(done)
            .arg(self.settings.ttl_secs.max(1))
            .invoke_async(&mut connection)
            .await?;
        if stored == 0 {
            tracing::warn!(
                "idempotency lease ran out before the quiz was accepted; the key now names another request"
            );
        }
        Ok(())
    }

    /// Frees the key after a failed submission, so that a retry submits again.
    pub async fn release(&self, lease: Lease) {
        const SCRIPT: &str = r"
            if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
            return 0";
        let released = async {
            let mut connection = self.pool.get().await?;
            redis::Script::new(SCRIPT)
                .key(&lease.redis_key)
                .arg(&lease.pending)
                .invoke_async::<i64>(&mut connection)
                .await?;
            Ok::<_, RedisError>(())
        };
        if let Err(error) = released.await {
            tracing::warn!(%error, "idempotency key not released; it frees itself when its lease runs out");
        }
    }
}

fn redis_error(error: impl Into<RedisError>) -> ApiError {
    ApiError::StoreUnavailable(error.into())
}

/// The owner and the key, length-prefixed so no two pairs hash alike.
fn key_digest(owner: &str, key: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(owner.len().to_string());
    hasher.update(":");
    hasher.update(owner);
    hasher.update(":");
    hasher.update(key);
    hex::encode(hasher.finalize())
}

/// SHA-256 of the body's canonical form: object keys sorted, no insignificant whitespace,
/// so the same JSON sent with other spacing or key order is the same body.
pub fn body_digest(body: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(body, &mut canonical);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|left, right| left.0.cmp(right.0));
            out.push('{');
            for (position, (key, value)) in entries.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use actix_web::http::header::{HeaderName, HeaderValue};
    use serde_json::json;

    use super::*;

    fn parse(value: &str) -> Result<Option<IdempotencyKey>, ApiError> {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static(HEADER),
            HeaderValue::from_str(value).unwrap(),
        );
        IdempotencyKey::from_headers(&headers)
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(parse("a1-b2").unwrap(), Some(IdempotencyKey("a1-b2".into())));
        assert_eq!(parse("\"a1-b2\"").unwrap(), Some(IdempotencyKey("a1-b2".into())));
        assert!(parse("").is_err());
        assert!(parse("has space").is_err());
        assert!(parse(&"x".repeat(256)).is_err());
        assert!(parse(&"x".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::from_headers(&HeaderMap::new()).unwrap(), None);
    }

    #[test]
    fn the_canonical_body_ignores_key_order_and_spacing() {
        let one: Value = serde_json::from_str(r#"{"b": [1, {"y": 2, "x": "é"}], "a": null}"#).unwrap();
        let two = json!({"a": null, "b": [1, {"x": "é", "y": 2}]});
        assert_eq!(body_digest(&one), body_digest(&two));
        assert_ne!(
            body_digest(&one),
            body_digest(&json!({"a": null, "b": [{"x": "é", "y": 2}, 1]}))
        );
        assert_ne!(key_digest("ab", "c"), key_digest("a", "bc"));
    }
}
