//! `/v1/ws`: one quiz's events, snapshot first, then live, gap-free and in order.
//!
//! Protocol (docs/websocket.md): subscribe with `?quiz_id=…&after=N` or by sending
//! `{"type":"subscribe","quiz_id":"…","after":N}` first. The server answers
//! `{"type":"subscribed",…}`, replays logged events with `seq > N` from Redis, then
//! streams live ones; it closes with 1000 after the quiz's terminal event.

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use common::store::QuizStore;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::hub::Hub;
use crate::settings::WsSettings;

/// Largest frame a client may send; clients only send small control messages.
const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;
/// Close code for a quiz that does not exist (the 4000 range is for applications).
const UNKNOWN_QUIZ: u16 = 4404;
/// Close code for a bad subscribe message.
const BAD_SUBSCRIBE: u16 = 4400;

pub struct WsState {
    pub hub: Hub,
    pub store: QuizStore,
    pub settings: WsSettings,
}

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    quiz_id: Option<String>,
    #[serde(default)]
    after: u64,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe {
        quiz_id: String,
        #[serde(default)]
        after: u64,
    },
}

pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<WsState>,
    query: web::Query<ConnectQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let stream = stream.max_frame_size(MAX_CLIENT_FRAME_BYTES);
    let query = query.into_inner();
    actix_web::rt::spawn(async move {
        if let Some(reason) = run_session(&state, session.clone(), stream, query).await {
            tracing::debug!(code = ?reason.code, description = ?reason.description, "closing websocket");
            let _ = session.close(Some(reason)).await;
        }
    });
    Ok(response)
}

fn close(code: CloseCode, description: impl Into<String>) -> Option<CloseReason> {
    Some(CloseReason {
        code,
        description: Some(description.into()),
    })
}

/// Runs one client; returns the close reason to send, or `None` if the client is gone.
async fn run_session(
    state: &WsState,
    mut session: Session,
    mut stream: MessageStream,
    query: ConnectQuery,
) -> Option<CloseReason> {
    let idle_timeout = Duration::from_secs(state.settings.idle_timeout_secs.max(1));
    let (quiz_id, after) = match query.quiz_id {
        Some(quiz_id) => (quiz_id, query.after),
        None => match first_subscribe(&mut stream, idle_timeout).await {
            Ok(subscription) => subscription,
            Err(reason) => return reason,
        },
    };
    match state.store.status(&quiz_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return close(CloseCode::Other(UNKNOWN_QUIZ), "unknown quiz"),
        Err(error) => {
            tracing::warn!(%error, "cannot read quiz status");
            return close(CloseCode::Again, "storage unavailable, retry");
        }
    }
    // Subscribe before reading the log: an event published in between is then
    // both in the log and in the channel, and the sequence check drops the copy.
    let mut live = state.hub.subscribe(&quiz_id);
    let subscribed = json!({"type": "subscribed", "quiz_id": quiz_id, "after": after}).to_string();
    session.text(subscribed).await.ok()?;
    let mut last_seq = after;
    if let Some(reason) = catch_up(state, &mut session, &quiz_id, &mut last_seq).await {
        return reason;
    }
    let mut heartbeat = tokio::time::interval(Duration::from_secs(state.settings.heartbeat_secs.max(1)));
    let mut last_heard = Instant::now();
    loop {
        tokio::select! {
            frame = live.recv() => match frame {
                Ok(frame) if frame.seq <= last_seq => {}
                Ok(frame) if frame.seq == last_seq + 1 => {
                    session.text(frame.json.clone()).await.ok()?;
                    last_seq = frame.seq;
                    if is_terminal(&frame.json) {
                        return close(CloseCode::Normal, "quiz finished");
                    }
                }
                // A gap: fill it from the log, which has every event.
                Ok(_) => {
                    if let Some(reason) = catch_up(state, &mut session, &quiz_id, &mut last_seq).await {
                        return reason;
                    }
                }
                Err(RecvError::Lagged(skipped)) => {
                    tracing::info!(skipped, last_seq, "slow websocket client disconnected");
                    return close(CloseCode::Policy, format!("too slow: resume with after={last_seq}"));
                }
                Err(RecvError::Closed) => return close(CloseCode::Restart, "server shutting down"),
            },
            message = stream.recv() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    last_heard = Instant::now();
                    session.pong(&bytes).await.ok()?;
                }
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(error)) => return close(CloseCode::Protocol, error.to_string()),
            },
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > idle_timeout {
                    return close(CloseCode::Away, "idle timeout");
                }
                session.ping(b"").await.ok()?;
            }
        }
    }
}

/// Waits for the client's subscribe message.
async fn first_subscribe(
    stream: &mut MessageStream,
    deadline: Duration,
) -> Result<(String, u64), Option<CloseReason>> {
    let message = tokio::time::timeout(deadline, async {
        loop {
            match stream.recv().await {
                Some(Ok(Message::Text(text))) => return Some(text),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                _ => return None,
            }
        }
    })
    .await
    .map_err(|_| close(CloseCode::Away, "no subscribe message"))?;
    let Some(text) = message else { return Err(None) };
    match serde_json::from_str::<ClientMessage>(&text) {
        Ok(ClientMessage::Subscribe { quiz_id, after }) => Ok((quiz_id, after)),
        Err(error) => Err(close(
            CloseCode::Other(BAD_SUBSCRIBE),
            format!("bad subscribe message: {error}"),
        )),
    }
}

/// Sends every logged event after `last_seq`; `Some` when the session should end.
async fn catch_up(
    state: &WsState,
    session: &mut Session,
    quiz_id: &str,
    last_seq: &mut u64,
) -> Option<Option<CloseReason>> {
    let events = match state.store.events_after(quiz_id, *last_seq).await {
        Ok(events) => events,
        Err(error) => {
            tracing::warn!(%error, "cannot read the event log");
            return Some(close(CloseCode::Again, "storage unavailable, retry"));
        }
    };
    for event in events {
        let Ok(text) = serde_json::to_string(&event) else {
            continue;
        };
        if session.text(text).await.is_err() {
            return Some(None);
        }
        *last_seq = event.seq();
        if event.is_terminal() {
            return Some(close(CloseCode::Normal, "quiz finished"));
        }
    }
    None
}

fn is_terminal(json: &str) -> bool {
    json.starts_with("{\"type\":\"quiz_completed\"") || json.starts_with("{\"type\":\"quiz_failed\"")
}
