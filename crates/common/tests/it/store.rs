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
    // Each write reports the status it found.
    assert_eq!(
        store
            .set_status("quiz", QuizStatus::Completed, None)
            .await
            .unwrap(),
        Some(QuizStatus::Queued)
    );
    assert_eq!(
        store
            .set_status("quiz", QuizStatus::Analyzing, None)
            .await
            .unwrap(),
        Some(QuizStatus::Completed)
    );
    assert_eq!(store.status("quiz").await.unwrap(), Some(QuizStatus::Completed));
    // An unknown quiz is not created by a status write.
    assert_eq!(
        store
            .set_status("ghost", QuizStatus::Analyzing, None)
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.status("ghost").await.unwrap(), None);
    store.delete("quiz").await.unwrap();
    assert!(store.load("quiz").await.unwrap().is_none());
}

fn outcome(index: u32) -> QuestionOutcome {
    QuestionOutcome {
        index,
        answer: None,
        error: Some(format!("error {index}")),
        agrees_with_key: None,
    }
}

fn seqs(events: &[EventView]) -> Vec<u64> {
    events.iter().map(EventView::seq).collect()
}

#[tokio::test]
async fn events_are_numbered_as_they_are_logged_and_come_back_after_a_cursor() {
    let store = store(&crate::unique("store"));
    store.create("quiz", &spec()).await.unwrap();
    let logged = store
        .record("quiz", &[outcome(0), outcome(1), outcome(2)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&logged), vec![1, 2, 3]);
    let more = store.record("quiz", &[outcome(3)]).await.unwrap().unwrap();
    assert_eq!(seqs(&more), vec![4]);
    let after_one = store.events_after("quiz", 1).await.unwrap();
    assert_eq!(seqs(&after_one), vec![2, 3, 4]);
    // What comes back from Redis is exactly what was handed out.
    assert_eq!(after_one[..2], logged[1..]);
    let loaded = store.load("quiz").await.unwrap().unwrap();
    assert_eq!(loaded.outcomes.len(), 4);
    store.delete("quiz").await.unwrap();
}

#[tokio::test]
async fn an_ended_quiz_takes_no_more_events_and_burns_no_numbers() {
    let store = store(&crate::unique("store"));
    store.create("quiz", &spec()).await.unwrap();
    store.record("quiz", &[outcome(0)]).await.unwrap().unwrap();
    let failed = EventView::QuizFailed {
        quiz_id: "quiz".into(),
        seq: 0,
        reason: "swept".into(),
    };
    let ended = store
        .end("quiz", QuizStatus::Failed, Some("swept"), failed.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.seq(), 2);
    // A finisher racing the failure logs nothing and takes no number.
    assert!(
        store
            .end("quiz", QuizStatus::Completed, None, failed)
            .await
            .unwrap()
            .is_none()
    );
    // Nor does a late answer: the check and the write are one step.
    assert!(store.record("quiz", &[outcome(1)]).await.unwrap().is_none());
    assert_eq!(seqs(&store.events_after("quiz", 0).await.unwrap()), vec![1, 2]);
    assert_eq!(store.load("quiz").await.unwrap().unwrap().outcomes.len(), 1);
    // An unknown quiz is not created by a write.
    assert!(store.record("ghost", &[outcome(0)]).await.unwrap().is_none());
    assert!(store.load("ghost").await.unwrap().is_none());
    store.delete("quiz").await.unwrap();
}

#[tokio::test]
async fn logged_events_stay_in_the_outbox_until_confirmed() {
    let prefix = crate::unique("store");
    let store = store(&prefix);
    store.create("quiz", &spec()).await.unwrap();
    let far_future = i64::MAX;
    store
        .record("quiz", &[outcome(0), outcome(1)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.outbox_before(far_future, 10).await.unwrap(), vec!["quiz"]);
    assert_eq!(seqs(&store.unpublished("quiz").await.unwrap()), vec![1, 2]);
    // Confirmed up to 1 of 2: still owed.
    store.mark_published("quiz", 1).await.unwrap();
    assert_eq!(seqs(&store.unpublished("quiz").await.unwrap()), vec![2]);
    assert_eq!(store.outbox_before(far_future, 10).await.unwrap(), vec!["quiz"]);
    // Not yet due: the last write is newer than the cutoff.
    assert!(store.outbox_before(0, 10).await.unwrap().is_empty());
    // A stale mark never moves the watermark back.
    store.mark_published("quiz", 2).await.unwrap();
    store.mark_published("quiz", 1).await.unwrap();
    assert!(store.unpublished("quiz").await.unwrap().is_empty());
    assert!(store.outbox_before(far_future, 10).await.unwrap().is_empty());
    // The terminal event goes through the outbox too.
    let completed = EventView::QuizCompleted {
        quiz_id: "quiz".into(),
        seq: 0,
        stats: common::views::StatsView::default(),
    };
    let ended = store
        .end("quiz", QuizStatus::Completed, None, completed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.unpublished("quiz").await.unwrap(), vec![ended]);
    assert_eq!(store.outbox_before(far_future, 10).await.unwrap(), vec!["quiz"]);
    // A deleted quiz leaves the outbox, and a late mark does not bring its hash back.
    store.delete("quiz").await.unwrap();
    assert!(store.outbox_before(far_future, 10).await.unwrap().is_empty());
    store.mark_published("quiz", 3).await.unwrap();
    assert!(store.status("quiz").await.unwrap().is_none());
    let mut redis = store.pool().get().await.unwrap();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{prefix}:quiz:quiz"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists);
}

#[tokio::test]
async fn the_last_answers_come_back_with_every_earlier_one_in_the_same_step() {
    let store = store(&crate::unique("store"));
    store.create("quiz", &spec()).await.unwrap();
    store.record("quiz", &[outcome(0)]).await.unwrap().unwrap();
    let (events, outcomes) = store
        .record_then_outcomes("quiz", &[outcome(2), outcome(1)])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seqs(&events), vec![2, 3]);
    let indices: Vec<u32> = outcomes.iter().map(|outcome| outcome.index).collect();
    assert_eq!(indices, vec![0, 1, 2], "every outcome, in question order");
    // Nothing new to record still reads them all back.
    let (events, outcomes) = store.record_then_outcomes("quiz", &[]).await.unwrap().unwrap();
    assert!(events.is_empty());
    assert_eq!(outcomes.len(), 3);
    assert_eq!(store.existing_outcomes("quiz").await.unwrap().unwrap().len(), 3);
    // Once the quiz ended, the step writes nothing and says so.
    let failed = EventView::QuizFailed {
        quiz_id: "quiz".into(),
        seq: 0,
        reason: "swept".into(),
    };
    store
        .end("quiz", QuizStatus::Failed, Some("swept"), failed)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .record_then_outcomes("quiz", &[outcome(3)])
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.existing_outcomes("quiz").await.unwrap().unwrap().len(), 3);
    assert!(store.existing_outcomes("ghost").await.unwrap().is_none());
    store.delete("quiz").await.unwrap();
}
