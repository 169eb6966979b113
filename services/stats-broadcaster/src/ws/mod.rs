//! `/v1/ws`: the WebSocket endpoint (protocol in docs/websocket.md).
//!
//! A client either follows one quiz ([`quiz`]: `?quiz_id=…&after=N[&stats=1]` or a
//! first `{"type":"subscribe",…}` message) or watches the quiz board
//! ([`board`]: a first `{"type":"subscribe_all"}` message). Either way it needs an API key
//! with the read scope ([`crate::access`]): checked before the upgrade when it comes in a
//! header or the query string (401/403 problem+json), after it when it comes in the first
//! message (close codes 4401/4403).

pub mod board;
pub mod quiz;

use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use common::problem::Problem;
use common::store::QuizStore;
use serde::Deserialize;

use crate::access::{Access, Denied, Viewer, key_from_headers};
use crate::board::Board;
use crate::hub::Hub;
use crate::settings::WsSettings;

/// Largest frame a client may send; clients only send small control messages.
const MAX_CLIENT_FRAME_BYTES: usize = 16 * 1024;
/// Close code for a bad subscribe message (the 4000 range is for applications).
const BAD_SUBSCRIBE: u16 = 4400;
/// How long the close frame may wait for a client whose socket is full.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub struct WsState {
    pub hub: Hub,
    pub board: Board,
    pub store: QuizStore,
    pub settings: WsSettings,
    /// `audit.dispute_confidence`, for the live stats.
    pub dispute_confidence: f64,
    pub access: Access,
}

#[derive(Debug, Deserialize)]
pub struct ConnectQuery {
    quiz_id: Option<String>,
    #[serde(default)]
    after: u64,
    /// `1` or `true`: also send `quiz` and `stats` messages.
    stats: Option<String>,
    /// An API key, for clients that can set neither headers nor a first message (logged by
    /// proxies: prefer the subscribe message).
    token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Subscribe {
        quiz_id: String,
        #[serde(default)]
        after: u64,
        #[serde(default)]
        stats: bool,
        #[serde(default)]
        token: Option<String>,
    },
    SubscribeAll {
        #[serde(default)]
        token: Option<String>,
    },
}

impl ClientMessage {
    fn token(&self) -> Option<&str> {
        match self {
            Self::Subscribe { token, .. } | Self::SubscribeAll { token } => token.as_deref(),
        }
    }
}

/// Why a session ends: the close frame to send, or `None` when the client is gone.
pub type End = Option<CloseReason>;

pub async fn connect(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<WsState>,
    query: web::Query<ConnectQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    let query = query.into_inner();
    // A key in a header or the query string is checked before upgrading, so a bad one gets a
    // plain HTTP answer; so does a quiz subscription by query string with no key at all.
    let presented = key_from_headers(request.headers())
        .map(str::to_owned)
        .or_else(|| query.token.clone());
    let viewer = match &presented {
        Some(key) => Some(state.access.authenticate(Some(key)).map_err(refusal)?),
        None if query.quiz_id.is_some() || !state.access.required() => {
            Some(state.access.authenticate(None).map_err(refusal)?)
        }
        None => None,
    };
    let (response, session, stream) = actix_ws::handle(&request, body)?;
    let stream = stream.max_frame_size(MAX_CLIENT_FRAME_BYTES);
    actix_web::rt::spawn(async move {
        if let Some(reason) = run_session(&state, session.clone(), stream, query, viewer).await {
            tracing::debug!(code = ?reason.code, description = ?reason.description, "closing websocket");
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, session.close(Some(reason))).await;
        }
    });
    Ok(response)
}

/// A refused key before the upgrade, as problem+json (the gateway's problem kinds).
fn refusal(denied: Denied) -> actix_web::Error {
    use actix_web::http::StatusCode;
    let problem = match denied {
        Denied::NoKey | Denied::UnknownKey | Denied::InvalidToken(_) => Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
        ),
        Denied::NoReadScope => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Missing scope"),
    };
    let mut response = problem.with_detail(denied.to_string()).to_response();
    if matches!(
        denied,
        Denied::NoKey | Denied::UnknownKey | Denied::InvalidToken(_)
    ) {
        response.headers_mut().insert(
            actix_web::http::header::WWW_AUTHENTICATE,
            actix_web::http::header::HeaderValue::from_static("Bearer"),
        );
    }
    actix_web::error::InternalError::from_response(denied, response).into()
}

async fn run_session(
    state: &WsState,
    session: Session,
    mut stream: MessageStream,
    query: ConnectQuery,
    viewer: Option<Viewer>,
) -> End {
    let idle_timeout = Duration::from_secs(state.settings.idle_timeout_secs.max(1));
    let message = match query.quiz_id {
        Some(quiz_id) => ClientMessage::Subscribe {
            quiz_id,
            after: query.after,
            stats: matches!(query.stats.as_deref(), Some("1" | "true")),
            token: None,
        },
        // Boxed, like the quiz's Redis reads: only the idle loop should size the session's task.
        None => match Box::pin(first_message(&mut stream, idle_timeout)).await {
            Ok(message) => message,
            Err(end) => return end,
        },
    };
    let viewer = match viewer {
        Some(viewer) => viewer,
        None => match state.access.authenticate(message.token()) {
            Ok(viewer) => viewer,
            Err(denied) => return close(CloseCode::Other(denied.close_code()), denied.to_string()),
        },
    };
    let client = Client::new(session, stream, &state.settings);
    match message {
        ClientMessage::Subscribe {
            quiz_id,
            after,
            stats,
            ..
        } => quiz::run(state, client, &viewer, quiz_id, after, stats).await,
        ClientMessage::SubscribeAll { .. } => board::run(state, client, &viewer).await,
    }
}

pub fn close(code: CloseCode, description: impl Into<String>) -> End {
    Some(CloseReason {
        code,
        description: Some(description.into()),
    })
}

/// Waits for the client's first message: a subscription. `Err` ends the session.
async fn first_message(stream: &mut MessageStream, deadline: Duration) -> Result<ClientMessage, End> {
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
    serde_json::from_str::<ClientMessage>(&text).map_err(|error| {
        close(
            CloseCode::Other(BAD_SUBSCRIBE),
            format!("bad subscribe message: {error}"),
        )
    })
}

/// One connected client: its socket both ways, and the liveness bookkeeping
/// every session shares (pings, idle timeout, stalled sends).
pub struct Client {
    pub session: Session,
    stream: MessageStream,
    last_heard: Instant,
    idle_timeout: Duration,
    heartbeat: tokio::time::Interval,
}

/// What the client side did: nothing to act on, or the session ends.
pub enum Stalled {
    /// The client did not take a frame within the idle timeout.
    TooSlow,
    Gone,
}

impl Client {
    fn new(session: Session, stream: MessageStream, settings: &WsSettings) -> Self {
        Self {
            session,
            stream,
            last_heard: Instant::now(),
            idle_timeout: Duration::from_secs(settings.idle_timeout_secs.max(1)),
            heartbeat: tokio::time::interval(Duration::from_secs(settings.heartbeat_secs.max(1))),
        }
    }

    /// Sends one text frame. The session's outgoing queue is small and bounded, so a
    /// client that stops reading blocks this call instead of growing memory; after
    /// the idle timeout it counts as too slow.
    pub async fn send(&mut self, text: impl Into<String>) -> Result<(), Stalled> {
        match tokio::time::timeout(self.idle_timeout, self.session.text(text.into())).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(Stalled::Gone),
            Err(_) => Err(Stalled::TooSlow),
        }
    }

    /// Waits for the next thing the client side needs: a client frame or a heartbeat
    /// tick. Returns `Err` when the session should end.
    pub async fn tend(&mut self) -> Result<(), End> {
        tokio::select! {
            message = self.stream.recv() => match message {
                Some(Ok(Message::Ping(bytes))) => {
                    self.last_heard = Instant::now();
                    self.session.pong(&bytes).await.map_err(|_| None)
                }
                Some(Ok(Message::Close(_))) | None => Err(None),
                Some(Ok(_)) => {
                    self.last_heard = Instant::now();
                    Ok(())
                }
                Some(Err(error)) => Err(close(CloseCode::Protocol, error.to_string())),
            },
            _ = self.heartbeat.tick() => {
                if self.last_heard.elapsed() > self.idle_timeout {
                    return Err(close(CloseCode::Away, "idle timeout"));
                }
                self.session.ping(b"").await.map_err(|_| None)
            }
        }
    }
}
