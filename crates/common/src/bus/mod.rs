//! The bus: one AMQP connection per service, kept alive by a supervisor task.
//!
//! lapin does not reconnect by itself, so [`Bus::run_supervisor`] connects with
//! exponential backoff and full jitter, declares the topology, publishes the live
//! link through a `watch` channel and starts over when the connection dies.
//! Publishers read the current link and fail fast with [`BusError::Unavailable`]
//! while there is none, which the gateway turns into a 503. Consumers
//! ([`consumer::run`]) wait for a link, consume on their own channel, and
//! re-subscribe on the next link.

pub mod consumer;
pub mod topology;
pub mod trace_context;

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use prost::{Message, Name};
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::settings::AmqpSettings;
pub use topology::{Topology, routing};

/// Content type of every message body.
pub const CONTENT_TYPE: &str = "application/x-protobuf";

/// Why the bus could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable")]
    Unavailable,
    #[error("broker did not confirm the message in time")]
    ConfirmTimeout,
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound for routing key {0}")]
    Unroutable(String),
    #[error("amqp operation failed")]
    Amqp(#[from] lapin::Error),
    #[error("message has type {found:?}, expected {expected}")]
    WrongType { expected: String, found: Option<String> },
    #[error("message body is not a valid {0}")]
    Decode(String, #[source] prost::DecodeError),
    #[error("message has no meta")]
    MissingMeta,
    #[error("message schema version {0} is newer than this build understands")]
    UnknownSchema(u32),
}

/// A live connection and the confirm-mode channel publishers share.
#[derive(Clone)]
pub struct Link {
    pub connection: Arc<Connection>,
    publisher: Channel,
}

/// A cheap-to-clone handle on the service's bus connection.
#[derive(Clone)]
pub struct Bus {
    settings: Arc<AmqpSettings>,
    topology: Topology,
    link: watch::Sender<Option<Link>>,
    service: &'static str,
}

/// One message to publish: where, and the protobuf body.
pub struct Outgoing {
    pub exchange: String,
    /// A routing key of the topology, or a queue's name when `exchange` is the default one.
    pub routing_key: String,
    /// The message id also goes into the AMQP `message_id` property.
    pub message_id: String,
    pub type_name: String,
    pub body: Vec<u8>,
    /// Unroutable messages come back as errors; jobs use it, events do not.
    pub mandatory: bool,
}

impl Outgoing {
    pub fn new<M: Message + Name>(
        exchange: String,
        routing_key: &'static str,
        message_id: &str,
        message: &M,
    ) -> Self {
        Self {
            exchange,
            routing_key: routing_key.to_owned(),
            message_id: message_id.to_owned(),
            type_name: M::full_name(),
            body: message.encode_to_vec(),
            mandatory: false,
        }
    }

    /// A message for one queue, through the default exchange (which routes by queue name): a
    /// reply to the queue a request named.
    pub fn to_queue<M: Message + Name>(queue: &str, message_id: &str, message: &M) -> Self {
        Self {
            exchange: String::new(),
            routing_key: queue.to_owned(),
            message_id: message_id.to_owned(),
            type_name: M::full_name(),
            body: message.encode_to_vec(),
            mandatory: false,
        }
    }

    pub fn mandatory(mut self) -> Self {
        self.mandatory = true;
        self
    }
}

impl Bus {
    /// A bus with no connection yet; call [`Bus::run_supervisor`] to bring it up.
    pub fn new(settings: &AmqpSettings, service: &'static str) -> Self {
        let (link, _) = watch::channel(None);
        Self {
            settings: Arc::new(settings.clone()),
            topology: Topology::new(settings),
            link,
            service,
        }
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    pub fn settings(&self) -> &AmqpSettings {
        &self.settings
    }

    /// True while a connection is up; `/readyz` reports it.
    pub fn is_connected(&self) -> bool {
        self.link
            .borrow()
            .as_ref()
            .is_some_and(|link| link.connection.status().connected())
    }

    /// Watches link changes; consumers wait on it for a connection.
    pub fn subscribe(&self) -> watch::Receiver<Option<Link>> {
        self.link.subscribe()
    }

    /// Keeps a connection up until `shutdown`, then closes it.
    pub async fn run_supervisor(self, shutdown: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            match self.connect().await {
                Ok(link) => {
                    if failures > 0 {
                        tracing::info!(service = self.service, "reconnected to the broker");
                    }
                    failures = 0;
                    let connection = Arc::clone(&link.connection);
                    let publisher = link.publisher.clone();
                    self.link.send_replace(Some(link));
                    // lapin flips the status when the socket dies or the broker closes
                    // the connection; polling it is simpler than chaining its callbacks.
                    while connection.status().connected() {
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(100)) => {}
                        }
                    }
                    self.link.send_replace(None);
                    if shutdown.is_cancelled() {
                        let _ = publisher.close(200, "shutting down".into()).await;
                        let _ = connection.close(200, "shutting down".into()).await;
                        break;
                    }
                    tracing::warn!("lost the broker connection, reconnecting");
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.backoff(failures);
                    tracing::warn!(error = %error, attempt = failures, delay_ms = delay.as_millis() as u64, "cannot reach the broker, retrying");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Exponential backoff with full jitter: uniform in [0, min(cap, 100ms·2^n)].
    fn backoff(&self, failures: u32) -> Duration {
        let ceiling = 100u64
            .saturating_mul(1u64 << failures.min(16))
            .min(self.settings.max_backoff_ms.max(1));
        Duration::from_millis(rand::rng().random_range(ceiling / 10..=ceiling))
    }

    async fn connect(&self) -> Result<Link, BusError> {
        let timeout = Duration::from_millis(self.settings.connect_timeout_ms);
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("quizstats-{}", self.service).into());
        let connection = tokio::time::timeout(timeout, Connection::connect(&self.settings.url, properties))
            .await
            .map_err(|_| BusError::Unavailable)??;
        let setup = async {
            let channel = connection.create_channel().await?;
            self.topology.declare(&channel).await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        };
        let publisher = tokio::time::timeout(timeout, setup)
            .await
            .map_err(|_| BusError::Unavailable)??;
        Ok(Link {
            connection: Arc::new(connection),
            publisher,
        })
    }

    fn current(&self) -> Result<Link, BusError> {
        match self.link.borrow().as_ref() {
            Some(link) if link.connection.status().connected() => Ok(link.clone()),
            _ => Err(BusError::Unavailable),
        }
    }

    /// Publishes one message persistently and waits for the broker's confirm.
    pub async fn publish(&self, message: Outgoing) -> Result<(), BusError> {
        self.publish_all(vec![message]).await
    }

    /// Publishes messages in order on one channel, then waits for all their confirms,
    /// which costs one round trip instead of one per message. Messages the broker nacks
    /// (it could not store them) are published once more, under the same message ids, which
    /// consumers de-duplicate on; a second nack, an unroutable message or no confirm within
    /// `confirm_timeout_ms` is an error.
    pub async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), BusError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.settings.confirm_timeout_ms);
        let all: Vec<&Outgoing> = messages.iter().collect();
        let nacked = self.publish_confirmed(&all, deadline).await?;
        if nacked.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            count = nacked.len(),
            "broker nacked messages, publishing them again"
        );
        let again: Vec<&Outgoing> = nacked.into_iter().map(|index| all[index]).collect();
        match self.publish_confirmed(&again, deadline).await?.as_slice() {
            [] => Ok(()),
            _ => Err(BusError::Nacked),
        }
    }

    /// One publish round: every message, then every confirm before `deadline`. Returns the
    /// indices of the nacked messages.
    async fn publish_confirmed(
        &self,
        messages: &[&Outgoing],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<usize>, BusError> {
        let link = self.current()?;
        let mut sends = Vec::with_capacity(messages.len());
        let mut trace_headers = FieldTable::default();
        trace_context::inject_current(&mut trace_headers);
        for message in messages {
            let properties = BasicProperties::default()
                .with_content_type(CONTENT_TYPE.into())
                .with_type(message.type_name.as_str().into())
                .with_message_id(message.message_id.as_str().into())
                .with_delivery_mode(2)
                .with_timestamp(u64::try_from(crate::now_ms() / 1000).unwrap_or(0))
                .with_app_id(self.service.into())
                .with_headers(trace_headers.clone());
            let options = BasicPublishOptions {
                mandatory: message.mandatory,
                ..BasicPublishOptions::default()
            };
            let mut send = Box::pin(link.publisher.basic_publish(
                message.exchange.as_str().into(),
                message.routing_key.as_str().into(),
                options,
                &message.body,
                properties,
            ));
            // lapin takes the delivery tag and queues the frames synchronously, on a
            // publish's first poll; only the write to the socket is awaited. Polling each
            // publish once, in order, queues them in order, and the writes are awaited
            // together below instead of one connection-thread round trip per message.
            // (`bus::messages_published_together_arrive_in_order` guards the order.)
            let first = futures::poll!(send.as_mut());
            sends.push((message.routing_key.clone(), first, send));
        }
        let mut pending = Vec::with_capacity(sends.len());
        for (routing_key, first, send) in sends {
            let sent = match first {
                std::task::Poll::Ready(sent) => sent,
                std::task::Poll::Pending => send.await,
            };
            pending.push((routing_key, sent.map_err(|error| self.classify(error))?));
        }
        let confirms = async {
            let mut nacked = Vec::new();
            let mut unroutable = None;
            for (index, (routing_key, confirm)) in pending.into_iter().enumerate() {
                match confirm.await.map_err(|error| self.classify(error))? {
                    Confirmation::Ack(Some(_)) => {
                        unroutable.get_or_insert(routing_key);
                    }
                    Confirmation::Ack(None) | Confirmation::NotRequested => {}
                    Confirmation::Nack(_) => nacked.push(index),
                }
            }
            match unroutable {
                Some(routing_key) => Err(BusError::Unroutable(routing_key)),
                None => Ok(nacked),
            }
        };
        tokio::time::timeout_at(deadline, confirms)
            .await
            .map_err(|_| BusError::ConfirmTimeout)?
    }

    /// A connection-level failure means "try later", which callers report as 503.
    fn classify(&self, error: lapin::Error) -> BusError {
        if self.is_connected() {
            BusError::Amqp(error)
        } else {
            BusError::Unavailable
        }
    }
}

/// Why and how often a dead letter died, from the `x-death` header RabbitMQ adds:
/// `(reason, count, queue)` of the most recent death.
pub fn death(properties: &BasicProperties) -> Option<(String, i64, String)> {
    use lapin::types::AMQPValue;
    let headers = properties.headers().as_ref()?;
    let (_, deaths) = headers
        .inner()
        .iter()
        .find(|(key, _)| key.as_str() == "x-death")?;
    let AMQPValue::FieldArray(deaths) = deaths else {
        return None;
    };
    let AMQPValue::FieldTable(latest) = deaths.as_slice().first()? else {
        return None;
    };
    let field = |name: &str| {
        latest
            .inner()
            .iter()
            .find(|(key, _)| key.as_str() == name)
            .map(|(_, value)| value)
    };
    let text = |value: Option<&AMQPValue>| match value {
        Some(AMQPValue::LongString(text)) => String::from_utf8_lossy(text.as_bytes()).into_owned(),
        Some(AMQPValue::ShortString(text)) => text.as_str().to_owned(),
        _ => String::new(),
    };
    let count = match field("count") {
        Some(AMQPValue::LongLongInt(count)) => *count,
        Some(AMQPValue::LongInt(count)) => i64::from(*count),
        _ => 0,
    };
    Some((text(field("reason")), count, text(field("queue"))))
}

/// Checks a message's `Meta`: present, and a schema version this build understands.
pub fn check_meta(meta: Option<&proto::v1::Meta>) -> Result<&proto::v1::Meta, BusError> {
    let meta = meta.ok_or(BusError::MissingMeta)?;
    if meta.schema_version > proto::v1::SCHEMA_VERSION {
        return Err(BusError::UnknownSchema(meta.schema_version));
    }
    Ok(meta)
}

/// Decodes a delivery body after checking its `type` property.
pub fn decode<M: Message + Name + Default>(properties: &BasicProperties, body: &[u8]) -> Result<M, BusError> {
    let expected = M::full_name();
    let found = properties.kind().as_ref().map(|kind| kind.as_str().to_owned());
    if found.as_deref() != Some(expected.as_str()) {
        return Err(BusError::WrongType { expected, found });
    }
    M::decode(body).map_err(|error| BusError::Decode(expected, error))
}
