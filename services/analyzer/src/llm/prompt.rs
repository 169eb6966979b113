//! The production prompt and the JSON schema that constrains the reply.
//!
//! One question per call with a schema: the original system's whole-quiz prompt
//! gave a parseable answer for 0 of 10 quizzes on SmolLM2, one question with a
//! schema for 100 of 100.

use common::views::{QuestionKind, QuestionSpec};
use serde_json::{Value, json};

/// Changes whenever the prompt or schema changes what the model answers; part of every cache key.
pub const PROMPT_VERSION: &str = "p1";

const SYSTEM: &str =
    "You answer multiple-choice quiz questions. Reply with one JSON object and nothing else.";

/// The chat messages for one question.
pub fn messages(question: &QuestionSpec) -> Vec<Value> {
    let mut user = format!("Question: {}\nOptions:\n", question.text);
    for (index, option) in question.options.iter().enumerate() {
        user.push_str(&format!("{index}) {option}\n"));
    }
    user.push_str(match question.kind {
        QuestionKind::Multiple => "Select every correct option (one or more).\n",
        QuestionKind::Single | QuestionKind::TrueFalse => "Select exactly one option.\n",
    });
    user.push_str(
        "Reply as {\"answer\": [option numbers], \"confidence\": 0 to 1, \"rationale\": \"one short sentence\"}",
    );
    vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": user}),
    ]
}

/// The chat messages for several questions in one call.
pub fn batch_messages(questions: &[&QuestionSpec]) -> Vec<Value> {
    let mut user = String::new();
    for (position, question) in questions.iter().enumerate() {
        user.push_str(&format!("q{}: {}\n", position + 1, question.text));
        for (index, option) in question.options.iter().enumerate() {
            user.push_str(&format!("{index}) {option}\n"));
        }
        user.push_str(match question.kind {
            QuestionKind::Multiple => "(every correct option)\n",
            QuestionKind::Single | QuestionKind::TrueFalse => "(one option)\n",
        });
    }
    user.push_str(
        "Reply as {\"q1\": {\"answer\": [option numbers], \"confidence\": 0 to 1, \"rationale\": \"one short sentence\"}, \"q2\": …}",
    );
    vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": user}),
    ]
}

/// One object with a `qN` entry per question, each constrained like [`schema`].
pub fn batch_schema(questions: &[&QuestionSpec]) -> Value {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for (position, question) in questions.iter().enumerate() {
        let key = format!("q{}", position + 1);
        properties.insert(key.clone(), schema(question));
        required.push(key);
    }
    json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false})
}

/// The reply schema: `answer` can only hold valid option indices for this question.
pub fn schema(question: &QuestionSpec) -> Value {
    let n_options = question.options.len();
    let indices: Vec<usize> = (0..n_options).collect();
    let max_items = match question.kind {
        QuestionKind::Multiple => n_options,
        QuestionKind::Single | QuestionKind::TrueFalse => 1,
    };
    json!({
        "type": "object",
        "properties": {
            "answer": {
                "type": "array",
                "items": {"type": "integer", "enum": indices},
                "minItems": 1,
                "maxItems": max_items
            },
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "rationale": {"type": "string", "maxLength": 200}
        },
        "required": ["answer", "confidence", "rationale"],
        "additionalProperties": false
    })
}
