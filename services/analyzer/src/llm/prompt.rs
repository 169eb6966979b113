//! The production prompt and the JSON schema that constrains the reply.
//!
//! One question per call with a schema: the original system's whole-quiz prompt
//! gave a parseable answer for 0 of 10 quizzes on SmolLM2, one question with a
//! schema for 100 of 100.

use common::views::{QuestionKind, QuestionSpec};
use serde_json::{Value, json};

/// Changes whenever the prompt or schema changes what the model answers; part of every cache key.
pub const PROMPT_VERSION: &str = "p3";

/// Short on purpose: every token here is paid once per call. Without any system
/// message SmolLM2's chat template inserts a longer default one.
const SYSTEM: &str = "Answer in JSON.";

/// What a batch reply holds. A single question needs no such line: both provider dialects
/// enforce the schema, whose field names (`answer`, `confidence`, `rationale`) say it, and
/// with it gone (and `N: ` labels) a question costs 128.6 prompt tokens instead of 150.6
/// (the `prompt` benchmark, docs/analyzer.md).
const BATCH_REPLY: &str = "For each qN: answer (option numbers), confidence (0-1), rationale (one sentence).";

/// Appends the options, one `N: text` line each, numbered from 0 as the schema's indices
/// are, and a hint only where the kind needs one (the schema already allows a single
/// option for `single` and `true_false`). `N: ` is a token cheaper than `N) `.
fn push_options(prompt: &mut String, question: &QuestionSpec) {
    for (index, option) in question.options.iter().enumerate() {
        prompt.push_str(&format!("\n{index}: {option}"));
    }
    if question.kind == QuestionKind::Multiple {
        prompt.push_str("\n(select every correct option)");
    }
}

/// The chat messages for one question.
pub fn messages(question: &QuestionSpec) -> Vec<Value> {
    let mut user = format!("Question: {}", question.text);
    push_options(&mut user, question);
    vec![
        json!({"role": "system", "content": SYSTEM}),
        json!({"role": "user", "content": user}),
    ]
}

/// The chat messages for several questions in one call; the reply has a `qN` entry each.
pub fn batch_messages(questions: &[&QuestionSpec]) -> Vec<Value> {
    let mut user = String::new();
    for (position, question) in questions.iter().enumerate() {
        user.push_str(&format!("q{}: {}", position + 1, question.text));
        push_options(&mut user, question);
        user.push('\n');
    }
    user.push_str(BATCH_REPLY);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    fn question(text: &str, kind: QuestionKind) -> QuestionSpec {
        QuestionSpec {
            text: text.into(),
            options: vec!["red".into(), "blue".into()],
            kind,
        }
    }

    #[test]
    fn one_question_is_its_text_and_numbered_options_only() {
        let messages = messages(&question("Sky colour?", QuestionKind::Single));
        assert_eq!(messages[0]["content"], SYSTEM);
        assert_eq!(messages[1]["content"], "Question: Sky colour?\n0: red\n1: blue");
        let multiple = messages_text(&question("Flag colours?", QuestionKind::Multiple));
        assert!(
            multiple.ends_with("1: blue\n(select every correct option)"),
            "{multiple}"
        );
    }

    #[test]
    fn a_batch_labels_each_question_and_says_what_to_reply() {
        let (first, second) = (
            question("One?", QuestionKind::Single),
            question("Two?", QuestionKind::Single),
        );
        let messages = batch_messages(&[&first, &second]);
        let user = messages[1]["content"].as_str().unwrap();
        assert_eq!(
            user,
            format!("q1: One?\n0: red\n1: blue\nq2: Two?\n0: red\n1: blue\n{BATCH_REPLY}")
        );
    }

    fn messages_text(question: &QuestionSpec) -> String {
        messages(question)[1]["content"].as_str().unwrap().to_owned()
    }
}
