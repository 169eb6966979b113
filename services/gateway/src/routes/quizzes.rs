//! `/v1/quizzes`: submit a quiz (`submit` scope, optionally with `Idempotency-Key`), list and
//! read quizzes (`read` scope), delete one (`submit` scope); own quizzes only unless `admin`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use common::views::{QuestionOutcome, StatsView};
use serde_json::{Value, json};

use crate::auth::{self, Caller, Requirement};
use crate::deletion::{Deleted, delete_quiz};
use crate::error::ApiError;
use crate::idempotency::{self, Claim, IdempotencyKey, StoredAnswer};
use crate::input::{CreateQuiz, from_value};
use crate::listing::{self, ListQuery};
use crate::openapi::responses as problems;
use crate::openapi::schemas::{Accepted, QuizView};
use crate::rate_limit::Budget;
use crate::state::AppState;
use crate::submit::submit;

/// Deleting a quiz: the `submit` scope (it undoes a submission), drawing on the general budget
/// (it costs no LLM work).
pub struct Delete;

impl Requirement for Delete {
    const SCOPE: auth::Scope = auth::Scope::Submit;
    const BUDGET: Budget = Budget::General;
}

/// Submit a quiz
///
/// Validates the quiz (every breach is reported), records it and queues it for analysis, or, with
/// a `source`, for scraping first. Needs the `submit` scope and draws on the submission budget.
/// With an `Idempotency-Key`, a retry with the same body gets the first answer again
/// (`Idempotent-Replayed: true`) and never a second quiz.
#[utoipa::path(
    post,
    path = "/v1/quizzes",
    tag = "quizzes",
    operation_id = "create_quiz",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        description = "A key of the client's making (a UUID is a good choice), optionally in double \
            quotes, so a retried submission makes one quiz. Per API key; kept 24 h.",
        pattern = r#"^([A-Za-z0-9_.:+/=-]{1,255}|"[A-Za-z0-9_.:+/=-]{1,255}")$"#,
        nullable = false,
        example = "6f1c2a9e-0b7d-4f0e-9a51-3c2d8e7b4a10"
    )),
    request_body(
        content = crate::input::CreateQuiz,
        content_type = "application/json",
        description = "The questions, or a page (`source`) to extract them from.",
    ),
    responses(
        (
            status = 202,
            description = "Accepted: the quiz is queued. A replay of an `Idempotency-Key` answers \
                the first request's body again.",
            body = Accepted,
            headers(
                ("Location" = String, description = "`/v1/quizzes/{id}`."),
                ("Idempotent-Replayed" = String, description = "`true` on a replayed answer."),
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 400, response = problems::SubmitBadRequest),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (status = 409, response = problems::IdempotencyConflict),
        (status = 413, response = problems::BodyTooLarge),
        (status = 415, response = problems::UnsupportedMediaType),
        (status = 422, response = problems::ValidationFailed),
        (status = 429, response = problems::RateLimited),
        (status = 503, response = problems::SubmitUnavailable),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn create(
    caller: Caller<auth::Submit>,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let idempotency_key = IdempotencyKey::from_headers(request.headers())?;
    let value = super::read_json(&request, &body, state.settings.limits.max_json_bytes)?;
    let Some(idempotency_key) = idempotency_key else {
        let submission = from_value::<CreateQuiz>(value)?.validate(&state.settings.limits)?;
        let quiz_id = submit(&state, &submission, &caller.key_id, |_| {}).await?;
        return Ok(accepted_answer(&quiz_id).into_response(false));
    };
    // A body that fails validation is refused the same way every time: it claims no key.
    let submission = from_value::<CreateQuiz>(value.clone())?.validate(&state.settings.limits)?;
    let lease = match state
        .idempotency
        .claim(&caller.key_id, &idempotency_key, &value)
        .await?
    {
        Claim::Replay(answer) => return Ok(answer.into_response(true)),
        Claim::Fresh(lease) => lease,
    };
    // Accepting runs to its end even if the client goes away meanwhile (actix drops the
    // handler's future): a quiz accepted without its answer stored would be submitted again
    // by the client's retry once the lease ran out.
    let owner = caller.key_id.clone();
    actix_web::rt::spawn(accept_with_lease(state.into_inner(), submission, owner, lease))
        .await
        .map_err(|_| ApiError::TaskFailed)?
}

async fn accept_with_lease(
    state: std::sync::Arc<AppState>,
    submission: crate::input::Submission,
    owner: String,
    lease: idempotency::Lease,
) -> Result<HttpResponse, ApiError> {
    match submit(&state, &submission, &owner, |_| {}).await {
        Ok(quiz_id) => {
            let answer = accepted_answer(&quiz_id);
            if let Err(error) = state.idempotency.complete(lease, answer.clone()).await {
                // The quiz is accepted; only a retry's replay is at risk. Say yes, log it.
                tracing::warn!(%error, "idempotency answer not stored; its lease frees the key");
            }
            Ok(answer.into_response(false))
        }
        Err(error) => {
            state.idempotency.release(lease).await;
            Err(error)
        }
    }
}

fn accepted_answer(quiz_id: &str) -> StoredAnswer {
    StoredAnswer {
        status: StatusCode::ACCEPTED.as_u16(),
        quiz_id: quiz_id.to_owned(),
        body: json!({
            "id": quiz_id,
            "status": "queued",
            "links": links(quiz_id),
        }),
    }
}

impl StoredAnswer {
    fn into_response(self, replayed: bool) -> HttpResponse {
        let mut response =
            HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::ACCEPTED));
        response.insert_header(("Location", format!("/v1/quizzes/{}", self.quiz_id)));
        if replayed {
            response.insert_header((idempotency::REPLAYED_HEADER, "true"));
        }
        response.json(self.body)
    }
}

/// List quizzes
///
/// The caller's quizzes (every key's for an `admin` key), newest first, a page at a time: follow
/// `next_cursor` until it is `null`. Needs the `read` scope.
#[utoipa::path(
    get,
    path = "/v1/quizzes",
    tag = "quizzes",
    operation_id = "list_quizzes",
    params(
        (
            "limit" = Option<u32>,
            Query,
            description = "Items per page, 1 to 100 (default 20).",
            minimum = 1,
            maximum = 100
        ),
        (
            "cursor" = Option<String>,
            Query,
            description = "The previous page's `next_cursor`, passed back unchanged (it is opaque)."
        ),
        (
            "status" = Option<common::views::QuizStatus>,
            Query,
            description = "Only quizzes with this status."
        ),
    ),
    responses(
        (
            status = 200,
            description = "A page of quizzes. `Cache-Control: no-store`. With a selective `status` \
                a page may hold fewer than `limit` items, even none, while `next_cursor` is not `null`.",
            body = crate::listing::Page,
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 400, response = problems::InvalidQuery),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (status = 429, response = problems::RateLimited),
        (status = 503, response = problems::StoreUnavailable),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn list(
    caller: Caller<auth::Read>,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = ListQuery::parse(request.query_string())?;
    let scope = if caller.is_admin() {
        listing::Scope::Everyone
    } else {
        listing::Scope::Owner(&caller.key_id)
    };
    let page = listing::list(state.store.pool(), state.store.keys(), scope, &query)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(page))
}

/// Delete a quiz
///
/// Deletes a finished (`completed` or `failed`) quiz and everything kept about it; cached LLM
/// answers stay. Needs the `submit` scope; only the key that submitted the quiz, or an `admin`
/// key, may delete it.
#[utoipa::path(
    delete,
    path = "/v1/quizzes/{id}",
    tag = "quizzes",
    operation_id = "delete_quiz",
    params(("id" = String, Path, description = "The quiz id.")),
    responses(
        (
            status = 204,
            description = "Deleted.",
            headers(
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::QuizNotFound),
        (status = 409, response = problems::QuizInProgress),
        (status = 429, response = problems::RateLimited),
        (status = 503, response = problems::StoreUnavailable),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn delete(
    caller: Caller<Delete>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owner = state
        .owners
        .owner(&id)
        .await
        .map_err(ApiError::StoreUnavailable)?;
    // Another key's quiz is reported as missing, as by GET.
    let expected_owner = if caller.is_admin() {
        None
    } else if owner.as_deref() == Some(caller.key_id.as_str()) {
        Some(caller.key_id.as_str())
    } else {
        return Err(ApiError::QuizNotFound);
    };
    let deleted = delete_quiz(
        state.store.pool(),
        state.store.keys(),
        &id,
        owner.as_deref(),
        expected_owner,
    )
    .await
    .map_err(ApiError::StoreUnavailable)?;
    match deleted {
        Deleted::Deleted => {
            state.finished.forget(&id);
            tracing::info!(quiz_id = %id, key_id = %caller.key_id, "quiz deleted");
            Ok(HttpResponse::NoContent().finish())
        }
        Deleted::NotFound => Err(ApiError::QuizNotFound),
        Deleted::InProgress(status) => Err(ApiError::QuizInProgress(status)),
    }
}

/// Read a quiz
///
/// Its status, every question with its answer so far, and its stats. Needs the `read` scope;
/// another key's quiz is 404 unless the caller is `admin`.
#[utoipa::path(
    get,
    path = "/v1/quizzes/{id}",
    tag = "quizzes",
    operation_id = "get_quiz",
    params(("id" = String, Path, description = "The quiz id.")),
    responses(
        (
            status = 200,
            description = "The quiz. `Cache-Control: no-store`.",
            body = QuizView,
            headers(
                ("Cache-Control" = String, description = "`no-store`."),
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (status = 404, response = problems::QuizNotFound),
        (status = 429, response = problems::RateLimited),
        (status = 503, response = problems::StoreUnavailable),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn get(
    caller: Caller<auth::Read>,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    // A finished quiz read recently: no Redis round trip, no rendering (crate::finished).
    if let Some(hit) = state.finished.get(&id) {
        if hit.revalidate {
            // Past the TTL: one background check that it was not deleted through another
            // replica; this and the other reads are served meanwhile (crate::finished).
            let (store, finished, id) = (state.store.clone(), state.finished.clone(), id.clone());
            actix_web::rt::spawn(async move {
                match store.status(&id).await {
                    Ok(Some(_)) => finished.confirmed(&id),
                    Ok(None) => finished.forget(&id),
                    Err(error) => {
                        tracing::warn!(%error, "cannot revalidate a cached quiz");
                        finished.unconfirmed(&id);
                    }
                }
            });
        }
        if !caller.is_admin() && hit.rendered.owner.as_deref() != Some(caller.key_id.as_str()) {
            return Err(ApiError::QuizNotFound);
        }
        return Ok(quiz_response(hit.rendered.body.clone()));
    }
    // Another key's quiz is reported as missing, so ids cannot be probed.
    let mut owner = None;
    if !caller.is_admin() {
        owner = state
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
    let bytes = bytes::Bytes::from(body.to_string());
    if matches!(
        quiz.status,
        common::views::QuizStatus::Completed | common::views::QuizStatus::Failed
    ) {
        if caller.is_admin() {
            // Cached for every caller, so the owner check needs the owner even for an admin.
            owner = state
                .owners
                .owner(&id)
                .await
                .map_err(ApiError::StoreUnavailable)?;
        }
        state.finished.insert(
            &id,
            crate::finished::Rendered {
                owner,
                body: bytes.clone(),
            },
        );
    }
    Ok(quiz_response(bytes))
}

/// `200` with a rendered quiz; never cached by clients or proxies (a running quiz changes).
fn quiz_response(body: bytes::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .content_type(actix_web::http::header::ContentType::json())
        .body(body)
}

fn links(quiz_id: &str) -> Value {
    json!({
        "self": format!("/v1/quizzes/{quiz_id}"),
        "events": format!("/v1/ws?quiz_id={quiz_id}"),
    })
}
