//! What the gateway answers, as this client reads it. Answers and stats are the shared
//! view types of `common::views`, so the CLI reads exactly what the services write.

use common::views::{AnswerView, QuizStatus, StatsView};
use serde::Deserialize;
use serde_json::Value;

/// `202` to `POST /v1/quizzes`.
#[derive(Debug, Clone, Deserialize)]
pub struct Accepted {
    pub id: String,
}

/// `GET /v1/quizzes/{id}`.
#[derive(Debug, Clone, Deserialize)]
pub struct QuizView {
    pub id: String,
    pub status: QuizStatus,
    /// Why a failed quiz failed.
    #[serde(default)]
    pub reason: Option<String>,
    /// Empty while a page is still being scraped.
    #[serde(default)]
    pub questions: Vec<QuestionView>,
    #[serde(default)]
    pub stats: StatsView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QuestionView {
    pub index: u32,
    pub text: String,
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub answer: Option<AnswerView>,
    /// Why the model could not answer.
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub agrees_with_key: Option<bool>,
}

/// A quiz view both as typed data and as the gateway sent it: `--json` prints the
/// original, so fields this client does not know yet still reach scripts.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub raw: Value,
    pub view: QuizView,
}

impl QuestionView {
    /// The texts of the options at `indices`, falling back to `#n` (1-based) for an index
    /// outside the options.
    pub fn option_texts(&self, indices: &[u32]) -> String {
        if indices.is_empty() {
            return "(none)".to_owned();
        }
        indices
            .iter()
            .map(|&index| {
                self.options
                    .get(index as usize)
                    .cloned()
                    .unwrap_or_else(|| format!("#{}", u64::from(index) + 1))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}
