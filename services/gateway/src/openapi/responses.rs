//! The error answers, each a problem+json document (`ApiError::problem` and actix's own errors
//! through `common::http::problem_fallback`), shared by the operations that give them.
//! Descriptions name the `type`s a status can carry on the operations using it.

use common::problem::PROBLEM_JSON;
use utoipa::ToResponse;
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// `Retry-After`, seconds (`ApiError::problem`'s `with_retry_after`).
fn retry_after(required: bool) -> Header {
    header(
        Type::Integer,
        "Seconds to wait before retrying (rounded up).",
        required,
    )
}

/// A header with a schema of one type; `required` is written as OpenAPI's Header Object field,
/// which utoipa's `Header` lacks.
pub(super) fn header(schema_type: Type, description: &str, required: bool) -> Header {
    let is_integer = schema_type == Type::Integer;
    let mut schema = ObjectBuilder::new().schema_type(schema_type);
    if is_integer {
        schema = schema.minimum(Some(0));
    }
    let mut header = HeaderBuilder::new()
        .schema(Some(schema))
        .description(Some(description))
        .build();
    if required {
        header.extensions = Some(Extensions::from_iter([("required", true)]));
    }
    header
}

/// `RateLimit-Policy`: the policies the call was checked against (draft-ietf-httpapi-ratelimit-headers-09).
pub(super) fn rate_limit_policy(required: bool) -> Header {
    header(
        Type::String,
        "The rate-limit policies the call was checked against, e.g. `\"default\";q=20;w=1, \"submit\";q=60;w=60`.",
        required,
    )
}

/// `RateLimit`: what is left of each policy's budget.
pub(super) fn rate_limit(required: bool) -> Header {
    header(
        Type::String,
        "What each policy allows now: `r` calls, full again (or, at `r=0`, the next call allowed) in `t` seconds, \
         e.g. `\"default\";r=39;t=1, \"submit\";r=9;t=6`.",
        required,
    )
}

/// A problem document. Every answer after the key was accepted reports the rate-limit budgets it
/// was checked against; `keyed` = false for those given before (401).
fn problem(description: &str, keyed: bool) -> ResponseBuilder {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("Problem")))
        .build();
    let builder = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    if keyed {
        builder
            .header("RateLimit-Policy", rate_limit_policy(false))
            .header("RateLimit", rate_limit(false))
    } else {
        builder
    }
}

macro_rules! problem_responses {
    ($($(#[$meta:meta])* $name:ident => $build:expr;)*) => {
        $(
            $(#[$meta])*
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    (stringify!($name), $build.build().into())
                }
            }
        )*
    };
}

problem_responses! {
    /// 400 on `POST /v1/quizzes`.
    SubmitBadRequest => problem(
        "`malformed-body`: the body is not JSON; `invalid-idempotency-key`: the `Idempotency-Key` \
         header is malformed or sent twice.",
        true,
    );
    /// 400 on `POST /api/analyze`.
    MalformedBody => problem("`malformed-body`: the body is not JSON.", true);
    /// 400 on `GET /v1/quizzes`.
    InvalidQuery => problem(
        "`invalid-query`: a query parameter is invalid or unknown; one `errors[]` entry each, \
         its `pointer` naming the parameter (`?limit`).",
        true,
    );
    /// 401 on every API call.
    Unauthenticated => problem(
        "`unauthenticated`: no API key, a malformed `Authorization` header, or a key the gateway \
         does not know.",
        false,
    )
    .header(
        "WWW-Authenticate",
        header(
            Type::String,
            "`Bearer realm=\"quizstats\"`, with `error=\"invalid_token\"` for an unknown key (RFC 6750 §3).",
            true,
        ),
    );
    /// 403 on every API call.
    Forbidden => problem("`forbidden`: the key lacks the scope this call needs.", true);
    /// 404 for a quiz the caller cannot see.
    QuizNotFound => problem(
        "`quiz-not-found`: no such quiz, or one another key created (unless the caller is `admin`).",
        true,
    );
    /// 409 on `POST /v1/quizzes`.
    IdempotencyConflict => problem(
        "`idempotency-key-reused`: the `Idempotency-Key` was used before with another body; \
         `idempotency-in-progress` (with `Retry-After`): the first request with it is still being accepted.",
        true,
    )
    .header("Retry-After", retry_after(false));
    /// 409 on `DELETE /v1/quizzes/{id}`.
    QuizInProgress => problem(
        "`quiz-in-progress`: the quiz is still queued, scraping or analysing; delete it once it is \
         completed or failed.",
        true,
    )
    .header("Retry-After", retry_after(true));
    /// 413 on the submissions and `POST /v1/extract`.
    BodyTooLarge => problem(
        "`body-too-large`: the body exceeds `limits.max_json_bytes` (512 KiB), or `source.html` \
         exceeds `limits.max_html_bytes` (2 MiB); `about:blank` when the body is beyond even that.",
        true,
    );
    /// 415 on the submissions.
    UnsupportedMediaType => problem(
        "`unsupported-media-type`: the body is not `application/json` (or another `+json` type).",
        true,
    );
    /// 422 on the submissions.
    ValidationFailed => problem(
        "`validation`: a field is missing, of the wrong type, unknown, or breaks a rule; \
         every breach has an `errors[]` entry whose `pointer` names the field.",
        true,
    );
    /// 429 on every API call.
    RateLimited => problem(
        "`rate-limited`: the key's budget is spent; retry after `Retry-After` seconds.",
        false,
    )
    .header("Retry-After", retry_after(true))
    .header("RateLimit-Policy", rate_limit_policy(true))
    .header("RateLimit", rate_limit(true));
    /// 503 on the submissions.
    SubmitUnavailable => problem(
        "`broker-unavailable`: RabbitMQ did not confirm the job, nothing was accepted; \
         `store-unavailable`: Redis is unreachable.",
        true,
    )
    .header("Retry-After", retry_after(true));
    /// 503 on the reads and the delete.
    StoreUnavailable => problem("`store-unavailable`: Redis is unreachable.", true)
        .header("Retry-After", retry_after(true));
    /// 504 on `POST /api/analyze`.
    AnalysisTimeout => problem(
        "`analysis-timeout`: the quiz did not finish within `legacy.wait_timeout_ms` (120 s); it keeps \
         running, and `detail` names its id.",
        true,
    );
    /// 422 on `POST /v1/extract`.
    ExtractUnprocessable => problem(
        "`validation`: the body breaks a rule (as `source` of `POST /v1/quizzes`), with `errors[]`; \
         the page cannot give questions, `detail` says why: `source-refused` (the egress policy \
         refused the URL or a redirect's target), `not-html`, `no-questions`, `page-too-large` \
         (more DOM nodes or text than the scraper's budget).",
        true,
    );
    /// 502 on `POST /v1/extract`.
    ExtractBadGateway => problem(
        "`page-unreachable`: the page could not be fetched (`detail` has the network error); \
         `page-http-error`: it answered a status >= 400; `extract-failed`: the scraper failed otherwise.",
        true,
    );
    /// 503 on `POST /v1/extract`.
    ExtractUnavailable => problem(
        "`broker-unavailable`: RabbitMQ is unreachable or did not confirm the request; \
         `scraper-unavailable`: the browser failed twice.",
        true,
    )
    .header("Retry-After", retry_after(true));
    /// 504 on `POST /v1/extract`.
    ExtractTimeout => problem(
        "`extract-timeout`: no scraper-worker answered within `extract.timeout_ms` (60 s); \
         `page-timeout`: the page did not load within the scraper's page-load budget.",
        true,
    );
    /// 503 on `GET /readyz`.
    NotReady => problem("`not-ready`: the broker or Redis is down; `detail` says which.", false)
        .header("Retry-After", retry_after(true))
        .header("Cache-Control", header(Type::String, "`no-store`.", true));
}
