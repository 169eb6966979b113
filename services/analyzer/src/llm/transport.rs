//! The HTTP transport under async-openai: a plain reqwest call that also keeps the
//! provider's `Retry-After`, which async-openai's error type does not carry.
//!
//! The hint travels through a task-local slot: [`with_retry_hint`] opens it around one
//! call, the transport fills it from a 429 or 503 response, and the caller reads it
//! back when it decides how long to wait.

use std::cell::Cell;
use std::time::Duration;

use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;

tokio::task_local! {
    static RETRY_HINT: Cell<Option<Duration>>;
}

/// Longest `Retry-After` honoured; a provider asking for more gets a failed question instead.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Runs `call` with a fresh hint slot; returns its result and the hint the provider gave.
pub async fn with_retry_hint<T>(call: impl Future<Output = T>) -> (T, Option<Duration>) {
    RETRY_HINT
        .scope(Cell::new(None), async move {
            let result = call.await;
            let hint = RETRY_HINT.try_with(Cell::get).ok().flatten();
            (result, hint)
        })
        .await
}

/// The tower service async-openai sends every request through.
pub fn service(
    http: reqwest::Client,
) -> impl tower::Service<
    HttpRequestFactory,
    Response = reqwest::Response,
    Error = OpenAIError,
    Future = impl Future<Output = Result<reqwest::Response, OpenAIError>> + Send,
> + Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |factory: HttpRequestFactory| {
        let http = http.clone();
        async move {
            let request = factory.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            if let Some(hint) = retry_after(&response) {
                let _ = RETRY_HINT.try_with(|slot| slot.set(Some(hint)));
            }
            Ok(response)
        }
    })
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these APIs and is ignored).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}
