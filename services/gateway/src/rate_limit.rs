//! Per-caller token buckets (governor): a general budget for every API call and a stricter one
//! for submissions, plus the `RateLimit-Policy` / `RateLimit` headers that describe them.
//!
//! Header syntax follows draft-ietf-httpapi-ratelimit-headers-09 (§3 `RateLimit-Policy`, §4
//! `RateLimit`), structured-field lists of items named by policy:
//! `RateLimit-Policy: "default";q=20;w=1, "submit";q=60;w=60` and
//! `RateLimit: "submit";r=9;t=6`. Token buckets are not fixed windows: `q` per `w` seconds is
//! the sustained rate, `r` is how many calls the bucket allows right now (at most the burst),
//! `t` the seconds until it is full again (or, when empty, until the next call is allowed).

use std::num::NonZeroU32;
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// Callers tracked before forgetting those whose buckets are full again (bounds memory when
/// limiting by client address).
const RETAIN_ABOVE: usize = 10_000;

/// The `[rate_limit]` settings; every number must be at least 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Sustained API calls per second per key (per client address when auth is disabled).
    pub requests_per_second: u32,
    /// Calls a key may make at once before the per-second rate applies.
    pub burst: u32,
    /// Sustained submissions (`POST /v1/quizzes`, `POST /api/analyze`) per minute per key;
    /// each one is paid LLM work, hence stricter.
    pub submissions_per_minute: u32,
    /// Submissions a key may make at once before the per-minute rate applies.
    pub submission_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 20,
            burst: 40,
            submissions_per_minute: 60,
            submission_burst: 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("rate_limit.{0} must be at least 1")]
pub struct RateLimitSettingsError(&'static str);

/// Which bucket a call draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Every API call.
    General,
    /// Submissions, on top of the general budget.
    Submission,
}

/// One policy's state after a decision, for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyState {
    pub name: &'static str,
    pub quota: u32,
    pub window_secs: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

/// The policies a request was checked against; kept in the request's extensions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitStatus {
    pub policies: Vec<PolicyState>,
}

/// A refusal: the policies as they stand, and how long until the exhausted one allows a call.
#[derive(Debug, Clone)]
pub struct Exceeded {
    pub status: RateLimitStatus,
    pub retry_after_secs: u64,
}

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

struct Bucket {
    name: &'static str,
    quota: Quota,
    /// The advertised `q` and `w`.
    per_window: u32,
    window_secs: u32,
    limiter: KeyedLimiter,
}

pub struct RateLimits {
    general: Bucket,
    submission: Bucket,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(settings: &RateLimitSettings) -> Result<Self, RateLimitSettingsError> {
        let non_zero = |value: u32, name| NonZeroU32::new(value).ok_or(RateLimitSettingsError(name));
        let general = Quota::per_second(non_zero(settings.requests_per_second, "requests_per_second")?)
            .allow_burst(non_zero(settings.burst, "burst")?);
        let submission = Quota::per_minute(non_zero(
            settings.submissions_per_minute,
            "submissions_per_minute",
        )?)
        .allow_burst(non_zero(settings.submission_burst, "submission_burst")?);
        Ok(Self {
            general: Bucket::new("default", general, settings.requests_per_second, 1),
            submission: Bucket::new("submit", submission, settings.submissions_per_minute, 60),
            clock: DefaultClock::default(),
        })
    }

    /// Takes one call from `caller`'s bucket for `budget`; `status` collects every policy checked.
    pub fn check(&self, caller: &str, budget: Budget, status: &mut RateLimitStatus) -> Result<(), Exceeded> {
        let bucket = match budget {
            Budget::General => &self.general,
            Budget::Submission => &self.submission,
        };
        if bucket.limiter.len() > RETAIN_ABOVE {
            bucket.limiter.retain_recent();
        }
        match bucket.limiter.check_key(&caller.to_owned()) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill = bucket.quota.replenish_interval()
                    * bucket.quota.burst_size().get().saturating_sub(remaining);
                status.policies.push(bucket.state(remaining, ceil_secs(refill)));
                Ok(())
            }
            Err(not_until) => {
                let retry_after_secs = ceil_secs(not_until.wait_time_from(self.clock.now())).max(1);
                status.policies.push(bucket.state(0, retry_after_secs));
                Err(Exceeded {
                    status: status.clone(),
                    retry_after_secs,
                })
            }
        }
    }
}

impl Bucket {
    fn new(name: &'static str, quota: Quota, per_window: u32, window_secs: u32) -> Self {
        Self {
            name,
            quota,
            per_window,
            window_secs,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
        }
    }

    fn state(&self, remaining: u32, reset_secs: u64) -> PolicyState {
        PolicyState {
            name: self.name,
            quota: self.per_window,
            window_secs: self.window_secs,
            remaining,
            reset_secs,
        }
    }
}

/// Whole seconds, rounded up, as `Retry-After` and `t` need.
fn ceil_secs(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    if duration.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    }
}

impl RateLimitStatus {
    /// The two header values, or `None` when no policy was checked.
    pub fn headers(&self) -> Option<[(HeaderName, HeaderValue); 2]> {
        if self.policies.is_empty() {
            return None;
        }
        let policy = self
            .policies
            .iter()
            .map(|state| format!("\"{}\";q={};w={}", state.name, state.quota, state.window_secs))
            .collect::<Vec<_>>()
            .join(", ");
        let current = self
            .policies
            .iter()
            .map(|state| format!("\"{}\";r={};t={}", state.name, state.remaining, state.reset_secs))
            .collect::<Vec<_>>()
            .join(", ");
        Some([
            (
                HeaderName::from_static("ratelimit-policy"),
                HeaderValue::from_str(&policy).ok()?,
            ),
            (
                HeaderName::from_static("ratelimit"),
                HeaderValue::from_str(&current).ok()?,
            ),
        ])
    }
}

/// Middleware: copies the status the `Caller` extractor left in the request onto the response,
/// unless the response (a 429) already carries it.
pub async fn add_headers(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    let status = response.request().extensions().get::<RateLimitStatus>().cloned();
    if let Some(headers) = status.as_ref().and_then(RateLimitStatus::headers) {
        for (name, value) in headers {
            if !response.headers().contains_key(&name) {
                response.headers_mut().insert(name, value);
            }
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use super::*;

    fn tiny() -> RateLimits {
        RateLimits::new(&RateLimitSettings {
            requests_per_second: 100,
            burst: 100,
            submissions_per_minute: 1,
            submission_burst: 2,
        })
        .unwrap()
    }

    #[test]
    fn refuses_past_the_burst_and_says_when_to_retry() {
        let limits = tiny();
        let mut status = RateLimitStatus::default();
        limits.check("alice", Budget::Submission, &mut status).unwrap();
        assert_eq!(status.policies[0].remaining, 1);
        limits
            .check("alice", Budget::Submission, &mut RateLimitStatus::default())
            .unwrap();
        let refused = limits
            .check("alice", Budget::Submission, &mut RateLimitStatus::default())
            .unwrap_err();
        assert!((1..=60).contains(&refused.retry_after_secs));
        assert_eq!(refused.status.policies[0].remaining, 0);
        // Buckets are per caller.
        limits
            .check("bob", Budget::Submission, &mut RateLimitStatus::default())
            .unwrap();
    }

    #[test]
    fn headers_use_the_structured_field_syntax() {
        let limits = tiny();
        let mut status = RateLimitStatus::default();
        limits.check("alice", Budget::General, &mut status).unwrap();
        limits.check("alice", Budget::Submission, &mut status).unwrap();
        let [(policy_name, policy), (current_name, current)] = status.headers().unwrap();
        assert_eq!(policy_name.as_str(), "ratelimit-policy");
        assert_eq!(policy, "\"default\";q=100;w=1, \"submit\";q=1;w=60");
        assert_eq!(current_name.as_str(), "ratelimit");
        assert_eq!(current, "\"default\";r=99;t=1, \"submit\";r=1;t=60");
    }

    #[test]
    fn zero_budgets_are_refused() {
        let settings = RateLimitSettings {
            burst: 0,
            ..Default::default()
        };
        assert_eq!(
            RateLimits::new(&settings).err().unwrap().to_string(),
            "rate_limit.burst must be at least 1"
        );
    }
}
