//! The bus on a real broker: confirms, returns, dead-lettering, reconnect handling.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::bus::consumer::{self, Outcome, QueueSource};
use common::bus::{Bus, BusError, Outgoing, routing};
use common::settings::AmqpSettings;
use lapin::options::BasicGetOptions;
use proto::v1;
use tokio_util::sync::CancellationToken;

fn settings(prefix: &str) -> AmqpSettings {
    AmqpSettings {
        prefix: prefix.to_owned(),
        delivery_limit: 2,
        ..AmqpSettings::default()
    }
}

async fn connected(prefix: &str) -> (Bus, CancellationToken) {
    let bus = Bus::new(&settings(prefix), "test");
    let stop = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop.clone()));
    for _ in 0..250 {
        if bus.is_connected() {
            return (bus, stop);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no broker at {}", settings(prefix).url);
}

fn request(quiz_id: &str) -> v1::AnalysisRequested {
    v1::AnalysisRequested {
        meta: Some(common::views::new_meta(quiz_id)),
        ..Default::default()
    }
}

async fn cleanup(bus: &Bus) {
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    bus.topology().delete_all(&channel).await.unwrap();
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_after_the_delivery_limit() {
    let prefix = crate::unique("bus");
    let (bus, stop) = connected(&prefix).await;
    let message = Outgoing::new(
        bus.topology().jobs_exchange(),
        routing::ANALYSIS_REQUESTED,
        "m-1",
        &request("q-1"),
    )
    .mandatory();
    bus.publish(message).await.unwrap();

    let deliveries = Arc::new(AtomicUsize::new(0));
    let consuming = CancellationToken::new();
    let counter = Arc::clone(&deliveries);
    let task = tokio::spawn(consumer::run(
        bus.clone(),
        QueueSource::Shared(bus.topology().analyze_queue()),
        4,
        move |delivered| {
            let counter = Arc::clone(&counter);
            async move {
                let decoded =
                    common::bus::decode::<v1::AnalysisRequested>(&delivered.properties, &delivered.data)
                        .unwrap();
                assert_eq!(decoded.meta.unwrap().quiz_id, "q-1");
                counter.fetch_add(1, Ordering::SeqCst);
                Outcome::Retry
            }
        },
        consuming.clone(),
    ));
    // The first delivery plus `delivery_limit` redeliveries, then the dead-letter queue.
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    let mut dead = None;
    for _ in 0..250 {
        dead = channel
            .basic_get(
                bus.topology().dead_letter_queue().as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        if dead.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = dead.expect("message never reached the dead-letter queue");
    assert_eq!(
        dead.delivery.properties.message_id().as_ref().unwrap().as_str(),
        "m-1"
    );
    assert_eq!(deliveries.load(Ordering::SeqCst), 3);
    consuming.cancel();
    task.await.unwrap();
    cleanup(&bus).await;
    stop.cancel();
}

#[tokio::test]
async fn an_unroutable_job_is_an_error_not_a_silent_loss() {
    let prefix = crate::unique("bus");
    let (bus, stop) = connected(&prefix).await;
    let message = Outgoing::new(
        bus.topology().jobs_exchange(),
        "nobody.listens",
        "m-2",
        &request("q-2"),
    )
    .mandatory();
    let error = bus.publish(message).await.unwrap_err();
    assert!(
        matches!(error, BusError::Unroutable(ref key) if key == "nobody.listens"),
        "{error:?}"
    );
    cleanup(&bus).await;
    stop.cancel();
}

#[tokio::test]
async fn publishing_without_a_broker_fails_fast() {
    let mut settings = settings(&crate::unique("bus"));
    settings.url = "amqp://guest:guest@127.0.0.1:1/%2f".to_owned();
    let bus = Bus::new(&settings, "test");
    let stop = CancellationToken::new();
    tokio::spawn(bus.clone().run_supervisor(stop.clone()));
    let message = Outgoing::new(
        bus.topology().jobs_exchange(),
        routing::ANALYSIS_REQUESTED,
        "m-3",
        &request("q-3"),
    );
    let started = std::time::Instant::now();
    assert!(matches!(bus.publish(message).await, Err(BusError::Unavailable)));
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(!bus.is_connected());
    stop.cancel();
}

#[tokio::test]
async fn a_message_the_broker_will_not_store_is_an_error_after_one_more_try() {
    let prefix = crate::unique("bus");
    let (bus, stop) = connected(&prefix).await;
    // A queue that holds one message and nacks publishes beyond that: a broker that cannot
    // store a message answers with a nack, not an error.
    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    let queue = format!("{prefix}.full");
    let mut arguments = lapin::types::FieldTable::default();
    arguments.insert("x-max-length".into(), lapin::types::AMQPValue::LongInt(1));
    arguments.insert(
        "x-overflow".into(),
        lapin::types::AMQPValue::LongString("reject-publish".into()),
    );
    channel
        .queue_declare(queue.as_str().into(), Default::default(), arguments)
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            bus.topology().jobs_exchange().as_str().into(),
            "full.test".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let message = |id: &str| Outgoing::new(bus.topology().jobs_exchange(), "full.test", id, &request(id));
    bus.publish(message("fits")).await.unwrap();
    let error = bus.publish_all(vec![message("does-not-fit")]).await.unwrap_err();
    assert!(matches!(error, BusError::Nacked), "{error:?}");
    let depth = channel
        .queue_declare(
            queue.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap()
        .message_count();
    assert_eq!(depth, 1);
    channel
        .queue_delete(queue.as_str().into(), Default::default())
        .await
        .unwrap();
    cleanup(&bus).await;
    stop.cancel();
}

/// `publish_all` queues a batch's frames before awaiting any write; the broker must still
/// see each batch in order, also while another task publishes on the same channel.
#[tokio::test]
async fn messages_published_together_arrive_in_order() {
    let prefix = crate::unique("bus");
    let (bus, stop) = connected(&prefix).await;
    let batch = |group: &str| {
        (0..150)
            .map(|i| {
                Outgoing::new(
                    bus.topology().jobs_exchange(),
                    routing::ANALYSIS_REQUESTED,
                    &format!("{group}-{i}"),
                    &request(&format!("q-{group}-{i}")),
                )
                .mandatory()
            })
            .collect::<Vec<_>>()
    };
    let (first, second) = tokio::join!(bus.publish_all(batch("a")), bus.publish_all(batch("b")));
    first.unwrap();
    second.unwrap();

    let link = bus.subscribe().borrow().clone().unwrap();
    let channel = link.connection.create_channel().await.unwrap();
    let mut seen: Vec<String> = Vec::new();
    while let Some(message) = channel
        .basic_get(
            bus.topology().analyze_queue().as_str().into(),
            BasicGetOptions { no_ack: true },
        )
        .await
        .unwrap()
    {
        seen.push(
            message
                .delivery
                .properties
                .message_id()
                .as_ref()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 300, "every confirmed message is in the queue");
    for group in ["a", "b"] {
        let order: Vec<usize> = seen
            .iter()
            .filter_map(|id| id.strip_prefix(&format!("{group}-")))
            .map(|i| i.parse().unwrap())
            .collect();
        assert_eq!(
            order,
            (0..150).collect::<Vec<_>>(),
            "batch {group} arrived out of order"
        );
    }
    cleanup(&bus).await;
    stop.cancel();
}
