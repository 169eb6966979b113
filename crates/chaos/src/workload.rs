//! The quizzes a run submits: JSON bodies and generated HTML pages served on loopback (URL
//! sources), with a share of questions drawn from a common pool so that several quizzes ask
//! the same question and the answer cache and its single flight are exercised.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// How many questions the common pool holds.
const SHARED_POOL: usize = 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Json,
    Url,
}

impl SourceKind {
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Json => "json",
            SourceKind::Url => "url",
        }
    }
}

pub struct WorkloadSpec {
    pub n_quizzes: usize,
    pub questions_per_quiz: usize,
    /// Share of quizzes that name a page instead of carrying their questions.
    pub url_share: f64,
    /// Share of questions taken from the common pool.
    pub shared_share: f64,
}

pub struct PlannedQuiz {
    pub number: usize,
    pub source: SourceKind,
    pub body: Value,
    pub idempotency_key: String,
    pub n_questions: usize,
}

struct Question {
    text: String,
    options: Vec<String>,
    multiple: bool,
}

/// Plans `spec.n_quizzes` quizzes; URL quizzes get their page written to `pages_dir` and
/// are addressed through `page_url(file_name)`.
pub fn plan(
    spec: &WorkloadSpec,
    seed: u64,
    pages_dir: &Path,
    page_url: impl Fn(&str) -> String,
) -> Result<Vec<PlannedQuiz>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let run_tag = uuid::Uuid::new_v4().simple().to_string();
    let pool: Vec<Question> = (0..SHARED_POOL).map(|k| shared_question(k, &mut rng)).collect();
    let mut quizzes = Vec::with_capacity(spec.n_quizzes);
    for number in 0..spec.n_quizzes {
        let mut own = Vec::new();
        let mut picks = Vec::new();
        for index in 0..spec.questions_per_quiz {
            if rng.random_bool(spec.shared_share) {
                picks.push(Pick::Shared(rng.random_range(0..SHARED_POOL)));
            } else {
                own.push(own_question(number, index, &mut rng));
                picks.push(Pick::Own(own.len() - 1));
            }
        }
        // A quiz never repeats a question: the page extractor and the audit count positions.
        dedup_picks(&mut picks);
        let questions: Vec<&Question> = picks
            .iter()
            .map(|pick| match pick {
                Pick::Shared(k) => &pool[*k],
                Pick::Own(i) => &own[*i],
            })
            .collect();
        let source = if rng.random_bool(spec.url_share) {
            SourceKind::Url
        } else {
            SourceKind::Json
        };
        let body = match source {
            SourceKind::Json => json_body(&questions, &mut rng),
            SourceKind::Url => {
                let file_name = format!("quiz-{run_tag}-{number}.html");
                let path = pages_dir.join(&file_name);
                std::fs::write(&path, page_html(number, &questions))
                    .with_context(|| format!("writing {}", path.display()))?;
                json!({"source": {"url": page_url(&file_name)}})
            }
        };
        quizzes.push(PlannedQuiz {
            number,
            source,
            body,
            idempotency_key: format!("chaos-{run_tag}-{number}"),
            n_questions: questions.len(),
        });
    }
    Ok(quizzes)
}

enum Pick {
    Shared(usize),
    Own(usize),
}

fn dedup_picks(picks: &mut Vec<Pick>) {
    let mut seen = std::collections::HashSet::new();
    picks.retain(|pick| match pick {
        Pick::Shared(k) => seen.insert(*k),
        Pick::Own(_) => true,
    });
}

fn shared_question(k: usize, rng: &mut StdRng) -> Question {
    let base = rng.random_range(10..90);
    Question {
        text: format!("Shared question {k}: which number follows {base}?"),
        options: (0..4).map(|offset| (base + offset).to_string()).collect(),
        multiple: false,
    }
}

fn own_question(quiz: usize, index: usize, rng: &mut StdRng) -> Question {
    let (a, b) = (rng.random_range(1..500), rng.random_range(1..500));
    let multiple = rng.random_bool(0.2);
    let text = if multiple {
        format!("Quiz {quiz} question {index}: which of these are at least {a}?")
    } else {
        format!("Quiz {quiz} question {index}: what is {a} plus {b}?")
    };
    let right = a + b;
    Question {
        text,
        options: vec![
            right.to_string(),
            (right + 1).to_string(),
            (right + 10).to_string(),
            (right + 100).to_string(),
        ],
        multiple,
    }
}

fn json_body(questions: &[&Question], rng: &mut StdRng) -> Value {
    let items: Vec<Value> = questions
        .iter()
        .map(|question| {
            json!({
                "text": question.text,
                "options": question.options,
                "kind": if question.multiple { "multiple" } else { "single" },
            })
        })
        .collect();
    // Half the quizzes carry a key, so the audit path (agreement, disputes) runs too.
    if rng.random_bool(0.5) {
        let key: Vec<Value> = questions
            .iter()
            .map(|_| json!([rng.random_range(0..4u32)]))
            .collect();
        json!({"questions": items, "answer_key": key})
    } else {
        json!({"questions": items})
    }
}

/// A plain quiz page: one fieldset per question, radio buttons or checkboxes with labels.
fn page_html(number: usize, questions: &[&Question]) -> String {
    let mut html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Chaos quiz {number}</title></head>\n\
         <body><main><h1>Chaos quiz {number}</h1><form>\n"
    );
    for (index, question) in questions.iter().enumerate() {
        let input_type = if question.multiple { "checkbox" } else { "radio" };
        let _ = writeln!(html, "<fieldset><legend>{}</legend>", question.text);
        for (option_index, option) in question.options.iter().enumerate() {
            let _ = writeln!(
                html,
                "<label><input type=\"{input_type}\" name=\"q{index}\" value=\"{option_index}\"> {option}</label><br>"
            );
        }
        html.push_str("</fieldset>\n");
    }
    html.push_str("<button type=\"submit\">Submit</button></form></main></body></html>\n");
    html
}
