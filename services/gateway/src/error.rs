//! `ApiError`: every way a gateway request fails, rendered as problem+json in one place.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use common::problem::{FieldIssue, Problem};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid json: {0}")]
    MalformedBody(String),
    #[error("request body failed validation")]
    Validation(Vec<FieldIssue>),
    #[error("no quiz with that id")]
    QuizNotFound,
    #[error("request body too large: {0}")]
    TooLarge(String),
    #[error("request body is not application/json")]
    NotJson,
    #[error("message broker unavailable")]
    BrokerUnavailable(#[source] common::bus::BusError),
    #[error("quiz storage unavailable")]
    StoreUnavailable(#[source] common::redis::RedisError),
    #[error("quiz {quiz_id} did not finish within {waited_ms} ms")]
    WaitTimedOut { quiz_id: String, waited_ms: u64 },
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(self).map(ToString::to_string), "request failed");
        }
        self.problem().to_response()
    }
}

impl ApiError {
    fn problem(&self) -> Problem {
        match self {
            Self::MalformedBody(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "malformed-body", "Malformed request body").with_detail(detail.clone())
            }
            Self::Validation(errors) => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid quiz")
                .with_detail(
                    errors.first().map_or_else(String::new, |first| format!("{}: {}", first.pointer, first.detail)),
                )
                .with_errors(errors.clone()),
            Self::QuizNotFound => Problem::new(StatusCode::NOT_FOUND, "quiz-not-found", "Quiz not found"),
            Self::TooLarge(detail) => {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Request body too large")
                    .with_detail(detail.clone())
            }
            Self::NotJson => {
                Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Send application/json")
            }
            Self::BrokerUnavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "broker-unavailable", "Cannot accept quizzes right now")
                    .with_detail("the message broker is unreachable; nothing was accepted, retry later")
                    .with_retry_after(5)
            }
            Self::StoreUnavailable(_) => {
                Problem::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", "Quiz storage unavailable")
                    .with_detail("redis is unreachable; retry later")
                    .with_retry_after(5)
            }
            Self::WaitTimedOut { quiz_id, waited_ms } => {
                Problem::new(StatusCode::GATEWAY_TIMEOUT, "analysis-timeout", "Analysis still running")
                    .with_detail(format!(
                        "quiz {quiz_id} did not finish within {waited_ms} ms; it keeps running, see /v1/quizzes/{quiz_id}"
                    ))
            }
        }
    }
}
