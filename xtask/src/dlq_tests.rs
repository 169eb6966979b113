//! `cargo xtask dlq` against the real RabbitMQ and Redis, with a real analyzer: a job
//! that died is listed, shown, requeued and then processed; purge empties the queue.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

use std::time::Duration;

use common::bus::{Bus, Outgoing, routing};
use common::views::{QuestionKind, QuestionSpec, QuizSpec, QuizStatus};
use lapin::options::{BasicGetOptions, BasicNackOptions};
use tokio_util::sync::CancellationToken;

use super::{Dlq, DlqSettings};

fn spec(text: &str) -> QuizSpec {
    QuizSpec {
        questions: vec![QuestionSpec {
            text: text.to_owned(),
            options: vec!["a".into(), "b".into()],
            kind: QuestionKind::Single,
        }],
        answer_key: None,
        votes: 1,
    }
}

/// Waits until `{p}.dead` holds `expected` ready letters: a quorum queue takes back
/// browsed letters (nack with requeue) a moment after the nack.
async fn settled(dlq: &Dlq, expected: u32) {
    testkit::eventually(Duration::from_secs(5), || async {
        (dlq.count().await.ok()? == expected).then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("{{p}}.dead never held {expected} letters"));
}

#[tokio::test]
async fn a_dead_job_is_listed_requeued_and_processed_and_purge_empties_the_queue() {
    testkit::init_telemetry();
    let prefix = testkit::unique_prefix("xtask-dlq");
    let mut settings = DlqSettings::default();
    settings.amqp.prefix = prefix.clone();
    settings.redis.key_prefix = format!("{prefix}:");
    let dlq = Dlq::connect(&settings).await.unwrap();

    // The topology, as every service declares it.
    let bus = Bus::new(&settings.amqp, "test");
    let stop_bus = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop_bus.clone()));
    testkit::eventually(Duration::from_secs(10), || async {
        bus.is_connected().then_some(())
    })
    .await
    .unwrap();

    // Two accepted quizzes whose jobs die before any analyzer runs: taken from the work
    // queue and rejected, so the broker dead-letters them with a real x-death.
    let mut message_ids = Vec::new();
    for quiz_id in ["revived", "abandoned"] {
        let quiz_spec = spec(&format!("{quiz_id}?"));
        dlq.store.create(quiz_id, &quiz_spec).await.unwrap();
        let meta = common::views::new_meta(quiz_id);
        message_ids.push(meta.message_id.clone());
        let job = quiz_spec.to_analysis_request(meta.clone());
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
        let taken = dlq
            .channel
            .basic_get(
                bus.topology().analyze_queue().as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .unwrap()
            .expect("the job is in the work queue");
        taken
            .delivery
            .acker
            .nack(BasicNackOptions {
                requeue: false,
                ..BasicNackOptions::default()
            })
            .await
            .unwrap();
    }
    settled(&dlq, 2).await;

    // The analyzer starts; its dead-letter watch fails both quizzes.
    let llm = testkit::scripted_llm::ScriptedLlm::start().unwrap();
    let mut analyzer_settings = analyzer::Settings {
        amqp: settings.amqp.clone(),
        redis: settings.redis.clone(),
        ..analyzer::Settings::default()
    };
    analyzer_settings.http.port = 0;
    analyzer_settings.http.workers = 1;
    analyzer_settings.llm.base_url = llm.base_url();
    let shutdown = CancellationToken::new();
    let app = analyzer::Application::build(analyzer_settings).await.unwrap();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    for quiz_id in ["revived", "abandoned"] {
        testkit::eventually(Duration::from_secs(20), || async {
            (dlq.store.status(quiz_id).await.ok()?? == QuizStatus::Failed).then_some(())
        })
        .await
        .unwrap();
    }

    // list: counts and one line each; browsing leaves them in place.
    let listed = dlq.list().await.unwrap();
    println!("{listed}");
    assert!(listed.starts_with("2 dead letter(s)"), "{listed}");
    assert!(listed.contains("2 rejected"), "{listed}");
    assert!(listed.contains("quiz revived"), "{listed}");
    assert!(listed.contains("quizstats.v1.AnalysisRequested"), "{listed}");
    assert!(listed.contains(&format!("from {prefix}.analyze")), "{listed}");
    settled(&dlq, 2).await;

    // show: headers and the decoded job.
    let shown = dlq.show(&message_ids[0]).await.unwrap();
    println!("{shown}");
    assert!(shown.contains("quiz id:      revived"), "{shown}");
    assert!(shown.contains("routing keys [\"analysis.requested\"]"), "{shown}");
    assert!(shown.contains("revived?"), "the body was not decoded: {shown}");
    settled(&dlq, 2).await;
    assert!(dlq.show("no-such-letter").await.is_err());
    settled(&dlq, 2).await;

    // requeue one: the quiz re-opens and the analyzer answers it.
    let requeued = dlq.requeue(Some(&message_ids[0])).await.unwrap();
    assert!(requeued.contains("quiz revived re-opened"), "{requeued}");
    let revived = testkit::eventually(Duration::from_secs(20), || async {
        let quiz = dlq.store.load("revived").await.ok()??;
        (quiz.status == QuizStatus::Completed).then_some(quiz)
    })
    .await
    .unwrap();
    assert_eq!(revived.outcomes.len(), 1);
    assert_eq!(revived.reason, None);
    assert_eq!(llm.calls(), 1);
    let events = dlq.store.events_after("revived", 0).await.unwrap();
    assert_eq!(
        events.iter().filter(|event| event.is_terminal()).count(),
        1,
        "the old failure stays out of the log: {events:?}"
    );
    settled(&dlq, 1).await;
    assert_eq!(
        dlq.store.status("abandoned").await.unwrap(),
        Some(QuizStatus::Failed)
    );

    // purge: asks first, then empties.
    let asked = dlq.purge(false).await.unwrap();
    assert!(asked.contains("--yes"), "{asked}");
    settled(&dlq, 1).await;
    let purged = dlq.purge(true).await.unwrap();
    assert!(purged.starts_with("deleted 1"), "{purged}");
    settled(&dlq, 0).await;
    assert_eq!(dlq.requeue(None).await.unwrap(), "nothing to requeue");

    shutdown.cancel();
    running.await.unwrap().unwrap();
    bus.topology().delete_all(&dlq.channel).await.unwrap();
    stop_bus.cancel();
    dlq.close().await;
    testkit::cleanup_redis(&settings.redis.url, &settings.redis.key_prefix)
        .await
        .unwrap();
    llm.stop().await;
}
