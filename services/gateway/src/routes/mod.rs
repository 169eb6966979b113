//! The gateway's whole route table.

mod legacy;
mod quizzes;

use actix_web::web;

pub fn configure(config: &mut web::ServiceConfig) {
    config
        .service(
            web::resource("/v1/quizzes")
                .name("quizzes")
                .route(web::post().to(quizzes::create)),
        )
        .service(
            web::resource("/v1/quizzes/{id}")
                .name("quiz")
                .route(web::get().to(quizzes::get)),
        )
        .service(web::resource("/api/analyze").route(web::post().to(legacy::analyze)));
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
