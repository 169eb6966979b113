//! Optional requests-per-minute and tokens-per-minute budgets for the model this client calls,
//! so a quiz burst stays under a provider's rate limits instead of collecting 429s.
//!
//! Token buckets (governor) refilled evenly over the minute, with a burst of one second's
//! share: a budget of 600 requests/min lets 10 go at once, then one every 100 ms. Tokens are
//! charged before a call from an estimate (prompt characters / 4 + the completion cap),
//! because the real count is only known afterwards; an estimate above the real use errs on the
//! side of staying under the provider's limit. The budgets are per replica: give each replica
//! its share of the account's limits.

use std::num::NonZeroU32;
use std::time::Instant;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::LlmError;

pub struct Budgets {
    requests: Option<DefaultDirectRateLimiter>,
    tokens: Option<(DefaultDirectRateLimiter, NonZeroU32)>,
}

/// A per-minute quota refilled evenly, bursting one second's share (at least one).
fn per_minute(limit: NonZeroU32) -> Quota {
    let burst = NonZeroU32::new(limit.get().div_ceil(60)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(limit).allow_burst(burst)
}

impl Budgets {
    pub fn new(requests_per_minute: Option<u32>, tokens_per_minute: Option<u32>) -> Self {
        Self {
            requests: requests_per_minute
                .and_then(NonZeroU32::new)
                .map(|limit| RateLimiter::direct(per_minute(limit))),
            tokens: tokens_per_minute.and_then(NonZeroU32::new).map(|limit| {
                let quota = per_minute(limit);
                (RateLimiter::direct(quota), quota.burst_size())
            }),
        }
    }

    /// Waits until one more request of about `estimated_tokens` fits both budgets; returns how
    /// long it waited. A request bigger than the token budget's burst is charged the whole
    /// burst (it could never fit otherwise), so it waits for a full bucket instead of failing.
    pub async fn admit(&self, estimated_tokens: u32) -> Result<std::time::Duration, LlmError> {
        let started = Instant::now();
        if let Some(requests) = &self.requests {
            requests.until_ready().await;
        }
        if let Some((tokens, burst)) = &self.tokens {
            let charge = NonZeroU32::new(estimated_tokens.max(1))
                .unwrap_or(NonZeroU32::MIN)
                .min(*burst);
            tokens
                .until_n_ready(charge)
                .await
                .map_err(|error| LlmError::Transport(format!("token budget: {error}")))?;
        }
        Ok(started.elapsed())
    }
}

/// What a call is charged against the token budget before it is made.
pub fn estimate_tokens(messages: &[serde_json::Value], max_tokens: u32) -> u32 {
    let characters: usize = messages
        .iter()
        .filter_map(|message| message.get("content").and_then(serde_json::Value::as_str))
        .map(str::len)
        .sum();
    u32::try_from(characters.div_ceil(4))
        .unwrap_or(u32::MAX)
        .saturating_add(max_tokens)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    #[test]
    fn quotas_refill_over_the_minute_with_one_seconds_burst() {
        let quota = per_minute(NonZeroU32::new(600).unwrap());
        assert_eq!(quota.burst_size().get(), 10);
        assert_eq!(quota.replenish_interval(), std::time::Duration::from_millis(100));
        // A small budget still lets one call through.
        assert_eq!(per_minute(NonZeroU32::new(5).unwrap()).burst_size().get(), 1);
    }

    #[test]
    fn a_spent_budget_refuses_until_it_refills() {
        let budgets = Budgets::new(Some(120), None);
        let requests = budgets.requests.as_ref().unwrap();
        assert!(requests.check().is_ok());
        assert!(requests.check().is_ok());
        assert!(requests.check().is_err(), "burst of two per second at 120/min");
    }

    #[test]
    fn tokens_are_estimated_from_the_prompt_and_the_completion_cap() {
        let messages = [
            json!({"role": "system", "content": "abcd".repeat(10)}),
            json!({"role": "user", "content": "xyz"}),
        ];
        assert_eq!(estimate_tokens(&messages, 160), 11 + 160);
    }

    #[tokio::test]
    async fn no_budget_means_no_wait() {
        let waited = Budgets::new(None, None).admit(10_000).await.unwrap();
        assert!(waited < std::time::Duration::from_millis(50));
    }
}
