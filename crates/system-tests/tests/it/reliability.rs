//! Every accepted quiz ends, once: the sweeper fails quizzes that stopped moving (and
//! never a finished one, and never twice), and a job delivered twice is worked on once.
//! See docs/reliability.md.

use std::time::Duration;

use common::bus::{Bus, Outgoing, routing};
use common::store::QuizStore;
use common::views::{EventView, QuestionKind, QuestionSpec, QuizSpec, QuizStatus};
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use system_tests::{Options, TestApp, spawn_app, spawn_app_with};
use testkit::scripted_llm::Reply;
use tokio_util::sync::CancellationToken;

fn spec(label: &str, n_questions: usize) -> QuizSpec {
    QuizSpec {
        questions: (0..n_questions)
            .map(|index| QuestionSpec {
                text: format!("{label} question {index}?"),
                options: vec!["a".into(), "b".into(), "c".into()],
                kind: QuestionKind::Single,
            })
            .collect(),
        answer_key: None,
        votes: 1,
    }
}

/// The app's quiz store, as the services see it.
fn store(app: &TestApp) -> QuizStore {
    let settings = common::settings::RedisSettings {
        url: system_tests::redis_url(),
        key_prefix: app.keys.prefix().to_owned(),
        pool_size: 4,
        ..Default::default()
    };
    QuizStore::new(common::redis::pool(&settings).unwrap(), app.keys.clone(), 3600)
}

/// A bus of the app's prefix, connected.
async fn bus(app: &TestApp) -> (Bus, CancellationToken) {
    let settings = common::settings::AmqpSettings {
        url: system_tests::amqp_url(),
        prefix: app.prefix.clone(),
        ..Default::default()
    };
    let bus = Bus::new(&settings, "test");
    let stop = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop.clone()));
    testkit::eventually(Duration::from_secs(10), || async {
        bus.is_connected().then_some(())
    })
    .await
    .unwrap();
    (bus, stop)
}

fn sweeper(store: &QuizStore, bus: &Bus, deadline_secs: u64) -> analyzer::sweeper::Sweeper {
    let settings = analyzer::settings::ReliabilitySettings {
        quiz_deadline_secs: deadline_secs,
        ..Default::default()
    };
    analyzer::sweeper::Sweeper::new(store.clone(), bus.clone(), &settings)
}

async fn redis_get(store: &QuizStore, key: &str) -> Option<String> {
    let mut connection = store.pool().get().await.ok()?;
    deadpool_redis::redis::cmd("GET")
        .arg(key)
        .query_async::<Option<String>>(&mut connection)
        .await
        .ok()?
}

fn terminal_events(events: &[EventView]) -> Vec<&EventView> {
    events.iter().filter(|event| event.is_terminal()).collect()
}

#[tokio::test]
async fn a_quiz_that_stops_progressing_is_failed_by_the_sweeper_and_clients_are_told() {
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| {
            settings.reliability.quiz_deadline_secs = 2;
            settings.reliability.sweep_interval_ms = 100;
            // The LLM hangs well past the deadline but within the call timeout.
            settings.llm.timeout_ms = 30_000;
            settings.llm.max_attempts = 1;
        }),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().push([Reply::Delay(Duration::from_secs(8))]);
    let id = app
        .submit(&serde_json::json!({"questions": [{"text": "Hangs?", "options": ["a", "b"]}]}))
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let quiz = app.wait_finished(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(quiz["status"], "failed", "{quiz:#}");
    assert_eq!(quiz["reason"], "timed out: no progress for 2 s", "{quiz:#}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "swept too late: {:?}",
        started.elapsed()
    );

    // The hung call returns later; the analysis must not complete the failed quiz, nor
    // log its late answer after the failure. Its job is remembered as done once it gave up.
    let store = store(&app);
    let pattern = format!("{}message:v1:*", app.keys.prefix());
    testkit::eventually(Duration::from_secs(15), || async {
        let mut connection = store.pool().get().await.ok()?;
        let keys: Vec<String> = deadpool_redis::redis::cmd("KEYS")
            .arg(&pattern)
            .query_async(&mut connection)
            .await
            .ok()?;
        let value = redis_get(&store, keys.first()?).await?;
        (value == "done").then_some(())
    })
    .await
    .unwrap();
    let stored = store.load(&id).await.unwrap().unwrap();
    assert_eq!(stored.status, QuizStatus::Failed);
    assert!(stored.outcomes.is_empty(), "{:?}", stored.outcomes);
    let events = store.events_after(&id, 0).await.unwrap();
    assert!(
        matches!(events.as_slice(), [EventView::QuizFailed { reason, .. }] if reason == "timed out: no progress for 2 s"),
        "{events:?}"
    );
    assert_eq!(store.open_since(&id).await.unwrap(), None);

    // A WebSocket client is told, and the stream ends.
    let streamed = app.collect_events(&id, 0, Duration::from_secs(5)).await.unwrap();
    let last = streamed.last().unwrap();
    assert_eq!(last["type"], "quiz_failed", "{streamed:#?}");
    assert_eq!(last["reason"], "timed out: no progress for 2 s");

    assert!(
        app.counter("quizzes_swept_total", "").await.unwrap() >= 1.0,
        "no sweep counted"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_completed_quiz_is_never_swept_but_an_open_one_is() {
    let app = spawn_app().await.unwrap();
    let id = app
        .submit(&serde_json::json!({"questions": [{"text": "Quick?", "options": ["a", "b"]}]}))
        .await
        .unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(quiz["status"], "completed");

    let store = store(&app);
    let (bus, stop_bus) = bus(&app).await;
    // A quiz accepted but whose job never reached the broker: it must end too.
    store.create("orphan", &spec("orphan", 1)).await.unwrap();
    assert!(store.open_since("orphan").await.unwrap().is_some());
    assert_eq!(
        store.open_since(&id).await.unwrap(),
        None,
        "completed but still open"
    );

    // Deadline 0: everything open is stale, so only the index keeps `id` safe.
    let swept = sweeper(&store, &bus, 0).sweep_once().await.unwrap();
    assert_eq!(swept, 1);
    let orphan = store.load("orphan").await.unwrap().unwrap();
    assert_eq!(orphan.status, QuizStatus::Failed);
    assert_eq!(orphan.reason.as_deref(), Some("timed out: no progress for 0 s"));
    let finished = store.load(&id).await.unwrap().unwrap();
    assert_eq!(finished.status, QuizStatus::Completed);
    let events = store.events_after(&id, 0).await.unwrap();
    assert!(
        matches!(
            terminal_events(&events).as_slice(),
            [EventView::QuizCompleted { .. }]
        ),
        "{events:?}"
    );
    stop_bus.cancel();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn two_sweepers_fail_each_stuck_quiz_once() {
    let app = spawn_app().await.unwrap();
    let store = store(&app);
    let (bus, stop_bus) = bus(&app).await;

    // Count the quiz.failed messages actually published.
    let mut live = live_events(&bus).await;

    let ids: Vec<String> = (0..20).map(|index| format!("stuck-{index}")).collect();
    for id in &ids {
        store.create(id, &spec(id, 2)).await.unwrap();
    }
    let (first, second) = (sweeper(&store, &bus, 0), sweeper(&store, &bus, 0));
    let (swept_first, swept_second) = tokio::join!(first.sweep_once(), second.sweep_once());
    let (swept_first, swept_second) = (swept_first.unwrap(), swept_second.unwrap());
    assert_eq!(
        swept_first + swept_second,
        ids.len(),
        "{swept_first} + {swept_second}"
    );
    // Nothing is left for a second round.
    assert_eq!(first.sweep_once().await.unwrap(), 0);

    for id in &ids {
        let quiz = store.load(id).await.unwrap().unwrap();
        assert_eq!(quiz.status, QuizStatus::Failed, "{id}");
        let events = store.events_after(id, 0).await.unwrap();
        assert_eq!(events.len(), 1, "{id}: {events:?}");
    }
    let mut published = 0;
    while published < ids.len() {
        let (routing_key, _) = tokio::time::timeout(Duration::from_secs(5), live.recv())
            .await
            .expect("too few quiz.failed published")
            .unwrap();
        assert_eq!(routing_key, routing::QUIZ_FAILED);
        published += 1;
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), live.recv()).await;
    assert!(extra.is_err(), "a quiz.failed was published twice");
    stop_bus.cancel();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_delivered_twice_is_answered_and_counted_once() {
    // One question at a time, slowly: the copies overlap for the whole quiz, and the
    // second would record each answer the first paid for while the quiz is still open.
    let app = spawn_app_with(Options {
        tune_analyzer: Some(|settings| settings.llm.max_concurrency = 1),
        ..Default::default()
    })
    .await
    .unwrap();
    app.scripted().set_latency(Duration::from_millis(500));
    let store = store(&app);
    let (bus, stop_bus) = bus(&app).await;
    let quiz_spec = spec("twice", 3);
    store.create("twice", &quiz_spec).await.unwrap();
    // The same message twice, as a publisher that lost a confirm and republished would send it.
    let meta = common::views::new_meta("twice");
    let job = quiz_spec.to_analysis_request(meta.clone());
    let copy = || {
        Outgoing::new(
            bus.topology().jobs_exchange(),
            routing::ANALYSIS_REQUESTED,
            &meta.message_id,
            &job,
        )
        .mandatory()
    };
    bus.publish_all(vec![copy(), copy()]).await.unwrap();

    let quiz = testkit::eventually(Duration::from_secs(20), || async {
        let quiz = store.load("twice").await.ok()??;
        quiz.status.is_terminal().then_some(quiz)
    })
    .await
    .unwrap();
    assert_eq!(quiz.status, QuizStatus::Completed, "{:?}", quiz.reason);
    // The duplicate waits for the first copy, then is acknowledged without work.
    let claim_key = app.keys.message_claim(&meta.message_id);
    testkit::eventually(Duration::from_secs(10), || async {
        (redis_get(&store, &claim_key).await? == "done").then_some(())
    })
    .await
    .unwrap();
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    testkit::eventually(Duration::from_secs(10), || async {
        let queue = channel
            .queue_declare(
                bus.topology().analyze_queue().as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        (queue.message_count() == 0).then_some(())
    })
    .await
    .unwrap();

    let events = store.events_after("twice", 0).await.unwrap();
    let answered: Vec<u32> = events
        .iter()
        .filter_map(|event| match event {
            EventView::QuestionAnswered { outcome, .. } => Some(outcome.index),
            _ => None,
        })
        .collect();
    let mut sorted = answered.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2], "each question once: {events:?}");
    let terminal = terminal_events(&events);
    assert!(
        matches!(terminal.as_slice(), [EventView::QuizCompleted { stats, .. }] if stats.answered == 3 && stats.total == 3),
        "{events:?}"
    );
    assert_eq!(app.scripted().calls(), 3, "the LLM was paid twice");

    // What a WebSocket client sees: four events, consecutive sequence numbers.
    let streamed = app
        .collect_events("twice", 0, Duration::from_secs(5))
        .await
        .unwrap();
    let seqs: Vec<u64> = streamed
        .iter()
        .filter_map(|event| event["seq"].as_u64())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "{streamed:#?}");
    stop_bus.cancel();
    app.stop().await.unwrap();
}

/// Every event published on the app's events exchange from now on, as a live subscriber
/// (the broadcaster) gets them: routing key and sequence number.
async fn live_events(bus: &Bus) -> tokio::sync::mpsc::UnboundedReceiver<(String, u64)> {
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.name().as_str().into(),
            bus.topology().events_exchange().as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.name().as_str().into(),
            "live".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _channel = channel;
        while let Some(Ok(delivery)) = consumer.next().await {
            let seq = match delivery.routing_key.as_str() {
                routing::QUESTION_ANSWERED => {
                    common::bus::decode::<proto::v1::QuestionAnswered>(&delivery.properties, &delivery.data)
                        .map(|event| event.seq)
                }
                routing::QUIZ_COMPLETED => {
                    common::bus::decode::<proto::v1::QuizCompleted>(&delivery.properties, &delivery.data)
                        .map(|event| event.seq)
                }
                routing::QUIZ_FAILED => {
                    common::bus::decode::<proto::v1::QuizFailed>(&delivery.properties, &delivery.data)
                        .map(|event| event.seq)
                }
                _ => continue,
            };
            if let Ok(seq) = seq
                && sender.send((delivery.routing_key.to_string(), seq)).is_err()
            {
                return;
            }
        }
    });
    receiver
}

/// Sequence numbers received until `count` distinct ones are in, or `deadline` passes.
async fn receive_seqs(
    live: &mut tokio::sync::mpsc::UnboundedReceiver<(String, u64)>,
    count: usize,
    deadline: Duration,
) -> std::collections::BTreeSet<u64> {
    let mut seen = std::collections::BTreeSet::new();
    let _ = tokio::time::timeout(deadline, async {
        while seen.len() < count {
            match live.recv().await {
                Some((_, seq)) => {
                    seen.insert(seq);
                }
                None => return,
            }
        }
    })
    .await;
    seen
}

fn outcome(index: u32) -> common::views::QuestionOutcome {
    common::views::QuestionOutcome {
        index,
        answer: None,
        error: Some("logged by a delivery that died before publishing".into()),
        agrees_with_key: None,
    }
}

#[tokio::test]
async fn events_logged_but_never_published_are_relayed_to_live_subscribers() {
    let app = spawn_app().await.unwrap();
    let store = store(&app);
    let (bus, stop_bus) = bus(&app).await;
    let mut live = live_events(&bus).await;
    // An analyzer that logged two answers and the quiz's end, then died (or lost the broker)
    // before any publish was confirmed: nothing will be redelivered for it.
    store.create("orphan", &spec("orphan", 2)).await.unwrap();
    store
        .record("orphan", &[outcome(0), outcome(1)])
        .await
        .unwrap()
        .unwrap();
    let failed = EventView::QuizFailed {
        quiz_id: "orphan".into(),
        seq: 0,
        reason: "all 2 questions failed".into(),
    };
    store
        .end(
            "orphan",
            QuizStatus::Failed,
            Some("all 2 questions failed"),
            failed,
        )
        .await
        .unwrap()
        .unwrap();

    let relay = analyzer::sweeper::Sweeper::new(
        store.clone(),
        bus.clone(),
        &analyzer::settings::ReliabilitySettings {
            relay_after_ms: 0,
            ..Default::default()
        },
    );
    assert!(relay.relay_once().await.unwrap() >= 3);
    let seen = receive_seqs(&mut live, 3, Duration::from_secs(10)).await;
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    // The confirm is marked just after the broker acknowledged the publish.
    testkit::eventually(Duration::from_secs(5), || async {
        store.unpublished("orphan").await.ok()?.is_empty().then_some(())
    })
    .await
    .unwrap();
    // Confirmed once, relayed once.
    assert_eq!(relay.relay_once().await.unwrap(), 0);
    stop_bus.cancel();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_job_delivered_again_publishes_what_the_earlier_delivery_only_logged() {
    let app = spawn_app().await.unwrap();
    let store = store(&app);
    let (bus, stop_bus) = bus(&app).await;
    let mut live = live_events(&bus).await;
    // The first delivery answered question 0, logged it and died before publishing it.
    let quiz_spec = spec("again", 3);
    store.create("again", &quiz_spec).await.unwrap();
    store
        .set_status("again", QuizStatus::Analyzing, None)
        .await
        .unwrap();
    store.record("again", &[outcome(0)]).await.unwrap().unwrap();
    // Its job comes back.
    let meta = common::views::new_meta("again");
    bus.publish(
        Outgoing::new(
            bus.topology().jobs_exchange(),
            routing::ANALYSIS_REQUESTED,
            &meta.message_id,
            &quiz_spec.to_analysis_request(meta.clone()),
        )
        .mandatory(),
    )
    .await
    .unwrap();

    // Live subscribers get the logged answer too, not only the two asked now and the end.
    let seen = receive_seqs(&mut live, 4, Duration::from_secs(20)).await;
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    assert_eq!(app.scripted().calls(), 2, "question 0 was asked again");
    let quiz = store.load("again").await.unwrap().unwrap();
    assert_eq!(quiz.status, QuizStatus::Completed, "{:?}", quiz.reason);
    // The confirm is marked just after the broker acknowledged the last publish.
    testkit::eventually(Duration::from_secs(5), || async {
        store.unpublished("again").await.ok()?.is_empty().then_some(())
    })
    .await
    .unwrap();
    stop_bus.cancel();
    app.stop().await.unwrap();
}
