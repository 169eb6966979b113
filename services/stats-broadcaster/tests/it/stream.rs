//! The quiz stream with and without `stats`, and the `subscribe_all` board.

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{answer, next_json, quiz_spec, read_to_close, seqs, spawn_app};

const DEADLINE: Duration = Duration::from_secs(20);

fn last_stats(messages: &[Value]) -> &Value {
    &messages
        .iter()
        .rev()
        .find(|message| message["type"] == "stats")
        .expect("a stats message")["stats"]
}

#[tokio::test]
async fn stats_clients_get_the_quiz_and_running_stats_from_snapshot_and_live_events() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(4)).await.unwrap();
    // One event before anyone connects: it comes from the snapshot.
    app.emit(&id, vec![answer(0, 1, 0.9, false)]).await.unwrap();

    let mut client = app
        .connect(0, &format!("?quiz_id={id}&after=0&stats=1"))
        .await
        .unwrap();
    let mut plain = app.connect(0, &format!("?quiz_id={id}")).await.unwrap();
    let head: Vec<Value> = [
        next_json(&mut client).await.unwrap(),
        next_json(&mut client).await.unwrap(),
        next_json(&mut client).await.unwrap(),
        next_json(&mut client).await.unwrap(),
    ]
    .into();
    assert_eq!(head[0]["type"], "subscribed");
    assert_eq!(head[1]["type"], "quiz");
    assert_eq!(head[1]["total"], 4);
    assert_eq!(head[1]["questions"][0]["options"][1], "Paris");
    assert_eq!(
        (head[2]["type"].as_str(), head[2]["seq"].as_u64()),
        (Some("question_answered"), Some(1))
    );
    assert_eq!(
        (head[3]["type"].as_str(), head[3]["as_of_seq"].as_u64()),
        (Some("stats"), Some(1))
    );
    assert_eq!(head[3]["stats"]["answered"], 1);

    // Live: a disputed disagreement (0.95 >= 0.8), a cache hit, a failure, then the end.
    app.emit(&id, vec![answer(1, 2, 0.95, false), answer(2, 1, 0.5, true)])
        .await
        .unwrap();
    let mut failed = answer(3, 0, 0.0, false);
    failed.answer = None;
    failed.error = Some("llm provider answered 400".into());
    failed.agrees_with_key = None;
    app.emit(&id, vec![failed]).await.unwrap();
    let final_stats = app.finish(&id, 4).await.unwrap();

    let (rest, code, reason) = read_to_close(&mut client, DEADLINE).await.unwrap();
    assert_eq!((code, reason.as_str()), (1000, "quiz finished"));
    assert_eq!(seqs(&rest), vec![2, 3, 4, 5]);
    // A stats message follows every live event.
    let kinds: Vec<&str> = rest
        .iter()
        .map(|message| message["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "question_answered",
            "stats",
            "question_answered",
            "stats",
            "question_answered",
            "stats",
            "quiz_completed",
            "stats"
        ]
    );
    let stats = last_stats(&rest);
    assert_eq!(stats["state"], "completed");
    assert_eq!(
        (
            stats["total"].as_u64(),
            stats["answered"].as_u64(),
            stats["failed"].as_u64()
        ),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(stats["option_histogram"], json!([0, 2, 1, 0]));
    assert_eq!(stats["disagreements"], json!([1]));
    assert_eq!(stats["disputed"], json!([1]));
    assert_eq!(stats["dispute_confidence"], 0.8);
    assert_eq!(stats["latency_ms"], json!({"p50": 100, "p95": 200, "samples": 2}));
    assert!((stats["cache_hit_share"].as_f64().unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert!((stats["mean_confidence"].as_f64().unwrap() - (0.9 + 0.95 + 0.5) / 3.0).abs() < 1e-9);
    assert_eq!(stats["prompt_tokens"], 240);
    // The live numbers end where the analyzer's final numbers are.
    assert_eq!(stats["agreement_rate"].as_f64(), final_stats.agreement_rate);
    assert_eq!(stats["cache_hits"], final_stats.cache_hits);
    assert_eq!(stats["questions"][1]["selected"], json!([2]));

    // Without `stats` the stream is unchanged: subscribed, then events only.
    let (events, code, _) = read_to_close(&mut plain, DEADLINE).await.unwrap();
    assert_eq!(code, 1000);
    assert_eq!(events[0]["type"], "subscribed");
    assert_eq!(seqs(&events[1..]), vec![1, 2, 3, 4, 5]);
    assert_eq!(events.len(), 6);

    // Resuming (here, or on any replica) gives the rest of the events and the same numbers.
    let mut resumed = app.connect(0, "").await.unwrap();
    resumed
        .send(Message::text(
            json!({"type": "subscribe", "quiz_id": id, "after": 3, "stats": true}).to_string(),
        ))
        .await
        .unwrap();
    let (again, code, _) = read_to_close(&mut resumed, DEADLINE).await.unwrap();
    assert_eq!(code, 1000);
    assert_eq!(seqs(&again), vec![4, 5]);
    assert_eq!(last_stats(&again), stats);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn subscribe_all_sends_the_board_then_changes_and_the_global_view() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let mut board = app.connect(0, "").await.unwrap();
    board
        .send(Message::text(r#"{"type":"subscribe_all"}"#))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut board).await.unwrap(),
        json!({"type": "subscribed", "mode": "all"})
    );
    let snapshot = next_json(&mut board).await.unwrap();
    assert_eq!(snapshot["type"], "quizzes");
    assert!(snapshot["quizzes"].is_array());
    assert_eq!(snapshot["global"]["window_secs"], 10);

    let id = app.create_quiz(&quiz_spec(2)).await.unwrap();
    app.emit(&id, vec![answer(0, 1, 0.9, false)]).await.unwrap();
    app.emit(&id, vec![answer(1, 1, 0.9, false)]).await.unwrap();
    app.finish(&id, 2).await.unwrap();

    let mut changes = Vec::new();
    let collecting = async {
        loop {
            let message = next_json(&mut board).await.unwrap();
            if matches!(message["type"].as_str(), Some("quiz_added" | "quiz_updated"))
                && message["quiz"]["id"] == id.as_str()
            {
                let done = message["quiz"]["status"] == "completed";
                changes.push(message);
                if done {
                    break;
                }
            }
        }
        // The next global view counts the answers just seen.
        loop {
            let message = next_json(&mut board).await.unwrap();
            if message["type"] == "global" {
                return message;
            }
        }
    };
    let global = tokio::time::timeout(DEADLINE, collecting).await.unwrap();
    assert_eq!(changes[0]["type"], "quiz_added");
    assert_eq!(changes[0]["quiz"]["n_questions"], 2);
    assert_eq!(changes[0]["quiz"]["status"], "queued");
    let last = &changes.last().unwrap()["quiz"];
    assert_eq!(
        (last["answered"].as_u64(), last["status"].as_str()),
        (Some(2), Some("completed"))
    );
    assert!(
        global["global"]["questions_per_sec"].as_f64().unwrap() > 0.0,
        "{global}"
    );
    app.stop().await.unwrap();
}
