//! The JSON shapes of quizzes, answers, stats and events: what Redis stores, the
//! gateway returns and the broadcaster streams. Bus messages convert into these.

use proto::v1;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How many options may be right: `single` one, `multiple` one or more, `true_false` one of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuestionKind {
    Single,
    Multiple,
    TrueFalse,
}

impl From<QuestionKind> for v1::QuestionKind {
    fn from(kind: QuestionKind) -> Self {
        match kind {
            QuestionKind::Single => Self::Single,
            QuestionKind::Multiple => Self::Multiple,
            QuestionKind::TrueFalse => Self::TrueFalse,
        }
    }
}

impl From<v1::QuestionKind> for QuestionKind {
    fn from(kind: v1::QuestionKind) -> Self {
        match kind {
            v1::QuestionKind::Multiple => Self::Multiple,
            v1::QuestionKind::TrueFalse => Self::TrueFalse,
            v1::QuestionKind::Single | v1::QuestionKind::Unspecified => Self::Single,
        }
    }
}

/// One question as submitted (already validated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionSpec {
    pub text: String,
    pub options: Vec<String>,
    pub kind: QuestionKind,
}

/// What a quiz asks: stored once in `quiz:{id}` under `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuizSpec {
    pub questions: Vec<QuestionSpec>,
    /// One list of correct 0-based indices per question, when the author gave a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_key: Option<Vec<Vec<u32>>>,
    /// Samples per question for self-consistency (1 = a single answer).
    #[serde(default = "one")]
    pub votes: u32,
}

fn one() -> u32 {
    1
}

impl QuizSpec {
    /// The bus message that asks the analyzer to answer this quiz.
    pub fn to_analysis_request(&self, meta: v1::Meta) -> v1::AnalysisRequested {
        v1::AnalysisRequested {
            meta: Some(meta),
            questions: self
                .questions
                .iter()
                .map(|question| v1::Question {
                    text: question.text.clone(),
                    options: question.options.clone(),
                    kind: v1::QuestionKind::from(question.kind).into(),
                })
                .collect(),
            answer_key: self
                .answer_key
                .iter()
                .flatten()
                .map(|correct| v1::KeyEntry {
                    correct: correct.clone(),
                })
                .collect(),
            votes: self.votes,
        }
    }

    /// The inverse of [`QuizSpec::to_analysis_request`].
    pub fn from_analysis_request(request: &v1::AnalysisRequested) -> Self {
        Self {
            questions: request
                .questions
                .iter()
                .map(|question| QuestionSpec {
                    text: question.text.clone(),
                    options: question.options.clone(),
                    kind: question.kind().into(),
                })
                .collect(),
            answer_key: (!request.answer_key.is_empty()).then(|| {
                request
                    .answer_key
                    .iter()
                    .map(|entry| entry.correct.clone())
                    .collect()
            }),
            votes: request.votes.max(1),
        }
    }
}

/// Where a quiz is: `queued` → (`scraping` →) `analyzing` → `completed` or `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QuizStatus {
    Queued,
    Scraping,
    Analyzing,
    Completed,
    Failed,
}

impl QuizStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scraping => "scraping",
            Self::Analyzing => "analyzing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            Self::Queued,
            Self::Scraping,
            Self::Analyzing,
            Self::Completed,
            Self::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    /// Completed and failed quizzes never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

/// The model's answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnswerView {
    /// Chosen option indices, 0-based, ascending.
    pub selected: Vec<u32>,
    /// How sure the model is of `selected`, 0 to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, minimum = 0.0, maximum = 1.0)]
    pub confidence: Option<f64>,
    /// `logprobs`, `model` or `votes`: where the confidence came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub confidence_source: Option<String>,
    #[serde(default)]
    pub rationale: String,
    pub model: String,
    pub cached: bool,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub latency_ms: u32,
    /// Estimated spend, US dollars; 0 for a cache hit.
    #[serde(default)]
    pub cost_usd: f64,
}

impl From<&v1::Answer> for AnswerView {
    fn from(answer: &v1::Answer) -> Self {
        let confidence_source = match answer.confidence_source() {
            v1::ConfidenceSource::Logprobs => Some("logprobs"),
            v1::ConfidenceSource::Model => Some("model"),
            v1::ConfidenceSource::Votes => Some("votes"),
            v1::ConfidenceSource::Unspecified => None,
        };
        Self {
            selected: answer.selected.clone(),
            confidence: answer.confidence,
            confidence_source: confidence_source.map(str::to_owned),
            rationale: answer.rationale.clone(),
            model: answer.model.clone(),
            cached: answer.cached,
            prompt_tokens: answer.prompt_tokens,
            completion_tokens: answer.completion_tokens,
            latency_ms: answer.latency_ms,
            cost_usd: answer.cost_usd,
        }
    }
}

impl AnswerView {
    pub fn to_proto(&self) -> v1::Answer {
        let confidence_source = match self.confidence_source.as_deref() {
            Some("logprobs") => v1::ConfidenceSource::Logprobs,
            Some("model") => v1::ConfidenceSource::Model,
            Some("votes") => v1::ConfidenceSource::Votes,
            _ => v1::ConfidenceSource::Unspecified,
        };
        v1::Answer {
            selected: self.selected.clone(),
            confidence: self.confidence,
            confidence_source: confidence_source.into(),
            rationale: self.rationale.clone(),
            model: self.model.clone(),
            cached: self.cached,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            latency_ms: self.latency_ms,
            cost_usd: self.cost_usd,
        }
    }
}

/// How one question ended: an answer or an error. Stored in `quiz:{id}:answers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionOutcome {
    pub index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<AnswerView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agrees_with_key: Option<bool>,
}

/// A quiz's running statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsView {
    pub total: u32,
    pub answered: u32,
    pub failed: u32,
    pub cache_hits: u32,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Share of answered questions that agree with the key; absent without a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub agreement_rate: Option<f64>,
    /// Indices of questions whose answer disagrees with the key.
    #[serde(default)]
    pub disagreements: Vec<u32>,
    /// Disagreements the model is confident about: the questions whose key to check first.
    #[serde(default)]
    pub disputed: Vec<u32>,
    /// Estimated LLM spend of this quiz, US dollars.
    #[serde(default)]
    pub cost_usd: f64,
}

impl StatsView {
    /// Aggregates the outcomes recorded so far for a quiz of `total` questions. Tokens
    /// and cost count what this quiz spent: cache hits add nothing. A disagreement
    /// with confidence at or above `dispute_confidence` is disputed.
    pub fn compute<'a>(
        total: u32,
        outcomes: impl IntoIterator<Item = &'a QuestionOutcome>,
        dispute_confidence: f64,
    ) -> Self {
        let mut stats = Self {
            total,
            ..Self::default()
        };
        let (mut keyed, mut agreeing) = (0u32, 0u32);
        for outcome in outcomes {
            match &outcome.answer {
                Some(answer) => {
                    stats.answered += 1;
                    if answer.cached {
                        stats.cache_hits += 1;
                    } else {
                        stats.prompt_tokens += u64::from(answer.prompt_tokens);
                        stats.completion_tokens += u64::from(answer.completion_tokens);
                        stats.cost_usd += answer.cost_usd;
                    }
                }
                None => stats.failed += 1,
            }
            if let Some(agrees) = outcome.agrees_with_key {
                keyed += 1;
                if agrees {
                    agreeing += 1;
                } else {
                    stats.disagreements.push(outcome.index);
                    let confidence = outcome.answer.as_ref().and_then(|answer| answer.confidence);
                    if confidence.is_some_and(|confidence| confidence >= dispute_confidence) {
                        stats.disputed.push(outcome.index);
                    }
                }
            }
        }
        stats.disagreements.sort_unstable();
        stats.disputed.sort_unstable();
        if keyed > 0 {
            stats.agreement_rate = Some(f64::from(agreeing) / f64::from(keyed));
        }
        stats
    }

    pub fn to_proto(&self) -> v1::QuizStats {
        v1::QuizStats {
            total: self.total,
            answered: self.answered,
            failed: self.failed,
            cache_hits: self.cache_hits,
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.completion_tokens,
            agreement_rate: self.agreement_rate,
            disagreements: self.disagreements.clone(),
            cost_usd: self.cost_usd,
            disputed: self.disputed.clone(),
        }
    }
}

impl From<&v1::QuizStats> for StatsView {
    fn from(stats: &v1::QuizStats) -> Self {
        Self {
            total: stats.total,
            answered: stats.answered,
            failed: stats.failed,
            cache_hits: stats.cache_hits,
            prompt_tokens: stats.prompt_tokens,
            completion_tokens: stats.completion_tokens,
            agreement_rate: stats.agreement_rate,
            disagreements: stats.disagreements.clone(),
            disputed: stats.disputed.clone(),
            cost_usd: stats.cost_usd,
        }
    }
}

/// One event of a quiz's stream, as WebSocket clients and the event log see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventView {
    QuestionAnswered {
        quiz_id: String,
        seq: u64,
        #[serde(flatten)]
        outcome: QuestionOutcome,
    },
    QuizCompleted {
        quiz_id: String,
        seq: u64,
        stats: StatsView,
    },
    QuizFailed {
        quiz_id: String,
        seq: u64,
        reason: String,
    },
}

impl EventView {
    pub fn quiz_id(&self) -> &str {
        match self {
            Self::QuestionAnswered { quiz_id, .. }
            | Self::QuizCompleted { quiz_id, .. }
            | Self::QuizFailed { quiz_id, .. } => quiz_id,
        }
    }

    pub fn seq(&self) -> u64 {
        match self {
            Self::QuestionAnswered { seq, .. }
            | Self::QuizCompleted { seq, .. }
            | Self::QuizFailed { seq, .. } => *seq,
        }
    }

    pub fn is_terminal(&self) -> bool {
        !matches!(self, Self::QuestionAnswered { .. })
    }

    /// The same event under another sequence number (the log assigns them).
    #[must_use]
    pub fn with_seq(mut self, new: u64) -> Self {
        match &mut self {
            Self::QuestionAnswered { seq, .. }
            | Self::QuizCompleted { seq, .. }
            | Self::QuizFailed { seq, .. } => {
                *seq = new;
            }
        }
        self
    }
}

fn quiz_id_of(meta: Option<&v1::Meta>) -> String {
    meta.map(|meta| meta.quiz_id.clone()).unwrap_or_default()
}

impl From<&v1::QuestionAnswered> for EventView {
    fn from(event: &v1::QuestionAnswered) -> Self {
        let (answer, error) = match &event.outcome {
            Some(v1::question_answered::Outcome::Answer(answer)) => (Some(AnswerView::from(answer)), None),
            Some(v1::question_answered::Outcome::Error(error)) => (None, Some(error.clone())),
            None => (None, Some("no outcome".to_owned())),
        };
        Self::QuestionAnswered {
            quiz_id: quiz_id_of(event.meta.as_ref()),
            seq: event.seq,
            outcome: QuestionOutcome {
                index: event.index,
                answer,
                error,
                agrees_with_key: event.agrees_with_key,
            },
        }
    }
}

impl From<&v1::QuizCompleted> for EventView {
    fn from(event: &v1::QuizCompleted) -> Self {
        Self::QuizCompleted {
            quiz_id: quiz_id_of(event.meta.as_ref()),
            seq: event.seq,
            stats: event.stats.as_ref().map(StatsView::from).unwrap_or_default(),
        }
    }
}

impl From<&v1::QuizFailed> for EventView {
    fn from(event: &v1::QuizFailed) -> Self {
        Self::QuizFailed {
            quiz_id: quiz_id_of(event.meta.as_ref()),
            seq: event.seq,
            reason: event.reason.clone(),
        }
    }
}

/// A fresh `Meta` for a message about `quiz_id`.
pub fn new_meta(quiz_id: &str) -> v1::Meta {
    v1::Meta {
        message_id: uuid::Uuid::now_v7().to_string(),
        quiz_id: quiz_id.to_owned(),
        schema_version: v1::SCHEMA_VERSION,
        sent_at_ms: crate::now_ms(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn answered(index: u32, cached: bool, agrees: Option<bool>) -> QuestionOutcome {
        QuestionOutcome {
            index,
            answer: Some(AnswerView {
                selected: vec![0],
                confidence: Some(0.5),
                confidence_source: Some("model".into()),
                rationale: String::new(),
                model: "m".into(),
                cached,
                prompt_tokens: 10,
                completion_tokens: 5,
                latency_ms: 1,
                cost_usd: 0.5,
            }),
            error: None,
            agrees_with_key: agrees,
        }
    }

    #[test]
    fn stats_count_answers_failures_and_agreement() {
        let failed = QuestionOutcome {
            index: 3,
            answer: None,
            error: Some("x".into()),
            agrees_with_key: Some(false),
        };
        let outcomes = [
            answered(0, true, Some(true)),
            answered(1, false, Some(false)),
            answered(2, false, Some(true)),
            failed,
        ];
        let stats = StatsView::compute(5, &outcomes, 0.5);
        assert_eq!(
            (stats.total, stats.answered, stats.failed, stats.cache_hits),
            (5, 3, 1, 1)
        );
        // The cache hit cost nothing this time.
        assert_eq!(stats.prompt_tokens, 20);
        assert!((stats.cost_usd - 1.0).abs() < 1e-9);
        assert_eq!(stats.disagreements, vec![1, 3]);
        // Question 1 disagrees with confidence 0.5 >= 0.5; question 3 failed, so it has none.
        assert_eq!(stats.disputed, vec![1]);
        assert!(StatsView::compute(5, &outcomes, 0.9).disputed.is_empty());
        assert_eq!(stats.agreement_rate, Some(0.5));
    }

    #[test]
    fn events_round_trip_through_json_with_their_type_tag() {
        let event = EventView::QuestionAnswered {
            quiz_id: "q".into(),
            seq: 4,
            outcome: answered(2, false, None),
        };
        let text = serde_json::to_string(&event).unwrap();
        assert!(text.contains("\"type\":\"question_answered\""), "{text}");
        assert_eq!(serde_json::from_str::<EventView>(&text).unwrap(), event);
    }
}
