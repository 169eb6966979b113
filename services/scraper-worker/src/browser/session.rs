//! One WebDriver session on a fresh Chromium profile, with the fixed headless flags.

use std::time::Duration;

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::error::ScrapeError;
use crate::settings::WebDriverSettings;

/// Where the browser's own requests may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkPolicy {
    /// Direct connections (tests serving loopback pages; a deployment behind its own egress filter).
    Direct,
    /// Every request, loopback included, through the HTTP proxy on this loopback port.
    Proxy(u16),
    /// No network at all: every request goes to a proxy port nothing listens on (raw HTML files).
    Offline,
}

/// A live session; its profile directory is removed when the session is dropped.
pub struct BrowserSession {
    client: Client,
    _profile: tempfile::TempDir,
    /// Pages opened in this session so far (the pool recycles after a limit).
    pub pages: u32,
}

impl BrowserSession {
    /// Opens a session on `webdriver_url` with a fresh profile directory.
    pub async fn open(
        webdriver_url: &str,
        settings: &WebDriverSettings,
        network: NetworkPolicy,
        page_load_timeout: Duration,
    ) -> Result<Self, ScrapeError> {
        let profile = tempfile::Builder::new()
            .prefix("scraper-chromium-")
            .tempdir()
            .map_err(|error| ScrapeError::Session(format!("cannot create a profile dir: {error}")))?;
        let mut args = chromium_args(&profile.path().display().to_string(), network);
        args.extend(settings.extra_args.iter().cloned());
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("pageLoadStrategy".to_owned(), json!("normal"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": settings.chromium, "args": args}),
        );
        let client = ClientBuilder::rustls()
            .map_err(|error| ScrapeError::Session(format!("tls setup: {error}")))?
            .capabilities(capabilities)
            .connect(webdriver_url)
            .await
            .map_err(|error| ScrapeError::Session(error.to_string()))?;
        // Scripts get the page-load budget too: the extractor is linear but big pages take a while.
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(page_load_timeout),
                Some(page_load_timeout),
                Some(Duration::ZERO),
            ))
            .await
            .map_err(|error| ScrapeError::from_cmd(error, page_load_timeout))?;
        Ok(Self {
            client,
            _profile: profile,
            pages: 0,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Leaves nothing of the last page behind: its cookies and storage cleared (WebDriver only
    /// reaches the current document's origin, so this runs before leaving it), then a blank document.
    pub async fn reset(&self) -> Result<(), ScrapeError> {
        let timeout = Duration::from_secs(10);
        self.client
            .delete_all_cookies()
            .await
            .map_err(|error| ScrapeError::from_cmd(error, timeout))?;
        let clear_storage = "try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}";
        self.client
            .execute(clear_storage, Vec::new())
            .await
            .map_err(|error| ScrapeError::from_cmd(error, timeout))?;
        self.client
            .goto("about:blank")
            .await
            .map_err(|error| ScrapeError::from_cmd(error, timeout))?;
        Ok(())
    }

    /// Ends the session (closing Chromium); errors are irrelevant at that point.
    pub async fn close(self) {
        if let Err(error) = self.client.close().await {
            tracing::debug!(%error, "closing a browser session failed");
        }
    }
}

/// The fixed Chromium flags: headless, no sandbox (root in containers), nothing phoning home.
pub fn chromium_args(profile_dir: &str, network: NetworkPolicy) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    args.push(format!("--user-data-dir={profile_dir}"));
    let proxy_port = match network {
        NetworkPolicy::Direct => None,
        NetworkPolicy::Proxy(port) => Some(port),
        // Port 9 (discard) on loopback: nothing listens, every request fails fast.
        NetworkPolicy::Offline => Some(9),
    };
    if let Some(port) = proxy_port {
        args.push(format!("--proxy-server=127.0.0.1:{port}"));
        // `<-loopback>` removes Chromium's implicit loopback bypass, so loopback goes through the proxy too.
        args.push("--proxy-bypass-list=<-loopback>".to_owned());
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_sessions_route_everything_to_a_dead_proxy() {
        let args = chromium_args("/tmp/p", NetworkPolicy::Offline);
        assert!(args.contains(&"--proxy-server=127.0.0.1:9".to_owned()));
        assert!(args.contains(&"--proxy-bypass-list=<-loopback>".to_owned()));
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_owned()));
    }

    #[test]
    fn direct_sessions_have_no_proxy() {
        let args = chromium_args("/tmp/p", NetworkPolicy::Direct);
        assert!(!args.iter().any(|arg| arg.starts_with("--proxy")));
        assert!(args.contains(&"--headless".to_owned()));
    }
}
