//! A quiz travels gateway → analyzer → broadcaster, answered and streamed in order.

use std::time::Duration;

use serde_json::json;
use system_tests::spawn_app;

fn sample_quiz() -> serde_json::Value {
    json!({
        "questions": [
            {"text": "What is the capital of France?", "options": ["Berlin", "Paris", "Rome"], "kind": "single"},
            {"text": "Which are prime numbers?", "options": ["2", "4", "5", "9"], "kind": "multiple"},
            {"text": "The Earth orbits the Sun.", "options": ["True", "False"], "kind": "true_false"}
        ],
        "answer_key": [[1], [0, 2], [0]]
    })
}

#[tokio::test]
async fn a_submitted_quiz_is_answered_and_streamed_in_order() {
    let app = spawn_app().await.unwrap();
    let llm = app.scripted();
    llm.answer("What is the capital of France?", &[1]);
    llm.answer("Which are prime numbers?", &[0, 3]);
    llm.answer("The Earth orbits the Sun.", &[0]);

    let id = app.submit(&sample_quiz()).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(quiz["questions"][0]["answer"]["selected"], json!([1]));
    assert_eq!(quiz["questions"][1]["answer"]["selected"], json!([0, 3]));
    assert_eq!(quiz["questions"][2]["answer"]["selected"], json!([0]));
    assert_eq!(quiz["questions"][0]["answer"]["cached"], false);
    // The scripted server gives the answer digit probability 0.7 in its logprobs.
    assert_eq!(quiz["questions"][0]["answer"]["confidence_source"], "logprobs");
    let confidence = quiz["questions"][0]["answer"]["confidence"].as_f64().unwrap();
    assert!((confidence - 0.7).abs() < 1e-6, "{confidence}");
    assert_eq!(quiz["questions"][1]["agrees_with_key"], false);
    let stats = &quiz["stats"];
    assert_eq!(
        (
            stats["total"].as_u64(),
            stats["answered"].as_u64(),
            stats["failed"].as_u64()
        ),
        (Some(3), Some(3), Some(0))
    );
    assert_eq!(stats["disagreements"], json!([1]));
    assert!((stats["agreement_rate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(llm.calls(), 3);

    // A client that subscribes afterwards still gets every event, in order, then the end.
    let events = app.collect_events(&id, 0, Duration::from_secs(10)).await.unwrap();
    assert_eq!(events[0]["type"], "subscribed");
    let seqs: Vec<u64> = events[1..]
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
    assert_eq!(events.last().unwrap()["type"], "quiz_completed");
    let answered: Vec<u64> = events[1..4]
        .iter()
        .map(|event| event["index"].as_u64().unwrap())
        .collect();
    let mut sorted = answered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2]);

    // Resuming after seq 2 yields exactly the rest.
    let resumed = app.collect_events(&id, 2, Duration::from_secs(10)).await.unwrap();
    let seqs: Vec<u64> = resumed[1..]
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![3, 4]);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_live_subscriber_sees_every_event_as_it_happens() {
    let app = spawn_app().await.unwrap();
    // Slow answers, so that the subscriber is connected before the first one.
    app.scripted().set_latency(Duration::from_millis(300));
    let id = app.submit(&sample_quiz()).await.unwrap();
    let events = app.collect_events(&id, 0, Duration::from_secs(20)).await.unwrap();
    let seqs: Vec<u64> = events[1..]
        .iter()
        .map(|event| event["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "{events:#?}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn resubmitting_the_same_questions_makes_no_llm_calls() {
    let app = spawn_app().await.unwrap();
    let first = app.submit(&sample_quiz()).await.unwrap();
    app.wait_finished(&first, Duration::from_secs(20)).await.unwrap();
    let calls = app.scripted().calls();
    assert_eq!(calls, 3);

    // Same questions, options shuffled and respelled: still all cache hits.
    let shuffled = json!({
        "questions": [
            {"text": "what is the  capital of France?", "options": ["Rome", "PARIS", "Berlin"]},
            {"text": "Which are prime numbers?", "options": ["9", "5", "4", "2"], "kind": "multiple"},
            {"text": "The Earth orbits the Sun.", "options": ["True", "False"], "kind": "true_false"}
        ]
    });
    app.scripted().answer("What is the capital of France?", &[1]);
    let second = app.submit(&shuffled).await.unwrap();
    let quiz = app.wait_finished(&second, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        app.scripted().calls(),
        calls,
        "a cached question was paid for again"
    );
    assert_eq!(quiz["stats"]["cache_hits"], 3);
    for question in quiz["questions"].as_array().unwrap() {
        assert_eq!(question["answer"]["cached"], true);
    }
    // The first run chose option 0 ("Berlin") for question 0 by default; mapped into
    // the shuffled order that is index 2.
    assert_eq!(quiz["questions"][0]["answer"]["selected"], json!([2]));
    // "2" was index 0, now index 3.
    assert_eq!(quiz["questions"][1]["answer"]["selected"], json!([3]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_original_analyze_contract_still_works() {
    let app = spawn_app().await.unwrap();
    app.scripted().answer("2 + 2 = ?", &[2]);
    let response = app
        .post_json(
            "/api/analyze",
            &json!({"questions": [
                {"question": "2 + 2 = ?", "answers": ["3", "5", "4"]},
                {"question": "Sky colour?", "answers": ["Blue", "Green"]}
            ]}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "success");
    assert_eq!(body["answers"], json!([3, 1]));
    assert_eq!(body["questionCount"], 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_original_contract_answers_504_past_its_wait_and_the_quiz_still_completes() {
    let app = system_tests::spawn_app_with(system_tests::Options {
        legacy_wait_ms: Some(200),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().set_latency(Duration::from_millis(600));
    let response = app
        .post_json(
            "/api/analyze",
            &json!({"questions": [{"question": "Slow?", "answers": ["Yes", "No"]}]}),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let problem: serde_json::Value = response.json().await.unwrap();
    let detail = problem["detail"].as_str().unwrap();
    let id = detail.split_whitespace().nth(1).unwrap();
    let quiz = app.wait_finished(id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(quiz["status"], "completed");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn llm_failures_fail_the_question_not_the_quiz() {
    use testkit::scripted_llm::Reply;
    let app = spawn_app().await.unwrap();
    // Question 1 of 2 gets a persistent 400 (not retried); the other is answered.
    app.scripted().push([Reply::Status {
        status: 400,
        message: "bad request".into(),
        retry_after_secs: None,
    }]);
    let quiz = json!({"questions": [
        {"text": "First?", "options": ["a", "b"]}
    ]});
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "failed", "{finished:#}");
    assert!(
        finished["reason"].as_str().unwrap().contains("400"),
        "{finished:#}"
    );
    assert!(
        finished["questions"][0]["error"]
            .as_str()
            .unwrap()
            .contains("400")
    );

    // Transient failures are retried: a 500, then a broken body, then success.
    app.scripted().push([
        Reply::Status {
            status: 500,
            message: "boom".into(),
            retry_after_secs: None,
        },
        Reply::MalformedBody,
    ]);
    let id = app
        .submit(&json!({"questions": [{"text": "Second?", "options": ["a", "b"]}]}))
        .await
        .unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(finished["questions"][0]["answer"]["selected"], json!([0]));

    // An invalid reply is shown its error once; the corrected reply is used.
    app.scripted().push([Reply::Content(
        r#"{"answer": [7], "confidence": 1, "rationale": "x"}"#.into(),
    )]);
    app.scripted().answer("Third?", &[1]);
    let id = app
        .submit(&json!({"questions": [{"text": "Third?", "options": ["a", "b"]}]}))
        .await
        .unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        finished["questions"][0]["answer"]["selected"],
        json!([1]),
        "{finished:#}"
    );
    let retry = app.scripted().requests().last().unwrap().clone();
    let last_message = retry["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(last_message.contains("option 7 does not exist"), "{last_message}");
    app.stop().await.unwrap();
}
