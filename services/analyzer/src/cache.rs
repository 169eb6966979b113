//! The answer cache: the same question is never paid for twice.
//!
//! Key: a versioned prefix plus SHA-256 over every field that changes the answer
//! (model, prompt version, kind, normalised question, normalised options in a
//! canonical order), each length-prefixed so that no two field lists collide.
//! Options are sorted before hashing, so a quiz that shuffles them hits the same
//! entry; the entry stores selections in that canonical order and each lookup
//! maps them back to the question's own order.

use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use common::views::{QuestionKind, QuestionSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::llm::prompt::PROMPT_VERSION;

/// Where one question's answer lives, and how its options map to the canonical order.
#[derive(Debug, Clone)]
pub struct CacheKey {
    /// Hex SHA-256 of everything that changes the answer.
    pub digest: String,
    pub redis_key: String,
    /// `canonical_order[position]` is the question's own index of the option at that canonical position.
    canonical_order: Vec<usize>,
}

impl CacheKey {
    /// `votes` is part of the key: a majority of five samples is a different answer than one sample.
    pub fn new(keys: &Keys, model: &str, question: &QuestionSpec, votes: u32) -> Self {
        let options: Vec<String> = question.options.iter().map(|option| normalize(option)).collect();
        let mut canonical_order: Vec<usize> = (0..options.len()).collect();
        canonical_order.sort_by(|&a, &b| options[a].cmp(&options[b]));
        let kind = match question.kind {
            QuestionKind::Single => "single",
            QuestionKind::Multiple => "multiple",
            QuestionKind::TrueFalse => "true_false",
        };
        let mut hasher = Sha256::new();
        let mut field = |bytes: &[u8]| {
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(bytes);
        };
        field(model.as_bytes());
        field(PROMPT_VERSION.as_bytes());
        field(&votes.max(1).to_le_bytes());
        field(kind.as_bytes());
        field(normalize(&question.text).as_bytes());
        field(&(options.len() as u64).to_le_bytes());
        for &index in &canonical_order {
            field(options[index].as_bytes());
        }
        let digest = hex::encode(hasher.finalize());
        Self {
            redis_key: keys.cached_answer(&digest),
            digest,
            canonical_order,
        }
    }

    /// Question indices → canonical positions.
    pub fn to_canonical(&self, selected: &[u32]) -> Vec<u32> {
        let mut positions: Vec<u32> = selected
            .iter()
            .filter_map(|&index| self.canonical_order.iter().position(|&own| own == index as usize))
            .filter_map(|position| u32::try_from(position).ok())
            .collect();
        positions.sort_unstable();
        positions
    }

    /// Canonical positions → question indices; `None` if the entry does not fit this question.
    pub fn from_canonical(&self, positions: &[u32]) -> Option<Vec<u32>> {
        let mut selected = positions
            .iter()
            .map(|&position| {
                self.canonical_order
                    .get(position as usize)
                    .and_then(|&own| u32::try_from(own).ok())
            })
            .collect::<Option<Vec<u32>>>()?;
        selected.sort_unstable();
        Some(selected)
    }
}

/// NFKC, lower case, whitespace collapsed: spellings that cannot change the answer.
pub fn normalize(text: &str) -> String {
    let folded: String = text.nfkc().collect::<String>().to_lowercase();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A cached answer, selections in canonical order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub canonical_selected: Vec<u32>,
    pub confidence: Option<f64>,
    pub confidence_source: Option<String>,
    pub rationale: String,
    pub model: String,
    /// What the original call cost, reported again (never re-paid) on a hit.
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub written_at_ms: i64,
}

impl AnswerCache {
    /// One entry, for waiters polling while another caller asks the LLM.
    pub async fn get(&self, key: &CacheKey) -> Result<Option<CachedAnswer>, RedisError> {
        Ok(self.get_many(std::slice::from_ref(key)).await?.pop().flatten())
    }
}

#[derive(Clone)]
pub struct AnswerCache {
    pool: Pool,
    ttl_secs: u64,
}

impl AnswerCache {
    pub fn new(pool: Pool, ttl_secs: u64) -> Self {
        Self { pool, ttl_secs }
    }

    /// One `MGET` for all keys; an unreadable entry counts as a miss.
    pub async fn get_many(&self, keys: &[CacheKey]) -> Result<Vec<Option<CachedAnswer>>, RedisError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut connection = self.pool.get().await?;
        let names: Vec<&str> = keys.iter().map(|key| key.redis_key.as_str()).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&names)
            .query_async(&mut connection)
            .await?;
        Ok(values
            .into_iter()
            .map(|value| value.and_then(|text| serde_json::from_str(&text).ok()))
            .collect())
    }

    pub async fn put(&self, key: &CacheKey, answer: &CachedAnswer) -> Result<(), RedisError> {
        let mut connection = self.pool.get().await?;
        redis::cmd("SET")
            .arg(&key.redis_key)
            .arg(serde_json::to_string(answer)?)
            .arg("EX")
            .arg(self.ttl_secs.max(1))
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn question(text: &str, options: &[&str]) -> QuestionSpec {
        QuestionSpec {
            text: text.into(),
            options: options.iter().map(|o| (*o).to_owned()).collect(),
            kind: QuestionKind::Single,
        }
    }

    impl CacheKey {
        fn new_for_test(keys: &Keys, model: &str, question: &QuestionSpec) -> Self {
            Self::new(keys, model, question, 1)
        }
    }

    #[test]
    fn votes_change_the_key() {
        let keys = Keys::new("t:");
        let q = question("q", &["a", "b"]);
        assert_ne!(
            CacheKey::new(&keys, "m", &q, 1).redis_key,
            CacheKey::new(&keys, "m", &q, 3).redis_key
        );
    }

    #[test]
    fn spelling_and_option_order_do_not_change_the_key() {
        let keys = Keys::new("t:");
        let a = CacheKey::new_for_test(&keys, "m", &question("What is  2+2?", &["Four", "Five", "Three"]));
        let b = CacheKey::new_for_test(&keys, "m", &question("what is 2＋2?", &["three", "FOUR", "five"]));
        assert_eq!(a.redis_key, b.redis_key);
        let c = CacheKey::new_for_test(
            &keys,
            "other-model",
            &question("What is 2+2?", &["Four", "Five", "Three"]),
        );
        assert_ne!(a.redis_key, c.redis_key);
    }

    #[test]
    fn selections_map_back_to_each_questions_own_order() {
        let keys = Keys::new("t:");
        let a = CacheKey::new_for_test(&keys, "m", &question("q", &["Four", "Five", "Three"]));
        let b = CacheKey::new_for_test(&keys, "m", &question("q", &["Three", "Four", "Five"]));
        let canonical = a.to_canonical(&[0]); // "Four"
        assert_eq!(b.from_canonical(&canonical).unwrap(), vec![1]);
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        let keys = Keys::new("t:");
        let a = CacheKey::new_for_test(&keys, "m", &question("a b", &["c", "d"]));
        let b = CacheKey::new_for_test(&keys, "m", &question("a", &["b c", "d"]));
        assert_ne!(a.redis_key, b.redis_key);
    }
}
