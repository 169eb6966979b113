//! A quiz's running statistics, folded from its events: a pure function of the
//! events with `seq <= as_of_seq`, so every replica computes the same numbers.

use std::collections::BTreeMap;

use common::views::{EventView, QuestionOutcome, StatsView};
use serde::Serialize;

/// Events folded so far for one quiz.
#[derive(Debug, Clone)]
pub struct QuizAggregate {
    total: u32,
    /// Option count of the widest question, so the histogram has a bar per position.
    max_options: usize,
    dispute_confidence: f64,
    as_of_seq: u64,
    /// One outcome per question index; a repeated index replaces the earlier one.
    questions: BTreeMap<u32, QuestionOutcome>,
    state: QuizState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QuizState {
    Running,
    Completed,
    Failed,
}

/// Latency percentiles of the answers the LLM produced (cache hits excluded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub p50: Option<u32>,
    pub p95: Option<u32>,
    pub samples: usize,
}

/// One question as the stats see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QuestionSummary {
    pub index: u32,
    pub selected: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agrees_with_key: Option<bool>,
    pub failed: bool,
}

/// The body of a `stats` message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveStats {
    #[serde(flatten)]
    pub base: StatsView,
    pub state: QuizState,
    /// Share of answered questions served from the cache, 0 when none is answered.
    pub cache_hit_share: f64,
    pub mean_confidence: Option<f64>,
    pub dispute_confidence: f64,
    pub latency_ms: Latency,
    /// How often each option position (0 = first option) was selected, over the quiz.
    pub option_histogram: Vec<u32>,
    /// Each finished question's selection, by index.
    pub questions: Vec<QuestionSummary>,
}

impl QuizAggregate {
    pub fn new(total: u32, max_options: usize, dispute_confidence: f64) -> Self {
        Self {
            total,
            max_options,
            dispute_confidence,
            as_of_seq: 0,
            questions: BTreeMap::new(),
            state: QuizState::Running,
        }
    }

    /// The last sequence number folded in.
    pub fn as_of_seq(&self) -> u64 {
        self.as_of_seq
    }

    /// Folds one event in; events at or below `as_of_seq` are already counted.
    pub fn fold(&mut self, event: &EventView) {
        if event.seq() <= self.as_of_seq {
            return;
        }
        self.as_of_seq = event.seq();
        match event {
            EventView::QuestionAnswered { outcome, .. } => {
                self.questions.insert(outcome.index, outcome.clone());
            }
            EventView::QuizCompleted { .. } => self.state = QuizState::Completed,
            EventView::QuizFailed { .. } => self.state = QuizState::Failed,
        }
    }

    pub fn stats(&self) -> LiveStats {
        let outcomes = || self.questions.values();
        let base = StatsView::compute(self.total, outcomes(), self.dispute_confidence);
        let answers = || outcomes().filter_map(|outcome| outcome.answer.as_ref());
        let confidences: Vec<f64> = answers().filter_map(|answer| answer.confidence).collect();
        let mut latencies: Vec<u32> = answers()
            .filter(|answer| !answer.cached)
            .map(|answer| answer.latency_ms)
            .collect();
        latencies.sort_unstable();
        let mut option_histogram = vec![0u32; self.max_options];
        for answer in answers() {
            for &selected in &answer.selected {
                let position = selected as usize;
                if position >= option_histogram.len() {
                    option_histogram.resize(position + 1, 0);
                }
                option_histogram[position] += 1;
            }
        }
        LiveStats {
            cache_hit_share: ratio(base.cache_hits, base.answered),
            mean_confidence: (!confidences.is_empty())
                .then(|| confidences.iter().sum::<f64>() / confidences.len() as f64),
            dispute_confidence: self.dispute_confidence,
            latency_ms: Latency {
                p50: nearest_rank(&latencies, 0.50),
                p95: nearest_rank(&latencies, 0.95),
                samples: latencies.len(),
            },
            option_histogram,
            questions: outcomes()
                .map(|outcome| QuestionSummary {
                    index: outcome.index,
                    selected: outcome
                        .answer
                        .as_ref()
                        .map(|answer| answer.selected.clone())
                        .unwrap_or_default(),
                    confidence: outcome.answer.as_ref().and_then(|answer| answer.confidence),
                    agrees_with_key: outcome.agrees_with_key,
                    failed: outcome.answer.is_none(),
                })
                .collect(),
            state: self.state.clone(),
            base,
        }
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// The nearest-rank percentile of sorted values: the smallest value with at least
/// `quantile` of the values at or below it.
fn nearest_rank(sorted: &[u32], quantile: f64) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use common::views::AnswerView;

    use super::*;

    fn answered(seq: u64, index: u32, selected: Vec<u32>, cached: bool, agrees: Option<bool>) -> EventView {
        EventView::QuestionAnswered {
            quiz_id: "q".into(),
            seq,
            outcome: QuestionOutcome {
                index,
                answer: Some(AnswerView {
                    selected,
                    confidence: Some(0.9),
                    confidence_source: Some("logprobs".into()),
                    rationale: String::new(),
                    model: "m".into(),
                    cached,
                    prompt_tokens: 100,
                    completion_tokens: 10,
                    latency_ms: 100 * index + 100,
                    cost_usd: 0.25,
                }),
                error: None,
                agrees_with_key: agrees,
            },
        }
    }

    #[test]
    fn folds_events_into_counters_histogram_and_percentiles() {
        let mut aggregate = QuizAggregate::new(5, 3, 0.8);
        aggregate.fold(&answered(1, 0, vec![1], false, Some(true)));
        aggregate.fold(&answered(2, 1, vec![0, 2], false, Some(false)));
        aggregate.fold(&answered(3, 2, vec![1], true, Some(true)));
        aggregate.fold(&answered(4, 3, vec![1], false, None));
        // A replayed event changes nothing.
        aggregate.fold(&answered(2, 1, vec![0], false, Some(true)));
        aggregate.fold(&EventView::QuestionAnswered {
            quiz_id: "q".into(),
            seq: 5,
            outcome: QuestionOutcome {
                index: 4,
                answer: None,
                error: Some("boom".into()),
                agrees_with_key: None,
            },
        });
        let stats = aggregate.stats();
        assert_eq!(
            (stats.base.total, stats.base.answered, stats.base.failed),
            (5, 4, 1)
        );
        assert_eq!(stats.option_histogram, vec![1, 3, 1]);
        assert_eq!(stats.base.disagreements, vec![1]);
        assert_eq!(stats.base.disputed, vec![1]);
        assert!((stats.cache_hit_share - 0.25).abs() < 1e-9);
        assert!((stats.base.cost_usd - 0.75).abs() < 1e-9);
        // Non-cached latencies: 100, 200, 400.
        assert_eq!(stats.latency_ms.p50, Some(200));
        assert_eq!(stats.latency_ms.p95, Some(400));
        assert_eq!(stats.latency_ms.samples, 3);
        assert_eq!(stats.state, QuizState::Running);
        assert_eq!(stats.questions.len(), 5);
        assert!(stats.questions[4].failed);
        aggregate.fold(&EventView::QuizCompleted {
            quiz_id: "q".into(),
            seq: 6,
            stats: StatsView::default(),
        });
        assert_eq!(aggregate.stats().state, QuizState::Completed);
        assert_eq!(aggregate.as_of_seq(), 6);
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(nearest_rank(&[], 0.5), None);
        assert_eq!(nearest_rank(&[7], 0.95), Some(7));
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(nearest_rank(&values, 0.50), Some(50));
        assert_eq!(nearest_rank(&values, 0.95), Some(95));
    }
}
