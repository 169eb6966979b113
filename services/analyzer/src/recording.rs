//! Recording what happened: outcomes and events in Redis, then on the bus, in
//! sequence-number order; and the end of a quiz, completed or failed.

use common::relay;
use common::views::{EventView, QuestionOutcome, QuizSpec, QuizStatus, StatsView};

use crate::analysis::{AnalyzeError, Analyzer};
use crate::metrics;

impl Analyzer {
    /// Records outcomes under the quiz's next sequence numbers, then publishes them in that
    /// order. A quiz the sweeper (or the dead-letter watch) failed while this analysis waited
    /// on the LLM keeps its ending: the log refuses late answers atomically, and they stay in
    /// the cache only.
    pub(crate) async fn emit(
        &self,
        quiz_id: &str,
        outcomes: Vec<QuestionOutcome>,
    ) -> Result<(), AnalyzeError> {
        let Some(events) = self.store.record(quiz_id, &outcomes).await? else {
            tracing::info!("quiz ended elsewhere, dropping late answers");
            return Ok(());
        };
        relay::publish_logged(&self.store, &self.bus, quiz_id, &events).await?;
        Ok(())
    }

    /// Records the quiz's `last` outcomes, marks it finished, and publishes their events and
    /// the terminal event together: one write, one read and one publish confirm fewer than
    /// an `emit` followed by the ending.
    pub(crate) async fn finish(
        &self,
        quiz_id: &str,
        spec: &QuizSpec,
        last: Vec<QuestionOutcome>,
    ) -> Result<(), AnalyzeError> {
        let Some((mut events, outcomes)) = self.store.record_then_outcomes(quiz_id, &last).await? else {
            tracing::info!("quiz ended elsewhere, dropping late answers");
            return Ok(());
        };
        let total = u32::try_from(spec.questions.len()).unwrap_or(u32::MAX);
        let stats = StatsView::compute(total, &outcomes, self.dispute_confidence);
        let (status, event) = if total > 0 && stats.failed == total {
            let reason = format!(
                "all {total} questions failed; first error: {}",
                outcomes
                    .iter()
                    .find_map(|outcome| outcome.error.clone())
                    .unwrap_or_default()
            );
            (
                QuizStatus::Failed,
                EventView::QuizFailed {
                    quiz_id: quiz_id.to_owned(),
                    seq: 0,
                    reason,
                },
            )
        } else {
            (
                QuizStatus::Completed,
                EventView::QuizCompleted {
                    quiz_id: quiz_id.to_owned(),
                    seq: 0,
                    stats,
                },
            )
        };
        let reason = match &event {
            EventView::QuizFailed { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        // Atomic and once only: if the sweeper or the dead-letter watch failed the quiz
        // while this analysis ran, it stays failed and no second terminal event follows.
        let Some(event) = self.store.end(quiz_id, status, reason.as_deref(), event).await? else {
            tracing::info!("quiz already ended elsewhere, not finishing it again");
            // The answers logged just before it ended still go out, in their order.
            relay::publish_logged(&self.store, &self.bus, quiz_id, &events).await?;
            return Ok(());
        };
        metrics::quiz_finished(status.as_str());
        tracing::info!(status = status.as_str(), "quiz finished");
        events.push(event);
        relay::publish_logged(&self.store, &self.bus, quiz_id, &events).await?;
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
