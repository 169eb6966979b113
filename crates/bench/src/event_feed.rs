//! The broadcaster benchmark's event source: a quiz, its `question_answered` events (as the
//! Redis log entry and as the bus message), and a publisher that sends them on the events
//! exchange the way the analyzer does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use common::bus::{CONTENT_TYPE, Topology, routing};
use common::settings::AmqpSettings;
use common::views::{self, AnswerView, EventView, QuestionKind, QuestionOutcome, QuestionSpec, QuizSpec};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm};
use prost::{Message as _, Name as _};
use proto::v1;

/// Questions in the benchmark quiz; events cycle through them.
pub const QUESTIONS: u64 = 20;

pub fn spec() -> QuizSpec {
    QuizSpec {
        questions: (0..QUESTIONS)
            .map(|i| QuestionSpec {
                text: format!("Broadcast benchmark question {i}: which option is right?"),
                options: vec!["alpha".into(), "beta".into(), "gamma".into(), "delta".into()],
                kind: QuestionKind::Single,
            })
            .collect(),
        answer_key: None,
        votes: 1,
    }
}

/// Builds event `seq` three ways: the outcome and log entry for Redis, and the bus body.
pub struct EventFactory {
    pub quiz_id: String,
}

impl EventFactory {
    pub fn make(&self, seq: u64) -> (QuestionOutcome, EventView, Vec<u8>) {
        let answer = AnswerView {
            selected: vec![(seq % 4) as u32],
            confidence: Some(0.87),
            confidence_source: Some("logprobs".into()),
            rationale: "Beta is the only option consistent with the definition given in the question.".into(),
            model: "bench-model".into(),
            cached: true,
            prompt_tokens: 150,
            completion_tokens: 30,
            latency_ms: 0,
            cost_usd: 0.0,
        };
        let outcome = QuestionOutcome {
            index: ((seq - 1) % QUESTIONS) as u32,
            answer: Some(answer.clone()),
            error: None,
            agrees_with_key: None,
        };
        let message = v1::QuestionAnswered {
            meta: Some(views::new_meta(&self.quiz_id)),
            seq,
            index: outcome.index,
            agrees_with_key: None,
            outcome: Some(v1::question_answered::Outcome::Answer(answer.to_proto())),
        };
        let event = EventView::QuestionAnswered {
            quiz_id: self.quiz_id.clone(),
            seq,
            outcome: outcome.clone(),
        };
        (outcome, event, message.encode_to_vec())
    }
}

/// Publishes on the events exchange with the properties the bus sets, pipelined: confirms
/// are awaited by a task of their own, so publishing never waits for the broker's disk.
pub struct Publisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
    confirms: tokio::sync::mpsc::UnboundedSender<PublisherConfirm>,
    failures: Arc<AtomicU64>,
}

impl Publisher {
    pub async fn connect(amqp: &AmqpSettings) -> anyhow::Result<Self> {
        let connection = Connection::connect(&amqp.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let topology = Topology::new(amqp);
        topology.declare(&channel).await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        let (confirms, mut pending) = tokio::sync::mpsc::unbounded_channel::<PublisherConfirm>();
        let failures = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&failures);
        tokio::spawn(async move {
            while let Some(confirm) = pending.recv().await {
                if !matches!(
                    confirm.await,
                    Ok(Confirmation::Ack(_) | Confirmation::NotRequested)
                ) {
                    counted.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
        Ok(Self {
            connection,
            channel,
            exchange: topology.events_exchange(),
            confirms,
            failures,
        })
    }

    pub async fn publish(&self, body: &[u8]) -> anyhow::Result<()> {
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE.into())
            .with_type(v1::QuestionAnswered::full_name().into())
            .with_message_id(uuid::Uuid::now_v7().to_string().into())
            .with_delivery_mode(2)
            .with_app_id("bench".into());
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.as_str().into(),
                routing::QUESTION_ANSWERED.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?;
        self.confirms
            .send(confirm)
            .map_err(|_| anyhow::anyhow!("the confirm task ended"))?;
        anyhow::ensure!(
            self.failures.load(Ordering::SeqCst) == 0,
            "the broker refused a publish"
        );
        Ok(())
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "done".into()).await;
        let _ = self.connection.close(200, "done".into()).await;
    }
}
