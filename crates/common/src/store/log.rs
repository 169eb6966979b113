//! A quiz's event log: sequence numbers handed out and events written in one atomic step,
//! and the outbox of logged events the bus may not have confirmed yet.
//!
//! Why one step: numbers reserved in one round trip and written in a second are burned when
//! anything fails between the two (a Redis restart, a command over its timeout). The job is
//! redelivered, reserves new numbers, and every client sees a gap in the log. Here a Lua
//! script takes the next numbers, splices them into the events and writes them, or does
//! nothing at all; it also refuses a quiz that has already ended, so an answer racing the
//! sweeper can never land after `quiz_failed`.
//!
//! Why an outbox: the log is written before the events are published, so a crash or a
//! broker failure between the two leaves events in the log that live subscribers never got.
//! Every write puts the quiz in `quizzes:outbox` (scored by the time of the write) and every
//! confirmed publish moves the quiz's `published_seq` on; a quiz is out of the outbox once
//! everything logged is confirmed. Whatever is left is republished from the log, by the
//! job's redelivery or, when nothing will be redelivered, by the analyzer's relay
//! (`common::relay`). Subscribers drop events at or below their last sequence number, so a
//! republished event is never seen twice.

use redis::AsyncCommands;

use super::QuizStore;
use crate::redis::RedisError;
use crate::views::{EventView, QuestionOutcome, QuizStatus};

/// The sequence number an event carries on its way to the script, which replaces it.
const SEQ_SLOT: u64 = u64::MAX;

/// An event serialised around its sequence number: the script writes
/// `head .. seq .. tail`. The number is the event's first `"seq":` field, which serde
/// writes before the outcome's fields, and a `"seq":` inside question text would be escaped.
fn around_seq(event: EventView) -> Result<(String, String), RedisError> {
    let text = serde_json::to_string(&event.with_seq(SEQ_SLOT))?;
    let slot = format!("\"seq\":{SEQ_SLOT}");
    let at = text
        .find(&slot)
        .ok_or_else(|| RedisError::Unstorable(format!("event has no sequence number: {text}")))?;
    let head = &text[..at + slot.len() - SEQ_SLOT.to_string().len()];
    let tail = &text[at + slot.len()..];
    Ok((head.to_owned(), tail.to_owned()))
}

impl QuizStore {
    /// Records outcomes and logs one `question_answered` event for each, numbered from the
    /// quiz's next sequence number, all in one atomic step. Returns the logged events, or
    /// `None`, writing nothing, when the quiz is unknown or has already ended.
    pub async fn record(
        &self,
        id: &str,
        outcomes: &[QuestionOutcome],
    ) -> Result<Option<Vec<EventView>>, RedisError> {
        Ok(self
            .record_reading(id, outcomes, false)
            .await?
            .map(|(events, _)| events))
    }

    /// [`Self::record`], returning also every outcome of the quiz as recorded after this
    /// write, read in the same atomic step: what finishing a quiz needs, in one round trip.
    pub async fn record_then_outcomes(
        &self,
        id: &str,
        outcomes: &[QuestionOutcome],
    ) -> Result<Option<(Vec<EventView>, Vec<QuestionOutcome>)>, RedisError> {
        if outcomes.is_empty() {
            return Ok(Some((Vec::new(), self.outcomes(id).await?)));
        }
        self.record_reading(id, outcomes, true).await
    }

    async fn record_reading(
        &self,
        id: &str,
        outcomes: &[QuestionOutcome],
        read_back: bool,
    ) -> Result<Option<(Vec<EventView>, Vec<QuestionOutcome>)>, RedisError> {
        // KEYS: quiz, answers, events, seq counter, open index, outbox.
        // ARGV: now, ttl, id, n, read back (1 or 0), then per outcome: index, outcome JSON,
        // event head, event tail. Returns {first number or -1, every outcome if read back}.
        const SCRIPT: &str = r"
            local status = redis.call('HGET', KEYS[1], 'status')
            if status == false or status == 'completed' or status == 'failed' then return {-1, {}} end
            local n = tonumber(ARGV[4])
            local last = redis.call('INCRBY', KEYS[4], n)
            redis.call('EXPIRE', KEYS[4], ARGV[2])
            local first = last - n + 1
            for i = 0, n - 1 do
                local at = 6 + i * 4
                local seq = first + i
                redis.call('HSET', KEYS[2], ARGV[at], ARGV[at + 1])
                redis.call('ZADD', KEYS[3], seq, ARGV[at + 2] .. seq .. ARGV[at + 3])
            end
            redis.call('EXPIRE', KEYS[2], ARGV[2])
            redis.call('EXPIRE', KEYS[3], ARGV[2])
            redis.call('ZADD', KEYS[5], 'XX', ARGV[1], ARGV[3])
            redis.call('ZADD', KEYS[6], ARGV[1], ARGV[3])
            if ARGV[5] == '1' then return {first, redis.call('HVALS', KEYS[2])} end
            return {first, {}}";
        if outcomes.is_empty() {
            return Ok(Some((Vec::new(), Vec::new())));
        }
        let script = redis::Script::new(SCRIPT);
        let mut invocation = script.prepare_invoke();
        invocation
            .key(self.keys.quiz(id))
            .key(self.keys.quiz_answers(id))
            .key(self.keys.quiz_events(id))
            .key(self.keys.quiz_seq(id))
            .key(self.keys.open_quizzes())
            .key(self.keys.outbox())
            .arg(crate::now_ms())
            .arg(self.ttl_secs)
            .arg(id)
            .arg(outcomes.len())
            .arg(if read_back { "1" } else { "0" });
        let mut events = Vec::with_capacity(outcomes.len());
        for outcome in outcomes {
            let event = EventView::QuestionAnswered {
                quiz_id: id.to_owned(),
                seq: SEQ_SLOT,
                outcome: outcome.clone(),
            };
            let (head, tail) = around_seq(event.clone())?;
            invocation
                .arg(outcome.index)
                .arg(serde_json::to_string(outcome)?)
                .arg(head)
                .arg(tail);
            events.push(event);
        }
        let mut connection = self.pool.get().await?;
        let (first, recorded): (i64, Vec<String>) = invocation.invoke_async(&mut connection).await?;
        let Ok(first) = u64::try_from(first) else {
            return Ok(None);
        };
        let events = (first..)
            .zip(events)
            .map(|(seq, event)| event.with_seq(seq))
            .collect();
        Ok(Some((events, super::parse_outcomes(&recorded)?)))
    }

    /// Ends a quiz exactly once: logs `event` under the next sequence number, sets `status`
    /// (and `reason`) and takes the quiz out of the open index, in one atomic step. The
    /// event's own sequence number is ignored. Returns the event as logged, or `None`,
    /// writing nothing, when the quiz is unknown or already ended, so two parties that race
    /// to end it (the analyzer finishing, the dead-letter watch, a sweeper) log one
    /// terminal event between them and burn no number.
    pub async fn end(
        &self,
        id: &str,
        status: QuizStatus,
        reason: Option<&str>,
        event: EventView,
    ) -> Result<Option<EventView>, RedisError> {
        // KEYS: quiz, events, open index, seq counter, outbox.
        const SCRIPT: &str = r"
            local current = redis.call('HGET', KEYS[1], 'status')
            if current == false or current == 'completed' or current == 'failed' then return 0 end
            local seq = redis.call('INCR', KEYS[4])
            redis.call('EXPIRE', KEYS[4], ARGV[6])
            redis.call('ZADD', KEYS[2], seq, ARGV[4] .. seq .. ARGV[5])
            redis.call('EXPIRE', KEYS[2], ARGV[6])
            redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at_ms', ARGV[2])
            if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'reason', ARGV[3]) end
            redis.call('ZREM', KEYS[3], ARGV[7])
            redis.call('ZADD', KEYS[5], ARGV[2], ARGV[7])
            return seq";
        let (head, tail) = around_seq(event.clone())?;
        let mut connection = self.pool.get().await?;
        let seq: u64 = redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .key(self.keys.quiz_events(id))
            .key(self.keys.open_quizzes())
            .key(self.keys.quiz_seq(id))
            .key(self.keys.outbox())
            .arg(status.as_str())
            .arg(crate::now_ms())
            .arg(reason.unwrap_or(""))
            .arg(head)
            .arg(tail)
            .arg(self.ttl_secs)
            .arg(id)
            .invoke_async(&mut connection)
            .await?;
        Ok((seq > 0).then(|| event.with_seq(seq)))
    }

    /// Events with a sequence number above `after`, in order.
    pub async fn events_after(&self, id: &str, after: u64) -> Result<Vec<EventView>, RedisError> {
        let mut connection = self.pool.get().await?;
        let texts: Vec<String> = connection
            .zrangebyscore(self.keys.quiz_events(id), format!("({after}"), "+inf")
            .await?;
        parse_events(&texts)
    }

    /// Notes that the bus confirmed every event of the quiz up to `seq`; once that covers
    /// everything logged, the quiz leaves the outbox. A deleted or expired quiz just leaves it.
    pub async fn mark_published(&self, id: &str, seq: u64) -> Result<(), RedisError> {
        // KEYS: quiz, seq counter, outbox. The EXISTS check keeps a late mark from
        // recreating a deleted quiz's hash (without a TTL).
        const SCRIPT: &str = r"
            if redis.call('EXISTS', KEYS[1]) == 0 then
                redis.call('ZREM', KEYS[3], ARGV[2])
                return 0
            end
            local done = tonumber(redis.call('HGET', KEYS[1], 'published_seq') or '0')
            local seq = tonumber(ARGV[1])
            if seq > done then
                redis.call('HSET', KEYS[1], 'published_seq', ARGV[1])
                done = seq
            end
            if done >= tonumber(redis.call('GET', KEYS[2]) or '0') then
                redis.call('ZREM', KEYS[3], ARGV[2])
            end
            return 1";
        let mut connection = self.pool.get().await?;
        redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .key(self.keys.quiz_seq(id))
            .key(self.keys.outbox())
            .arg(seq)
            .arg(id)
            .invoke_async::<i64>(&mut connection)
            .await?;
        Ok(())
    }

    /// Logged events the bus has not confirmed yet, in order. With none left the quiz
    /// leaves the outbox (a confirm whose mark was lost, or a log that expired).
    pub async fn unpublished(&self, id: &str) -> Result<Vec<EventView>, RedisError> {
        const SCRIPT: &str = r"
            local done = redis.call('HGET', KEYS[1], 'published_seq') or '0'
            local events = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. done, '+inf')
            if #events == 0 then redis.call('ZREM', KEYS[3], ARGV[1]) end
            return events";
        let mut connection = self.pool.get().await?;
        let texts: Vec<String> = redis::Script::new(SCRIPT)
            .key(self.keys.quiz(id))
            .key(self.keys.quiz_events(id))
            .key(self.keys.outbox())
            .arg(id)
            .invoke_async(&mut connection)
            .await?;
        parse_events(&texts)
    }

    /// Up to `limit` quizzes in the outbox whose last write is at or before `cutoff_ms`.
    pub async fn outbox_before(&self, cutoff_ms: i64, limit: usize) -> Result<Vec<String>, RedisError> {
        self.ids_scored_before(&self.keys.outbox(), cutoff_ms, limit)
            .await
    }
}

fn parse_events(texts: &[String]) -> Result<Vec<EventView>, RedisError> {
    texts
        .iter()
        .map(|text| serde_json::from_str(text).map_err(RedisError::from))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn an_event_splits_around_its_sequence_number_only() {
        let outcome = QuestionOutcome {
            index: 3,
            answer: None,
            // Question text quoting the slot stays inside its string.
            error: Some(format!("\"seq\":{SEQ_SLOT}")),
            agrees_with_key: None,
        };
        let event = EventView::QuestionAnswered {
            quiz_id: "q".to_owned(),
            seq: 0,
            outcome,
        };
        let (head, tail) = around_seq(event.clone()).unwrap();
        let spliced: EventView = serde_json::from_str(&format!("{head}42{tail}")).unwrap();
        assert_eq!(spliced, event.with_seq(42));
    }
}
