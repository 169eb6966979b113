//! Fan-out: a slow client is cut off without holding back a fast one, and every
//! replica delivers every event to its own clients.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{answer, quiz_spec, read_to_close, seqs, spawn_app};

/// Events published in the slow-client test, and their size: together far more than
/// the per-quiz buffer, the session's outgoing queue and the sockets' buffers hold.
const N_EVENTS: u32 = 400;
const RATIONALE_BYTES: usize = 32 * 1024;
const BATCH: u32 = 8;

#[tokio::test]
async fn a_slow_client_is_disconnected_while_a_fast_one_gets_every_event_promptly() {
    let app = spawn_app(1, |settings| settings.ws.buffer = 16).await.unwrap();
    let id = app.create_quiz(&quiz_spec(1)).await.unwrap();

    // The slow client: a tiny receive buffer, and it reads nothing until the end.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(app.replicas[0]).await.unwrap();
    let tcp = tokio_tungstenite::MaybeTlsStream::Plain(tcp);
    let (mut slow, _) = tokio_tungstenite::client_async(app.ws_url(0, &format!("?quiz_id={id}")), tcp)
        .await
        .unwrap();

    let mut fast = app.connect(0, &format!("?quiz_id={id}")).await.unwrap();
    let (seen_tx, mut seen) = tokio::sync::watch::channel(0u64);
    let reader = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(Ok(message)) = fast.next().await {
            if let Message::Text(text) = message {
                let value: serde_json::Value = serde_json::from_str(&text).unwrap();
                if let Some(seq) = value["seq"].as_u64() {
                    received.push(seq);
                    let _ = seen_tx.send(seq);
                }
            }
        }
        received
    });

    let rationale = "x".repeat(RATIONALE_BYTES);
    let mut slowest = Duration::ZERO;
    for first in (0..N_EVENTS).step_by(BATCH as usize) {
        let outcomes = (first..first + BATCH)
            .map(|index| {
                let mut outcome = answer(index, 1, 0.9, false);
                if let Some(answer) = &mut outcome.answer {
                    answer.rationale = rationale.clone();
                }
                outcome
            })
            .collect();
        let started = Instant::now();
        app.emit(&id, outcomes).await.unwrap();
        // The fast client keeps up: each batch reaches it promptly.
        let target = u64::from(first + BATCH);
        tokio::time::timeout(Duration::from_secs(5), seen.wait_for(|seq| *seq >= target))
            .await
            .expect("the fast client fell behind")
            .unwrap();
        slowest = slowest.max(started.elapsed());
    }
    app.finish(&id, N_EVENTS).await.unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<u64> = (1..=u64::from(N_EVENTS) + 1).collect();
    assert_eq!(received, expected, "the fast client missed events");
    assert!(slowest < Duration::from_secs(2), "slowest batch took {slowest:?}");

    // The slow client now reads: a gap-free prefix, then the documented close.
    let (events, code, reason) = read_to_close(&mut slow, Duration::from_secs(30)).await.unwrap();
    let got = seqs(&events);
    let last = got.last().copied().unwrap_or(0);
    assert_eq!(got, (1..=last).collect::<Vec<_>>());
    assert!(last < u64::from(N_EVENTS), "the slow client was never cut off");
    assert_eq!(code, 1008);
    assert_eq!(reason, format!("too slow: resume with after={last}"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_replicas_each_deliver_every_event_to_their_clients() {
    let app = spawn_app(2, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(5)).await.unwrap();
    let mut first = app.connect(0, &format!("?quiz_id={id}")).await.unwrap();
    let mut second = app.connect(1, &format!("?quiz_id={id}&stats=1")).await.unwrap();
    for index in 0..5 {
        app.emit(&id, vec![answer(index, index % 4, 0.9, false)])
            .await
            .unwrap();
    }
    app.finish(&id, 5).await.unwrap();
    let deadline = Duration::from_secs(20);
    let (from_first, code_first, _) = read_to_close(&mut first, deadline).await.unwrap();
    let (from_second, code_second, _) = read_to_close(&mut second, deadline).await.unwrap();
    assert_eq!((code_first, code_second), (1000, 1000));
    assert_eq!(seqs(&from_first), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(seqs(&from_second), vec![1, 2, 3, 4, 5, 6]);
    let stats = from_second
        .iter()
        .rev()
        .find(|message| message["type"] == "stats")
        .unwrap();
    assert_eq!(stats["stats"]["answered"], 5);
    assert_eq!(
        stats["stats"]["option_histogram"],
        serde_json::json!([2, 1, 1, 1])
    );
    app.stop().await.unwrap();
}
