//! `ScrapeError`: every way turning a page into questions can fail, and whether a retry can help.

use std::time::Duration;

/// One variant per thing that failed; the message is the reason stored with a failed quiz.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("url not allowed: {0}")]
    UrlNotAllowed(String),
    /// The SSRF policy refused the page (or the address a redirect led to).
    #[error("refused: {0}")]
    Refused(String),
    #[error("page unreachable: {0}")]
    Unreachable(String),
    #[error("page answered http status {0}")]
    HttpStatus(u16),
    #[error("page did not load within {0:?}")]
    PageLoadTimeout(Duration),
    #[error("page is not html (content type {0})")]
    NotHtml(String),
    #[error("page has {count} dom nodes, more than the limit of {limit}")]
    TooManyNodes { count: u64, limit: u64 },
    #[error("page has {count} characters of text, more than the limit of {limit}")]
    TextTooLong { count: u64, limit: u64 },
    #[error("page kept changing for longer than the settle deadline of {0:?}")]
    SettleTimeout(Duration),
    #[error("page has no multiple-choice questions")]
    NoQuestions,
    #[error("extractor returned an unexpected value: {0}")]
    BadExtractorOutput(String),
    #[error("cannot read source file {path}: {reason}")]
    SourceFile { path: String, reason: String },
    #[error("cannot start chromedriver: {0}")]
    DriverStart(String),
    #[error("cannot open a browser session: {0}")]
    Session(String),
    #[error("browser session lost: {0}")]
    BrowserCrashed(String),
    #[error("webdriver command failed: {0}")]
    WebDriver(String),
}

impl ScrapeError {
    /// Permanent failures mark the quiz failed; transient ones (the browser, not the page) are retried.
    pub fn is_permanent(&self) -> bool {
        !matches!(
            self,
            Self::DriverStart(_) | Self::Session(_) | Self::BrowserCrashed(_) | Self::WebDriver(_)
        )
    }

    /// Whether the session that produced this error must be thrown away.
    pub fn poisons_session(&self) -> bool {
        matches!(
            self,
            Self::BrowserCrashed(_)
                | Self::WebDriver(_)
                | Self::PageLoadTimeout(_)
                | Self::BadExtractorOutput(_)
        )
    }

    /// Maps a WebDriver command error: navigation errors are the page's fault, lost
    /// connections and dead sessions the browser's.
    pub fn from_cmd(error: fantoccini::error::CmdError, page_load: Duration) -> Self {
        use fantoccini::error::{CmdError, ErrorStatus};
        match &error {
            CmdError::Standard(wd) => match wd.error {
                ErrorStatus::Timeout | ErrorStatus::ScriptTimeout => Self::PageLoadTimeout(page_load),
                ErrorStatus::InvalidSessionId | ErrorStatus::NoSuchWindow => {
                    Self::BrowserCrashed(wd.message.to_string())
                }
                _ if wd.message.contains("net::ERR_") => Self::Unreachable(net_error(&wd.message)),
                _ if wd.message.contains("session deleted")
                    || wd.message.contains("disconnected")
                    || wd.message.contains("crashed") =>
                {
                    Self::BrowserCrashed(wd.message.to_string())
                }
                _ => Self::WebDriver(first_line(&wd.message)),
            },
            CmdError::Lost(_) | CmdError::Failed(_) | CmdError::FailedC(_) => {
                Self::BrowserCrashed(error.to_string())
            }
            _ => Self::WebDriver(error.to_string()),
        }
    }
}

impl ScrapeError {
    /// The typed reason an extract reply carries; the gateway picks its HTTP status from it.
    pub fn extract_failure_kind(&self) -> proto::v1::ExtractFailureKind {
        use proto::v1::ExtractFailureKind as Kind;
        match self {
            Self::UrlNotAllowed(_) | Self::Refused(_) => Kind::Refused,
            Self::Unreachable(_) => Kind::Unreachable,
            Self::HttpStatus(_) => Kind::HttpStatus,
            Self::NotHtml(_) => Kind::NotHtml,
            Self::NoQuestions => Kind::NoQuestions,
            Self::TooManyNodes { .. } | Self::TextTooLong { .. } => Kind::TooLarge,
            Self::PageLoadTimeout(_) | Self::SettleTimeout(_) => Kind::Timeout,
            Self::DriverStart(_) | Self::Session(_) | Self::BrowserCrashed(_) | Self::WebDriver(_) => {
                Kind::Browser
            }
            Self::BadExtractorOutput(_) | Self::SourceFile { .. } => Kind::Internal,
        }
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or_default().to_owned()
}

/// `unknown error: net::ERR_CONNECTION_REFUSED\n  (Session info: …)` → `net::ERR_CONNECTION_REFUSED`.
fn net_error(message: &str) -> String {
    message
        .split_whitespace()
        .find(|word| word.starts_with("net::ERR_"))
        .map_or_else(|| first_line(message), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_errors_are_reduced_to_their_code() {
        assert_eq!(
            net_error("unknown error: net::ERR_CONNECTION_REFUSED\n  (Session info: chrome=1)"),
            "net::ERR_CONNECTION_REFUSED"
        );
    }

    #[test]
    fn page_failures_are_permanent_and_browser_failures_are_not() {
        assert!(ScrapeError::NoQuestions.is_permanent());
        assert!(ScrapeError::Unreachable("x".into()).is_permanent());
        assert!(ScrapeError::Refused("x".into()).is_permanent());
        assert!(!ScrapeError::Refused("x".into()).poisons_session());
        assert!(!ScrapeError::BrowserCrashed("x".into()).is_permanent());
    }
}
