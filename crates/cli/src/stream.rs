//! Following one quiz on the stats-broadcaster's WebSocket (docs/websocket.md): subscribe
//! with `stats`, turn its messages into [`Update`]s, resume with `after=<last seq>` when
//! the connection drops, and stop at the quiz's terminal event.

use std::time::Duration;

use common::views::{EventView, StatsView};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use crate::credentials::ApiKey;
use crate::error::CliError;

/// Longer than any healthy handshake; a dead host should not hold the user for long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts in a row that may fail before giving up: once connected, a broadcaster
/// restart (1012) or a Redis blip (1013) gets about 8 s of backoff to recover.
const MAX_FAILURES_AFTER_CONNECTING: u32 = 5;
/// Before the first connection a missing broadcaster is likely: give up sooner (the
/// caller then polls the gateway).
const MAX_FAILURES_BEFORE_CONNECTING: u32 = 2;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The server's normal close after the terminal event.
const NORMAL_CLOSE: u16 = 1000;

/// What the stream reports while a quiz runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The quiz's question count (0 while a page is still being scraped).
    Total(u32),
    /// One question ended, answered or failed.
    Answered { index: u32, failed: bool, cached: bool },
    /// The running counts, from the server's `stats` messages.
    Counts { total: u32, answered: u32, failed: u32 },
    /// The connection dropped; resuming.
    Reconnecting { why: String },
}

/// How following ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Completed(StatsView),
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The broadcaster refused the subscription (4400, 4404, a future 4401…), or its
    /// handshake answered an HTTP error.
    #[error("the stream refused quiz {quiz_id}: {reason} ({code})")]
    Refused {
        quiz_id: String,
        code: u16,
        reason: String,
    },
    #[error("cannot connect to the stream: {0}")]
    Unreachable(String),
    #[error("the stream broke off and did not come back: {0}")]
    Lost(String),
    #[error("the stream closed before the quiz ended")]
    EndedEarly,
}

/// A validated `ws://` or `wss://` URL of the broadcaster's `/v1/ws`.
#[derive(Debug, Clone)]
pub struct StreamEndpoint {
    url: Url,
}

impl StreamEndpoint {
    pub fn parse(text: &str) -> Result<Self, CliError> {
        let url = Url::parse(text)
            .map_err(|error| CliError::Usage(format!("--stream {text:?} is not a URL: {error}")))?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(CliError::Usage(format!(
                "--stream {text:?} must be a ws:// or wss:// URL"
            )));
        }
        Ok(Self { url })
    }
}

/// Follows `quiz_id` from its first event until its terminal one, calling `on_update` as
/// the quiz moves. Each event is seen once: a reconnect resumes after the last `seq`.
pub async fn follow(
    endpoint: &StreamEndpoint,
    quiz_id: &str,
    key: Option<&ApiKey>,
    mut on_update: impl FnMut(Update),
) -> Result<Finish, StreamError> {
    let mut after = 0u64;
    let mut failures = 0u32;
    let mut ever_connected = false;
    loop {
        let seq_before = after;
        let (connected, why) = match session(endpoint, quiz_id, key, &mut after, &mut on_update).await {
            Session::Finished(finish) => return Ok(finish),
            Session::Refused { code, reason } => {
                return Err(StreamError::Refused {
                    quiz_id: quiz_id.to_owned(),
                    code,
                    reason,
                });
            }
            Session::ClosedNormally => return Err(StreamError::EndedEarly),
            Session::Broken { connected, why } => (connected, why),
        };
        ever_connected |= connected;
        // An attempt that brought new events resets the count: only a stream that keeps
        // failing without progress is given up on.
        failures = if after > seq_before { 1 } else { failures + 1 };
        let limit = if ever_connected {
            MAX_FAILURES_AFTER_CONNECTING
        } else {
            MAX_FAILURES_BEFORE_CONNECTING
        };
        if failures >= limit {
            return Err(if ever_connected {
                StreamError::Lost(why)
            } else {
                StreamError::Unreachable(why)
            });
        }
        // Before the first connection there is nothing to resume yet: the caller hears
        // only the final verdict.
        if ever_connected {
            on_update(Update::Reconnecting { why });
        }
        tokio::time::sleep(FIRST_BACKOFF * 2u32.pow(failures - 1)).await;
    }
}

enum Session {
    Finished(Finish),
    Refused {
        code: u16,
        reason: String,
    },
    /// A 1000 close without a terminal event: nothing more will come.
    ClosedNormally,
    /// Worth another attempt; `connected` says whether the handshake got through.
    Broken {
        connected: bool,
        why: String,
    },
}

async fn session(
    endpoint: &StreamEndpoint,
    quiz_id: &str,
    key: Option<&ApiKey>,
    after: &mut u64,
    on_update: &mut impl FnMut(Update),
) -> Session {
    let broken = |connected: bool, why: String| Session::Broken { connected, why };
    let request = match handshake_request(&endpoint.url, key) {
        Ok(request) => request,
        Err(error) => return broken(false, error.to_string()),
    };
    if endpoint.url.scheme() == "wss" {
        // The workspace's TLS stack is rustls on aws-lc-rs (reqwest, lapin); say so, so
        // that rustls never has to guess between providers. Already installed is fine.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request));
    let mut socket = match connecting.await {
        Err(_) => {
            return broken(
                false,
                format!("no handshake within {} s", CONNECT_TIMEOUT.as_secs()),
            );
        }
        Ok(Err(tungstenite::Error::Http(response))) if response.status().is_client_error() => {
            return Session::Refused {
                code: response.status().as_u16(),
                reason: handshake_refusal(&response),
            };
        }
        Ok(Err(error)) => return broken(false, crate::error::with_causes(&error)),
        Ok(Ok((socket, _response))) => socket,
    };
    let subscribe = subscribe_message(quiz_id, *after, key);
    if let Err(error) = socket.send(Message::text(subscribe.to_string())).await {
        return broken(true, error.to_string());
    }
    while let Some(message) = socket.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(frame)) => return closed(frame),
            // Pings are answered by tungstenite itself as the stream is read.
            Ok(_) => continue,
            Err(error) => return broken(true, error.to_string()),
        };
        let Ok(value) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if let Some(finish) = interpret(&value, after, on_update) {
            // The rest (the final `stats`, the close) says nothing new.
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
            return Session::Finished(finish);
        }
    }
    broken(true, "the connection closed without a close frame".to_owned())
}

/// The upgrade request, carrying the key as `Authorization: Bearer` for a broadcaster
/// that checks it at the handshake.
fn handshake_request(
    url: &Url,
    key: Option<&ApiKey>,
) -> Result<tungstenite::handshake::client::Request, tungstenite::Error> {
    let mut request = url.as_str().into_client_request()?;
    if let Some(key) = key
        && let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", key.secret()))
    {
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(request)
}

/// A refused upgrade (a 401 or 403 for the key): its status, and the problem's `detail`
/// when the body is problem+json as the services send it.
fn handshake_refusal(response: &tungstenite::http::Response<Option<Vec<u8>>>) -> String {
    let detail = response
        .body()
        .as_deref()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok())
        .and_then(|problem| problem["detail"].as_str().map(str::to_owned));
    match detail {
        Some(detail) => format!("the handshake answered {}: {detail}", response.status()),
        None => format!("the handshake answered {}", response.status()),
    }
}

/// The first message (docs/websocket.md, "Subscribing"). The key rides along as `token`,
/// the way the stream is to take credentials (issue 5: "a token in the first message");
/// today's broadcaster ignores the field, so sending it is harmless and forward-ready.
/// The first message keeps the key out of URLs, which proxies log.
fn subscribe_message(quiz_id: &str, after: u64, key: Option<&ApiKey>) -> Value {
    let mut message = json!({"type": "subscribe", "quiz_id": quiz_id, "after": after, "stats": true});
    if let Some(key) = key {
        message["token"] = json!(key.secret());
    }
    message
}

fn closed(frame: Option<CloseFrame>) -> Session {
    let Some(frame) = frame else {
        return Session::Broken {
            connected: true,
            why: "closed without a code".to_owned(),
        };
    };
    let code = u16::from(frame.code);
    let reason = frame.reason.to_string();
    match code {
        NORMAL_CLOSE => Session::ClosedNormally,
        // The application's own codes: a bad subscription, an unknown quiz, a refused key.
        4000..=4999 => Session::Refused { code, reason },
        // 1001 idle, 1008 too slow, 1012 restart, 1013 storage: resume with `after`.
        _ => Session::Broken {
            connected: true,
            why: format!("closed with {code} {reason}"),
        },
    }
}

/// Applies one server message; `Some` at the quiz's terminal event.
fn interpret(message: &Value, after: &mut u64, on_update: &mut impl FnMut(Update)) -> Option<Finish> {
    match message["type"].as_str()? {
        "quiz" => {
            let total = message["total"]
                .as_u64()
                .and_then(|total| u32::try_from(total).ok())?;
            on_update(Update::Total(total));
            None
        }
        "stats" => {
            let stats = &message["stats"];
            let count = |field: &str| stats[field].as_u64().and_then(|value| u32::try_from(value).ok());
            on_update(Update::Counts {
                total: count("total")?,
                answered: count("answered")?,
                failed: count("failed")?,
            });
            None
        }
        "question_answered" | "quiz_completed" | "quiz_failed" => {
            let event = serde_json::from_value::<EventView>(message.clone()).ok()?;
            // The server sends each seq once; this guards a resume against a repeat anyway.
            if event.seq() <= *after {
                return None;
            }
            *after = event.seq();
            match event {
                EventView::QuestionAnswered { outcome, .. } => {
                    on_update(Update::Answered {
                        index: outcome.index,
                        failed: outcome.answer.is_none(),
                        cached: outcome.answer.is_some_and(|answer| answer.cached),
                    });
                    None
                }
                EventView::QuizCompleted { stats, .. } => Some(Finish::Completed(stats)),
                EventView::QuizFailed { reason, .. } => Some(Finish::Failed(reason)),
            }
        }
        // `subscribed`, and whatever later versions of the protocol add.
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn events_become_updates_once_each_and_the_terminal_event_finishes() {
        let mut after = 0;
        let mut updates = Vec::new();
        let mut record = |update| updates.push(update);
        let answered = json!({"type": "question_answered", "quiz_id": "q", "seq": 1, "index": 2,
            "answer": {"selected": [1], "model": "m", "cached": true, "prompt_tokens": 0,
                       "completion_tokens": 0, "latency_ms": 0}});
        assert_eq!(
            interpret(
                &json!({"type": "subscribed", "quiz_id": "q"}),
                &mut after,
                &mut record
            ),
            None
        );
        assert_eq!(
            interpret(&json!({"type": "quiz", "total": 3}), &mut after, &mut record),
            None
        );
        assert_eq!(interpret(&answered, &mut after, &mut record), None);
        // A repeat of seq 1 (as after a resume) is dropped.
        assert_eq!(interpret(&answered, &mut after, &mut record), None);
        let failed = json!({"type": "question_answered", "quiz_id": "q", "seq": 2, "index": 0, "error": "x"});
        assert_eq!(interpret(&failed, &mut after, &mut record), None);
        let stats = json!({"type": "stats", "stats": {"total": 3, "answered": 1, "failed": 1}});
        assert_eq!(interpret(&stats, &mut after, &mut record), None);
        let end = json!({"type": "quiz_failed", "quiz_id": "q", "seq": 3, "reason": "every question failed"});
        assert_eq!(
            interpret(&end, &mut after, &mut record),
            Some(Finish::Failed("every question failed".into()))
        );
        assert_eq!(after, 3);
        assert_eq!(
            updates,
            vec![
                Update::Total(3),
                Update::Answered {
                    index: 2,
                    failed: false,
                    cached: true
                },
                Update::Answered {
                    index: 0,
                    failed: true,
                    cached: false
                },
                Update::Counts {
                    total: 3,
                    answered: 1,
                    failed: 1
                },
            ]
        );
    }

    #[test]
    fn a_refused_handshake_names_the_status_and_the_problem() {
        let response = tungstenite::http::Response::builder()
            .status(401)
            .body(Some(
                br#"{"type": "urn:quizstats:problem:unauthenticated", "detail": "the API key is not valid"}"#
                    .to_vec(),
            ))
            .unwrap();
        assert_eq!(
            handshake_refusal(&response),
            "the handshake answered 401 Unauthorized: the API key is not valid"
        );
        let response = tungstenite::http::Response::builder()
            .status(403)
            .body(None)
            .unwrap();
        assert_eq!(
            handshake_refusal(&response),
            "the handshake answered 403 Forbidden"
        );
    }

    /// A wss:// URL goes through rustls: in a workspace-wide build where two providers
    /// could meet, picking one must not panic (the scraper's WebDriver client once did).
    #[tokio::test]
    async fn wss_goes_through_rustls_and_a_failed_handshake_is_an_error_not_a_panic() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and hangs up: the TLS handshake starts, then fails.
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let endpoint = StreamEndpoint::parse(&format!("wss://{address}/v1/ws")).unwrap();
        let result = follow(&endpoint, "q", None, |_| {}).await;
        assert!(matches!(result, Err(StreamError::Unreachable(_))), "{result:?}");
    }

    #[test]
    fn application_close_codes_are_refusals_and_the_rest_are_resumed() {
        let frame = |code: u16, reason: &str| {
            Some(CloseFrame {
                code: code.into(),
                reason: reason.into(),
            })
        };
        assert!(matches!(
            closed(frame(4404, "unknown quiz")),
            Session::Refused { code: 4404, .. }
        ));
        assert!(matches!(
            closed(frame(1000, "quiz finished")),
            Session::ClosedNormally
        ));
        for code in [1001, 1008, 1012, 1013] {
            assert!(matches!(
                closed(frame(code, "")),
                Session::Broken { connected: true, .. }
            ));
        }
    }

    #[test]
    fn the_key_goes_in_the_subscribe_message_and_the_handshake_never_in_the_url() {
        let key = crate::credentials::resolve(Some("secret-key"), None, |_| None, std::path::Path::new("/"))
            .unwrap()
            .unwrap();
        let endpoint = StreamEndpoint::parse("ws://127.0.0.1:8083/v1/ws").unwrap();
        let message = subscribe_message("q1", 7, Some(&key));
        assert_eq!(
            message,
            json!({"type": "subscribe", "quiz_id": "q1", "after": 7, "stats": true, "token": "secret-key"})
        );
        let request = handshake_request(&endpoint.url, Some(&key)).unwrap();
        assert_eq!(request.headers()["authorization"], "Bearer secret-key");
        assert!(!request.uri().to_string().contains("secret"));
        assert!(subscribe_message("q1", 0, None).get("token").is_none());
        assert!(matches!(
            StreamEndpoint::parse("http://x/v1/ws"),
            Err(CliError::Usage(_))
        ));
    }
}
