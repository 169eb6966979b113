//! Finished quizzes, rendered once and served from memory.
//!
//! A completed or failed quiz no longer changes (a terminal status sticks, and its answers
//! are recorded before the terminal event), while clients that poll keep reading it. Its
//! rendered body and owner are kept, so such a read costs no Redis round trip and no
//! rendering. The one change left is a DELETE: on this replica it drops the entry at once;
//! for another replica's, an entry older than `read_cache.ttl_ms` is revalidated (does the
//! quiz still exist?) by one background check while it keeps being served.
//!
//! Revalidating instead of expiring matters under load: when a hot entry expired, every
//! request in flight for that quiz missed at once and went to Redis together (owner, quiz,
//! rendering) until one of them re-inserted it; `cargo xtask bench gateway` showed the read
//! path's p99 at half load at 23x the bare handler's at the same rate, from those stampedes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[read_cache]`: the gateway's in-memory copy of finished quizzes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadCacheSettings {
    /// How long a rendered finished quiz is served before one background check that it
    /// still exists (0 turns the cache off); about the longest a deletion through another
    /// gateway replica goes unseen here.
    pub ttl_ms: u64,
    /// Finished quizzes kept at most (least recently used go first).
    pub max_entries: u64,
}

impl Default for ReadCacheSettings {
    fn default() -> Self {
        Self {
            ttl_ms: 2_000,
            max_entries: 10_000,
        }
    }
}

/// One finished quiz as `GET /v1/quizzes/{id}` answers it.
#[derive(Debug)]
pub struct Rendered {
    /// The key id that created it (`None`: no owner record; then only admins read it).
    pub owner: Option<String>,
    pub body: bytes::Bytes,
}

/// A cached quiz and when it was last known to exist.
#[derive(Debug)]
struct Entry {
    rendered: Arc<Rendered>,
    /// Milliseconds since [`FinishedQuizzes::epoch`] of the last confirmation.
    confirmed_ms: AtomicU64,
    /// Set while one request's background check is running, so there is only one.
    revalidating: AtomicBool,
}

/// A cache hit: the quiz, and whether the caller should start the existence check.
pub struct Hit {
    pub rendered: Arc<Rendered>,
    pub revalidate: bool,
}

#[derive(Clone)]
pub struct FinishedQuizzes {
    cache: Option<moka::sync::Cache<String, Arc<Entry>>>,
    ttl: Duration,
    epoch: Instant,
}

impl FinishedQuizzes {
    pub fn new(settings: &ReadCacheSettings) -> Self {
        let ttl = Duration::from_millis(settings.ttl_ms);
        let cache = (settings.ttl_ms > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                // Entries nobody reads go, so a replica does not hold every quiz it ever served.
                .time_to_idle((ttl * 30).max(Duration::from_secs(60)))
                .build()
        });
        Self {
            cache,
            ttl,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The cached quiz, if any. `revalidate` is true for exactly one caller once the entry
    /// is older than the TTL; that caller checks the quiz still exists and reports with
    /// [`Self::confirmed`] or [`Self::forget`] (or [`Self::unconfirmed`] when it could not tell).
    pub fn get(&self, quiz_id: &str) -> Option<Hit> {
        let entry = self.cache.as_ref()?.get(quiz_id)?;
        let age = self
            .now_ms()
            .saturating_sub(entry.confirmed_ms.load(Ordering::Relaxed));
        let revalidate =
            u128::from(age) >= self.ttl.as_millis() && !entry.revalidating.swap(true, Ordering::AcqRel);
        Some(Hit {
            rendered: Arc::clone(&entry.rendered),
            revalidate,
        })
    }

    pub fn insert(&self, quiz_id: &str, rendered: Rendered) {
        if let Some(cache) = &self.cache {
            cache.insert(
                quiz_id.to_owned(),
                Arc::new(Entry {
                    rendered: Arc::new(rendered),
                    confirmed_ms: AtomicU64::new(self.now_ms()),
                    revalidating: AtomicBool::new(false),
                }),
            );
        }
    }

    /// The quiz still exists: serve it for another TTL.
    pub fn confirmed(&self, quiz_id: &str) {
        self.finish_check(quiz_id, true);
    }

    /// The check failed (Redis unavailable): the next read past the TTL tries again.
    pub fn unconfirmed(&self, quiz_id: &str) {
        self.finish_check(quiz_id, false);
    }

    fn finish_check(&self, quiz_id: &str, exists: bool) {
        if let Some(entry) = self.cache.as_ref().and_then(|cache| cache.get(quiz_id)) {
            if exists {
                entry.confirmed_ms.store(self.now_ms(), Ordering::Relaxed);
            }
            entry.revalidating.store(false, Ordering::Release);
        }
    }

    /// Forgets a quiz (deleted through this replica, or found gone by a check).
    pub fn forget(&self, quiz_id: &str) {
        if let Some(cache) = &self.cache {
            cache.invalidate(quiz_id);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn rendered(body: &'static str) -> Rendered {
        Rendered {
            owner: Some("alice".into()),
            body: bytes::Bytes::from_static(body.as_bytes()),
        }
    }

    #[test]
    fn keeps_and_forgets_entries() {
        let cache = FinishedQuizzes::new(&ReadCacheSettings::default());
        assert!(cache.get("q").is_none());
        cache.insert("q", rendered("{}"));
        let hit = cache.get("q").unwrap();
        assert_eq!(hit.rendered.owner.as_deref(), Some("alice"));
        assert!(!hit.revalidate, "fresh entries need no check");
        cache.forget("q");
        assert!(cache.get("q").is_none());
    }

    #[test]
    fn a_zero_ttl_turns_it_off() {
        let cache = FinishedQuizzes::new(&ReadCacheSettings {
            ttl_ms: 0,
            ..Default::default()
        });
        cache.insert("q", rendered("{}"));
        assert!(cache.get("q").is_none());
    }

    #[test]
    fn past_the_ttl_one_reader_revalidates_while_all_are_served() {
        let cache = FinishedQuizzes::new(&ReadCacheSettings {
            ttl_ms: 50,
            ..Default::default()
        });
        cache.insert("q", rendered("{}"));
        std::thread::sleep(Duration::from_millis(120));
        let first = cache.get("q").unwrap();
        let second = cache.get("q").unwrap();
        assert!(
            first.revalidate && !second.revalidate,
            "exactly one check at a time"
        );
        // Redis could not tell: the next reader tries again.
        cache.unconfirmed("q");
        assert!(cache.get("q").unwrap().revalidate);
        // Confirmed: served without a check for another TTL.
        cache.confirmed("q");
        assert!(!cache.get("q").unwrap().revalidate);
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("q").unwrap().revalidate);
        // Found deleted: gone.
        cache.forget("q");
        assert!(cache.get("q").is_none());
    }
}
