//! The gateway's whole route table.

pub(crate) mod extract;
pub(crate) mod legacy;
pub(crate) mod quizzes;

use actix_web::web;
use common::http::method_not_allowed;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/quizzes")
                .name("quizzes")
                .route(web::get().to(quizzes::list))
                .route(web::post().to(quizzes::create))
                .default_service(method_not_allowed("GET, POST")),
        )
        .service(
            web::resource("/v1/quizzes/{id}")
                .name("quiz")
                .route(web::get().to(quizzes::get))
                .route(web::delete().to(quizzes::delete))
                .default_service(method_not_allowed("GET, DELETE")),
        )
        .service(
            web::resource("/v1/extract")
                .route(web::post().to(extract::extract))
                .default_service(method_not_allowed("POST")),
        )
        .service(
            web::resource("/api/analyze")
                .route(web::post().to(legacy::analyze))
                .default_service(method_not_allowed("POST")),
        )
        .service(
            web::resource(crate::openapi::PATH)
                .route(web::get().to(crate::openapi::serve))
                .default_service(method_not_allowed("GET")),
        );
}

/// Reads a JSON body: `application/json`, well-formed, and within the JSON limit unless
/// it carries an HTML source, whose own (larger) limit the validation checks.
pub fn read_json(
    request: &actix_web::HttpRequest,
    body: &[u8],
    max_json_bytes: usize,
) -> Result<serde_json::Value, crate::error::ApiError> {
    use crate::error::ApiError;
    let content_type = request
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let is_json = content_type.is_some_and(|value| {
        let media = value.split(';').next().unwrap_or_default().trim();
        media.eq_ignore_ascii_case("application/json") || media.ends_with("+json")
    });
    if !is_json {
        return Err(ApiError::NotJson);
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|error| ApiError::MalformedBody(error.to_string()))?;
    let has_html = value.pointer("/source/html").is_some();
    if !has_html && body.len() > max_json_bytes {
        return Err(ApiError::TooLarge(format!(
            "the body is {} bytes; the limit is {max_json_bytes} bytes",
            body.len()
        )));
    }
    Ok(value)
}

/// The raw body limit: the largest HTML source plus room for the JSON around it.
pub fn payload_config(max_html_bytes: usize, max_json_bytes: usize) -> web::PayloadConfig {
    web::PayloadConfig::new(max_html_bytes.max(max_json_bytes) + 64 * 1024)
}

/// The JSON extractor's limits and its problem+json errors (400 malformed, 413 too large, 415 wrong type).
pub fn json_config(max_bytes: usize) -> web::JsonConfig {
    use actix_web::error::{InternalError, JsonPayloadError};
    use actix_web::http::StatusCode;
    use common::problem::Problem;
    web::JsonConfig::default()
        .limit(max_bytes)
        .error_handler(move |error, _request| {
            let problem = match &error {
                JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "Request body too large",
                    )
                    .with_detail(format!("the body is larger than {max_bytes} bytes"))
                }
                JsonPayloadError::ContentType => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Send application/json",
                ),
                other => Problem::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-body",
                    "Malformed request body",
                )
                .with_detail(other.to_string()),
            };
            InternalError::from_response(error, problem.to_response()).into()
        })
}
