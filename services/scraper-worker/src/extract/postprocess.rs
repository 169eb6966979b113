//! Validates the extractor's raw output into the schema shape: normalised text, sane kinds and keys, no duplicates.

use std::collections::HashSet;

use common::views::QuestionKind;

use super::model::{ExtractedQuestion, ExtractedQuiz, RawExtraction};

/// Longest question or option text kept; longer ones are page text, not quiz items.
const MAX_TEXT_CHARS: usize = 2_000;
/// Most options a question may have (the analyzer's limit is lower; this only drops junk).
const MAX_OPTIONS: usize = 26;

/// Turns the raw extraction into a valid `ExtractedQuiz`, dropping anything malformed.
pub fn postprocess(raw: RawExtraction, url: Option<String>) -> ExtractedQuiz {
    let mut seen = HashSet::new();
    let questions = raw
        .questions
        .iter()
        .filter_map(validate_question)
        .filter(|question| seen.insert(dedup_key(question)))
        .collect();
    ExtractedQuiz {
        url,
        title: raw
            .title
            .map(|title| collapse_whitespace(&title))
            .filter(|title| !title.is_empty()),
        questions,
    }
}

fn validate_question(value: &serde_json::Value) -> Option<ExtractedQuestion> {
    let text = collapse_whitespace(value.get("text")?.as_str()?);
    if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
        return None;
    }
    let options: Vec<String> = value
        .get("options")?
        .as_array()?
        .iter()
        .map(|option| option.as_str().map(collapse_whitespace))
        .collect::<Option<_>>()?;
    if options.len() < 2
        || options.len() > MAX_OPTIONS
        || options
            .iter()
            .any(|option| option.is_empty() || option.chars().count() > MAX_TEXT_CHARS)
    {
        return None;
    }
    let mut kind = match value.get("kind").and_then(|kind| kind.as_str()) {
        Some("multiple") => QuestionKind::Multiple,
        Some("true_false") => QuestionKind::TrueFalse,
        _ => QuestionKind::Single,
    };
    if kind == QuestionKind::TrueFalse && options.len() != 2 {
        kind = QuestionKind::Single;
    }
    let correct = value
        .get("correct")
        .and_then(|correct| valid_key(correct, options.len(), kind));
    Some(ExtractedQuestion {
        text,
        kind,
        options,
        correct,
    })
}

/// A key is kept only when it names existing options, and exactly one for single-answer kinds.
fn valid_key(value: &serde_json::Value, n_options: usize, kind: QuestionKind) -> Option<Vec<u32>> {
    let mut indices: Vec<u32> = value
        .as_array()?
        .iter()
        .map(|index| index.as_u64().and_then(|index| u32::try_from(index).ok()))
        .collect::<Option<_>>()?;
    indices.sort_unstable();
    indices.dedup();
    let in_range = indices.iter().all(|&index| (index as usize) < n_options);
    let count_ok = match kind {
        QuestionKind::Multiple => !indices.is_empty(),
        QuestionKind::Single | QuestionKind::TrueFalse => indices.len() == 1,
    };
    (in_range && count_ok).then_some(indices)
}

/// Identity of a question for de-duplication: case-folded text and options.
fn dedup_key(question: &ExtractedQuestion) -> (String, Vec<String>) {
    (
        question.text.to_lowercase(),
        question
            .options
            .iter()
            .map(|option| option.to_lowercase())
            .collect(),
    )
}

/// Collapses runs of whitespace (including no-break and zero-width spaces) to one space and trims.
pub fn collapse_whitespace(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '\u{200b}')
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn raw(questions: serde_json::Value) -> RawExtraction {
        serde_json::from_value(json!({"title": "  A  quiz ", "questions": questions})).unwrap()
    }

    #[test]
    fn keeps_valid_questions_and_normalises_whitespace() {
        let quiz = postprocess(
            raw(
                json!([{"text": " What\u{a0} is\n 2+2? ", "kind": "single", "options": ["3", " 4 "], "correct": [1]}]),
            ),
            Some("u".into()),
        );
        assert_eq!(quiz.title.as_deref(), Some("A quiz"));
        assert_eq!(quiz.questions.len(), 1);
        assert_eq!(quiz.questions[0].text, "What is 2+2?");
        assert_eq!(quiz.questions[0].options, vec!["3", "4"]);
        assert_eq!(quiz.questions[0].correct, Some(vec![1]));
    }

    #[test]
    fn drops_malformed_questions() {
        let quiz = postprocess(
            raw(json!([
                {"text": "", "kind": "single", "options": ["a", "b"]},
                {"text": "one option", "kind": "single", "options": ["a"]},
                {"text": "empty option", "kind": "single", "options": ["a", " "]},
                {"text": "not strings", "kind": "single", "options": [1, 2]},
                {"kind": "single", "options": ["a", "b"]},
            ])),
            None,
        );
        assert!(quiz.questions.is_empty());
    }

    #[test]
    fn removes_duplicates_case_insensitively() {
        let quiz = postprocess(
            raw(json!([
                {"text": "Q?", "kind": "single", "options": ["a", "b"]},
                {"text": "q?", "kind": "single", "options": ["A", "B"]},
            ])),
            None,
        );
        assert_eq!(quiz.questions.len(), 1);
    }

    #[test]
    fn rejects_keys_out_of_range_or_with_the_wrong_count() {
        let quiz = postprocess(
            raw(json!([
                {"text": "a", "kind": "single", "options": ["x", "y"], "correct": [2]},
                {"text": "b", "kind": "single", "options": ["x", "y"], "correct": [0, 1]},
                {"text": "c", "kind": "multiple", "options": ["x", "y"], "correct": [1, 0, 1]},
            ])),
            None,
        );
        assert_eq!(quiz.questions[0].correct, None);
        assert_eq!(quiz.questions[1].correct, None);
        assert_eq!(quiz.questions[2].correct, Some(vec![0, 1]));
    }

    #[test]
    fn true_false_needs_two_options() {
        let quiz = postprocess(
            raw(json!([{"text": "a", "kind": "true_false", "options": ["x", "y", "z"]}])),
            None,
        );
        assert_eq!(quiz.questions[0].kind, QuestionKind::Single);
    }

    #[test]
    fn spec_carries_the_key_only_when_complete() {
        let quiz = postprocess(
            raw(json!([
                {"text": "a", "kind": "single", "options": ["x", "y"], "correct": [1]},
                {"text": "b", "kind": "single", "options": ["x", "y"]},
            ])),
            None,
        );
        assert_eq!(quiz.to_spec(1).answer_key, None);
        let keyed = postprocess(
            raw(json!([{"text": "a", "kind": "single", "options": ["x", "y"], "correct": [1]}])),
            None,
        );
        assert_eq!(keyed.to_spec(1).answer_key, Some(vec![vec![1]]));
    }

    #[test]
    fn serialises_in_the_schema_shape() {
        let quiz = postprocess(
            raw(json!([{"text": "a", "kind": "true_false", "options": ["True", "False"]}])),
            None,
        );
        let value = serde_json::to_value(&quiz).unwrap();
        assert_eq!(value["questions"][0]["kind"], "true_false");
        assert!(value["questions"][0].get("correct").is_none());
    }
}
