//! `ApiError`: every way a gateway request fails, rendered as problem+json in one place.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use common::problem::{FieldIssue, Problem};

use crate::auth::Scope;
use crate::rate_limit::Exceeded;

/// Why a request carries no usable API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingCredentials {
    /// Neither `Authorization: Bearer` nor `X-API-Key` was sent.
    NoKey,
    /// A key was sent but matches no configured key.
    UnknownKey,
    /// A JSON Web Token was sent and failed a check (`[auth.jwt]`).
    InvalidToken(common::auth::TokenRejection),
}

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
    #[error("request not authenticated: {0:?}")]
    Unauthenticated(MissingCredentials),
    #[error("api key lacks the {} scope", needed.as_str())]
    Forbidden { needed: Scope },
    #[error("rate limit exceeded")]
    RateLimited(Exceeded),
    #[error("the gateway's app state is not registered")]
    StateMissing,
    #[error("query parameters failed validation")]
    InvalidQuery(Vec<FieldIssue>),
    #[error("invalid idempotency key: {0}")]
    BadIdempotencyKey(String),
    #[error("idempotency key already used with another body")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is still being accepted")]
    IdempotencyInProgress,
    #[error("the task accepting the request failed")]
    TaskFailed,
    #[error("quiz is still {}", .0.as_str())]
    QuizInProgress(common::views::QuizStatus),
    #[error("extraction failed ({kind:?}): {reason}")]
    ExtractFailed {
        kind: proto::v1::ExtractFailureKind,
        reason: String,
    },
    #[error("no extraction reply within {waited_ms} ms")]
    ExtractTimedOut { waited_ms: u64 },
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::error!(error = %self, cause = ?std::error::Error::source(self).map(ToString::to_string), "request failed");
        }
        let mut response = self.problem().to_response();
        let headers = response.headers_mut();
        match self {
            // RFC 6750 §3: a Bearer challenge, with `invalid_token` when a key was presented.
            Self::Unauthenticated(reason) => {
                let challenge = match reason {
                    MissingCredentials::NoKey => "Bearer realm=\"quizstats\"",
                    MissingCredentials::UnknownKey | MissingCredentials::InvalidToken(_) => {
                        "Bearer realm=\"quizstats\", error=\"invalid_token\""
                    }
                };
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            }
            Self::RateLimited(exceeded) => {
                for (name, value) in exceeded.status.headers().into_iter().flatten() {
                    headers.insert(name, value);
                }
            }
            _ => {}
        }
        response
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
            Self::Unauthenticated(MissingCredentials::NoKey) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "API key required").with_detail(
                    "send the key as `Authorization: Bearer <key>` or `X-API-Key: <key>`",
                )
            }
            Self::Unauthenticated(MissingCredentials::UnknownKey) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Unknown API key")
                    .with_detail("the API key is not valid")
            }
            Self::Unauthenticated(MissingCredentials::InvalidToken(reason)) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Invalid token").with_detail(reason.to_string())
            }
            Self::Forbidden { needed } => Problem::new(StatusCode::FORBIDDEN, "forbidden", "Missing scope")
                .with_detail(format!("this call needs an API key with the `{}` scope", needed.as_str())),
            Self::RateLimited(exceeded) => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
                    .with_detail(format!("rate limit exceeded; retry in {} s", exceeded.retry_after_secs))
                    .with_retry_after(exceeded.retry_after_secs)
            }
            Self::StateMissing | Self::TaskFailed => {
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal server error")
            }
            Self::InvalidQuery(errors) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-query", "Invalid query parameters")
                    .with_detail(
                        errors.first().map_or_else(String::new, |first| format!("{}: {}", first.pointer, first.detail)),
                    )
                    .with_errors(errors.clone())
            }
            Self::BadIdempotencyKey(detail) => {
                Problem::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", "Invalid Idempotency-Key")
                    .with_detail(detail.clone())
            }
            Self::IdempotencyKeyReused => {
                Problem::new(StatusCode::CONFLICT, "idempotency-key-reused", "Idempotency-Key already used")
                    .with_detail("this key was used with a different body; use a new key for a new quiz")
            }
            Self::IdempotencyInProgress => {
                Problem::new(StatusCode::CONFLICT, "idempotency-in-progress", "Request still in progress")
                    .with_detail("a request with this Idempotency-Key is still being accepted; retry to get its answer")
                    .with_retry_after(1)
            }
            Self::ExtractFailed { kind, reason } => extract_problem(*kind).with_detail(reason.clone()),
            Self::ExtractTimedOut { waited_ms } => {
                Problem::new(StatusCode::GATEWAY_TIMEOUT, "extract-timeout", "Extraction timed out")
                    .with_detail(format!(
                        "no scraper answered within {waited_ms} ms (`extract.timeout_ms`); retry later"
                    ))
            }
            Self::QuizInProgress(status) => {
                Problem::new(StatusCode::CONFLICT, "quiz-in-progress", "Quiz still running")
                    .with_detail(format!(
                        "the quiz is {}; it can be deleted once it is completed or failed",
                        status.as_str()
                    ))
                    .with_retry_after(5)
            }
        }
    }
}

/// The status and type of each way an extraction fails (docs/api.md, `POST /v1/extract`): the
/// page's own faults are 422, a page that cannot be fetched 502, one too slow 504, and a
/// browser that failed twice 503.
fn extract_problem(kind: proto::v1::ExtractFailureKind) -> Problem {
    use proto::v1::ExtractFailureKind as Kind;
    match kind {
        Kind::Refused => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "source-refused",
            "Source refused by the egress policy",
        ),
        Kind::NotHtml => Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "not-html", "Page is not HTML"),
        Kind::NoQuestions => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no-questions",
            "No multiple-choice questions on the page",
        ),
        Kind::TooLarge => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "page-too-large",
            "Page exceeds the extraction budget",
        ),
        Kind::Unreachable => Problem::new(StatusCode::BAD_GATEWAY, "page-unreachable", "Page unreachable"),
        Kind::HttpStatus => Problem::new(
            StatusCode::BAD_GATEWAY,
            "page-http-error",
            "Page answered an error status",
        ),
        Kind::Timeout => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            "page-timeout",
            "Page did not load in time",
        ),
        Kind::Browser => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "scraper-unavailable",
            "The browser failed",
        )
        .with_retry_after(5),
        Kind::Internal | Kind::Unspecified => {
            Problem::new(StatusCode::BAD_GATEWAY, "extract-failed", "Extraction failed")
        }
    }
}
