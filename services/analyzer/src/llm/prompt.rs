//! The production prompt and the JSON schema that constrains the reply.
//!
//! One question per call with a schema: the original system's whole-quiz prompt
//! gave a parseable answer for 0 of 10 quizzes on SmolLM2, one question with a
//! schema for 100 of 100.

use common::views::{QuestionKind, QuestionSpec};
use serde_json::{Value, json};

/// Changes whenever the prompt or schema changes what the model answers; part of every cache key.
pub const PROMPT_VERSION: &str = "p2";

/// Short on purpose: every token here is paid once per call. Without any system
/// message SmolLM2's chat template inserts a longer default one.
const SYSTEM: &str = "Answer quiz questions in JSON.";

/// What the reply holds; the schema enforces the shape, this tells the model the meaning.
const REPLY: &str = "Reply: answer (option numbers), confidence (0-1), rationale (one sentence).";

/// Appends the options, numbered from 0, and a hint only where the kind needs one
/// (the schema already allows a single option for `single` and `true_false`).
fn push_options(prompt: &mut String, question: &QuestionSpec) {
    for (index, option) in question.options.iter().enumerate() {
        prompt.push_str(&format!("{index}) {option}\n"));
    }
    if question.kind == QuestionKind::Multiple {
        prompt.push_str("(select every correct option)\n");
    }
}

/// The chat messages for one question.
pub fn messages(question: &QuestionSpec) -> Vec<Value> {
    let mut user = format!("Question: {}\n", question.text);
    push_options(&mut user, question);
    user.push_str(REPLY);
    vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": user}),
    ]
}

/// The chat messages for several questions in one call; the reply has a `qN` entry each.
pub fn batch_messages(questions: &[&QuestionSpec]) -> Vec<Value> {
    let mut user = String::new();
    for (position, question) in questions.iter().enumerate() {
        user.push_str(&format!("q{}: {}\n", position + 1, question.text));
        push_options(&mut user, question);
    }
    user.push_str("For each qN: ");
    user.push_str(REPLY);
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
