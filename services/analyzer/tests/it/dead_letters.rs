//! A job that can never be handled fails its quiz visibly and stays for operators.

use std::time::Duration;

use common::bus::{Bus, Outgoing, routing};
use common::keys::Keys;
use common::settings::{AmqpSettings, HttpSettings, RedisSettings};
use common::store::QuizStore;
use common::views::{QuestionKind, QuestionSpec, QuizSpec, QuizStatus};
use lapin::options::BasicGetOptions;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_rejected_job_fails_its_quiz_and_stays_in_the_dead_letter_queue() {
    testkit::init_telemetry();
    let prefix = testkit::unique_prefix("dlq");
    let llm = testkit::scripted_llm::ScriptedLlm::start().unwrap();
    let amqp = AmqpSettings {
        prefix: prefix.clone(),
        ..AmqpSettings::default()
    };
    let redis = RedisSettings {
        key_prefix: format!("{prefix}:"),
        ..RedisSettings::default()
    };
    let mut settings = analyzer::Settings {
        http: HttpSettings {
            port: 0,
            workers: 1,
            ..HttpSettings::default()
        },
        amqp: amqp.clone(),
        redis: redis.clone(),
        ..analyzer::Settings::default()
    };
    settings.llm.base_url = llm.base_url();
    let shutdown = CancellationToken::new();
    let app = analyzer::Application::build(settings).await.unwrap();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    let store = QuizStore::new(
        common::redis::pool(&redis).unwrap(),
        Keys::new(redis.key_prefix.clone()),
        60,
    );
    let spec = QuizSpec {
        questions: vec![QuestionSpec {
            text: "Poison?".into(),
            options: vec!["a".into(), "b".into()],
            kind: QuestionKind::Single,
        }],
        answer_key: None,
        votes: 1,
    };
    store.create("quiz-1", &spec).await.unwrap();

    let bus = Bus::new(&amqp, "test");
    let stop_bus = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop_bus.clone()));
    testkit::eventually(Duration::from_secs(10), || async {
        bus.is_connected().then_some(())
    })
    .await
    .unwrap();
    // A schema version from the future: the analyzer must refuse it, not guess.
    let mut meta = common::views::new_meta("quiz-1");
    meta.schema_version = 99;
    let job = spec.to_analysis_request(meta.clone());
    bus.publish(
        Outgoing::new(
            bus.topology().jobs_exchange(),
            routing::ANALYSIS_REQUESTED,
            &meta.message_id,
            &job,
        )
        .mandatory(),
    )
    .await
    .unwrap();

    let quiz = testkit::eventually(Duration::from_secs(20), || async {
        let quiz = store.load("quiz-1").await.ok()??;
        (quiz.status == QuizStatus::Failed).then_some(quiz)
    })
    .await
    .unwrap();
    let reason = quiz.reason.unwrap();
    assert!(reason.contains("rejected as unprocessable"), "{reason}");
    let events = store.events_after("quiz-1", 0).await.unwrap();
    assert!(
        events.last().unwrap().is_terminal(),
        "clients were not told: {events:?}"
    );
    assert_eq!(llm.calls(), 0);

    // The operators' copy is still there.
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    let kept = channel
        .basic_get(
            bus.topology().dead_letter_queue().as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap();
    assert!(
        kept.is_some(),
        "the dead letter should stay in {}",
        bus.topology().dead_letter_queue()
    );

    shutdown.cancel();
    running.await.unwrap().unwrap();
    bus.topology().delete_all(&channel).await.unwrap();
    stop_bus.cancel();
    testkit::cleanup_redis(&redis.url, &redis.key_prefix)
        .await
        .unwrap();
    llm.stop().await;
}
