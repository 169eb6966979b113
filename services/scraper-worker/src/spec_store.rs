//! Writes an extracted quiz's spec back into `quiz:{id}`: the gateway stored a URL quiz with no questions.

use common::redis::RedisError;
use common::store::QuizStore;
use common::views::QuizSpec;
use redis::AsyncCommands;

/// Replaces the `spec` field of an existing quiz record (the record's TTL is already set by the gateway).
pub async fn write_spec(store: &QuizStore, quiz_id: &str, spec: &QuizSpec) -> Result<(), RedisError> {
    let mut connection = store.pool().get().await?;
    let json = serde_json::to_string(spec)?;
    let _: () = connection
        .hset_multiple(
            store.keys().quiz(quiz_id),
            &[("spec", json), ("updated_at_ms", now_ms().to_string())],
        )
        .await?;
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}
