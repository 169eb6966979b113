//! The exchanges and queues, declared idempotently in one function.
//!
//! ```text
//! {p}.jobs (topic) --analysis.requested--> {p}.analyze (quorum) --x-delivery-limit--> {p}.dlx
//!                  --scrape.requested----> {p}.scrape  (quorum) --x-delivery-limit--> {p}.dlx
//!                  --extract.requested---> {p}.extract (quorum) --x-delivery-limit--> {p}.dlx
//! (default exchange) --{reply queue name}--> {p}.replies.gateway.{uuid}: one exclusive reply
//!                  queue per gateway replica, for `extract.replied`
//! {p}.dlx (topic)  --#--> {p}.dead (quorum): poison and expired jobs, for operators
//!                  --#--> {p}.dead.watch (quorum): the same, for the analyzer to fail the quiz
//! {p}.events (topic): quiz.submitted, question.answered, quiz.completed, quiz.failed; every
//!                  interested replica binds its own exclusive queue
//! ```

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::settings::AmqpSettings;

/// Routing keys, one per message kind.
pub mod routing {
    pub const ANALYSIS_REQUESTED: &str = "analysis.requested";
    pub const SCRAPE_REQUESTED: &str = "scrape.requested";
    pub const EXTRACT_REQUESTED: &str = "extract.requested";
    pub const QUIZ_SUBMITTED: &str = "quiz.submitted";
    pub const QUESTION_ANSWERED: &str = "question.answered";
    pub const QUIZ_COMPLETED: &str = "quiz.completed";
    pub const QUIZ_FAILED: &str = "quiz.failed";
}

/// Exchange and queue names under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    delivery_limit: u32,
}

impl Topology {
    pub fn new(settings: &AmqpSettings) -> Self {
        Self {
            prefix: settings.prefix.clone(),
            delivery_limit: settings.delivery_limit,
        }
    }

    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    pub fn analyze_queue(&self) -> String {
        format!("{}.analyze", self.prefix)
    }

    pub fn scrape_queue(&self) -> String {
        format!("{}.scrape", self.prefix)
    }

    /// Synchronous extractions (`POST /v1/extract`), consumed by the scraper-worker.
    pub fn extract_queue(&self) -> String {
        format!("{}.extract", self.prefix)
    }

    /// A per-replica reply queue name, unique to this process; replies reach it through the
    /// default exchange, which routes by queue name.
    pub fn reply_queue(&self, service: &str) -> String {
        format!(
            "{}.replies.{service}.{}",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        )
    }

    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// The copy of every dead letter that the analyzer consumes to fail the quiz.
    pub fn dead_letter_watch_queue(&self) -> String {
        format!("{}.dead.watch", self.prefix)
    }

    /// A per-replica event queue name, unique to this process.
    pub fn replica_queue(&self, service: &str) -> String {
        format!(
            "{}.events.{service}.{}",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        )
    }

    /// Declares every durable exchange, queue and binding; safe to call again and again.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        for exchange in [
            self.jobs_exchange(),
            self.events_exchange(),
            self.dead_letter_exchange(),
        ] {
            channel
                .exchange_declare(
                    exchange.as_str().into(),
                    ExchangeKind::Topic,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        let work_queues = [
            (self.analyze_queue(), routing::ANALYSIS_REQUESTED),
            (self.scrape_queue(), routing::SCRAPE_REQUESTED),
            (self.extract_queue(), routing::EXTRACT_REQUESTED),
        ];
        for (queue, routing_key) in work_queues {
            self.declare_quorum(channel, &queue, true).await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.jobs_exchange().as_str().into(),
                    routing_key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        // Two copies of every dead letter: one stays for operators (`cargo xtask dlq`),
        // the other tells the analyzer to fail its quiz visibly.
        for queue in [self.dead_letter_queue(), self.dead_letter_watch_queue()] {
            self.declare_quorum(channel, &queue, false).await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.dead_letter_exchange().as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Deletes every queue and exchange of this prefix: for tests and `xtask`, never services.
    pub async fn delete_all(&self, channel: &Channel) -> Result<(), lapin::Error> {
        use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
        for queue in [
            self.analyze_queue(),
            self.scrape_queue(),
            self.extract_queue(),
            self.dead_letter_queue(),
            self.dead_letter_watch_queue(),
        ] {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for exchange in [
            self.jobs_exchange(),
            self.events_exchange(),
            self.dead_letter_exchange(),
        ] {
            channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        Ok(())
    }

    async fn declare_quorum(
        &self,
        channel: &Channel,
        queue: &str,
        dead_letter: bool,
    ) -> Result<(), lapin::Error> {
        let mut arguments = FieldTable::default();
        arguments.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from("quorum")),
        );
        if dead_letter {
            arguments.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(self.delivery_limit)),
            );
            arguments.insert(
                "x-dead-letter-exchange".into(),
                AMQPValue::LongString(LongString::from(self.dead_letter_exchange())),
            );
        }
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        Ok(())
    }
}
