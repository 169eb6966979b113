//! The gateway's REST API: submit a quiz, read one. Error answers (RFC 9457
//! problem+json, or whatever a proxy in front sent) become one-line [`CliError::Api`]s.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use crate::credentials::ApiKey;
use crate::error::{CliError, with_causes};
use crate::view::{Accepted, Fetched, QuizView};

/// Connecting to a loopback or LAN gateway takes milliseconds; this is for a dead host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A submission or a read answers in milliseconds; a stuck proxy should not hang a script.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of a non-problem error body goes into the message.
const BODY_EXCERPT_CHARS: usize = 200;

pub struct Gateway {
    http: reqwest::Client,
    /// The base URL, ending in `/` so that joining keeps any path prefix (`…/quizstats/`).
    base: Url,
    key: Option<ApiKey>,
}

impl Gateway {
    pub fn new(base_url: &str, key: Option<ApiKey>) -> Result<Self, CliError> {
        let mut base = Url::parse(base_url)
            .map_err(|error| CliError::Usage(format!("--gateway {base_url:?} is not a URL: {error}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(CliError::Usage(format!(
                "--gateway {base_url:?} must be an http:// or https:// URL"
            )));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("quizstats/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| CliError::UnexpectedResponse(format!("cannot build an HTTP client: {error}")))?;
        Ok(Self { http, base, key })
    }

    /// `POST /v1/quizzes`: the new quiz's id, and the `202` body as it came.
    pub async fn submit(&self, quiz: &Value) -> Result<(Accepted, Value), CliError> {
        let url = self.url(&["v1", "quizzes"]);
        let body = self
            .call(
                self.request(Method::POST, url.clone()).json(quiz),
                &url,
                StatusCode::ACCEPTED,
            )
            .await?;
        let accepted = parse(&url, &body)?;
        Ok((accepted, body))
    }

    /// `GET /v1/quizzes/{id}`.
    pub async fn quiz(&self, quiz_id: &str) -> Result<Fetched, CliError> {
        let url = self.url(&["v1", "quizzes", quiz_id]);
        let raw = self
            .call(self.request(Method::GET, url.clone()), &url, StatusCode::OK)
            .await?;
        let view: QuizView = parse(&url, &raw)?;
        Ok(Fetched { raw, view })
    }

    /// The base URL plus `segments`, each percent-encoded as one path segment.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.key {
            Some(key) => request.bearer_auth(key.secret()),
            None => request,
        }
    }

    /// Sends `request`; the JSON body when the status is `expected`, a [`CliError`] otherwise.
    async fn call(
        &self,
        request: reqwest::RequestBuilder,
        url: &Url,
        expected: StatusCode,
    ) -> Result<Value, CliError> {
        let response = request
            .send()
            .await
            .map_err(|error| CliError::GatewayUnreachable {
                url: self.base.as_str().trim_end_matches('/').to_owned(),
                cause: with_causes(&error),
            })?;
        let status = response.status();
        let is_problem = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/problem+json"));
        let text = response.text().await.map_err(|error| {
            CliError::UnexpectedResponse(format!("{url} answered {status} but its body broke off: {error}"))
        })?;
        if status != expected {
            let problem = is_problem
                .then(|| serde_json::from_str::<Problem>(&text).ok())
                .flatten();
            let message = describe_failure(url.path(), status, problem.as_ref(), &text, self.key.as_ref());
            return Err(CliError::Api(message));
        }
        serde_json::from_str(&text).map_err(|error| {
            CliError::UnexpectedResponse(format!(
                "{url} answered {status} with a body that is not JSON: {error}"
            ))
        })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(url: &Url, body: &Value) -> Result<T, CliError> {
    T::deserialize(body).map_err(|error| {
        CliError::UnexpectedResponse(format!(
            "{url} answered in a shape this client does not know: {error}"
        ))
    })
}

/// An RFC 9457 problem, as the gateway sends it.
#[derive(Debug, Deserialize)]
pub struct Problem {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub detail: Option<String>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Deserialize)]
pub struct FieldError {
    pub pointer: String,
    pub detail: String,
}

/// One line: what was called, the status, the problem's title and details, and for a 401
/// or 403 where the key came from.
pub fn describe_failure(
    path: &str,
    status: StatusCode,
    problem: Option<&Problem>,
    body: &str,
    key: Option<&ApiKey>,
) -> String {
    let mut message = format!("the gateway answered {} to {path}", status.as_u16());
    match problem {
        Some(problem) => {
            let title = problem
                .title
                .clone()
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_default();
            message.push_str(&format!(" ({title})"));
            // Every field error, not only the first one the `detail` names.
            let details: Vec<String> = if problem.errors.len() > 1 {
                problem
                    .errors
                    .iter()
                    .map(|error| format!("{}: {}", error.pointer, error.detail))
                    .collect()
            } else {
                problem.detail.iter().cloned().collect()
            };
            if !details.is_empty() {
                message.push_str(&format!(": {}", details.join("; ")));
            }
        }
        None => {
            if let Some(reason) = status.canonical_reason() {
                message.push_str(&format!(" ({reason})"));
            }
            let excerpt = one_line(body, BODY_EXCERPT_CHARS);
            if !excerpt.is_empty() {
                message.push_str(&format!(": {excerpt}"));
            }
        }
    }
    match (status, key) {
        (StatusCode::UNAUTHORIZED, Some(key)) => {
            message.push_str(&format!(" (the key came from {})", key.source))
        }
        (StatusCode::UNAUTHORIZED, None) => message
            .push_str(" (no API key was sent: pass --api-key or --api-key-file, or set QUIZSTATS_API_KEY)"),
        (StatusCode::FORBIDDEN, Some(key)) => {
            message.push_str(&format!(" (the key came from {})", key.source))
        }
        _ => {}
    }
    message
}

/// `text` with its whitespace runs collapsed to single spaces, cut at `limit` characters.
fn one_line(text: &str, limit: usize) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() <= limit {
        return collapsed;
    }
    let kept: String = collapsed.chars().take(limit.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_validation_problem_lists_every_field_on_one_line() {
        let problem: Problem = serde_json::from_str(
            r#"{"type": "urn:quizstats:problem:validation", "title": "Invalid quiz", "status": 422,
                "detail": "/questions/0/options: a question needs at least two options",
                "errors": [{"pointer": "/questions/0/options", "detail": "a question needs at least two options"},
                           {"pointer": "/questions/1/text", "detail": "must not be empty"}]}"#,
        )
        .unwrap();
        let message = describe_failure(
            "/v1/quizzes",
            StatusCode::UNPROCESSABLE_ENTITY,
            Some(&problem),
            "",
            None,
        );
        assert_eq!(
            message,
            "the gateway answered 422 to /v1/quizzes (Invalid quiz): /questions/0/options: a question needs \
             at least two options; /questions/1/text: must not be empty"
        );
        assert!(!message.contains('\n'));
    }

    #[test]
    fn a_401_says_where_the_key_came_from_or_that_there_was_none() {
        let problem: Problem =
            serde_json::from_str(r#"{"title": "Invalid API key", "detail": "the API key is not valid"}"#)
                .unwrap();
        let key = crate::credentials::resolve(Some("k"), None, |_| None, std::path::Path::new("/"))
            .unwrap()
            .unwrap();
        let message = describe_failure(
            "/v1/quizzes/x",
            StatusCode::UNAUTHORIZED,
            Some(&problem),
            "",
            Some(&key),
        );
        assert!(message.contains("401"), "{message}");
        assert!(message.contains("the API key is not valid"), "{message}");
        assert!(message.ends_with("(the key came from --api-key)"), "{message}");
        let message = describe_failure(
            "/v1/quizzes/x",
            StatusCode::UNAUTHORIZED,
            Some(&problem),
            "",
            None,
        );
        assert!(message.contains("no API key was sent"), "{message}");
    }

    #[test]
    fn a_body_that_is_not_a_problem_is_quoted_briefly_on_one_line() {
        let body = format!("<html>\n<h1>502 Bad Gateway</h1>\n{}</html>", "x".repeat(500));
        let message = describe_failure("/v1/quizzes", StatusCode::BAD_GATEWAY, None, &body, None);
        assert!(
            message.starts_with("the gateway answered 502 to /v1/quizzes (Bad Gateway): <html> <h1>502"),
            "{message}"
        );
        assert!(
            message.chars().count() < 300 && !message.contains('\n'),
            "{message}"
        );
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_the_id() {
        let gateway = Gateway::new("http://proxy.test/quizstats", None).unwrap();
        assert_eq!(
            gateway.url(&["v1", "quizzes", "a/b c"]).as_str(),
            "http://proxy.test/quizstats/v1/quizzes/a%2Fb%20c"
        );
        let gateway = Gateway::new("http://127.0.0.1:8080", None).unwrap();
        assert_eq!(
            gateway.url(&["v1", "quizzes"]).as_str(),
            "http://127.0.0.1:8080/v1/quizzes"
        );
        assert!(matches!(Gateway::new("ftp://x", None), Err(CliError::Usage(_))));
        assert!(matches!(Gateway::new("not a url", None), Err(CliError::Usage(_))));
    }
}
