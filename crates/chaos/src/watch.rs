//! WebSocket watchers: one client per quiz that follows its events, reconnects with
//! `after=<last seq>` whenever the broadcaster goes away, and counts what a client must never
//! see: a sequence number skipped (gap), one seen twice (duplicate), or a question answered
//! twice under different sequence numbers.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

/// Pause before a reconnect, so a dead broadcaster is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(250);
/// How often a quiet stream looks at the deadline and the resume signal.
const READ_TICK: Duration = Duration::from_secs(1);

/// Shared between the watchers and the driver.
#[derive(Default)]
pub struct Progress {
    /// `question_answered` events seen by any watcher: "progress resumed" after a fault.
    pub answered: AtomicU64,
    /// Bumped by the driver at the end: a watcher that still has no terminal event although the
    /// quiz ended reconnects once with `after`, and is counted as stalled.
    pub resume_epoch: AtomicU64,
}

#[derive(Debug, Default, Clone)]
pub struct WatchReport {
    pub events: u64,
    /// Times the next `seq` was more than one past the last.
    pub gaps: u64,
    /// Events whose `seq` was not above the last one seen.
    pub duplicates: u64,
    /// `question_answered` for an index that already had one.
    pub repeated_indices: u64,
    pub reconnects: u64,
    pub terminal: bool,
    /// The live stream stopped short of the terminal event; only a resume showed the end.
    pub stalled: bool,
    /// The last `seq` the live stream delivered before it stalled.
    pub stalled_after_seq: u64,
    /// When the stalled stream delivered that last event.
    pub stalled_since: Option<Instant>,
    /// The last `seq` seen at all.
    pub last_seq: u64,
    last_event_at: Option<Instant>,
    /// What each gap, duplicate or repeated answer looked like ("gap: seq 4 then 6"), at most
    /// [`MAX_ANOMALIES`], to find the cause in the logs.
    pub anomalies: Vec<String>,
}

const MAX_ANOMALIES: usize = 10;

impl WatchReport {
    fn note(&mut self, anomaly: String) {
        if self.anomalies.len() < MAX_ANOMALIES {
            self.anomalies.push(anomaly);
        }
    }
}

pub async fn watch(
    port: u16,
    api_key: String,
    quiz_id: String,
    progress: Arc<Progress>,
    deadline: Instant,
) -> WatchReport {
    let mut report = WatchReport::default();
    let mut last_seq = 0u64;
    let mut indices = HashSet::new();
    let mut connections = 0u64;
    while Instant::now() < deadline && !report.terminal {
        let url = format!("ws://127.0.0.1:{port}/v1/ws?quiz_id={quiz_id}&after={last_seq}");
        let Ok(mut request) = url.into_client_request() else {
            return report;
        };
        if let Ok(value) = HeaderValue::from_str(&format!("Bearer {api_key}")) {
            request.headers_mut().insert("authorization", value);
        }
        let connected =
            tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(request)).await;
        let Ok(Ok((mut stream, _))) = connected else {
            tokio::time::sleep(RECONNECT_PAUSE).await;
            continue;
        };
        connections += 1;
        report.reconnects = connections - 1;
        let epoch_at_connect = progress.resume_epoch.load(Ordering::SeqCst);
        loop {
            let next = match tokio::time::timeout(READ_TICK, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    if Instant::now() >= deadline {
                        return report;
                    }
                    if progress.resume_epoch.load(Ordering::SeqCst) > epoch_at_connect {
                        report.stalled = true;
                        report.stalled_after_seq = last_seq;
                        report.stalled_since = report.last_event_at;
                        break;
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(Message::Text(text))) => {
                    on_event(&text, &mut report, &mut last_seq, &mut indices, &progress);
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            }
        }
        if !report.terminal {
            tokio::time::sleep(RECONNECT_PAUSE).await;
        }
    }
    report
}

fn on_event(
    text: &str,
    report: &mut WatchReport,
    last_seq: &mut u64,
    indices: &mut HashSet<u64>,
    progress: &Progress,
) {
    let Ok(event) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let Some(seq) = event["seq"].as_u64() else {
        return; // `subscribed`, and `quiz`/`stats` when asked for
    };
    let kind = event["type"].as_str().unwrap_or("?");
    if seq <= *last_seq {
        report.duplicates += 1;
        report.note(format!("duplicate: seq {seq} ({kind}) after seq {last_seq}"));
        return;
    }
    if seq > *last_seq + 1 {
        report.gaps += 1;
        report.note(format!("gap: seq {last_seq} then {seq} ({kind})"));
    }
    *last_seq = seq;
    report.last_seq = seq;
    report.last_event_at = Some(Instant::now());
    report.events += 1;
    match event["type"].as_str() {
        Some("question_answered") => {
            progress.answered.fetch_add(1, Ordering::SeqCst);
            if let Some(index) = event["index"].as_u64()
                && !indices.insert(index)
            {
                report.repeated_indices += 1;
                report.note(format!("question {index} answered again at seq {seq}"));
            }
        }
        Some("quiz_completed" | "quiz_failed") => report.terminal = true,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(texts: &[&str]) -> WatchReport {
        let (mut report, mut last_seq, mut indices) = (WatchReport::default(), 0, HashSet::new());
        let progress = Progress::default();
        for text in texts {
            on_event(text, &mut report, &mut last_seq, &mut indices, &progress);
        }
        report
    }

    #[test]
    fn an_in_order_stream_is_clean_and_ends() {
        let report = feed(&[
            r#"{"type": "subscribed", "quiz_id": "q", "after": 0}"#,
            r#"{"type": "question_answered", "seq": 1, "index": 0}"#,
            r#"{"type": "quiz_completed", "seq": 2}"#,
        ]);
        assert!(report.anomalies.is_empty());
        assert!(report.terminal);
        assert_eq!(report.events, 2);
    }

    #[test]
    fn skipped_repeated_and_twice_answered_are_counted() {
        let report = feed(&[
            r#"{"type": "question_answered", "seq": 1, "index": 0}"#,
            r#"{"type": "question_answered", "seq": 3, "index": 1}"#,
            r#"{"type": "question_answered", "seq": 3, "index": 1}"#,
            r#"{"type": "question_answered", "seq": 4, "index": 0}"#,
        ]);
        assert_eq!(
            (report.gaps, report.duplicates, report.repeated_indices),
            (1, 1, 1)
        );
        assert_eq!(report.anomalies.len(), 3);
    }
}
