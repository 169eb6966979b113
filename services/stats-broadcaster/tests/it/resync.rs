//! Events published while this replica's event queue did not exist (a broker outage) reach
//! no one; open streams and the quiz board must still get them, from the Redis log, once
//! consuming resumes.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use futures::SinkExt;
use serde_json::Value;
use testkit::fault_proxy::FaultProxy;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Socket, amqp_url, answer, next_json, quiz_spec, read_to_close, seqs, spawn_app};

/// The broadcaster's broker URL, through the test's proxy (`spawn_app` takes a plain fn).
static BROKER_THROUGH_PROXY: OnceLock<String> = OnceLock::new();

fn broker_address() -> SocketAddr {
    let url = amqp_url();
    let authority = url.split('@').nth(1).unwrap_or("127.0.0.1:5672/%2f");
    authority
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .parse()
        .expect("a host:port broker address")
}

#[tokio::test]
async fn a_stream_gets_the_events_published_while_its_replica_was_cut_from_the_broker() {
    let proxy = FaultProxy::start(broker_address()).await.unwrap();
    BROKER_THROUGH_PROXY
        .set(format!("amqp://guest:guest@{}/%2f", proxy.address()))
        .unwrap();
    let app = spawn_app(1, |settings| {
        settings.amqp.url = BROKER_THROUGH_PROXY.get().cloned().unwrap_or_default();
        settings.amqp.max_backoff_ms = 200;
    })
    .await
    .unwrap();
    let mut board = app.connect(0, "").await.unwrap();
    board
        .send(Message::text(r#"{"type":"subscribe_all"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut board).await.unwrap()["type"], "subscribed");
    let id = app.create_quiz(&quiz_spec(3)).await.unwrap();
    let mut client = app.connect(0, &format!("?quiz_id={id}")).await.unwrap();
    assert_eq!(next_json(&mut client).await.unwrap()["type"], "subscribed");
    app.emit(&id, vec![answer(0, 1, 0.9, false)]).await.unwrap();
    assert_eq!(next_json(&mut client).await.unwrap()["seq"], 1);
    board_shows(&mut board, &id, |quiz| quiz["answered"] == 1).await;

    // The broadcaster loses the broker, and with it its exclusive queue; the rest of the quiz
    // (the analyzer's side, here the test's own connection) happens meanwhile, so these
    // events are routed to no queue of this replica's.
    proxy.cut();
    app.emit(&id, vec![answer(1, 1, 0.8, false), answer(2, 0, 0.7, true)])
        .await
        .unwrap();
    app.finish(&id, 3).await.unwrap();
    proxy.restore();

    // Nothing more is ever published for this quiz: only the catch-up on reconnect can end it.
    let (messages, code, reason) = read_to_close(&mut client, Duration::from_secs(30)).await.unwrap();
    assert_eq!(seqs(&messages), vec![2, 3, 4], "{messages:?}");
    assert_eq!((code, reason.as_str()), (1000, "quiz finished"));
    // The board, too, shows the quiz ended with all three answers, counted once each.
    board_shows(&mut board, &id, |quiz| {
        quiz["status"] == "completed" && quiz["answered"] == 3
    })
    .await;
    app.stop().await.unwrap();
}

/// Reads board messages until one shows quiz `id` as `wanted` says; panics after 30 s.
async fn board_shows(board: &mut Socket, id: &str, wanted: impl Fn(&Value) -> bool) {
    let waiting = async {
        loop {
            let message = next_json(board).await.unwrap();
            if matches!(message["type"].as_str(), Some("quiz_added" | "quiz_updated"))
                && message["quiz"]["id"] == id
                && wanted(&message["quiz"])
            {
                return;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the board never showed the quiz as expected");
}
