//! End to end against the real local llama.cpp server (`cargo xtask test` starts it).

use std::io::BufRead;
use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Options, RealLlm, spawn_app_with};

/// Questions from the shared MMLU sample, in the `POST /v1/quizzes` shape.
fn mmlu_questions(count: usize) -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/mmlu-public.jsonl"
    );
    let file = std::fs::File::open(path).unwrap_or_else(|error| panic!("cannot open {path}: {error}"));
    std::io::BufReader::new(file)
        .lines()
        .take(count)
        .map(|line| {
            let record: Value = serde_json::from_str(&line.unwrap()).unwrap();
            json!({"text": record["question"], "options": record["options"], "kind": "single"})
        })
        .collect()
}

#[tokio::test]
async fn every_answer_from_the_local_llama_server_is_a_valid_option() {
    let base_url = std::env::var("QUIZSTATS_TEST_LLM_URL").expect(
        "QUIZSTATS_TEST_LLM_URL is not set: run the tests with `cargo xtask test`, which starts the local llama.cpp server",
    );
    let models = reqwest::get(format!("{base_url}/models")).await;
    assert!(
        models
            .as_ref()
            .is_ok_and(|response| response.status().is_success()),
        "no LLM server answers at {base_url}: {models:?}"
    );
    let app = spawn_app_with(Options {
        llm: Some(RealLlm {
            base_url,
            model: "smollm2".into(),
            timeout_ms: 120_000,
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    let questions = mmlu_questions(50);
    let n_options: Vec<usize> = questions
        .iter()
        .map(|q| q["options"].as_array().unwrap().len())
        .collect();
    let id = app.submit(&json!({"questions": questions})).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(600)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(quiz["stats"]["failed"], 0, "{quiz:#}");
    for (question, n_options) in quiz["questions"].as_array().unwrap().iter().zip(n_options) {
        let selected = question["answer"]["selected"].as_array().unwrap();
        assert_eq!(selected.len(), 1, "{question:#}");
        assert!(
            (selected[0].as_u64().unwrap() as usize) < n_options,
            "{question:#}"
        );
        let confidence = question["answer"]["confidence"]
            .as_f64()
            .unwrap_or_else(|| panic!("no confidence: {question:#}"));
        assert!((0.0..=1.0).contains(&confidence));
        assert_eq!(question["answer"]["model"], "smollm2");
    }
    app.stop().await.unwrap();
}
