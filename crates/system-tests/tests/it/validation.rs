//! Bad input gets a clear problem+json naming the field, never a 500.

use serde_json::{Value, json};
use system_tests::spawn_app;

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(body["title"].is_string());
    body
}

#[tokio::test]
async fn bad_quizzes_get_problem_json_naming_the_field() {
    let app = spawn_app().await.unwrap();

    let malformed = problem(
        app.post_raw("/v1/quizzes", "{\"questions\": [").await.unwrap(),
        400,
    )
    .await;
    assert!(
        malformed["detail"].as_str().unwrap().contains("EOF"),
        "{malformed}"
    );

    let missing = problem(
        app.post_json("/v1/quizzes", &json!({"questions": [{"options": ["a", "b"]}]}))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(missing["errors"][0]["pointer"], "/questions/0");
    assert!(
        missing["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `text`")
    );

    let no_questions = problem(app.post_json("/v1/quizzes", &json!({})).await.unwrap(), 422).await;
    assert!(
        no_questions["errors"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("questions")
    );

    let empty = problem(
        app.post_json("/v1/quizzes", &json!({"questions": []}))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(empty["errors"][0]["pointer"], "/questions");

    let one_option = problem(
        app.post_json(
            "/v1/quizzes",
            &json!({"questions": [{"text": "q", "options": ["a"]}]}),
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    assert_eq!(one_option["errors"][0]["pointer"], "/questions/0/options");

    let key = json!({"questions": [{"text": "q", "options": ["a", "b"]}], "answer_key": [[5]]});
    let out_of_range = problem(app.post_json("/v1/quizzes", &key).await.unwrap(), 422).await;
    assert_eq!(out_of_range["errors"][0]["pointer"], "/answer_key/0/0");

    let huge = json!({"questions": [{"text": "x".repeat(600 * 1024), "options": ["a", "b"]}]});
    let too_large = problem(app.post_json("/v1/quizzes", &huge).await.unwrap(), 413).await;
    assert!(too_large["detail"].as_str().unwrap().contains("bytes"));

    let wrong_type = problem(
        app.gateway_request(reqwest::Method::POST, "/v1/quizzes")
            .header("content-type", "text/plain")
            .body("hi")
            .send()
            .await
            .unwrap(),
        415,
    )
    .await;
    assert!(
        wrong_type["type"]
            .as_str()
            .unwrap()
            .starts_with("urn:quizstats:problem:")
    );

    let legacy = problem(
        app.post_json("/api/analyze", &json!({"questions": [{"question": "q"}]}))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(legacy["errors"][0]["pointer"], "/questions/0");

    // actix's own errors come out in the same shape.
    problem(app.http.get(app.gateway_url("/nope")).send().await.unwrap(), 404).await;
    problem(
        app.http
            .delete(app.gateway_url("/api/analyze"))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    problem(
        app.gateway_request(reqwest::Method::GET, "/v1/quizzes/does-not-exist")
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;

    // Nothing was queued by any of it.
    assert_eq!(app.scripted().calls(), 0);
    app.stop().await.unwrap();
}
