//! Schemas of the answers the handlers build with `json!`: the document describes them with these
//! types, and the system tests read real answers into them (unknown fields refused), so a field
//! added to a handler but not here fails a test instead of going undocumented.

use common::views::{AnswerView, QuestionKind, QuizStatus, StatsView};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// `202` to `POST /v1/quizzes`: the quiz is recorded and queued.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "id": "0193a0c0-0000-7000-8000-000000000000",
    "status": "queued",
    "links": {
        "self": "/v1/quizzes/0193a0c0-0000-7000-8000-000000000000",
        "events": "/v1/ws?quiz_id=0193a0c0-0000-7000-8000-000000000000"
    }
}))]
pub struct Accepted {
    /// The quiz id (a UUIDv7).
    pub id: String,
    /// `queued`, also when the answer is a replay: `GET /v1/quizzes/{id}` has the current status.
    pub status: QuizStatus,
    pub links: QuizLinks,
}

/// Where to read a quiz and where to watch its events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuizLinks {
    /// `/v1/quizzes/{id}`.
    #[serde(rename = "self")]
    pub self_link: String,
    /// `/v1/ws?quiz_id={id}` on the stats-broadcaster (port 8083), a WebSocket.
    pub events: String,
}

/// Where to read a quiz of a listing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryLinks {
    /// `/v1/quizzes/{id}`.
    #[serde(rename = "self")]
    pub self_link: String,
}

/// `GET /v1/quizzes/{id}`: the quiz, its answers so far and its stats.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuizView {
    pub id: String,
    pub status: QuizStatus,
    /// When the quiz was submitted, milliseconds since the Unix epoch.
    pub created_at_ms: i64,
    /// Samples per question (self-consistency); 1 = a single answer.
    #[schema(minimum = 1)]
    pub votes: u32,
    /// Every question, in order; empty while a scraped quiz's page is still being read.
    pub questions: Vec<QuestionView>,
    pub stats: StatsView,
    pub links: QuizLinks,
    /// Why the quiz failed; only on `failed` quizzes.
    #[serde(default)]
    #[schema(nullable = false)]
    pub reason: Option<String>,
}

/// One question of a quiz, with its outcome once it has one: `answer`, or `error` when the model
/// could not answer it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuestionView {
    /// 0-based position in the quiz.
    pub index: u32,
    pub text: String,
    pub options: Vec<String>,
    pub kind: QuestionKind,
    /// The answer key's correct options (0-based), when the quiz has a key.
    #[serde(default)]
    #[schema(nullable = false)]
    pub key: Option<Vec<u32>>,
    #[serde(default)]
    #[schema(nullable = false)]
    pub answer: Option<AnswerView>,
    /// Why the question has no answer.
    #[serde(default)]
    #[schema(nullable = false)]
    pub error: Option<String>,
    /// Whether `answer` agrees with `key`; only with a key.
    #[serde(default)]
    #[schema(nullable = false)]
    pub agrees_with_key: Option<bool>,
}

/// `POST /api/analyze`'s answer (the original system's contract).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "status": "success", "answers": [2, null], "questionCount": 2,
    "quizId": "0193a0c0-0000-7000-8000-000000000000"
}))]
pub struct LegacyAnswer {
    pub status: LegacyStatus,
    /// Per question, the 1-based index of the chosen option; `null` where the model could not answer.
    #[schema(value_type = Vec<Option<u32>>)]
    pub answers: Vec<Option<u32>>,
    #[serde(rename = "questionCount")]
    pub question_count: usize,
    /// The quiz id: `GET /v1/quizzes/{id}` has the details.
    #[serde(rename = "quizId")]
    pub quiz_id: String,
}

/// Always `success` (failures are problem documents).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegacyStatus {
    Success,
}

/// `POST /v1/extract`: the questions a page yields, in shared/schemas/extracted-quiz.schema.json
/// (what `scraper-worker extract` prints).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://quiz.example/lesson-3",
    "title": "Lesson 3 check",
    "questions": [{"text": "2 + 2 = ?", "kind": "single", "options": ["3", "4", "5"], "correct": [1]}]
}))]
pub struct ExtractedQuizView {
    /// The URL extracted (as normalised); absent for an `html` source.
    #[serde(default)]
    #[schema(nullable = false)]
    pub url: Option<String>,
    /// The quiz's own title where the page shows one.
    pub title: Option<String>,
    /// The questions in page order; at least one (a page without any is a 422 `no-questions`).
    #[schema(min_items = 1)]
    pub questions: Vec<ExtractedQuestionView>,
}

/// One extracted question: visible text, whitespace collapsed, without numbering or option labels.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtractedQuestionView {
    #[schema(min_length = 1)]
    pub text: String,
    pub kind: QuestionKind,
    #[schema(min_items = 2)]
    pub options: Vec<String>,
    /// 0-based indices of the options the page itself marks correct (a review page, feedback
    /// text, data attributes); absent when the page reveals no key.
    #[serde(default)]
    #[schema(nullable = false)]
    pub correct: Option<Vec<u32>>,
}

/// `GET /healthz`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: HealthStatus,
}

/// Always `ok`: the process answers.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// `GET /readyz` when the broker and Redis are reachable.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Ready {
    pub status: ReadyStatus,
    pub checks: ReadyChecks,
}

/// Always `ready` (not ready is a 503 problem document).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadyStatus {
    Ready,
}

/// Each dependency's state.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadyChecks {
    pub broker: DependencyState,
    pub redis: DependencyState,
}

#[derive(Debug, Deserialize, ToSchema)]
pub enum DependencyState {
    #[serde(rename = "up")]
    Up,
    #[serde(rename = "down")]
    Down,
    #[serde(rename = "not used")]
    NotUsed,
}

/// One option of a submitted question: 1 to 1,000 characters once trimmed (the default
/// `limits.max_option_chars`), so not only whitespace. Only a schema: options are `String`s.
pub struct OptionText;

impl utoipa::PartialSchema for OptionText {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "One option: 1 to 1,000 characters once trimmed, so not only whitespace.",
            ))
            .min_length(Some(1))
            .max_length(Some(1000))
            .pattern(Some(r"\S"))
            .into()
    }
}

impl ToSchema for OptionText {}
