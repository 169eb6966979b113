//! The human-readable output: a table of answers, then the stats in a few lines.

use std::fmt::Write as _;

use crate::view::{QuestionView, QuizView};

/// Column widths, in characters: a quiz table fits in 100 columns.
const QUESTION_WIDTH: usize = 44;
const ANSWER_WIDTH: usize = 28;

/// The whole report for a quiz: table, blank line, stats.
pub fn report(quiz: &QuizView) -> String {
    let mut text = table(&quiz.questions);
    text.push('\n');
    text.push_str(&summary(quiz));
    text
}

pub fn table(questions: &[QuestionView]) -> String {
    let mut text = format!(
        "{:>3}  {:<QUESTION_WIDTH$}  {:<ANSWER_WIDTH$}  {:>4}  {:<6}  {}\n",
        "#", "question", "model answer", "conf", "cached", "agrees with key"
    );
    for question in questions {
        let (answer, confidence, cached) = match (&question.answer, &question.error) {
            (Some(answer), _) => (
                question.option_texts(&answer.selected),
                answer
                    .confidence
                    .map_or_else(|| "-".to_owned(), |confidence| format!("{confidence:.2}")),
                yes_no(Some(answer.cached)),
            ),
            (None, Some(_)) => ("failed (see below)".to_owned(), "-".to_owned(), "-"),
            (None, None) => ("(pending)".to_owned(), "-".to_owned(), "-"),
        };
        let _ = writeln!(
            text,
            "{:>3}  {:<QUESTION_WIDTH$}  {:<ANSWER_WIDTH$}  {:>4}  {:<6}  {}",
            u64::from(question.index) + 1,
            truncate(&question.text, QUESTION_WIDTH),
            truncate(&answer, ANSWER_WIDTH),
            confidence,
            cached,
            yes_no(question.agrees_with_key),
        );
    }
    // Errors are long and specific (`llm provider answered 400: …`): in full, after the table.
    for question in questions {
        if let (None, Some(error)) = (&question.answer, &question.error) {
            let _ = writeln!(text, "question {} failed: {error}", u64::from(question.index) + 1);
        }
    }
    text
}

pub fn summary(quiz: &QuizView) -> String {
    let stats = &quiz.stats;
    let mut text = format!(
        "quiz {} {}: {} of {} answered, {} failed, {} from cache\n",
        quiz.id,
        quiz.status.as_str(),
        stats.answered,
        stats.total,
        stats.failed,
        stats.cache_hits
    );
    if let Some(reason) = &quiz.reason {
        let _ = writeln!(text, "reason: {reason}");
    }
    if let Some(rate) = stats.agreement_rate {
        let _ = writeln!(
            text,
            "agreement with the key: {:.0}%, disagrees on {}, disputed: {}",
            rate * 100.0,
            numbers(&stats.disagreements),
            numbers(&stats.disputed)
        );
    }
    let _ = writeln!(
        text,
        "tokens: {} prompt + {} completion, cost ${:.4}",
        stats.prompt_tokens, stats.completion_tokens, stats.cost_usd
    );
    text
}

/// 1-based question numbers, as in the table, or `none`.
fn numbers(indices: &[u32]) -> String {
    if indices.is_empty() {
        return "none".to_owned();
    }
    indices
        .iter()
        .map(|index| (u64::from(*index) + 1).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn yes_no(flag: Option<bool>) -> &'static str {
    match flag {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

/// `text` on one line, at most `width` characters, an ellipsis marking a cut.
fn truncate(text: &str, width: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= width {
        return line;
    }
    let kept: String = line.chars().take(width.saturating_sub(1)).collect();
    format!("{}…", kept.trim_end())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use serde_json::json;

    use super::*;

    fn quiz() -> QuizView {
        serde_json::from_value(json!({
            "id": "0193-abc", "status": "completed",
            "questions": [
                {"index": 0, "text": "What is the capital of France?", "options": ["Berlin", "Paris"], "kind": "single",
                 "answer": {"selected": [1], "confidence": 0.7, "model": "m", "cached": false,
                            "prompt_tokens": 50, "completion_tokens": 12, "latency_ms": 3},
                 "agrees_with_key": true},
                {"index": 1, "text": "A question\nso long that it cannot possibly fit in the table's question column", "options": ["2", "4", "5"],
                 "kind": "multiple",
                 "answer": {"selected": [0, 2], "confidence": 0.9, "model": "m", "cached": true,
                            "prompt_tokens": 0, "completion_tokens": 0, "latency_ms": 0},
                 "agrees_with_key": false},
                {"index": 2, "text": "Unanswered?", "options": ["a", "b"], "kind": "single", "error": "llm provider answered 400"}
            ],
            "stats": {"total": 3, "answered": 2, "failed": 1, "cache_hits": 1, "prompt_tokens": 50,
                      "completion_tokens": 12, "cost_usd": 0.0012, "agreement_rate": 0.5,
                      "disagreements": [1], "disputed": [1]}
        }))
        .unwrap()
    }

    #[test]
    fn the_table_names_the_chosen_options_and_marks_cache_and_key() {
        let text = report(&quiz());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("model answer") && lines[0].contains("agrees with key"),
            "{text}"
        );
        assert!(lines[1].contains("What is the capital of France?"), "{text}");
        assert!(
            lines[1].contains("Paris") && lines[1].contains("0.70") && lines[1].ends_with("yes"),
            "{text}"
        );
        assert!(
            lines[2].contains("A question so long that it cannot possibly…"),
            "{text}"
        );
        assert!(lines[2].contains("2, 5") && lines[2].ends_with("no"), "{text}");
        assert!(
            lines[3].contains("Unanswered?") && lines[3].contains("failed (see below)"),
            "{text}"
        );
        assert_eq!(lines[4], "question 3 failed: llm provider answered 400");
        assert!(
            text.contains("quiz 0193-abc completed: 2 of 3 answered, 1 failed, 1 from cache"),
            "{text}"
        );
        assert!(
            text.contains("agreement with the key: 50%, disagrees on 2, disputed: 2"),
            "{text}"
        );
        assert!(
            text.contains("tokens: 50 prompt + 12 completion, cost $0.0012"),
            "{text}"
        );
    }
}
