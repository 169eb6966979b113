//! One page to one quiz: navigate, check it is HTML, settle, run the extractor, post-process.

use std::time::Duration;

use serde_json::json;

use crate::browser::BrowserSession;
use crate::browser::settle::{Settled, wait_for_settle};
use crate::error::ScrapeError;
use crate::extract::{EXTRACTOR_JS, ExtractedQuiz, RawExtraction, postprocess};
use crate::settings::ScrapeSettings;

/// Opens `url` in `session` and extracts its quiz (possibly with zero questions).
pub async fn scrape_page(
    session: &BrowserSession,
    url: &str,
    budgets: &ScrapeSettings,
) -> Result<ExtractedQuiz, ScrapeError> {
    let client = session.client();
    let page_load = Duration::from_millis(budgets.page_load_timeout_ms);
    client
        .goto(url)
        .await
        .map_err(|error| ScrapeError::from_cmd(error, page_load))?;
    let page = client
        .execute("return [document.contentType, location.href, document.body ? document.body.innerText.slice(0, 200) : ''];", Vec::new())
        .await
        .map_err(|error| ScrapeError::from_cmd(error, page_load))?;
    let content_type = page
        .get(0)
        .and_then(|value| value.as_str())
        .unwrap_or_default()
        .to_owned();
    let final_url = page.get(1).and_then(|value| value.as_str()).unwrap_or_default();
    if final_url.starts_with("chrome-error://") {
        return Err(ScrapeError::Unreachable(format!("{url} could not be loaded")));
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
    Ok(postprocess(raw, Some(url.to_owned())))
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
