//! The command line: no subcommand runs the service; `extract` prints one page's quiz as JSON.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::browser::{BrowserPool, NetworkPolicy};
use crate::egress::EgressPolicy;
use crate::error::ScrapeError;
use crate::extract::ExtractedQuiz;
use crate::scrape::scrape_page;
use crate::settings::Settings;

#[derive(Debug, Parser)]
#[command(
    name = "scraper-worker",
    about = "Extracts quiz questions from web pages through headless Chromium"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract the quiz from a URL or a local HTML file and print it as JSON.
    Extract {
        /// An http(s) URL, or a path to an HTML file (opened without network access).
        source: String,
        /// A running WebDriver server; by default chromedriver is spawned.
        #[arg(long)]
        webdriver: Option<String>,
        /// The Chromium binary.
        #[arg(long)]
        chromium: Option<String>,
        /// The chromedriver executable spawned when no --webdriver is given.
        #[arg(long)]
        chromedriver: Option<String>,
    },
}

/// Where a CLI source points and how much network it gets.
#[derive(Debug)]
pub struct Target {
    pub url: String,
    pub network: NetworkPolicy,
}

/// URLs are opened under the egress policy of `settings`; files become `file://` URLs opened
/// with no network at all.
pub fn resolve_source(source: &str, settings: &Settings) -> Result<Target, ScrapeError> {
    if let Ok(url) = url::Url::parse(source)
        && matches!(url.scheme(), "http" | "https")
    {
        return Ok(Target {
            url: url.to_string(),
            network: NetworkPolicy::Egress(Arc::new(EgressPolicy::new(&settings.egress))),
        });
    }
    let path = Path::new(source.strip_prefix("file://").unwrap_or(source));
    let absolute = path.canonicalize().map_err(|error| ScrapeError::SourceFile {
        path: source.to_owned(),
        reason: error.to_string(),
    })?;
    if !absolute.is_file() {
        return Err(ScrapeError::SourceFile {
            path: source.to_owned(),
            reason: "not a file".to_owned(),
        });
    }
    let url = url::Url::from_file_path(&absolute).map_err(|()| ScrapeError::SourceFile {
        path: source.to_owned(),
        reason: "cannot be expressed as a file URL".to_owned(),
    })?;
    Ok(Target {
        url: url.to_string(),
        network: NetworkPolicy::Offline,
    })
}

/// Runs `extract`: one pooled session, one page.
pub async fn extract(settings: Settings, source: &str) -> Result<ExtractedQuiz, ScrapeError> {
    let target = resolve_source(source, &settings)?;
    let pool = BrowserPool::new(
        settings.webdriver.clone(),
        target.network,
        Duration::from_millis(settings.scrape.page_load_timeout_ms),
    );
    let pooled = pool.acquire().await?;
    let result = scrape_page(&pooled.session, &target.url, &settings.scrape).await;
    pool.release(pooled, result.as_ref().err()).await;
    pool.shutdown().await;
    let mut quiz = result?;
    quiz.url = Some(source.to_owned());
    Ok(quiz)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

    use super::*;

    #[test]
    fn urls_are_policed_and_files_are_offline() {
        let settings = Settings::default();
        let target = resolve_source("http://127.0.0.1:8000/a.html", &settings).unwrap();
        assert!(matches!(target.network, NetworkPolicy::Egress(_)));
        let file = tempfile::NamedTempFile::new().unwrap();
        let target = resolve_source(file.path().to_str().unwrap(), &settings).unwrap();
        assert!(matches!(target.network, NetworkPolicy::Offline));
        assert!(target.url.starts_with("file:///"));
    }

    #[test]
    fn missing_files_are_a_clear_error() {
        let error = resolve_source("/no/such/page.html", &Settings::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("cannot read source file /no/such/page.html")
        );
    }
}
