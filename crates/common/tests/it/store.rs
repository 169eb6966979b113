//! Quiz state in a real Redis: terminal statuses stick, events come back in order.

use common::keys::Keys;
use common::settings::RedisSettings;
use common::store::QuizStore;
use common::views::{EventView, QuestionKind, QuestionOutcome, QuestionSpec, QuizSpec, QuizStatus};

fn store(prefix: &str) -> QuizStore {
    let pool = common::redis::pool(&RedisSettings::default()).unwrap();
    QuizStore::new(pool, Keys::new(format!("{prefix}:")), 60)
}

fn spec() -> QuizSpec {
    QuizSpec {
        questions: vec![QuestionSpec {
            text: "q".into(),
            options: vec!["a".into(), "b".into()],
            kind: QuestionKind::Single,
        }],
        answer_key: None,
        votes: 1,
    }
}

#[tokio::test]
async fn a_finished_quiz_never_goes_back() {
    let store = store(&crate::unique("store"));
    store.create("quiz", &spec()).await.unwrap();
    assert_eq!(store.status("quiz").await.unwrap(), Some(QuizStatus::Queued));
    store
        .set_status("quiz", QuizStatus::Completed, None)
        .await
        .unwrap();
    store
        .set_status("quiz", QuizStatus::Analyzing, None)
        .await
        .unwrap();
    assert_eq!(store.status("quiz").await.unwrap(), Some(QuizStatus::Completed));
    // An unknown quiz is not created by a status write.
    store
        .set_status("ghost", QuizStatus::Analyzing, None)
        .await
        .unwrap();
    assert_eq!(store.status("ghost").await.unwrap(), None);
    store.delete("quiz").await.unwrap();
    assert!(store.load("quiz").await.unwrap().is_none());
}

#[tokio::test]
async fn events_come_back_in_sequence_after_a_cursor() {
    let store = store(&crate::unique("store"));
    store.create("quiz", &spec()).await.unwrap();
    let first = store.reserve_seq("quiz", 3).await.unwrap();
    assert_eq!(first, 1);
    assert_eq!(store.reserve_seq("quiz", 1).await.unwrap(), 4);
    let outcome = QuestionOutcome {
        index: 0,
        answer: None,
        error: Some("x".into()),
        agrees_with_key: None,
    };
    let events: Vec<EventView> = [3u64, 1, 2]
        .iter()
        .map(|&seq| EventView::QuestionAnswered {
            quiz_id: "quiz".into(),
            seq,
            outcome: outcome.clone(),
        })
        .collect();
    store.record("quiz", &[outcome], &events).await.unwrap();
    let after_one: Vec<u64> = store
        .events_after("quiz", 1)
        .await
        .unwrap()
        .iter()
        .map(EventView::seq)
        .collect();
    assert_eq!(after_one, vec![2, 3]);
    let loaded = store.load("quiz").await.unwrap().unwrap();
    assert_eq!(loaded.outcomes.len(), 1);
    store.delete("quiz").await.unwrap();
}
