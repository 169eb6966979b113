//! `/v1/quizzes`: submit a quiz (`submit` scope), read its answers and stats (`read` scope,
//! own quizzes only unless `admin`).

use actix_web::{HttpRequest, HttpResponse, web};
use common::views::{QuestionOutcome, StatsView};
use serde_json::{Value, json};

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::input::{CreateQuiz, from_value};
use crate::state::AppState;
use crate::submit::submit;

pub async fn create(
    caller: Caller<auth::Submit>,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let value = super::read_json(&request, &body, state.settings.limits.max_json_bytes)?;
    let submission = from_value::<CreateQuiz>(value)?.validate(&state.settings.limits)?;
    let quiz_id = submit(&state, &submission, &caller.key_id, |_| {}).await?;
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/v1/quizzes/{quiz_id}")))
        .json(json!({
            "id": quiz_id,
            "status": "queued",
            "links": links(&quiz_id),
        })))
}

pub async fn get(
    caller: Caller<auth::Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // Another key's quiz is reported as missing, so ids cannot be probed.
    if !caller.is_admin() {
        let owner = state
            .owners
            .owner(&id)
            .await
            .map_err(ApiError::StoreUnavailable)?;
        if owner.as_deref() != Some(caller.key_id.as_str()) {
            return Err(ApiError::QuizNotFound);
        }
    }
    let quiz = state
        .store
        .load(&id)
        .await
        .map_err(ApiError::StoreUnavailable)?
        .ok_or(ApiError::QuizNotFound)?;
    let total = u32::try_from(quiz.spec.questions.len()).unwrap_or(u32::MAX);
    let stats = StatsView::compute(total, &quiz.outcomes, state.settings.audit.dispute_confidence);
    let mut outcomes = quiz
        .outcomes
        .into_iter()
        .map(|outcome| (outcome.index, outcome))
        .collect::<std::collections::HashMap<u32, QuestionOutcome>>();
    let questions: Vec<Value> = (0u32..)
        .zip(&quiz.spec.questions)
        .map(|(index, question)| {
            let mut entry = json!({
                "index": index,
                "text": question.text,
                "options": question.options,
                "kind": question.kind,
            });
            if let Some(outcome) = outcomes.remove(&index) {
                if let Some(answer) = outcome.answer {
                    entry["answer"] = json!(answer);
                }
                if let Some(error) = outcome.error {
                    entry["error"] = json!(error);
                }
                if let Some(agrees) = outcome.agrees_with_key {
                    entry["agrees_with_key"] = json!(agrees);
                }
            }
            if let Some(correct) = quiz
                .spec
                .answer_key
                .as_ref()
                .and_then(|key| key.get(index as usize))
            {
                entry["key"] = json!(correct);
            }
            entry
        })
        .collect();
    let mut body = json!({
        "id": quiz.id,
        "status": quiz.status,
        "created_at_ms": quiz.created_at_ms,
        "votes": quiz.spec.votes,
        "questions": questions,
        "stats": stats,
        "links": links(&quiz.id),
    });
    if let Some(reason) = quiz.reason {
        body["reason"] = json!(reason);
    }
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

fn links(quiz_id: &str) -> Value {
    json!({
        "self": format!("/v1/quizzes/{quiz_id}"),
        "events": format!("/v1/ws?quiz_id={quiz_id}"),
    })
}
