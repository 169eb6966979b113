//! The analyzer against the scripted LLM: retries, breaker, timeouts, single flight,
//! votes, the key audit and cost.

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::{Options, spawn_app, spawn_app_with};
use testkit::scripted_llm::Reply;

fn one_question(text: &str) -> serde_json::Value {
    json!({"questions": [{"text": text, "options": ["a", "b", "c"]}]})
}

#[tokio::test]
async fn a_429_is_retried_after_the_providers_retry_after() {
    let app = spawn_app().await.unwrap();
    app.scripted().push([Reply::Status {
        status: 429,
        message: "slow down".into(),
        retry_after_secs: Some(1),
    }]);
    let started = Instant::now();
    let id = app.submit(&one_question("Rate limited?")).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(app.scripted().calls(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "retried before Retry-After: {:?}",
        started.elapsed()
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn persistent_server_errors_open_the_breaker_and_later_questions_fail_fast() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.max_attempts = 1;
            settings.llm.breaker_threshold = 2;
            settings.llm.max_concurrency = 1;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().push((0..10).map(|_| Reply::Status {
        status: 500,
        message: "down".into(),
        retry_after_secs: None,
    }));
    let quiz = json!({"questions": (0..5).map(|i| json!({"text": format!("Broken {i}?"), "options": ["a", "b"]})).collect::<Vec<_>>()});
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "failed");
    assert_eq!(
        app.scripted().calls(),
        2,
        "the breaker should have stopped calls after two failures"
    );
    let errors: Vec<&str> = finished["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        errors.iter().filter(|error| error.contains("500")).count(),
        2,
        "{errors:#?}"
    );
    assert_eq!(
        errors
            .iter()
            .filter(|error| error.contains("circuit open"))
            .count(),
        3,
        "{errors:#?}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_that_hangs_times_out_and_fails_its_question() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.max_attempts = 1;
            settings.llm.timeout_ms = 300;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().push([Reply::Delay(Duration::from_secs(3))]);
    let id = app.submit(&one_question("Hangs?")).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert!(
        quiz["questions"][0]["error"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{quiz:#}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_quiz_keeps_its_calls_in_flight_side_by_side_up_to_the_limit() {
    let app = spawn_app().await.unwrap();
    app.scripted().set_latency(Duration::from_millis(150));
    let limit = analyzer::settings::LlmSettings::default().max_concurrency;
    let questions: Vec<_> = (0..10)
        .map(|i| json!({"text": format!("In-flight question {i}?"), "options": ["a", "b", "c"]}))
        .collect();
    let id = app.submit(&json!({ "questions": questions })).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(quiz["stats"]["answered"], 10, "{quiz:#}");
    assert_eq!(app.scripted().calls(), 10);
    // Each call takes 150 ms, so calls started side by side overlap: never more than
    // the limit, and the limit reached.
    assert_eq!(app.scripted().max_in_flight(), limit);
    // The timeline the overhead benchmark splits quizzes with: one entry per call, each
    // held for the latency.
    let timeline = app.scripted().timeline();
    assert_eq!(timeline.len(), 10);
    assert!(
        timeline
            .iter()
            .all(|call| call.replied.duration_since(call.arrived) >= Duration::from_millis(150))
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_hundred_concurrent_submissions_of_a_new_question_make_one_llm_call() {
    let app = spawn_app().await.unwrap();
    app.scripted().set_latency(Duration::from_millis(300));
    let quiz = one_question("Asked by everyone at once?");
    let ids = futures::future::join_all((0..100).map(|_| app.submit(&quiz))).await;
    for id in ids {
        let id = id.unwrap();
        let finished = app.wait_finished(&id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(finished["status"], "completed", "{finished:#}");
    }
    assert_eq!(app.scripted().calls(), 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn when_the_lease_holder_dies_another_caller_takes_over() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| settings.cache.lock_ttl_ms = 1_000),
        ..Default::default()
    })
    .await
    .unwrap();
    // A lease left by a replica that died mid-call: nobody renews it.
    let question = common::views::QuestionSpec {
        text: "Orphaned?".into(),
        options: vec!["a".into(), "b".into(), "c".into()],
        kind: common::views::QuestionKind::Single,
    };
    let key = analyzer::cache::CacheKey::new(&app.keys, "scripted-model", &question, 1);
    let pool = common::redis::pool(&common::settings::RedisSettings {
        url: system_tests::redis_url(),
        ..Default::default()
    })
    .unwrap();
    let mut connection = pool.get().await.unwrap();
    let _: () = deadpool_redis::redis::cmd("SET")
        .arg(app.keys.answer_lock(&key.digest))
        .arg("dead-replica")
        .arg("PX")
        .arg(1_000)
        .query_async(&mut connection)
        .await
        .unwrap();
    let started = Instant::now();
    let id = app.submit(&one_question("Orphaned?")).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(app.scripted().calls(), 1);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "answered before the dead lease expired"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn votes_report_the_majority_and_its_agreement() {
    let app = spawn_app().await.unwrap();
    app.scripted().push([
        Reply::Content(r#"{"answer": [0], "confidence": 0.9, "rationale": "a"}"#.into()),
        Reply::Content(r#"{"answer": [2], "confidence": 0.6, "rationale": "c"}"#.into()),
        Reply::Content(r#"{"answer": [2], "confidence": 0.7, "rationale": "c"}"#.into()),
    ]);
    let mut quiz = one_question("Three opinions?");
    quiz["votes"] = json!(3);
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    let answer = &finished["questions"][0]["answer"];
    assert_eq!(answer["selected"], json!([2]), "{finished:#}");
    assert_eq!(answer["confidence_source"], "votes");
    assert!((answer["confidence"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(app.scripted().calls(), 3);
    // The samples are drawn with a temperature; a single answer keeps the configured one (0).
    let temperatures: Vec<f64> = app
        .scripted()
        .requests()
        .iter()
        .map(|r| r["temperature"].as_f64().unwrap())
        .collect();
    assert!(temperatures.iter().all(|t| *t > 0.5), "{temperatures:?}");

    let mut too_many = one_question("Votes out of range?");
    too_many["votes"] = json!(50);
    let response = app.post_json("/v1/quizzes", &too_many).await.unwrap();
    assert_eq!(response.status(), 422);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_panel_of_models_shares_the_votes() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.vote_models = vec!["model-a".into(), "model-b".into(), "model-c".into()];
            settings.llm.prices.insert(
                "model-b".into(),
                analyzer::settings::Price {
                    prompt_per_million: 1_000_000.0,
                    completion_per_million: 0.0,
                },
            );
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().push([
        Reply::Content(r#"{"answer": [1], "confidence": 0.9, "rationale": "b"}"#.into()),
        Reply::Content(r#"{"answer": [1], "confidence": 0.8, "rationale": "b"}"#.into()),
        Reply::Content(r#"{"answer": [0], "confidence": 0.7, "rationale": "a"}"#.into()),
        Reply::Content(r#"{"answer": [1], "confidence": 0.6, "rationale": "b"}"#.into()),
    ]);
    let mut quiz = one_question("What does the panel say?");
    quiz["votes"] = json!(4);
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    let answer = &finished["questions"][0]["answer"];
    assert_eq!(answer["selected"], json!([1]), "{finished:#}");
    assert_eq!(answer["confidence_source"], "votes");
    assert!((answer["confidence"].as_f64().unwrap() - 0.75).abs() < 1e-9);
    assert_eq!(answer["model"], "model-a+model-b+model-c");

    // One call per vote, in turn over the panel: each model's first vote at the configured
    // temperature (0), the fourth vote (model-a again) sampled at the vote temperature.
    let mut calls: Vec<(String, f64)> = app
        .scripted()
        .requests()
        .iter()
        .map(|r| {
            (
                r["model"].as_str().unwrap().to_owned(),
                r["temperature"].as_f64().unwrap(),
            )
        })
        .collect();
    calls.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    assert_eq!(calls.len(), 4, "{calls:?}");
    let models: Vec<&str> = calls.iter().map(|(model, _)| model.as_str()).collect();
    assert_eq!(models, ["model-a", "model-a", "model-b", "model-c"]);
    assert_eq!(calls[0].1, 0.0);
    assert!(calls[1].1 > 0.5, "{calls:?}");
    assert_eq!((calls[2].1, calls[3].1), (0.0, 0.0));
    // The price table applies per model: only model-b's call costs anything.
    let cost = answer["cost_usd"].as_f64().unwrap();
    let tokens = answer["prompt_tokens"].as_f64().unwrap();
    assert!(
        cost > 0.0 && cost < tokens,
        "model-b's share only: {cost} for {tokens} tokens"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_key_audit_lists_confident_disagreements_and_the_cost_is_counted_once() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.audit.dispute_confidence = 0.6;
            settings.llm.prices.insert(
                "scripted-model".into(),
                analyzer::settings::Price {
                    prompt_per_million: 1_000.0,
                    completion_per_million: 2_000.0,
                },
            );
        }),
        tune_gateway: Some(|settings| settings.audit.dispute_confidence = 0.6),
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = app.scripted();
    llm.answer("Key says a?", &[1]);
    llm.answer("Key says b?", &[1]);
    let quiz = json!({
        "questions": [
            {"text": "Key says a?", "options": ["a", "b"]},
            {"text": "Key says b?", "options": ["a", "b"]}
        ],
        "answer_key": [[0], [1]]
    });
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    let stats = &finished["stats"];
    assert_eq!(stats["disagreements"], json!([0]), "{finished:#}");
    // The scripted logprobs give confidence 0.7 >= 0.6.
    assert_eq!(stats["disputed"], json!([0]));
    assert_eq!(stats["agreement_rate"], 0.5);
    // 2 calls of 50 prompt + 12 completion tokens at $1,000 / $2,000 per million.
    let expected = 2.0 * (50.0 * 1_000.0 + 12.0 * 2_000.0) / 1_000_000.0;
    assert!(
        (stats["cost_usd"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{stats}"
    );

    let again = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&again, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["stats"]["cost_usd"], 0.0, "cache hits cost nothing");
    assert_eq!(finished["stats"]["cache_hits"], 2);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn batches_share_calls_and_bad_entries_fall_back_to_their_own_call() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.batch_size = 3;
            settings.llm.max_concurrency = 1;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let llm = app.scripted();
    for i in 0..5u32 {
        llm.answer(&format!("Batched {i}?"), &[i % 3]);
    }
    let quiz = json!({"questions": (0..5).map(|i| json!({"text": format!("Batched {i}?"), "options": ["a", "b", "c"]})).collect::<Vec<_>>()});
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        app.scripted().calls(),
        2,
        "five questions in batches of three are two calls"
    );
    for (i, question) in finished["questions"].as_array().unwrap().iter().enumerate() {
        assert_eq!(question["answer"]["selected"], json!([i % 3]), "{finished:#}");
        assert_eq!(question["answer"]["confidence_source"], "logprobs");
    }
    let first_request = &app.scripted().requests()[0];
    assert!(first_request["response_format"]["schema"]["properties"]["q3"].is_object());

    // A partial batch: q2 missing, q3 out of range. Both are asked again on their own.
    app.scripted().push([Reply::Content(
        r#"{"q1": {"answer": [1], "confidence": 0.9, "rationale": "x"}, "q3": {"answer": [7]}}"#.into(),
    )]);
    for i in 0..3u32 {
        app.scripted().answer(&format!("Partial {i}?"), &[2]);
    }
    let quiz = json!({"questions": (0..3).map(|i| json!({"text": format!("Partial {i}?"), "options": ["a", "b", "c"]})).collect::<Vec<_>>()});
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(app.scripted().calls(), 2 + 1 + 2);
    let selected: Vec<&serde_json::Value> = finished["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| &q["answer"]["selected"])
        .collect();
    assert_eq!(
        selected,
        vec![&json!([1]), &json!([2]), &json!([2])],
        "{finished:#}"
    );
    // The scripted usage is 50 prompt and 12 completion tokens a call: a third of the batch
    // call each (17 and 4, rounded up), and the fallbacks their own call on top.
    let tokens = |finished: &serde_json::Value| -> Vec<(u64, u64)> {
        finished["questions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| {
                let answer = &q["answer"];
                (
                    answer["prompt_tokens"].as_u64().unwrap(),
                    answer["completion_tokens"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        tokens(&finished),
        vec![(17, 4), (67, 16), (67, 16)],
        "{finished:#}"
    );

    // A batch reply unusable as a whole was paid for too: every question asked again on its
    // own carries its share of it.
    app.scripted().push([Reply::Content("not JSON at all".into())]);
    for i in 0..3u32 {
        app.scripted().answer(&format!("Unusable {i}?"), &[0]);
    }
    let quiz = json!({"questions": (0..3).map(|i| json!({"text": format!("Unusable {i}?"), "options": ["a", "b", "c"]})).collect::<Vec<_>>()});
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(app.scripted().calls(), 2 + 1 + 2 + 1 + 3);
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(tokens(&finished), vec![(67, 16); 3], "{finished:#}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_cost_counter_counts_the_calls_of_a_question_that_failed() {
    // A price no other test uses, so what other tests in this process spend cannot reach
    // the figure asserted: 50 prompt and 12 completion tokens a call at $1,000 per token.
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.model = "costly-model".into();
            settings.llm.prices.insert(
                "costly-model".into(),
                analyzer::settings::Price {
                    prompt_per_million: 1e9,
                    completion_per_million: 1e9,
                },
            );
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = app.counter("llm_cost_usd_total", "").await.unwrap();
    // Out of range twice: the first reply and the one asked again with its error.
    app.scripted().push([
        Reply::Content(r#"{"answer": [9], "confidence": 0.5, "rationale": "x"}"#.into()),
        Reply::Content(r#"{"answer": [9], "confidence": 0.5, "rationale": "x"}"#.into()),
    ]);
    let id = app.submit(&one_question("Costly and failing?")).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(finished["status"], "failed", "{finished:#}");
    assert_eq!(app.scripted().calls(), 2);
    let spent = app.counter("llm_cost_usd_total", "").await.unwrap() - before;
    // The provider billed both calls, answer or not.
    assert!(
        spent >= 2.0 * 62_000.0 - 1.0,
        "llm_cost_usd_total rose by {spent}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_requests_per_minute_budget_spaces_the_calls_out() {
    // 120 calls/min: two at once, then one every 500 ms.
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.llm.requests_per_minute = Some(120);
            settings.llm.max_concurrency = 8;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let quiz = json!({"questions": (0..6).map(|i| json!({"text": format!("Budgeted question {i}?"), "options": ["a", "b"]})).collect::<Vec<_>>()});
    let started = Instant::now();
    let id = app.submit(&quiz).await.unwrap();
    let finished = app.wait_finished(&id, Duration::from_secs(30)).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(finished["status"], "completed", "{finished:#}");
    assert_eq!(app.scripted().calls(), 6);
    // Without the budget the six calls go at once (the scripted LLM answers in milliseconds);
    // with it the last four wait 500 ms each. A lower bound: a slow machine cannot break it.
    assert!(
        elapsed >= Duration::from_millis(1_900),
        "six calls at 120/min with a burst of two took only {elapsed:?}"
    );
    app.stop().await.unwrap();
}
