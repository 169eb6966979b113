//! RFC 9457 problem details, the shape of every HTTP error QuizStats returns.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The media type of a problem document.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A problem document (RFC 9457), plus `errors` for field-level details.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:quizstats:problem:validation",
    "title": "Invalid quiz",
    "status": 422,
    "detail": "/questions/0/options: a question needs at least two options",
    "errors": [{"pointer": "/questions/0/options", "detail": "a question needs at least two options"}]
}))]
pub struct Problem {
    /// A URI naming the problem kind; `about:blank` when the status says it all.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem kind.
    pub title: String,
    /// The HTTP status code.
    #[schema(minimum = 100, maximum = 599)]
    pub status: u16,
    /// What went wrong this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub instance: Option<String>,
    /// One entry per invalid field, each naming it with a JSON pointer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldIssue>,
    /// Seconds the client should wait before retrying; sent as `Retry-After`.
    #[serde(skip)]
    pub retry_after_secs: Option<u64>,
}

/// What is wrong with one field of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldIssue {
    /// JSON pointer into the request body, e.g. `/questions/0/options` (`?name` for a query parameter).
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldIssue {
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

impl Problem {
    /// A problem of a QuizStats-specific kind, named `urn:quizstats:problem:<slug>`.
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:quizstats:problem:{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    /// A problem that only says what the status code says.
    pub fn from_status(status: StatusCode) -> Self {
        Self {
            kind: "about:blank".to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: None,
            instance: None,
            errors: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_errors(mut self, errors: Vec<FieldIssue>) -> Self {
        self.errors = errors;
        self
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after_secs = Some(seconds);
        self
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn to_response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON)));
        if let Some(seconds) = self.retry_after_secs {
            builder.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        let body = serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec());
        builder.body(body)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{} ({})", self.title, self.status)?;
        if let Some(detail) = &self.detail {
            write!(formatter, ": {detail}")?;
        }
        Ok(())
    }
}
