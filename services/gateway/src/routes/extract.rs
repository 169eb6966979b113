//! `POST /v1/extract`: a page's questions, extracted synchronously by a scraper-worker (request
//! and reply over the broker, `crate::extraction`), without creating a quiz or analysing anything.
//! Needs the `submit` scope and draws on the submission budget: each call costs a browser page.

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::input::{ExtractInput, from_value};
use crate::openapi::responses as problems;
use crate::openapi::schemas::ExtractedQuizView;
use crate::state::AppState;

/// Extract a page's questions
///
/// Opens the page (a `url` under the scraper's egress policy, or raw `html` with no network) in
/// headless Chromium and answers with the questions it finds, in the format of
/// `scraper-worker extract` (shared/schemas/extracted-quiz.schema.json). Creates no quiz and asks
/// no model. Needs the `submit` scope and draws on the submission budget (each call costs a
/// browser page). Waits at most `extract.timeout_ms` (60 s) for a scraper-worker.
#[utoipa::path(
    post,
    path = "/v1/extract",
    tag = "extract",
    operation_id = "extract",
    request_body(content = ExtractInput, content_type = "application/json"),
    responses(
        (
            status = 200,
            description = "The questions on the page (at least one).",
            body = ExtractedQuizView,
            headers(
                ("RateLimit-Policy" = String, description = "The rate-limit policies the call was checked against."),
                ("RateLimit" = String, description = "What each policy allows now."),
            ),
        ),
        (status = 400, response = problems::MalformedBody),
        (status = 401, response = problems::Unauthenticated),
        (status = 403, response = problems::Forbidden),
        (status = 413, response = problems::BodyTooLarge),
        (status = 415, response = problems::UnsupportedMediaType),
        (status = 422, response = problems::ExtractUnprocessable),
        (status = 429, response = problems::RateLimited),
        (status = 502, response = problems::ExtractBadGateway),
        (status = 503, response = problems::ExtractUnavailable),
        (status = 504, response = problems::ExtractTimeout),
    ),
    security(("bearer" = []), ("api_key" = [])),
)]
pub async fn extract(
    caller: Caller<auth::Submit>,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let value = super::read_json(&request, &body, state.settings.limits.max_json_bytes)?;
    let source = from_value::<ExtractInput>(value)?.validate(&state.settings.limits)?;
    tracing::info!(
        key_id = %caller.key_id,
        source = match &source {
            proto::v1::source::Source::Url(_) => "url",
            proto::v1::source::Source::Html(_) => "html",
        },
        "extraction requested"
    );
    let quiz = state
        .extractions
        .extract(
            &state.bus,
            source,
            Duration::from_millis(state.settings.extract.timeout_ms),
        )
        .await?;
    Ok(HttpResponse::Ok().json(quiz))
}
