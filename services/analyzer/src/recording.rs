//! Recording what happened: outcomes and events in Redis, then on the bus, in
//! sequence-number order; and the end of a quiz, completed or failed.

use common::bus::{Outgoing, routing};
use common::views::{self, EventView, QuestionOutcome, QuizSpec, QuizStatus, StatsView};
use proto::v1;

use crate::analysis::{AnalyzeError, Analyzer};
use crate::metrics;

impl Analyzer {
    /// Records outcomes with fresh sequence numbers, then publishes them in that order.
    pub(crate) async fn emit(
        &self,
        quiz_id: &str,
        outcomes: Vec<QuestionOutcome>,
    ) -> Result<(), AnalyzeError> {
        // A quiz the sweeper (or the dead-letter watch) failed while this analysis waited
        // on the LLM keeps its ending: late answers stay in the cache, not in its log.
        if self
            .store
            .status(quiz_id)
            .await?
            .is_none_or(|status| status.is_terminal())
        {
            tracing::info!("quiz ended elsewhere, dropping late answers");
            return Ok(());
        }
        let first = self.store.reserve_seq(quiz_id, outcomes.len() as u64).await?;
        let events: Vec<EventView> = (first..)
            .zip(&outcomes)
            .map(|(seq, outcome)| EventView::QuestionAnswered {
                quiz_id: quiz_id.to_owned(),
                seq,
                outcome: outcome.clone(),
            })
            .collect();
        self.store.record(quiz_id, &outcomes, &events).await?;
        let exchange = self.bus.topology().events_exchange();
        let messages = (first..)
            .zip(&outcomes)
            .map(|(seq, outcome)| {
                let meta = views::new_meta(quiz_id);
                let message = v1::QuestionAnswered {
                    seq,
                    index: outcome.index,
                    outcome: Some(match (&outcome.answer, &outcome.error) {
                        (Some(answer), _) => v1::question_answered::Outcome::Answer(answer.to_proto()),
                        (None, error) => {
                            v1::question_answered::Outcome::Error(error.clone().unwrap_or_default())
                        }
                    }),
                    agrees_with_key: outcome.agrees_with_key,
                    meta: None,
                };
                Outgoing::new(
                    exchange.clone(),
                    routing::QUESTION_ANSWERED,
                    &meta.message_id,
                    &v1::QuestionAnswered {
                        meta: Some(meta.clone()),
                        ..message
                    },
                )
            })
            .collect();
        self.bus.publish_all(messages).await?;
        Ok(())
    }

    /// Marks the quiz finished and publishes the terminal event.
    pub(crate) async fn finish(&self, quiz_id: &str, spec: &QuizSpec) -> Result<(), AnalyzeError> {
        let outcomes = self.store.outcomes(quiz_id).await?;
        let total = u32::try_from(spec.questions.len()).unwrap_or(u32::MAX);
        let stats = StatsView::compute(total, &outcomes, self.dispute_confidence);
        let seq = self.store.reserve_seq(quiz_id, 1).await?;
        let meta = views::new_meta(quiz_id);
        let exchange = self.bus.topology().events_exchange();
        let (status, event, message) = if total > 0 && stats.failed == total {
            let reason = format!(
                "all {total} questions failed; first error: {}",
                outcomes
                    .iter()
                    .find_map(|outcome| outcome.error.clone())
                    .unwrap_or_default()
            );
            let message = Outgoing::new(
                exchange,
                routing::QUIZ_FAILED,
                &meta.message_id,
                &v1::QuizFailed {
                    meta: Some(meta.clone()),
                    seq,
                    reason: reason.clone(),
                },
            );
            (
                QuizStatus::Failed,
                EventView::QuizFailed {
                    quiz_id: quiz_id.to_owned(),
                    seq,
                    reason,
                },
                message,
            )
        } else {
            let message = Outgoing::new(
                exchange,
                routing::QUIZ_COMPLETED,
                &meta.message_id,
                &v1::QuizCompleted {
                    meta: Some(meta.clone()),
                    seq,
                    stats: Some(stats.to_proto()),
                },
            );
            (
                QuizStatus::Completed,
                EventView::QuizCompleted {
                    quiz_id: quiz_id.to_owned(),
                    seq,
                    stats,
                },
                message,
            )
        };
        let reason = match &event {
            EventView::QuizFailed { reason, .. } => Some(reason.as_str()),
            _ => None,
        };
        // Atomic and once only: if the sweeper or the dead-letter watch failed the quiz
        // while this analysis ran, it stays failed and no second terminal event follows.
        if !self.store.end(quiz_id, status, reason, &event).await? {
            tracing::info!("quiz already ended elsewhere, not finishing it again");
            return Ok(());
        }
        metrics::quiz_finished(status.as_str());
        tracing::info!(status = status.as_str(), "quiz finished");
        self.bus.publish(message).await?;
        Ok(())
    }

    /// Fails a quiz that cannot finish (its job was dead-lettered), telling clients why.
    /// A quiz that already ended is left alone.
    pub async fn fail(&self, quiz_id: &str, reason: &str) -> Result<(), AnalyzeError> {
        match common::lifecycle::fail_quiz(&self.store, &self.bus, quiz_id, reason).await {
            Ok(true) => {
                metrics::quiz_finished("failed");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(common::lifecycle::FailError::Store(error)) => Err(AnalyzeError::Store(error)),
            Err(common::lifecycle::FailError::Bus(error)) => Err(AnalyzeError::Bus(error)),
        }
    }
}
