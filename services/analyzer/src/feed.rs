//! The questions of one quiz still to be asked, handed out in order to the quiz's lanes
//! (its calls in flight), with the single-flight lookups of the next few already running.
//!
//! A lone question's lookup (its lease and a cache read, one Redis round trip) starts
//! `depth` questions ahead of the lane that will ask it, so a lane that finishes a call goes
//! straight to the LLM with the next one. Batches take their leases themselves.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::cache::CacheKey;
use crate::single_flight::{Lookup, SingleFlight};

/// The questions of one LLM call: one question, or a batch.
pub type Chunk = Vec<(u32, CacheKey)>;

/// A chunk with its lookup, when it is a lone question.
pub type Next = (Chunk, Option<JoinHandle<Lookup>>);

pub struct Feed {
    state: Mutex<State>,
}

struct State {
    waiting: std::vec::IntoIter<Chunk>,
    ahead: VecDeque<Next>,
    depth: usize,
    flight: SingleFlight,
}

impl Feed {
    /// `depth` lookups are kept running ahead of the lanes (the number of lanes does well).
    pub fn new(chunks: Vec<Chunk>, depth: usize, flight: SingleFlight) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: chunks.into_iter(),
                ahead: VecDeque::new(),
                depth: depth.max(1),
                flight,
            }),
        }
    }

    /// The next chunk to ask, in order; `None` once all are handed out. Lookups are spawned
    /// in the caller's span, so their logs carry the quiz.
    pub fn next(&self) -> Option<Next> {
        // Nothing below can panic with the lock held, but a poisoned queue is still a queue.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.top_up();
        let next = state.ahead.pop_front();
        state.top_up();
        next
    }
}

impl State {
    fn top_up(&mut self) {
        while self.ahead.len() < self.depth {
            let Some(chunk) = self.waiting.next() else {
                return;
            };
            let lookup = match chunk.as_slice() {
                [(_, key)] => {
                    let (flight, key) = (self.flight.clone(), key.clone());
                    Some(tokio::spawn(
                        async move { flight.acquire_or_read(&key.digest, &key.redis_key).await }
                            .in_current_span(),
                    ))
                }
                _ => None,
            };
            self.ahead.push_back((chunk, lookup));
        }
    }
}
