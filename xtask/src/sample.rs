//! The bundled sample quiz: submit it to the gateway, wait for its analysis, print it as a table.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util::{self, http_get_slow, http_post_json, truncate};

/// The quiz `up` submits, relative to the workspace root.
pub const SAMPLE_PATH: &str = "docs/examples/sample-quiz.json";

const QUIZZES_URL: &str = "http://127.0.0.1:8080/v1/quizzes";

/// Five questions on a 135M model on 2 cores take well under a minute; the rest is margin for
/// a cold model and a busy machine.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(300);

const POLL_EVERY: Duration = Duration::from_secs(1);

/// Column widths of the report table, in characters.
const QUESTION_WIDTH: usize = 44;
const ANSWER_WIDTH: usize = 30;

/// Submits the sample with `api_key` (sent as `Authorization: Bearer`) and prints its analysis.
pub fn submit_and_report(api_key: &str) -> Result<()> {
    let path = util::workspace_root().join(SAMPLE_PATH);
    let body = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let reply = http_post_json(QUIZZES_URL, &body, api_key)?;
    if reply.status == 401 {
        bail!(
            "the gateway refused the dev API key (401): a gateway started before this key was made \
             does not know it; `cargo xtask down`, then `cargo xtask up` again"
        );
    }
    if reply.status != 202 {
        bail!(
            "the gateway answered {} to POST /v1/quizzes: {}",
            reply.status,
            reply.body
        );
    }
    let accepted: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("the gateway's 202 is not JSON: {}", reply.body))?;
    let id = accepted
        .get("id")
        .and_then(Value::as_str)
        .with_context(|| format!("the gateway's 202 has no id: {}", reply.body))?;
    println!("submitted {SAMPLE_PATH} as quiz {id}");

    let quiz = poll_until_done(id, api_key)?;
    print_report(&quiz);
    if text(&quiz, "status") == "failed" {
        bail!("the sample quiz failed: {}", text(&quiz, "reason"));
    }
    Ok(())
}

/// Polls `GET /v1/quizzes/{id}` until it is completed or failed, reporting progress as it changes.
fn poll_until_done(id: &str, api_key: &str) -> Result<Value> {
    let url = format!("{QUIZZES_URL}/{id}");
    let started_at = Instant::now();
    let mut last_progress = String::new();
    loop {
        let reply = http_get_slow(&url, api_key)?;
        if reply.status != 200 {
            bail!("GET {url} answered {}: {}", reply.status, reply.body);
        }
        let quiz: Value = serde_json::from_str(&reply.body)
            .with_context(|| format!("GET {url} is not JSON: {}", reply.body))?;
        let status = text(&quiz, "status");
        if status == "completed" || status == "failed" {
            println!("quiz {id} {status} after {}s", started_at.elapsed().as_secs());
            return Ok(quiz);
        }
        let progress = format!(
            "{status}, {} of {} answered",
            number(&quiz["stats"], "answered"),
            number(&quiz["stats"], "total")
        );
        if progress != last_progress {
            println!("quiz {id}: {progress}");
            last_progress = progress;
        }
        if started_at.elapsed() >= ANALYSIS_TIMEOUT {
            bail!("quiz {id} still {status} after {}s", ANALYSIS_TIMEOUT.as_secs());
        }
        std::thread::sleep(POLL_EVERY);
    }
}

fn print_report(quiz: &Value) {
    println!();
    println!(
        "{:>2}  {:<QUESTION_WIDTH$}  {:<ANSWER_WIDTH$}  {:>4}  {:<6}  agrees",
        "#", "question", "model's answer", "conf", "cached"
    );
    let questions = quiz["questions"].as_array().map_or(&[][..], Vec::as_slice);
    for (position, question) in questions.iter().enumerate() {
        let index = question["index"]
            .as_u64()
            .map_or(position, |index| usize::try_from(index).unwrap_or(position));
        let answer = &question["answer"];
        let (chosen, confidence, cached) = if answer.is_object() {
            (
                chosen_options(question, answer),
                answer["confidence"]
                    .as_f64()
                    .map_or_else(|| "-".to_owned(), |value| format!("{value:.2}")),
                yes_no(answer["cached"].as_bool()),
            )
        } else {
            let error = question["error"].as_str().unwrap_or("no answer");
            (format!("error: {error}"), "-".to_owned(), "-")
        };
        println!(
            "{:>2}  {:<QUESTION_WIDTH$}  {:<ANSWER_WIDTH$}  {:>4}  {:<6}  {}",
            index + 1,
            truncate(text(question, "text"), QUESTION_WIDTH),
            truncate(&chosen, ANSWER_WIDTH),
            confidence,
            cached,
            yes_no(question["agrees_with_key"].as_bool()),
        );
    }

    let stats = &quiz["stats"];
    println!();
    println!(
        "answered {} of {} ({} failed), cache hits {}, tokens {} prompt + {} completion",
        number(stats, "answered"),
        number(stats, "total"),
        number(stats, "failed"),
        number(stats, "cache_hits"),
        number(stats, "prompt_tokens"),
        number(stats, "completion_tokens"),
    );
    if let Some(rate) = stats["agreement_rate"].as_f64() {
        println!("agreement with the answer key: {:.0}%", rate * 100.0);
    }
    if let Some(disagreements) = stats["disagreements"].as_array()
        && !disagreements.is_empty()
    {
        let numbers: Vec<String> = disagreements.iter().map(question_number).collect();
        println!("disagrees with the key on question {}", numbers.join(", "));
    }
}

/// A 1-based question number, as in the table, from a 0-based index or an object holding one.
fn question_number(entry: &Value) -> String {
    entry
        .as_u64()
        .or_else(|| entry["index"].as_u64())
        .map_or_else(|| entry.to_string(), |index| (index + 1).to_string())
}

/// The option texts the model selected, joined; falls back to the 0-based indices.
fn chosen_options(question: &Value, answer: &Value) -> String {
    let options = question["options"].as_array();
    let selected = answer["selected"].as_array().map_or(&[][..], Vec::as_slice);
    if selected.is_empty() {
        return "(none)".to_owned();
    }
    selected
        .iter()
        .map(|choice| {
            choice
                .as_u64()
                .and_then(|index| options?.get(usize::try_from(index).ok()?))
                .and_then(Value::as_str)
                .map_or_else(|| choice.to_string(), str::to_owned)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn text<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field].as_str().unwrap_or("-")
}

fn number(value: &Value, field: &str) -> String {
    value[field]
        .as_u64()
        .map_or_else(|| "-".to_owned(), |number| number.to_string())
}

fn yes_no(flag: Option<bool>) -> &'static str {
    match flag {
        Some(true) => "yes",
        Some(false) => "no",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    //! Hygiene: the bundled sample must stay a valid `POST /v1/quizzes` body with a sound key.

    use std::collections::BTreeSet;

    use anyhow::{Context, Result, ensure};
    use serde_json::Value;

    use super::SAMPLE_PATH;
    use crate::util::workspace_root;

    #[test]
    fn sample_quiz_is_a_valid_submission() -> Result<()> {
        let text = std::fs::read_to_string(workspace_root().join(SAMPLE_PATH))?;
        let quiz: Value = serde_json::from_str(&text)?;
        let questions = quiz["questions"].as_array().context("questions")?;
        let answer_key = quiz["answer_key"].as_array().context("answer_key")?;
        ensure!(questions.len() == 5, "the sample has five questions");
        ensure!(answer_key.len() == questions.len(), "one key entry per question");

        let mut kinds = BTreeSet::new();
        for (index, (question, key)) in questions.iter().zip(answer_key).enumerate() {
            let kind = question["kind"].as_str().context("kind")?;
            let options = question["options"].as_array().context("options")?;
            let key = key.as_array().context("key entry")?;
            ensure!(
                !question["text"].as_str().unwrap_or("").is_empty(),
                "question {index} has text"
            );
            ensure!(options.len() >= 2, "question {index} has options");
            ensure!(
                key.iter().all(|choice| choice.as_u64().is_some_and(|choice| {
                    usize::try_from(choice).is_ok_and(|choice| choice < options.len())
                })),
                "question {index}'s key points at its options"
            );
            match kind {
                "single" => ensure!(key.len() == 1, "question {index}: single has one answer"),
                "multiple" => ensure!(!key.is_empty(), "question {index}: multiple has answers"),
                "true_false" => {
                    ensure!(key.len() == 1, "question {index}: true_false has one answer");
                    ensure!(options.len() == 2, "question {index}: true_false has two options");
                }
                other => anyhow::bail!("question {index} has unknown kind {other}"),
            }
            kinds.insert(kind);
        }
        ensure!(kinds.len() == 3, "the sample mixes all three kinds");
        Ok(())
    }
}
