//! Validating a model's reply, repairing what can be repaired, and reading confidence
//! from token logprobs.

use common::views::{QuestionKind, QuestionSpec};
use serde_json::Value;

/// A reply that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedReply {
    /// Option indices, ascending, unique, in range.
    pub selected: Vec<u32>,
    /// The model's own confidence claim, clamped to [0, 1].
    pub stated_confidence: Option<f64>,
    pub rationale: String,
    /// True when the JSON was broken and the answer was recovered from its text.
    pub repaired: bool,
}

/// Longest rationale kept, in characters.
pub const MAX_RATIONALE_CHARS: usize = 200;

/// Parses and validates `content` for `question`; the error says what is wrong,
/// in words the model can act on when it is asked again.
pub fn parse(content: &str, question: &QuestionSpec) -> Result<ParsedReply, String> {
    let trimmed = strip_fences(content.trim());
    let (value, repaired) = match serde_json::from_str::<Value>(trimmed) {
        Ok(value) => (value, false),
        Err(error) => match salvage_answer(trimmed) {
            Some(value) => (value, true),
            None => return Err(format!("reply is not valid JSON ({error})")),
        },
    };
    validate(&value, question, repaired)
}

/// Parses a reply that answers several questions: an object with `q1`, `q2`, … keys.
/// Each entry is validated on its own, so one bad answer does not sink the batch.
pub fn parse_batch(
    content: &str,
    questions: &[&QuestionSpec],
) -> Result<Vec<Result<ParsedReply, String>>, String> {
    let value: Value = serde_json::from_str(strip_fences(content.trim()))
        .map_err(|error| format!("batch reply is not valid JSON ({error})"))?;
    let object = value.as_object().ok_or("batch reply is not a JSON object")?;
    Ok(questions
        .iter()
        .enumerate()
        .map(|(position, question)| {
            let key = format!("q{}", position + 1);
            match object.get(&key) {
                Some(entry) => validate(entry, question, false),
                None => Err(format!("batch reply has no {key}")),
            }
        })
        .collect())
}

/// Validates one answer object for `question`.
pub fn validate(value: &Value, question: &QuestionSpec, repaired: bool) -> Result<ParsedReply, String> {
    let Some(object) = value.as_object() else {
        return Err("reply is not a JSON object".to_owned());
    };
    let answer = object.get("answer").ok_or("reply has no \"answer\" field")?;
    let raw: Vec<&Value> = match answer {
        Value::Array(items) => items.iter().collect(),
        single @ Value::Number(_) => vec![single],
        _ => return Err("\"answer\" must be an array of option numbers".to_owned()),
    };
    let n_options = question.options.len();
    let mut selected = Vec::with_capacity(raw.len());
    for item in raw {
        let index = item
            .as_u64()
            .ok_or_else(|| format!("\"answer\" holds {item}, not an option number"))?;
        if index >= n_options as u64 {
            return Err(format!(
                "option {index} does not exist; valid options are 0 to {}",
                n_options - 1
            ));
        }
        selected.push(u32::try_from(index).map_err(|_| "option number too large".to_owned())?);
    }
    selected.sort_unstable();
    selected.dedup();
    if selected.is_empty() {
        return Err("\"answer\" is empty; choose at least one option".to_owned());
    }
    if question.kind != QuestionKind::Multiple && selected.len() > 1 {
        return Err("this question takes exactly one option".to_owned());
    }
    let stated_confidence = object
        .get("confidence")
        .and_then(Value::as_f64)
        .map(|c| c.clamp(0.0, 1.0));
    let rationale: String = object
        .get("rationale")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(MAX_RATIONALE_CHARS)
        .collect();
    Ok(ParsedReply {
        selected,
        stated_confidence,
        rationale,
        repaired,
    })
}

fn strip_fences(text: &str) -> &str {
    let text = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .unwrap_or(text);
    text.strip_suffix("```").unwrap_or(text).trim()
}

/// A reply cut off after its answer (a rationale that ran past `max_tokens`)
/// still says what it chose: keep the `"answer": [...]` part.
fn salvage_answer(text: &str) -> Option<Value> {
    let start = text.find("\"answer\"")?;
    let rest = &text[start + "\"answer\"".len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let array_end = rest.find(']')?;
    let array: Value = serde_json::from_str(&rest[..=array_end]).ok()?;
    Some(serde_json::json!({ "answer": array }))
}

/// One generated token with its log probability and the alternatives the provider listed.
#[derive(Debug, Clone, Default)]
pub struct Token {
    pub text: String,
    pub logprob: f64,
    /// `top_logprobs`: the most likely tokens at this position, the chosen one usually included.
    pub alternatives: Vec<(String, f64)>,
}

/// How sure the model was of the options it wrote, from the tokens that spell the
/// chosen indices inside `"answer": [...]`.
///
/// Constrained decoding masks invalid tokens *after* the model scored them, so a
/// raw logprob understates confidence (the model may have preferred a newline).
/// Each digit's probability is therefore renormalised over the alternatives that
/// are valid option indices; without alternatives the raw probability is used.
/// Several digits (a `multiple` answer) multiply.
pub fn answer_probability(tokens: &[Token], n_options: usize) -> Option<f64> {
    answer_probability_after(tokens, n_options, "")
}

/// As [`answer_probability`], for the first `"answer"` after `anchor` (`"q2"` in a batch).
pub fn answer_probability_after(tokens: &[Token], n_options: usize, anchor: &str) -> Option<f64> {
    let content: String = tokens.iter().map(|token| token.text.as_str()).collect();
    let from = if anchor.is_empty() {
        0
    } else {
        content.find(anchor)? + anchor.len()
    };
    let key = from + content[from..].find("\"answer\"")?;
    let open = key + content[key..].find('[')?;
    let close = open + content[open..].find(']')?;
    let is_option = |text: &str| text.trim().parse::<usize>().is_ok_and(|index| index < n_options);
    let mut offset = 0usize;
    let mut probability = 1.0;
    let mut touched = false;
    for token in tokens {
        let (start, end) = (offset, offset + token.text.len());
        offset = end;
        let inside_answer = start < close && end > open + 1;
        if !inside_answer || !token.text.chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        touched = true;
        let chosen = token.logprob.exp();
        let valid_mass: f64 = token
            .alternatives
            .iter()
            .filter(|(text, _)| is_option(text) && text.trim() != token.text.trim())
            .map(|(_, logprob)| logprob.exp())
            .sum();
        probability *= if token.alternatives.is_empty() {
            chosen
        } else {
            chosen / (chosen + valid_mass)
        };
    }
    touched.then(|| probability.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn question(kind: QuestionKind, n: usize) -> QuestionSpec {
        QuestionSpec {
            text: "q".into(),
            options: (0..n).map(|i| format!("o{i}")).collect(),
            kind,
        }
    }

    #[test]
    fn valid_reply_is_parsed_and_sorted() {
        let reply = parse(
            r#"{"answer":[2,0],"confidence":1.4,"rationale":" a  b "}"#,
            &question(QuestionKind::Multiple, 3),
        )
        .unwrap();
        assert_eq!(reply.selected, vec![0, 2]);
        assert_eq!(reply.stated_confidence, Some(1.0));
        assert_eq!(reply.rationale, "a b");
        assert!(!reply.repaired);
    }

    #[test]
    fn out_of_range_and_too_many_are_refused() {
        let single = question(QuestionKind::Single, 3);
        assert!(
            parse(r#"{"answer":[3]}"#, &single)
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            parse(r#"{"answer":[0,1]}"#, &single)
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(parse(r#"{"answer":[]}"#, &single).unwrap_err().contains("empty"));
        assert!(
            parse(r#"{"confidence":1}"#, &single)
                .unwrap_err()
                .contains("no \"answer\"")
        );
        assert!(
            parse("the answer is B", &single)
                .unwrap_err()
                .contains("not valid JSON")
        );
    }

    #[test]
    fn a_batch_is_validated_entry_by_entry() {
        let single = question(QuestionKind::Single, 3);
        let multiple = question(QuestionKind::Multiple, 3);
        let content =
            r#"{"q1": {"answer": [2], "confidence": 0.5, "rationale": "x"}, "q2": {"answer": [9]}}"#;
        let replies = parse_batch(content, &[&single, &multiple, &single]).unwrap();
        assert_eq!(replies[0].as_ref().unwrap().selected, vec![2]);
        assert!(replies[1].as_ref().unwrap_err().contains("does not exist"));
        assert!(replies[2].as_ref().unwrap_err().contains("no q3"));
        assert!(parse_batch("{", &[&single]).is_err());
    }

    #[test]
    fn truncated_reply_keeps_its_answer() {
        let reply = parse(
            r#"{"answer": [1], "confidence": 0.9, "rationale": "because it is the lar"#,
            &question(QuestionKind::Single, 4),
        )
        .unwrap();
        assert_eq!(reply.selected, vec![1]);
        assert!(reply.repaired);
    }

    fn tokens(parts: &[(&str, f64)]) -> Vec<Token> {
        parts
            .iter()
            .map(|(text, logprob)| Token {
                text: (*text).to_owned(),
                logprob: *logprob,
                alternatives: Vec::new(),
            })
            .collect()
    }

    #[test]
    fn probability_comes_from_the_answer_digits_only() {
        let tokens = tokens(&[
            ("{\"", -0.1),
            ("answer", -0.1),
            ("\":", -0.1),
            (" [", -0.1),
            ("2", -0.5),
            ("],", -0.1),
            (" \"confidence\": 0.9", -3.0),
        ]);
        let probability = answer_probability(&tokens, 4).unwrap();
        assert!((probability - (-0.5f64).exp()).abs() < 1e-9, "{probability}");
    }

    #[test]
    fn probability_is_renormalised_over_valid_options() {
        let mut tokens = tokens(&[("{ \"answer\": [", -0.1), ("1", (0.02f64).ln()), ("] }", -0.1)]);
        // The model preferred a newline (masked by the grammar); among options it gave 1 twice the weight of 3.
        tokens[1].alternatives = vec![
            ("\n ".into(), (0.9f64).ln()),
            ("1".into(), (0.02f64).ln()),
            ("3".into(), (0.01f64).ln()),
            ("7".into(), -1.0),
        ];
        let probability = answer_probability(&tokens, 4).unwrap();
        assert!((probability - 2.0 / 3.0).abs() < 1e-9, "{probability}");
    }
}
