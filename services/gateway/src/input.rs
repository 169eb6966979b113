//! Request bodies, and their validation into domain types at the edge.

use common::problem::FieldIssue;
use common::views::{QuestionKind, QuestionSpec, QuizSpec};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::settings::LimitSettings;

/// `POST /v1/quizzes`: exactly one of `questions` and `source`. The limits shown are the defaults
/// (`[limits]`); every breach is a 422 naming the field.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "questions": [{"text": "Which are prime?", "options": ["2", "4", "5"], "kind": "multiple"}],
    "answer_key": [[0, 2]]
}))]
pub struct CreateQuiz {
    /// The questions themselves; or leave them out and give a `source` to scrape.
    #[serde(default)]
    #[schema(nullable = false, min_items = 1, max_items = 200)]
    pub questions: Option<Vec<QuestionInput>>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub source: Option<SourceInput>,
    /// One list of correct 0-based option indices per question (a single index unless the
    /// question is `multiple`). Not with a `source`: scraped quizzes use the page's own key.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Vec<u32>>>, nullable = false)]
    pub answer_key: Option<Vec<Vec<i64>>>,
    /// Self-consistency: samples per question, majority wins, agreement is the confidence.
    #[serde(default)]
    #[schema(nullable = false, minimum = 1, maximum = 9)]
    pub votes: Option<i64>,
}

/// A page to extract the questions from: exactly one of `url` and `html`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceInput {
    /// An http or https URL with a host. The scraper's egress policy refuses private, loopback,
    /// link-local and metadata addresses (the quiz then fails).
    #[serde(default)]
    #[schema(nullable = false, max_length = 2048)]
    pub url: Option<String>,
    /// The page itself, up to 2 MiB.
    #[serde(default)]
    #[schema(nullable = false)]
    pub html: Option<String>,
}

/// `POST /v1/extract`: a page to extract the questions from, checked as `POST /v1/quizzes` checks
/// its `source` (one of `url` and `html`, `html` up to 2 MiB, `url` up to 2,048 characters).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"source": {"url": "https://quiz.example/lesson-3"}}))]
pub struct ExtractInput {
    pub source: SourceInput,
}

impl ExtractInput {
    /// The source to extract, or every breach.
    pub fn validate(self, limits: &LimitSettings) -> Result<proto::v1::source::Source, ApiError> {
        let mut issues = Vec::new();
        match source_from_input(Some(self.source), limits, &mut issues)? {
            Some(source) if issues.is_empty() => Ok(source),
            _ => Err(ApiError::Validation(issues)),
        }
    }
}

/// A validated submission: questions to answer now, or a page to scrape first.
#[derive(Debug)]
pub enum Submission {
    Questions(QuizSpec),
    Scrape {
        source: proto::v1::source::Source,
        votes: u32,
    },
}

/// One question; texts are trimmed and must not be empty.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionInput {
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub text: String,
    /// 2 to 26 options (exactly 2 for `true_false`).
    #[schema(value_type = Vec<crate::openapi::schemas::OptionText>, min_items = 2, max_items = 26)]
    pub options: Vec<String>,
    /// `single` when left out.
    #[serde(default)]
    #[schema(nullable = false)]
    pub kind: Option<QuestionKind>,
}

/// The original system's `POST /api/analyze`; the rules of `POST /v1/quizzes` apply (1 to 200
/// questions, 2 to 26 options, non-empty texts). Other fields are ignored.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"questions": [{"question": "2 + 2 = ?", "answers": ["3", "4", "5"]}]}))]
pub struct LegacyAnalyze {
    #[schema(min_items = 1, max_items = 200)]
    pub questions: Vec<LegacyQuestion>,
}

/// One question and its options.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LegacyQuestion {
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub question: String,
    #[schema(value_type = Vec<crate::openapi::schemas::OptionText>, min_items = 2, max_items = 26)]
    pub answers: Vec<String>,
}

impl From<LegacyAnalyze> for CreateQuiz {
    fn from(legacy: LegacyAnalyze) -> Self {
        Self {
            questions: legacy
                .questions
                .into_iter()
                .map(|question| QuestionInput {
                    text: question.question,
                    options: question.answers,
                    kind: None,
                })
                .collect::<Vec<_>>()
                .into(),
            source: None,
            answer_key: None,
            votes: None,
        }
    }
}

/// Deserializes a JSON value, naming the failing field as a JSON pointer.
pub fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let pointer = if path == "." {
            String::new()
        } else {
            format!("/{}", path.replace(['[', '.'], "/").replace(']', ""))
        };
        ApiError::Validation(vec![FieldIssue::new(pointer, error.inner().to_string())])
    })
}

impl CreateQuiz {
    /// Checks every rule and reports every breach, not just the first.
    pub fn validate(self, limits: &LimitSettings) -> Result<Submission, ApiError> {
        match (&self.questions, &self.source) {
            (Some(_), Some(_)) => Err(ApiError::Validation(vec![FieldIssue::new(
                "/source",
                "give either questions or a source, not both",
            )])),
            (None, None) => Err(ApiError::Validation(vec![FieldIssue::new(
                "/questions",
                "give the questions, or a source (url or html) to extract them from",
            )])),
            (None, Some(_)) => self.validate_source(limits),
            (Some(_), None) => self.validate_questions(limits).map(Submission::Questions),
        }
    }

    fn validate_votes(&self, limits: &LimitSettings, issues: &mut Vec<FieldIssue>) -> u32 {
        match self.votes {
            None => 1,
            Some(votes) if (1..=i64::from(limits.max_votes)).contains(&votes) => {
                u32::try_from(votes).unwrap_or(1)
            }
            Some(votes) => {
                issues.push(FieldIssue::new(
                    "/votes",
                    format!("votes must be between 1 and {}, got {votes}", limits.max_votes),
                ));
                1
            }
        }
    }

    fn validate_source(self, limits: &LimitSettings) -> Result<Submission, ApiError> {
        let mut issues = Vec::new();
        let votes = self.validate_votes(limits, &mut issues);
        if self.answer_key.is_some() {
            issues.push(FieldIssue::new(
                "/answer_key",
                "a key needs the questions; scraped quizzes use the page's own key",
            ));
        }
        let source = source_from_input(self.source, limits, &mut issues)?;
        match source {
            Some(source) if issues.is_empty() => Ok(Submission::Scrape { source, votes }),
            _ => Err(ApiError::Validation(issues)),
        }
    }

    fn validate_questions(self, limits: &LimitSettings) -> Result<QuizSpec, ApiError> {
        let mut issues = Vec::new();
        let votes = self.validate_votes(limits, &mut issues);
        let questions_input = self.questions.unwrap_or_default();
        if questions_input.is_empty() {
            issues.push(FieldIssue::new("/questions", "at least one question is required"));
        }
        if questions_input.len() > limits.max_questions {
            issues.push(FieldIssue::new(
                "/questions",
                format!(
                    "at most {} questions per quiz, got {}",
                    limits.max_questions,
                    questions_input.len()
                ),
            ));
        }
        let mut questions = Vec::with_capacity(questions_input.len());
        for (index, question) in questions_input.into_iter().enumerate() {
            let at = format!("/questions/{index}");
            let text = question.text.trim().to_owned();
            if text.is_empty() {
                issues.push(FieldIssue::new(format!("{at}/text"), "question text is empty"));
            }
            if text.chars().count() > limits.max_question_chars {
                issues.push(FieldIssue::new(
                    format!("{at}/text"),
                    format!(
                        "question text is longer than {} characters",
                        limits.max_question_chars
                    ),
                ));
            }
            let kind = question.kind.unwrap_or(QuestionKind::Single);
            let options: Vec<String> = question
                .options
                .iter()
                .map(|option| option.trim().to_owned())
                .collect();
            if options.len() < 2 {
                issues.push(FieldIssue::new(
                    format!("{at}/options"),
                    "a question needs at least two options",
                ));
            }
            if options.len() > limits.max_options {
                issues.push(FieldIssue::new(
                    format!("{at}/options"),
                    format!("at most {} options per question", limits.max_options),
                ));
            }
            if kind == QuestionKind::TrueFalse && options.len() != 2 {
                issues.push(FieldIssue::new(
                    format!("{at}/options"),
                    "a true_false question has exactly two options",
                ));
            }
            for (option_index, option) in options.iter().enumerate() {
                if option.is_empty() {
                    issues.push(FieldIssue::new(
                        format!("{at}/options/{option_index}"),
                        "option text is empty",
                    ));
                } else if option.chars().count() > limits.max_option_chars {
                    issues.push(FieldIssue::new(
                        format!("{at}/options/{option_index}"),
                        format!(
                            "option text is longer than {} characters",
                            limits.max_option_chars
                        ),
                    ));
                }
            }
            questions.push(QuestionSpec { text, options, kind });
        }
        let answer_key = self
            .answer_key
            .map(|key| validate_key(&key, &questions, &mut issues));
        if issues.is_empty() {
            Ok(QuizSpec {
                questions,
                answer_key,
                votes,
            })
        } else {
            Err(ApiError::Validation(issues))
        }
    }
}

/// A `source` object into the job's source: exactly one of `url` and `html`, within the limits.
/// An oversized `html` is a 413 at once; every other breach is added to `issues`.
fn source_from_input(
    source: Option<SourceInput>,
    limits: &LimitSettings,
    issues: &mut Vec<FieldIssue>,
) -> Result<Option<proto::v1::source::Source>, ApiError> {
    Ok(match source {
        Some(SourceInput {
            url: Some(url),
            html: None,
        }) => validate_url(&url, limits, issues),
        Some(SourceInput {
            url: None,
            html: Some(html),
        }) => {
            if html.trim().is_empty() {
                issues.push(FieldIssue::new("/source/html", "the html is empty"));
            }
            if html.len() > limits.max_html_bytes {
                return Err(ApiError::TooLarge(format!(
                    "source.html is {} bytes; the limit is {} bytes",
                    html.len(),
                    limits.max_html_bytes
                )));
            }
            Some(proto::v1::source::Source::Html(html))
        }
        _ => {
            issues.push(FieldIssue::new("/source", "give exactly one of url and html"));
            None
        }
    })
}

fn validate_url(
    url: &str,
    limits: &LimitSettings,
    issues: &mut Vec<FieldIssue>,
) -> Option<proto::v1::source::Source> {
    if url.len() > limits.max_url_chars {
        issues.push(FieldIssue::new(
            "/source/url",
            format!("the url is longer than {} characters", limits.max_url_chars),
        ));
        return None;
    }
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
            Some(proto::v1::source::Source::Url(parsed.to_string()))
        }
        Ok(parsed) => {
            issues.push(FieldIssue::new(
                "/source/url",
                format!(
                    "only http and https urls with a host can be scraped, not {}:",
                    parsed.scheme()
                ),
            ));
            None
        }
        Err(error) => {
            issues.push(FieldIssue::new(
                "/source/url",
                format!("not a valid url: {error}"),
            ));
            None
        }
    }
}

fn validate_key(key: &[Vec<i64>], questions: &[QuestionSpec], issues: &mut Vec<FieldIssue>) -> Vec<Vec<u32>> {
    if key.len() != questions.len() {
        issues.push(FieldIssue::new(
            "/answer_key",
            format!(
                "the key has {} entries for {} questions",
                key.len(),
                questions.len()
            ),
        ));
    }
    let mut validated = Vec::with_capacity(key.len());
    for (index, (entry, question)) in key.iter().zip(questions).enumerate() {
        let at = format!("/answer_key/{index}");
        if entry.is_empty() {
            issues.push(FieldIssue::new(
                at.clone(),
                "a key entry lists at least one option",
            ));
        }
        if question.kind != QuestionKind::Multiple && entry.len() > 1 {
            issues.push(FieldIssue::new(
                at.clone(),
                "this question takes exactly one correct option",
            ));
        }
        let mut correct = Vec::with_capacity(entry.len());
        for (position, &option) in entry.iter().enumerate() {
            match u32::try_from(option) {
                Ok(option) if (option as usize) < question.options.len() => correct.push(option),
                _ => issues.push(FieldIssue::new(
                    format!("{at}/{position}"),
                    format!("option {option} is out of range 0..{}", question.options.len()),
                )),
            }
        }
        correct.sort_unstable();
        correct.dedup();
        validated.push(correct);
    }
    validated
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn issues(body: serde_json::Value) -> Vec<FieldIssue> {
        let result = from_value::<CreateQuiz>(body).and_then(|quiz| quiz.validate(&LimitSettings::default()));
        match result {
            Err(ApiError::Validation(issues)) => issues,
            other => panic!("expected validation error, got {other:?}"),
        }
    }

    #[test]
    fn every_rule_names_its_field() {
        assert_eq!(issues(json!({"questions": []}))[0].pointer, "/questions");
        assert_eq!(
            issues(json!({"questions": [{"text": "q", "options": ["a"]}]}))[0].pointer,
            "/questions/0/options"
        );
        assert_eq!(
            issues(json!({"questions": [{"options": ["a", "b"]}]}))[0].pointer,
            "/questions/0"
        );
        let key = issues(json!({"questions": [{"text": "q", "options": ["a", "b"]}], "answer_key": [[2]]}));
        assert_eq!(key[0].pointer, "/answer_key/0/0");
        let kind = issues(json!({"questions": [{"text": "q", "options": ["a", "b"], "kind": "essay"}]}));
        assert_eq!(kind[0].pointer, "/questions/0/kind");
    }

    #[test]
    fn sources_are_checked_and_exclusive() {
        let limits = LimitSettings::default();
        let validate =
            |body: serde_json::Value| from_value::<CreateQuiz>(body).and_then(|quiz| quiz.validate(&limits));
        assert!(matches!(
            validate(json!({"source": {"url": "https://example.test/quiz"}})),
            Ok(Submission::Scrape {
                source: proto::v1::source::Source::Url(_),
                votes: 1
            })
        ));
        assert!(matches!(
            validate(json!({"source": {"html": "<p>q</p>"}})),
            Ok(Submission::Scrape { .. })
        ));
        for (body, pointer) in [
            (json!({"source": {"url": "file:///etc/passwd"}}), "/source/url"),
            (json!({"source": {"url": "not a url"}}), "/source/url"),
            (
                json!({"source": {"url": "https://a.test", "html": "<p>"}}),
                "/source",
            ),
            (json!({"source": {}}), "/source"),
            (json!({"source": {"html": "<p>"}, "questions": []}), "/source"),
            (json!({}), "/questions"),
        ] {
            match validate(body.clone()) {
                Err(ApiError::Validation(issues)) => assert_eq!(issues[0].pointer, pointer, "{body}"),
                other => panic!("{body}: expected a validation error, got {other:?}"),
            }
        }
        let huge = json!({"source": {"html": "x".repeat(limits.max_html_bytes + 1)}});
        assert!(matches!(validate(huge), Err(ApiError::TooLarge(_))));
    }

    #[test]
    fn extract_sources_follow_the_submission_rules() {
        let limits = LimitSettings::default();
        let validate = |body: serde_json::Value| {
            from_value::<ExtractInput>(body).and_then(|input| input.validate(&limits))
        };
        assert!(matches!(
            validate(json!({"source": {"url": "https://example.test/quiz"}})),
            Ok(proto::v1::source::Source::Url(_))
        ));
        assert!(matches!(
            validate(json!({"source": {"html": "<p>q</p>"}})),
            Ok(proto::v1::source::Source::Html(_))
        ));
        for (body, pointer) in [
            (json!({"source": {"url": "file:///etc/passwd"}}), "/source/url"),
            (
                json!({"source": {"url": "https://a.test", "html": "<p>"}}),
                "/source",
            ),
            (json!({"source": {"html": "  "}}), "/source/html"),
            (json!({"source": {}}), "/source"),
        ] {
            match validate(body.clone()) {
                Err(ApiError::Validation(issues)) => assert_eq!(issues[0].pointer, pointer, "{body}"),
                other => panic!("{body}: expected a validation error, got {other:?}"),
            }
        }
        // No analysis, so no analysis fields; and a source is required.
        for body in [
            json!({"source": {"url": "https://a.test"}, "votes": 2}),
            json!({}),
        ] {
            assert!(matches!(validate(body), Err(ApiError::Validation(_))));
        }
        let long_url = format!("https://a.test/{}", "x".repeat(limits.max_url_chars));
        assert!(matches!(
            validate(json!({"source": {"url": long_url}})),
            Err(ApiError::Validation(_))
        ));
        let huge = json!({"source": {"html": "x".repeat(limits.max_html_bytes + 1)}});
        assert!(matches!(validate(huge), Err(ApiError::TooLarge(_))));
    }

    #[test]
    fn a_valid_quiz_becomes_a_spec() {
        let body = json!({"questions": [{"text": " q ", "options": ["a", "b", "c"], "kind": "multiple"}], "answer_key": [[2, 0]]});
        let submission = from_value::<CreateQuiz>(body)
            .unwrap()
            .validate(&LimitSettings::default())
            .unwrap();
        let Submission::Questions(spec) = submission else {
            panic!("expected questions, got {submission:?}")
        };
        assert_eq!(spec.questions[0].text, "q");
        assert_eq!(spec.answer_key, Some(vec![vec![0, 2]]));
    }
}
