//! One quiz's stream: snapshot from the Redis log, then live events, gap-free and
//! in order; with `stats`, a `quiz` message first and a `stats` message after each
//! event (after each batch while catching up).

use actix_ws::CloseCode;
use common::store::QuizStore;
use common::views::EventView;
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::{Client, End, Stalled, WsState, close};
use crate::access::Viewer;
use crate::aggregate::{LiveStats, QuizAggregate};

/// Close code for a quiz that does not exist (the 4000 range is for applications).
const UNKNOWN_QUIZ: u16 = 4404;

#[derive(Serialize)]
struct StatsMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    quiz_id: &'a str,
    /// The stats count every event up to and including this sequence number.
    as_of_seq: u64,
    stats: LiveStats,
}

/// A client following one quiz.
struct QuizStream<'a> {
    store: &'a QuizStore,
    client: Client,
    quiz_id: String,
    /// The last sequence number sent to the client.
    last_seq: u64,
    /// Running stats, for clients that asked for them.
    stats: Option<QuizAggregate>,
}

pub async fn run(
    state: &WsState,
    client: Client,
    viewer: &Viewer,
    quiz_id: String,
    after: u64,
    with_stats: bool,
) -> End {
    // The one-off Redis reads run boxed: an awaited future lives inside the session's task
    // for as long as the connection does, and unboxed they made every idle session 8.8 KiB
    // instead of 2.6 (docs/benchmarks.md).
    // Another key's quiz looks exactly like a missing one, as in the gateway.
    if let Viewer::Owner(_) = viewer {
        match Box::pin(owner_of(&state.store, &quiz_id)).await {
            Ok(owner) if viewer.sees(owner.as_deref()) => {}
            Ok(_) => return close(CloseCode::Other(UNKNOWN_QUIZ), "unknown quiz"),
            Err(error) => {
                tracing::warn!(%error, "cannot read the quiz owner");
                return close(CloseCode::Again, "storage unavailable, retry");
            }
        }
    }
    let mut stream = QuizStream {
        store: &state.store,
        client,
        quiz_id,
        last_seq: after,
        stats: None,
    };
    let quiz_message = match Box::pin(stream.check_quiz(with_stats, state.dispute_confidence)).await {
        Ok(message) => message,
        Err(end) => return end,
    };
    match serve(state, &mut stream, after, quiz_message).await {
        Ok(()) => None,
        Err(end) => end,
    }
}

async fn serve(
    state: &WsState,
    stream: &mut QuizStream<'_>,
    after: u64,
    quiz_message: Option<String>,
) -> Result<(), End> {
    // Subscribe before reading the log: an event published in between is then
    // both in the log and in the channel, and the sequence check drops the copy.
    let mut live = state.hub.subscribe(&stream.quiz_id);
    let mut resyncs = state.hub.resyncs();
    let subscribed = json!({"type": "subscribed", "quiz_id": stream.quiz_id, "after": after});
    {
        stream.send(subscribed.to_string()).await?;
        if let Some(message) = quiz_message {
            stream.send(message).await?;
        }
        // Stats are a function of every event so far, so a resuming stats client
        // reads the whole log; it is sent only what comes after `after`.
        let from = if stream.stats.is_some() { 0 } else { after };
        Box::pin(stream.catch_up(from)).await?;
        loop {
            tokio::select! {
                frame = live.recv() => match frame {
                    Ok(frame) if frame.seq <= stream.last_seq => {}
                    Ok(frame) if frame.seq == stream.last_seq + 1 => {
                        stream.forward(&frame.event, Some(&frame.json)).await?;
                        stream.send_stats().await?;
                    }
                    // A gap: fill it from the log, which has every event.
                    Ok(_) => Box::pin(stream.catch_up(stream.last_seq)).await?,
                    Err(RecvError::Lagged(skipped)) => {
                        tracing::info!(skipped, last_seq = stream.last_seq, "slow websocket client disconnected");
                        return Err(too_slow(stream.last_seq));
                    }
                    Err(RecvError::Closed) => return Err(close(CloseCode::Restart, "server shutting down")),
                },
                // The event queue was gone for a while (a broker restart): events may have
                // reached nobody, so read what the log has past our last one.
                Ok(()) = resyncs.changed() => Box::pin(stream.catch_up(stream.last_seq)).await?,
                tended = stream.client.tend() => tended?,
            }
        }
    }
}

fn too_slow(last_seq: u64) -> End {
    close(
        CloseCode::Policy,
        format!("too slow: resume with after={last_seq}"),
    )
}

impl QuizStream<'_> {
    /// Makes sure the quiz exists; stats clients also get the `quiz` message to send.
    async fn check_quiz(&mut self, with_stats: bool, dispute_confidence: f64) -> Result<Option<String>, End> {
        let unknown = || close(CloseCode::Other(UNKNOWN_QUIZ), "unknown quiz");
        let unavailable = |error: common::redis::RedisError| {
            tracing::warn!(%error, "cannot read the quiz");
            close(CloseCode::Again, "storage unavailable, retry")
        };
        if !with_stats {
            return match self.store.status(&self.quiz_id).await {
                Ok(Some(_)) => Ok(None),
                Ok(None) => Err(unknown()),
                Err(error) => Err(unavailable(error)),
            };
        }
        let quiz = match self.store.load(&self.quiz_id).await {
            Ok(Some(quiz)) => quiz,
            Ok(None) => return Err(unknown()),
            Err(error) => return Err(unavailable(error)),
        };
        let total = u32::try_from(quiz.spec.questions.len()).unwrap_or(u32::MAX);
        let max_options = quiz
            .spec
            .questions
            .iter()
            .map(|question| question.options.len())
            .max()
            .unwrap_or(0);
        self.stats = Some(QuizAggregate::new(total, max_options, dispute_confidence));
        let message = json!({
            "type": "quiz",
            "quiz_id": self.quiz_id,
            "status": quiz.status.as_str(),
            "total": total,
            "has_answer_key": quiz.spec.answer_key.is_some(),
            "questions": quiz.spec.questions,
        });
        Ok(Some(message.to_string()))
    }

    async fn send(&mut self, text: String) -> Result<(), End> {
        self.client.send(text).await.map_err(|stalled| match stalled {
            Stalled::TooSlow => too_slow(self.last_seq),
            Stalled::Gone => None,
        })
    }

    /// Sends the next event (its shared JSON when there is one) and folds it into
    /// the stats; after the terminal event, sends the final stats and ends.
    async fn forward(&mut self, event: &EventView, json: Option<&str>) -> Result<(), End> {
        let text = match json {
            Some(json) => json.to_owned(),
            None => serde_json::to_string(event).map_err(|error| {
                tracing::error!(%error, "event not serialisable");
                close(CloseCode::Error, "internal error")
            })?,
        };
        self.send(text).await?;
        self.last_seq = event.seq();
        if let Some(stats) = &mut self.stats {
            stats.fold(event);
        }
        if event.is_terminal() {
            self.send_stats().await?;
            return Err(close(CloseCode::Normal, "quiz finished"));
        }
        Ok(())
    }

    /// Sends every logged event after `last_seq`, folding every one after `from`.
    async fn catch_up(&mut self, from: u64) -> Result<(), End> {
        let events = self
            .store
            .events_after(&self.quiz_id, from)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot read the event log");
                close(CloseCode::Again, "storage unavailable, retry")
            })?;
        for event in &events {
            if event.seq() <= self.last_seq {
                if let Some(stats) = &mut self.stats {
                    stats.fold(event);
                }
                continue;
            }
            self.forward(event, None).await?;
        }
        self.send_stats().await
    }

    /// The `stats` message, for clients that asked for it.
    async fn send_stats(&mut self) -> Result<(), End> {
        let Some(aggregate) = &self.stats else {
            return Ok(());
        };
        let message = StatsMessage {
            kind: "stats",
            quiz_id: &self.quiz_id,
            as_of_seq: aggregate.as_of_seq(),
            stats: aggregate.stats(),
        };
        match serde_json::to_string(&message) {
            Ok(text) => self.send(text).await,
            Err(error) => {
                tracing::error!(%error, "stats not serialisable");
                Ok(())
            }
        }
    }
}

/// The id of the key that created the quiz, as the gateway recorded it.
pub async fn owner_of(store: &QuizStore, quiz_id: &str) -> Result<Option<String>, common::redis::RedisError> {
    use redis::AsyncCommands;
    let mut connection = store.pool().get().await?;
    Ok(connection.get(store.keys().quiz_owner(quiz_id)).await?)
}
