//! One WebDriver session on a fresh Chromium profile, with the fixed headless flags.

use std::sync::Arc;
use std::time::Duration;

use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder};
use serde_json::json;

use crate::egress::{EgressLog, EgressPolicy, EgressProxy};
use crate::error::ScrapeError;
use crate::settings::WebDriverSettings;

/// Where the browser's own requests may go. Every session sends every request, loopback
/// included, through its own egress proxy; only the policy differs.
#[derive(Debug, Clone)]
pub enum NetworkPolicy {
    /// URL jobs: what the SSRF policy allows (the first URL is also checked before navigating).
    Egress(Arc<EgressPolicy>),
    /// No network at all (raw HTML files): the proxy refuses everything.
    Offline,
}

impl NetworkPolicy {
    /// The policy the first URL of a job is checked with (none for offline sessions, which open files).
    pub fn url_policy(&self) -> Option<&EgressPolicy> {
        match self {
            Self::Egress(policy) => Some(policy),
            Self::Offline => None,
        }
    }

    fn proxy_policy(&self) -> Arc<EgressPolicy> {
        match self {
            Self::Egress(policy) => Arc::clone(policy),
            Self::Offline => Arc::new(EgressPolicy::deny_all()),
        }
    }
}

/// A live session; its profile directory is removed and its proxy stopped when it is dropped.
pub struct BrowserSession {
    client: Client,
    network: NetworkPolicy,
    proxy: EgressProxy,
    profile: tempfile::TempDir,
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
        let proxy = EgressProxy::start(network.proxy_policy())
            .await
            .map_err(|error| ScrapeError::Session(format!("cannot start the egress proxy: {error}")))?;
        let mut args = chromium_args(&profile.path().display().to_string(), proxy.port());
        // Extra flags cannot take the browser off its proxy.
        for arg in &settings.extra_args {
            if arg.starts_with("--proxy")
                || arg.starts_with("--no-proxy")
                || arg.starts_with("--host-resolver")
            {
                tracing::warn!(%arg, "ignoring an extra chromium flag that would bypass the egress proxy");
            } else {
                args.push(arg.clone());
            }
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert("pageLoadStrategy".to_owned(), json!("normal"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({"binary": settings.chromium, "args": args, "prefs": chromium_prefs()}),
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
            network,
            proxy,
            profile,
            pages: 0,
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This session's Chromium profile: every process of its browser names it on its command
    /// line, which is how tests find (and kill) exactly this browser.
    pub fn profile_dir(&self) -> &std::path::Path {
        self.profile.path()
    }

    pub fn network(&self) -> &NetworkPolicy {
        &self.network
    }

    /// What this session's proxy refused or could not reach during the current job.
    pub fn egress_log(&self) -> &EgressLog {
        self.proxy.log()
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

/// The fixed Chromium flags: headless, no sandbox (root in containers), nothing phoning home,
/// and every request through the session's egress proxy.
pub fn chromium_args(profile_dir: &str, proxy_port: u16) -> Vec<String> {
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
    args.push(format!("--proxy-server=http://127.0.0.1:{proxy_port}"));
    // `<-loopback>` removes Chromium's implicit loopback bypass, so loopback goes through the proxy too.
    args.push("--proxy-bypass-list=<-loopback>".to_owned());
    // WebRTC may otherwise send UDP (STUN) around the proxy, straight to any address.
    args.push("--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned());
    // chromedriver talks to the browser over a pipe instead of a debugging port: when
    // chromedriver dies (crash, OOM kill), the pipe closes and Chromium exits with it. With the
    // port, a killed chromedriver left its browsers running, orphaned, until the pod restarted.
    args.push("--remote-debugging-pipe".to_owned());
    args
}

/// The profile preferences: no downloads. A response Chromium cannot display (an
/// `application/octet-stream`, an attachment) is otherwise saved to `~/Downloads`, whatever its
/// size, past every page budget; blocked, it leaves the page where it was, which `scrape_page`
/// reports as not HTML.
pub fn chromium_prefs() -> serde_json::Value {
    // 3 = block all downloads (Chromium's DownloadRestrictions policy).
    json!({"download_restrictions": 3})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_session_routes_everything_through_its_proxy() {
        let args = chromium_args("/tmp/p", 41234);
        assert!(args.contains(&"--proxy-server=http://127.0.0.1:41234".to_owned()));
        assert!(args.contains(&"--proxy-bypass-list=<-loopback>".to_owned()));
        assert!(args.contains(&"--force-webrtc-ip-handling-policy=disable_non_proxied_udp".to_owned()));
        assert!(args.contains(&"--user-data-dir=/tmp/p".to_owned()));
        assert!(args.contains(&"--headless".to_owned()));
        // Chromium exits with its chromedriver instead of outliving it.
        assert!(args.contains(&"--remote-debugging-pipe".to_owned()));
        assert_eq!(chromium_prefs()["download_restrictions"], 3);
    }
}
