//! A circuit breaker per provider: after `threshold` consecutive failures it opens and
//! questions fail fast with a clear reason instead of queueing behind a dead endpoint;
//! after `cooldown` one probe call is let through, and its outcome closes or reopens it.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        consecutive_failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is in flight; everyone else is turned away until it reports.
    HalfOpen,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    /// The breaker is open; the next probe is allowed after this long.
    Rejected {
        retry_in: Duration,
    },
}

pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed {
                consecutive_failures: 0,
            }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    pub fn admit(&self) -> Admission {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *state {
            State::Closed { .. } => Admission::Allowed,
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::HalfOpen;
                    Admission::Allowed
                } else {
                    Admission::Rejected {
                        retry_in: until - now,
                    }
                }
            }
            State::HalfOpen => Admission::Rejected {
                retry_in: self.cooldown,
            },
        }
    }

    pub fn record_success(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !matches!(
            *state,
            State::Closed {
                consecutive_failures: 0
            }
        ) {
            crate::metrics::breaker_open(false);
        }
        *state = State::Closed {
            consecutive_failures: 0,
        };
    }

    pub fn record_failure(&self) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let open = match *state {
            State::Closed { consecutive_failures } if consecutive_failures + 1 < self.threshold => {
                *state = State::Closed {
                    consecutive_failures: consecutive_failures + 1,
                };
                false
            }
            // The threshold is reached, or the half-open probe failed: (re)open.
            State::Closed { .. } | State::HalfOpen => true,
            State::Open { .. } => false,
        };
        if open {
            *state = State::Open {
                until: Instant::now() + self.cooldown,
            };
            crate::metrics::breaker_open(true);
            tracing::warn!(
                cooldown_ms = self.cooldown.as_millis() as u64,
                "llm circuit breaker opened"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let breaker = Breaker::new(3, Duration::from_millis(30));
        for _ in 0..2 {
            breaker.record_failure();
            assert_eq!(breaker.admit(), Admission::Allowed);
        }
        breaker.record_failure();
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
        std::thread::sleep(Duration::from_millis(40));
        // One probe goes through; a second caller waits for its verdict.
        assert_eq!(breaker.admit(), Admission::Allowed);
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
        breaker.record_failure();
        assert!(matches!(breaker.admit(), Admission::Rejected { .. }));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(breaker.admit(), Admission::Allowed);
        breaker.record_success();
        assert_eq!(breaker.admit(), Admission::Allowed);
        assert_eq!(breaker.admit(), Admission::Allowed);
    }

    #[test]
    fn a_success_resets_the_count() {
        let breaker = Breaker::new(2, Duration::from_secs(60));
        breaker.record_failure();
        breaker.record_success();
        breaker.record_failure();
        assert_eq!(breaker.admit(), Admission::Allowed);
    }
}
