//! One page to one quiz: navigate, check it is HTML, settle, run the extractor, post-process.

use std::time::Duration;

use serde_json::json;

use crate::browser::BrowserSession;
use crate::browser::settle::{Settled, wait_for_settle};
use crate::egress::EgressLog;
use crate::error::ScrapeError;
use crate::extract::{EXTRACTOR_JS, ExtractedQuiz, RawExtraction, postprocess};
use crate::settings::ScrapeSettings;

/// The document's content type, its URL after redirects, and its HTTP status (0 when unknown,
/// e.g. `file://`; `responseStatus` is in Chromium since 109).
const PAGE_JS: &str = "const nav = performance.getEntriesByType('navigation')[0]; \
    return [document.contentType, location.href, nav && nav.responseStatus ? nav.responseStatus : 0];";

/// Opens `url` in `session` and extracts its quiz (possibly with zero questions).
pub async fn scrape_page(
    session: &BrowserSession,
    url: &str,
    budgets: &ScrapeSettings,
) -> Result<ExtractedQuiz, ScrapeError> {
    let client = session.client();
    let page_load = Duration::from_millis(budgets.page_load_timeout_ms);
    let egress = session.egress_log();
    egress.clear();
    if let Some(policy) = session.network().url_policy() {
        let parsed =
            url::Url::parse(url).map_err(|error| ScrapeError::UrlNotAllowed(format!("{url}: {error}")))?;
        crate::egress::check_url(policy, &parsed)
            .await
            .map_err(crate::egress::Blocked::into_error)?;
    }
    if let Err(error) = client.goto(url).await {
        let error = ScrapeError::from_cmd(error, page_load);
        // A refused or unreachable document shows as a network error; the proxy knows why.
        return Err(match error {
            ScrapeError::Unreachable(ref code) => navigation_failure(egress, url, code).unwrap_or(error),
            other => other,
        });
    }
    let page = client
        .execute(PAGE_JS, Vec::new())
        .await
        .map_err(|error| ScrapeError::from_cmd(error, page_load))?;
    let content_type = page
        .get(0)
        .and_then(|value| value.as_str())
        .unwrap_or_default()
        .to_owned();
    let final_url = page.get(1).and_then(|value| value.as_str()).unwrap_or_default();
    if !displayed(url, final_url) {
        // Chromium did not open the response as a document (it would have downloaded it: an
        // `application/octet-stream`, an attachment) and stayed on the page it was on.
        return Err(ScrapeError::NotHtml(NOT_DISPLAYED.to_owned()));
    }
    if final_url.starts_with("chrome-error://") {
        return Err(navigation_failure(egress, url, "")
            .unwrap_or_else(|| ScrapeError::Unreachable(format!("{url} could not be loaded"))));
    }
    // The document itself may be the proxy's refusal (a redirect or a script led to a refused
    // address): the job fails; refused subresources only do not load.
    if let Ok(document) = url::Url::parse(final_url)
        && let Some(error) = egress.document_failure(Some(&document))
    {
        return Err(error);
    }
    let status = page
        .get(2)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_default();
    if status >= 400 {
        return Err(ScrapeError::HttpStatus(u16::try_from(status).unwrap_or(u16::MAX)));
    }
    if !is_html(&content_type) {
        return Err(ScrapeError::NotHtml(content_type));
    }
    let deadline = Duration::from_millis(budgets.settle_deadline_ms);
    if wait_for_settle(client, Duration::from_millis(budgets.settle_quiet_ms), deadline).await?
        == Settled::Deadline
    {
        // Pages with a ticking clock never go quiet; they are extracted as they stand.
        tracing::debug!(error = %ScrapeError::SettleTimeout(deadline), "extracting an unsettled page");
    }
    let limits = json!({"max_nodes": budgets.max_dom_nodes, "max_text_chars": budgets.max_text_chars});
    let value = client
        .execute(EXTRACTOR_JS, vec![limits])
        .await
        .map_err(|error| ScrapeError::from_cmd(error, page_load))?;
    let raw: RawExtraction =
        serde_json::from_value(value).map_err(|error| ScrapeError::BadExtractorOutput(error.to_string()))?;
    check_budget(&raw)?;
    // A script may have navigated the page to a refused address while it settled.
    if let Ok(current) = client.current_url().await
        && let Some(error) = egress.document_failure(Some(&current))
    {
        return Err(error);
    }
    Ok(postprocess(raw, Some(url.to_owned())))
}

/// Why a navigation ended on an error page, when the proxy knows: it blocked the requested
/// URL itself, or (`ERR_TUNNEL_CONNECTION_FAILED`, the proxy's answer to a refused `CONNECT`,
/// e.g. after an https redirect) the last destination it blocked. Other network errors
/// (too many redirects, ...) are the browser's own and are reported as they are: the log also
/// holds Chromium's background requests, which must not be blamed for them.
fn navigation_failure(egress: &EgressLog, url: &str, net_error: &str) -> Option<ScrapeError> {
    let requested = url::Url::parse(url).ok();
    if let Some(error) = requested.and_then(|requested| egress.document_failure(Some(&requested))) {
        return Some(error);
    }
    if net_error.contains("ERR_TUNNEL_CONNECTION_FAILED") {
        return egress.document_failure(None);
    }
    None
}

/// The content type reported for a response the browser would only download.
const NOT_DISPLAYED: &str = "unknown: the browser would download it, not display it";

/// Whether navigating to `requested` left the browser on a document of its own: an http(s) or
/// file navigation that ends on `about:blank` or `data:` (where sessions start and are reset to)
/// never committed. Error pages (`chrome-error://`) are told apart later.
fn displayed(requested: &str, current: &str) -> bool {
    let requested_a_document = ["http:", "https:", "file:"]
        .iter()
        .any(|scheme| requested.starts_with(scheme));
    !(requested_a_document && (current.starts_with("about:") || current.starts_with("data:")))
}

fn is_html(content_type: &str) -> bool {
    matches!(content_type, "text/html" | "application/xhtml+xml")
}

/// The extractor stops early and says which budget a page broke.
fn check_budget(raw: &RawExtraction) -> Result<(), ScrapeError> {
    let (count, limit) = (raw.count.unwrap_or_default(), raw.limit.unwrap_or_default());
    match raw.error.as_deref() {
        None => Ok(()),
        Some("too_many_nodes") => Err(ScrapeError::TooManyNodes { count, limit }),
        Some("text_too_long") => Err(ScrapeError::TextTooLong { count, limit }),
        Some(other) => Err(ScrapeError::BadExtractorOutput(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    #[test]
    fn only_html_documents_are_extracted() {
        assert!(is_html("text/html"));
        assert!(is_html("application/xhtml+xml"));
        assert!(!is_html("application/pdf"));
        assert!(!is_html("text/plain"));
    }

    #[test]
    fn a_navigation_that_stays_on_the_blank_page_was_not_displayed() {
        assert!(displayed("http://a.test/q", "http://a.test/q"));
        assert!(displayed("http://a.test/q", "https://b.test/after-redirect"));
        assert!(displayed("http://a.test/q", "chrome-error://chromewebdata/"));
        assert!(!displayed("http://a.test/blob", "about:blank"));
        assert!(!displayed("https://a.test/blob", "data:,"));
        assert!(!displayed("file:///tmp/x.html", "about:blank"));
        assert!(displayed("about:blank", "about:blank"));
    }

    #[test]
    fn budget_breaches_become_typed_errors() {
        let raw: RawExtraction =
            serde_json::from_value(json!({"error": "too_many_nodes", "count": 9, "limit": 5})).unwrap();
        assert!(matches!(
            check_budget(&raw),
            Err(ScrapeError::TooManyNodes { count: 9, limit: 5 })
        ));
        let raw: RawExtraction =
            serde_json::from_value(json!({"error": "text_too_long", "count": 9, "limit": 5})).unwrap();
        assert!(matches!(check_budget(&raw), Err(ScrapeError::TextTooLong { .. })));
        assert!(check_budget(&RawExtraction::default()).is_ok());
    }
}
