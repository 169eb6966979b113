//! The end-of-run checks of each accepted quiz: its status and stats through the gateway, and
//! its event log read straight from the run's private Redis, where a double-counted answer or
//! a second terminal event would show even if the broadcaster hid it from clients.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::client::QuizView;

/// What one quiz ended as, and what is wrong with it.
#[derive(Debug, Default)]
pub struct QuizAudit {
    pub status: String,
    pub reason: Option<String>,
    /// Questions with an `error` instead of an answer, by error text.
    pub question_errors: BTreeMap<String, u64>,
    /// Each way this quiz double-counts, in words; empty when clean.
    pub duplications: Vec<String>,
    /// A completed quiz with fewer outcomes than questions.
    pub incomplete: bool,
    /// Sequence numbers missing from the log between 1 and its last (numbers handed out
    /// but never written): every client of the quiz sees these as a gap.
    pub log_seq_holes: Vec<u64>,
}

/// Checks a quiz's view (`GET /v1/quizzes/{id}`) and its Redis event log.
pub fn check(view: &QuizView, event_log: &[Value]) -> QuizAudit {
    let mut audit = QuizAudit {
        status: view.status.clone(),
        reason: view.reason.clone(),
        ..QuizAudit::default()
    };
    let questions = view.body["questions"].as_array().map_or(0, Vec::len) as u64;
    for question in view.body["questions"].as_array().into_iter().flatten() {
        if let Some(error) = question["error"].as_str() {
            *audit.question_errors.entry(short_reason(error)).or_default() += 1;
        }
    }
    let stats = &view.body["stats"];
    if let (Some(total), Some(answered), Some(failed)) = (
        stats["total"].as_u64(),
        stats["answered"].as_u64(),
        stats["failed"].as_u64(),
    ) {
        if answered + failed > total || (questions > 0 && answered + failed > questions) {
            audit.duplications.push(format!(
                "stats count {answered} answered + {failed} failed of {total} ({questions} questions)"
            ));
        }
        if view.status == "completed" && answered + failed < total {
            audit.incomplete = true;
        }
    }
    let mut per_index: HashMap<u64, u64> = HashMap::new();
    let mut terminals = 0;
    let mut expected_seq = 1;
    for seq in event_log.iter().filter_map(|event| event["seq"].as_u64()) {
        audit.log_seq_holes.extend(expected_seq..seq);
        expected_seq = seq + 1;
    }
    for event in event_log {
        match event["type"].as_str() {
            Some("question_answered") => {
                if let Some(index) = event["index"].as_u64() {
                    *per_index.entry(index).or_default() += 1;
                }
            }
            Some("quiz_completed" | "quiz_failed") => terminals += 1,
            _ => {}
        }
    }
    let repeated = per_index.values().filter(|count| **count > 1).count();
    if repeated > 0 {
        audit.duplications.push(format!(
            "{repeated} question(s) answered more than once in the event log"
        ));
    }
    if terminals > 1 {
        audit
            .duplications
            .push(format!("{terminals} terminal events in the log"));
    }
    audit
}

/// A reason without the numbers that differ per quiz (counts, seconds), so failures group;
/// words that merely contain digits (queue names, ids) stay as they are.
pub fn short_reason(reason: &str) -> String {
    let cut: String = reason.chars().take(120).collect();
    cut.split(' ')
        .map(|word| {
            let is_number = word.chars().any(|c| c.is_ascii_digit())
                && word
                    .chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_punctuation());
            if is_number { "N" } else { word }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads the event logs of `quiz_ids` from the run's Redis.
pub async fn event_logs(
    redis_url: &str,
    key_prefix: &str,
    quiz_ids: &[String],
) -> Result<HashMap<String, Vec<Value>>> {
    let client = redis::Client::open(redis_url).context("opening the private redis")?;
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .context("connecting to the private redis")?;
    let mut logs = HashMap::new();
    for id in quiz_ids {
        let raw: Vec<String> = redis::cmd("ZRANGE")
            .arg(format!("{key_prefix}quiz:{id}:events"))
            .arg(0)
            .arg(-1)
            .query_async(&mut connection)
            .await
            .with_context(|| format!("reading the event log of quiz {id}"))?;
        let events = raw
            .iter()
            .filter_map(|text| serde_json::from_str(text).ok())
            .collect();
        logs.insert(id.clone(), events);
    }
    Ok(logs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use serde_json::json;

    use super::*;

    fn view(status: &str, answered: u64, failed: u64, total: u64) -> QuizView {
        let questions: Vec<Value> = (0..total).map(|index| json!({"index": index})).collect();
        QuizView {
            status: status.to_owned(),
            reason: None,
            body: json!({"questions": questions, "stats": {"total": total, "answered": answered, "failed": failed}}),
        }
    }

    fn answered(seq: u64, index: u64) -> Value {
        json!({"type": "question_answered", "seq": seq, "index": index})
    }

    #[test]
    fn a_clean_quiz_has_no_findings() {
        let log = [
            answered(1, 0),
            answered(2, 1),
            json!({"type": "quiz_completed", "seq": 3}),
        ];
        let audit = check(&view("completed", 2, 0, 2), &log);
        assert!(audit.duplications.is_empty());
        assert!(audit.log_seq_holes.is_empty());
        assert!(!audit.incomplete);
    }

    #[test]
    fn an_answer_logged_twice_a_second_ending_and_overcounted_stats_are_duplications() {
        let log = [
            answered(1, 0),
            answered(2, 0),
            json!({"type": "quiz_completed", "seq": 3}),
            json!({"type": "quiz_failed", "seq": 4}),
        ];
        let audit = check(&view("completed", 2, 1, 2), &log);
        assert_eq!(audit.duplications.len(), 3, "{:?}", audit.duplications);
    }

    #[test]
    fn numbers_missing_from_the_log_are_holes() {
        let log = [
            answered(1, 0),
            answered(4, 1),
            json!({"type": "quiz_completed", "seq": 5}),
        ];
        assert_eq!(check(&view("completed", 2, 0, 2), &log).log_seq_holes, vec![2, 3]);
    }

    #[test]
    fn reasons_group_without_their_numbers_but_keep_names() {
        assert_eq!(
            short_reason("timed out: no progress for 120 s"),
            "timed out: no progress for N s"
        );
        assert_eq!(
            short_reason("scrape job gave up after 6 failed deliveries from chaos-a1b2.scrape"),
            "scrape job gave up after N failed deliveries from chaos-a1b2.scrape"
        );
    }
}
