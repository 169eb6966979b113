//! The original system's `POST /api/analyze`, answered synchronously.
//!
//! Request `{"questions":[{"question","answers":[…]}]}`; response
//! `{"status":"success","answers":[1-based index per question],"questionCount":N}`.
//! A question the model could not answer has `null` in its place. Past the wait
//! limit the caller gets 504 while the quiz keeps running. Needs the `submit` scope.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::input::{CreateQuiz, LegacyAnalyze, Submission, from_value};
use crate::openapi::responses as problems;
use crate::openapi::schemas::LegacyAnswer;
use crate::state::AppState;
use crate::submit::submit;

/// Analyse a quiz and wait (the original system's contract)
///
/// Submits the questions as a quiz and answers once it finishes, with the 1-based index of the
/// chosen option per question. Past `legacy.wait_timeout_ms` (120 s) it answers 504; the quiz
/// keeps running. Needs the `submit` scope and draws on the submission budget; ignores
/// `Idempotency-Key`.
#[utoipa::path(
    post,
    path = "/api/analyze",
    tag = "legacy",
    operation_id = "legacy_analyze",
    request_body(content = LegacyAnalyze, content_type = "application/json"),
    responses(
        (
            status = 200,
            description = "The quiz finished.",
            body = LegacyAnswer,
            headers(
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 400, response = problems::MalformedBody),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (
            status = 404,
            description = "`quiz-not-found`: the quiz was deleted (by an `admin` key) before its answers were read.",
            body = common::problem::Problem,
            content_type = "application/problem+json",
        ),
        (status = 413, response = problems::BodyTooLarge),
        (status = 415, response = problems::UnsupportedMediaType),
        (status = 422, response = problems::ValidationFailed),
        (status = 429, response = problems::RateLimited),
        (status = 503, response = problems::SubmitUnavailable),
        (status = 504, response = problems::AnalysisTimeout),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn analyze(
    caller: Caller<auth::Submit>,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let value = super::read_json(&request, &body, state.settings.limits.max_json_bytes)?;
    let legacy = from_value::<LegacyAnalyze>(value)?;
    let spec = CreateQuiz::from(legacy).validate(&state.settings.limits)?;
    debug_assert!(
        matches!(spec, Submission::Questions(_)),
        "the legacy shape has no source"
    );
    let question_count = match &spec {
        Submission::Questions(questions) => questions.questions.len(),
        Submission::Scrape { .. } => 0,
    };
    let mut signal = None;
    let quiz_id = submit(&state, &spec, &caller.key_id, |quiz_id| {
        signal = Some(state.completions.register(quiz_id))
    })
    .await?;
    let wait_ms = state.settings.legacy.wait_timeout_ms;
    let Some(signal) = signal else {
        return Err(ApiError::QuizNotFound);
    };
    if !state
        .completions
        .wait(&state.store, &quiz_id, signal, Duration::from_millis(wait_ms))
        .await
    {
        return Err(ApiError::WaitTimedOut {
            quiz_id,
            waited_ms: wait_ms,
        });
    }
    // The answers are all this reply needs; the spec is the one just submitted.
    let outcomes = state
        .store
        .existing_outcomes(&quiz_id)
        .await
        .map_err(ApiError::StoreUnavailable)?
        .ok_or(ApiError::QuizNotFound)?;
    let mut answers = vec![Value::Null; question_count];
    for outcome in &outcomes {
        if let (Some(slot), Some(first)) = (
            answers.get_mut(outcome.index as usize),
            outcome.answer.as_ref().and_then(|answer| answer.selected.first()),
        ) {
            *slot = json!(first + 1);
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "status": "success",
        "answers": answers,
        "questionCount": question_count,
        "quizId": quiz_id,
    })))
}
