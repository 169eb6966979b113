//! Shared pieces of the benchmarks: latency summaries and the floors (a bare Redis
//! round trip, a bare RabbitMQ publish→consume) that every figure is compared with, plus the
//! load tools of the gateway and broadcaster benchmarks (wrk, a constant-rate HTTP generator,
//! a WebSocket client fleet, an event feed).

pub mod constant_rate;
pub mod cpu;
pub mod event_feed;
pub mod mmlu;
pub mod wrk;
pub mod ws_fleet;

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// Percentiles of a set of durations.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

impl Summary {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        let n = samples.len().max(1);
        let at = |quantile: f64| {
            samples
                .get(((n as f64 * quantile).ceil() as usize).saturating_sub(1))
                .copied()
                .unwrap_or_default()
        };
        let total: Duration = samples.iter().sum();
        Self {
            n: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            mean: total / u32::try_from(n).unwrap_or(1),
        }
    }

    pub fn line(&self, label: &str) -> String {
        format!(
            "{label:<44} n={:<5} p50={:>9.3} ms  p99={:>9.3} ms  mean={:>9.3} ms",
            self.n,
            ms(self.p50),
            ms(self.p99),
            ms(self.mean)
        )
    }
}

pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A bare `GET` round trip to Redis, `runs` times.
pub async fn redis_floor(url: &str, runs: usize) -> anyhow::Result<Summary> {
    let settings = common::settings::RedisSettings {
        url: url.to_owned(),
        ..Default::default()
    };
    let pool = common::redis::pool(&settings)?;
    let mut connection = pool.get().await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let _: Option<String> = deadpool_redis::redis::cmd("GET")
            .arg("bench:floor:absent")
            .query_async(&mut connection)
            .await?;
        samples.push(started.elapsed());
    }
    Ok(Summary::of(samples))
}

/// Which kind of queue an AMQP floor goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// An exclusive classic queue, like a replica's own event queue.
    Classic,
    /// A durable quorum queue, like the job queues: the broker confirms only once the
    /// message is in its Raft log on disk.
    Quorum,
}

/// A bare persistent publish (with confirm) → consume → ack round trip through a fresh queue.
pub async fn amqp_floor(url: &str, runs: usize) -> anyhow::Result<Summary> {
    amqp_floor_through(url, runs, QueueKind::Classic).await
}

/// [`amqp_floor`] through a queue of the given kind.
pub async fn amqp_floor_through(url: &str, runs: usize, kind: QueueKind) -> anyhow::Result<Summary> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(lapin::options::ConfirmSelectOptions::default())
        .await?;
    let consumer_channel = connection.create_channel().await?;
    let queue = format!("bench-floor-{kind:?}-{}", std::process::id()).to_lowercase();
    let (options, arguments) = match kind {
        QueueKind::Classic => (
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
        QueueKind::Quorum => {
            let mut arguments = FieldTable::default();
            arguments.insert(
                "x-queue-type".into(),
                lapin::types::AMQPValue::LongString("quorum".into()),
            );
            (
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
        }
    };
    consumer_channel
        .queue_declare(queue.as_str().into(), options, arguments)
        .await?;
    let mut consumer = consumer_channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        publisher
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                b"floor",
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        let delivery = consumer
            .next()
            .await
            .ok_or_else(|| anyhow::anyhow!("consumer ended"))??;
        delivery.ack(BasicAckOptions::default()).await?;
        samples.push(started.elapsed());
    }
    let _ = consumer_channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    Ok(Summary::of(samples))
}

/// A process's resident set size (`VmRSS`) and its peak (`VmHWM`), in KiB, from `/proc`.
pub fn rss_kib(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .ok_or_else(|| anyhow::anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// `/proc/loadavg`'s 1-, 5- and 15-minute load averages, to print beside figures taken on a
/// shared machine (2 cores: anything well above 2 means other work competed for the CPU).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
