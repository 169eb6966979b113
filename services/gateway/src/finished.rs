//! Finished quizzes, rendered once and served from memory.
//!
//! A completed or failed quiz no longer changes (a terminal status sticks, and its answers
//! are recorded before the terminal event), while clients that poll keep reading it. Its
//! rendered body and owner are kept for `read_cache.ttl_ms`, so such a read costs no Redis
//! round trip and no rendering. A DELETE on this replica drops the entry at once; on another
//! replica the deleted quiz can still be served for up to the TTL, which is why it is short.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[read_cache]`: the gateway's in-memory copy of finished quizzes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ReadCacheSettings {
    /// How long a rendered finished quiz is served from memory (0 turns the cache off); also
    /// the longest a deletion on another gateway replica goes unseen here.
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

#[derive(Clone)]
pub struct FinishedQuizzes {
    cache: Option<moka::sync::Cache<String, Arc<Rendered>>>,
}

impl FinishedQuizzes {
    pub fn new(settings: &ReadCacheSettings) -> Self {
        let cache = (settings.ttl_ms > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(Duration::from_millis(settings.ttl_ms))
                .build()
        });
        Self { cache }
    }

    pub fn get(&self, quiz_id: &str) -> Option<Arc<Rendered>> {
        self.cache.as_ref()?.get(quiz_id)
    }

    pub fn insert(&self, quiz_id: &str, rendered: Rendered) {
        if let Some(cache) = &self.cache {
            cache.insert(quiz_id.to_owned(), Arc::new(rendered));
        }
    }

    /// Forgets a quiz (deleted through this replica).
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
        assert_eq!(cache.get("q").unwrap().owner.as_deref(), Some("alice"));
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
    fn entries_expire_after_the_ttl() {
        let cache = FinishedQuizzes::new(&ReadCacheSettings {
            ttl_ms: 50,
            ..Default::default()
        });
        cache.insert("q", rendered("{}"));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get("q").is_none());
    }
}
