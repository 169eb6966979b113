//! The extracted-quiz JSON shape (shared/schemas/extracted-quiz.schema.json) and its conversion to a `QuizSpec`.

use common::views::{QuestionKind, QuestionSpec, QuizSpec};
use serde::{Deserialize, Serialize};

/// One question as the schema describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractedQuestion {
    pub text: String,
    pub kind: QuestionKind,
    pub options: Vec<String>,
    /// 0-based indices the page itself marks correct; absent when the page reveals no key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<Vec<u32>>,
}

/// What one page yields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtractedQuiz {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    pub questions: Vec<ExtractedQuestion>,
}

/// The extractor's raw return value, before validation: loosely typed on purpose.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RawExtraction {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub questions: Vec<serde_json::Value>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub limit: Option<u64>,
}

impl ExtractedQuiz {
    /// The spec the analyzer answers; the answer key is kept only when every question has one.
    pub fn to_spec(&self, votes: u32) -> QuizSpec {
        let answer_key: Option<Vec<Vec<u32>>> = self
            .questions
            .iter()
            .map(|question| question.correct.clone())
            .collect();
        QuizSpec {
            questions: self
                .questions
                .iter()
                .map(|question| QuestionSpec {
                    text: question.text.clone(),
                    options: question.options.clone(),
                    kind: question.kind,
                })
                .collect(),
            answer_key: answer_key.filter(|key| !key.is_empty()),
            votes: votes.max(1),
        }
    }
}
