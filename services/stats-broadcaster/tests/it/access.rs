//! Who may watch: the gateway's API keys with the read scope, each key only its own quizzes
//! (admins every quiz), presented as a header, in the query string or in the first message.

use std::time::Duration;

use futures::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::helpers::{
    ADMIN_KEY, OTHER_KEY, OWNER_KEY, SUBMIT_ONLY_KEY, Socket, TestApp, next_json, quiz_spec, read_to_close,
    spawn_app,
};

/// The HTTP status of a refused handshake, or `None` when it was upgraded.
async fn handshake_status(url: &str, bearer: Option<&str>) -> Option<u16> {
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = bearer {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            assert!(body.contains("\"status\""), "refusals are problem+json: {body}");
            Some(response.status().as_u16())
        }
        Err(other) => panic!("handshake failed otherwise: {other}"),
    }
}

async fn anonymous(app: &TestApp) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(app.anonymous_ws_url(0, ""))
        .await
        .unwrap();
    socket
}

#[tokio::test]
async fn keys_in_headers_or_the_query_are_checked_before_the_upgrade() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(1)).await.unwrap();
    let by_query = app.anonymous_ws_url(0, &format!("?quiz_id={id}"));

    assert_eq!(handshake_status(&by_query, None).await, Some(401), "no key");
    assert_eq!(
        handshake_status(&by_query, Some("guess")).await,
        Some(401),
        "unknown key"
    );
    assert_eq!(
        handshake_status(&by_query, Some(SUBMIT_ONLY_KEY)).await,
        Some(403),
        "no read scope"
    );
    assert_eq!(
        handshake_status(&format!("{by_query}&token={SUBMIT_ONLY_KEY}"), None).await,
        Some(403),
        "no read scope, by query"
    );
    assert_eq!(
        handshake_status(&by_query, Some(OWNER_KEY)).await,
        None,
        "the owner"
    );
    assert_eq!(
        handshake_status(&by_query, Some(ADMIN_KEY)).await,
        None,
        "an admin"
    );

    // Another reader's key is let in, then told the quiz does not exist, as the gateway does.
    let mut request = by_query.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("x-api-key", OTHER_KEY.parse().unwrap());
    let (mut other, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let (messages, code, reason) = read_to_close(&mut other, Duration::from_secs(10)).await.unwrap();
    assert!(messages.is_empty(), "{messages:?}");
    assert_eq!((code, reason.as_str()), (4404, "unknown quiz"));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_in_the_first_message_subscribes_and_a_missing_one_closes_4401() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(1)).await.unwrap();

    let mut keyed = anonymous(&app).await;
    keyed
        .send(Message::text(
            json!({"type": "subscribe", "quiz_id": id, "token": OWNER_KEY}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut keyed).await.unwrap()["type"], "subscribed");

    for (message, code) in [
        (json!({"type": "subscribe", "quiz_id": id}), 4401),
        (json!({"type": "subscribe_all", "token": "guess"}), 4401),
        (json!({"type": "subscribe_all", "token": SUBMIT_ONLY_KEY}), 4403),
    ] {
        let mut socket = anonymous(&app).await;
        socket.send(Message::text(message.to_string())).await.unwrap();
        let (messages, closed_with, reason) =
            read_to_close(&mut socket, Duration::from_secs(10)).await.unwrap();
        assert!(messages.is_empty(), "{message}: {messages:?}");
        assert_eq!(closed_with, code, "{message}: {reason}");
    }
    app.stop().await.unwrap();
}

/// The ids of the quizzes in a board snapshot.
fn snapshot_ids(snapshot: &serde_json::Value) -> Vec<String> {
    assert_eq!(snapshot["type"], "quizzes");
    snapshot["quizzes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|quiz| quiz["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn board(app: &TestApp, key: &str) -> Socket {
    let mut socket = anonymous(app).await;
    socket
        .send(Message::text(
            json!({"type": "subscribe_all", "token": key}).to_string(),
        ))
        .await
        .unwrap();
    assert_eq!(next_json(&mut socket).await.unwrap()["type"], "subscribed");
    socket
}

/// The next `quiz_added` on a board, skipping other messages.
async fn next_added(socket: &mut Socket) -> String {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(20), next_json(socket))
            .await
            .unwrap()
            .unwrap();
        if message["type"] == "quiz_added" {
            return message["quiz"]["id"].as_str().unwrap().to_owned();
        }
    }
}

#[tokio::test]
async fn the_board_shows_each_key_only_its_own_quizzes() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let alices = app.create_quiz(&quiz_spec(1)).await.unwrap();

    let mut bob = board(&app, OTHER_KEY).await;
    let mut admin = board(&app, ADMIN_KEY).await;
    let mut alice = board(&app, OWNER_KEY).await;
    let bob_sees = snapshot_ids(&next_json(&mut bob).await.unwrap());
    assert!(!bob_sees.contains(&alices), "{bob_sees:?}");
    assert!(snapshot_ids(&next_json(&mut admin).await.unwrap()).contains(&alices));
    assert!(snapshot_ids(&next_json(&mut alice).await.unwrap()).contains(&alices));

    // Live changes: alice's new quiz is announced before bob's, so the first addition bob
    // is sent must be his own.
    let alices_next = app.create_quiz(&quiz_spec(1)).await.unwrap();
    let bobs = app.create_quiz_for(&quiz_spec(1), "bob").await.unwrap();
    assert_eq!(next_added(&mut bob).await, bobs);
    assert_eq!(next_added(&mut alice).await, alices_next);
    assert_eq!(next_added(&mut admin).await, alices_next);
    assert_eq!(next_added(&mut admin).await, bobs);
    app.stop().await.unwrap();
}
