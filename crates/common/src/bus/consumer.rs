//! Consuming with manual acks, bounded prefetch, and re-subscription after reconnects.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Bus, Link, trace_context};

/// Where a consumer reads from.
#[derive(Debug, Clone)]
pub enum QueueSource {
    /// A durable work queue from the topology, shared by every replica.
    Shared(String),
    /// An exclusive queue of this replica only, bound to `exchange` with `bindings`,
    /// so that every replica sees every event. It vanishes with the connection.
    Replica {
        name: String,
        exchange: String,
        bindings: Vec<&'static str>,
    },
}

/// What to do with a delivery once the handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The side effect is durable: remove the message.
    Ack,
    /// A transient failure: requeue it; quorum queues count this towards the delivery limit.
    Retry,
    /// It can never succeed (undecodable, wrong type): dead-letter it now.
    Reject,
}

/// A delivery as handlers see it; acking is the runner's job.
#[derive(Debug)]
pub struct Delivered {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub data: Vec<u8>,
    pub redelivered: bool,
    /// How many times the broker delivered it before (quorum `x-delivery-count`).
    pub delivery_count: i64,
}

/// Runs `handler` on every delivery until `shutdown`, then lets in-flight ones finish.
pub async fn run<H, F>(bus: Bus, source: QueueSource, prefetch: u16, handler: H, shutdown: CancellationToken)
where
    H: Fn(Delivered) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send,
{
    let (consuming, _) = watch::channel(false);
    run_reporting(bus, source, prefetch, handler, shutdown, consuming).await;
}

/// [`run`], telling `consuming` whether the queue exists and is being consumed right now: a
/// requester that names a reply queue must not publish before its replies can land.
pub async fn run_reporting<H, F>(
    bus: Bus,
    source: QueueSource,
    prefetch: u16,
    handler: H,
    shutdown: CancellationToken,
    consuming: watch::Sender<bool>,
) where
    H: Fn(Delivered) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send,
{
    let mut links = bus.subscribe();
    loop {
        let link = tokio::select! {
            () = shutdown.cancelled() => return,
            link = links.wait_for(Option::is_some) => match link {
                Ok(link) => link.clone(),
                Err(_) => return,
            },
        };
        let Some(link) = link else { continue };
        let result = consume_on(&link, &source, prefetch, handler.clone(), &shutdown, &consuming).await;
        consuming.send_replace(false);
        match result {
            Ok(()) if shutdown.is_cancelled() => return,
            Ok(()) => tracing::warn!(?source, "consumer stream ended, re-subscribing"),
            Err(error) => tracing::warn!(%error, ?source, "consumer failed, re-subscribing"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

async fn consume_on<H, F>(
    link: &Link,
    source: &QueueSource,
    prefetch: u16,
    handler: H,
    shutdown: &CancellationToken,
    consuming: &watch::Sender<bool>,
) -> Result<(), lapin::Error>
where
    H: Fn(Delivered) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Outcome> + Send,
{
    let channel = link.connection.create_channel().await?;
    channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
    let queue = match source {
        QueueSource::Shared(queue) => queue.clone(),
        QueueSource::Replica {
            name,
            exchange,
            bindings,
        } => {
            let options = QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            };
            channel
                .queue_declare(name.as_str().into(), options, FieldTable::default())
                .await?;
            for binding in bindings {
                channel
                    .queue_bind(
                        name.as_str().into(),
                        exchange.as_str().into(),
                        (*binding).into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            name.clone()
        }
    };
    let consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    tracing::info!(%queue, prefetch, "consuming");
    consuming.send_replace(true);
    consumer
        .take_until(shutdown.cancelled())
        .for_each_concurrent(usize::from(prefetch.max(1)), |delivery| {
            let handler = handler.clone();
            async move {
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(error) => {
                        tracing::warn!(%error, "delivery failed");
                        return;
                    }
                };
                let span = tracing::info_span!(
                    "consume",
                    routing_key = %delivery.routing_key,
                    message_id = tracing::field::Empty,
                    quiz_id = tracing::field::Empty,
                    trace_id = tracing::field::Empty,
                );
                trace_context::adopt_parent(&span, delivery.properties.headers().as_ref());
                if let Some(message_id) = delivery.properties.message_id() {
                    span.record("message_id", message_id.as_str());
                }
                let delivered = Delivered {
                    routing_key: delivery.routing_key.to_string(),
                    properties: delivery.properties.clone(),
                    data: delivery.data.clone(),
                    redelivered: delivery.redelivered,
                    delivery_count: delivery_count(&delivery.properties),
                };
                let outcome = handler(delivered).instrument(span.clone()).await;
                let settled = match outcome {
                    Outcome::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                    Outcome::Retry => {
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            })
                            .await
                    }
                    Outcome::Reject => {
                        delivery
                            .acker
                            .nack(BasicNackOptions {
                                requeue: false,
                                ..BasicNackOptions::default()
                            })
                            .await
                    }
                };
                if let Err(error) = settled {
                    // The broker will redeliver it; consumers are idempotent.
                    span.in_scope(|| tracing::warn!(%error, ?outcome, "could not settle delivery"));
                }
            }
        })
        .await;
    if shutdown.is_cancelled() {
        let _ = channel.close(200, "shutting down".into()).await;
    }
    Ok(())
}

fn delivery_count(properties: &BasicProperties) -> i64 {
    let Some(headers) = properties.headers() else {
        return 0;
    };
    match headers
        .inner()
        .iter()
        .find(|(key, _)| key.as_str() == "x-delivery-count")
    {
        Some((_, AMQPValue::LongLongInt(count))) => *count,
        Some((_, AMQPValue::LongInt(count))) => i64::from(*count),
        Some((_, AMQPValue::ShortInt(count))) => i64::from(*count),
        _ => 0,
    }
}
