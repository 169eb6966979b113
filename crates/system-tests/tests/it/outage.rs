//! With the broker gone the gateway refuses (503) instead of losing quizzes, and
//! recovers by itself when the broker is back.

use std::time::Duration;

use serde_json::json;
use system_tests::{Options, spawn_app_with};

#[tokio::test]
async fn broker_outage_gives_503_then_recovers() {
    let app = spawn_app_with(Options {
        gateway_through_proxy: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let quiz = json!({"questions": [{"text": "Outage?", "options": ["a", "b"]}]});
    let proxy = app.gateway_proxy.as_ref().unwrap();

    proxy.cut();
    // Readiness goes red once the gateway notices the dead connection.
    testkit::eventually(Duration::from_secs(10), || async {
        let response = app.http.get(app.gateway_url("/readyz")).send().await.ok()?;
        (response.status() == 503).then_some(())
    })
    .await
    .unwrap();
    let response = app.post_json("/v1/quizzes", &quiz).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    assert!(response.headers().contains_key("retry-after"));
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "urn:quizstats:problem:broker-unavailable");

    proxy.restore();
    let id = testkit::eventually(Duration::from_secs(20), || async {
        let response = app.post_json("/v1/quizzes", &quiz).await.ok()?;
        if response.status() == 202 {
            let body: serde_json::Value = response.json().await.ok()?;
            return body["id"].as_str().map(str::to_owned);
        }
        None
    })
    .await
    .unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "completed");
    app.stop().await.unwrap();
}
