//! `DELETE /v1/quizzes/{id}`: a finished quiz goes with everything recorded about it.
//!
//! One Lua script checks and deletes atomically: the quiz hash, its answers, events and sequence
//! counter, its owner record and its entries in the owner's, the global and the open-quiz index.
//! Cached answers (`answer:v1:…`) stay: they are content-addressed and shared with every quiz
//! asking the same.
//!
//! A quiz still `queued`, `scraping` or `analyzing` is not deleted (409, retry once it ended):
//! the scraper and the analyzer write to it until it ends, and a write after a delete would
//! bring back a partial quiz. Terminal statuses are never overwritten and the workers skip
//! quizzes that ended or no longer exist, so a deleted finished quiz stays deleted.

use common::keys::Keys;
use common::redis::Pool;
use common::redis::RedisError;
use common::views::QuizStatus;

/// What a delete did.
#[derive(Debug, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// No such quiz, or (for a non-admin) not the caller's.
    NotFound,
    /// Still running; nothing was deleted.
    InProgress(QuizStatus),
}

/// Deletes `quiz_id` if it ended and, unless `expected_owner` is `None` (admin), belongs to
/// `expected_owner`. `owner` is the owner record as read before (admins' deletes need it to
/// find the owner's index).
pub async fn delete_quiz(
    pool: &Pool,
    keys: &Keys,
    quiz_id: &str,
    owner: Option<&str>,
    expected_owner: Option<&str>,
) -> Result<Deleted, RedisError> {
    // KEYS: quiz, answers, events, seq, owner record, owner's index, global index, open index.
    // ARGV: quiz id, expected owner ('' = any).
    // Returns 1 deleted, 0 not found, or the running status.
    const SCRIPT: &str = r"
        if ARGV[2] ~= '' and redis.call('GET', KEYS[5]) ~= ARGV[2] then return 0 end
        local status = redis.call('HGET', KEYS[1], 'status')
        if status ~= false and status ~= 'completed' and status ~= 'failed' then return status end
        redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5])
        redis.call('ZREM', KEYS[6], ARGV[1])
        redis.call('ZREM', KEYS[7], ARGV[1])
        redis.call('ZREM', KEYS[8], ARGV[1])
        if status == false then return 0 end
        return 1";
    let owner_index = owner.map_or_else(|| keys.all_quizzes(), |owner| keys.owner_quizzes(owner));
    let mut connection = pool.get().await?;
    let outcome: redis::Value = redis::Script::new(SCRIPT)
        .key(keys.quiz(quiz_id))
        .key(keys.quiz_answers(quiz_id))
        .key(keys.quiz_events(quiz_id))
        .key(keys.quiz_seq(quiz_id))
        .key(keys.quiz_owner(quiz_id))
        .key(owner_index)
        .key(keys.all_quizzes())
        // A finished quiz has left the sweeper's open index already; this only tidies up.
        .key(keys.open_quizzes())
        .arg(quiz_id)
        .arg(expected_owner.unwrap_or(""))
        .invoke_async(&mut connection)
        .await?;
    Ok(match outcome {
        redis::Value::Int(1) => Deleted::Deleted,
        redis::Value::BulkString(status) => {
            match std::str::from_utf8(&status).ok().and_then(QuizStatus::parse) {
                Some(status) => Deleted::InProgress(status),
                None => Deleted::NotFound,
            }
        }
        _ => Deleted::NotFound,
    })
}
