//! The scraper-worker's settings: the shared parts plus the browser and the page budgets.

use common::settings::{AmqpSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub webdriver: WebDriverSettings,
    pub scrape: ScrapeSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8082),
            amqp: AmqpSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
            webdriver: WebDriverSettings::default(),
            scrape: ScrapeSettings::default(),
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, common::settings::SettingsError> {
        common::settings::load(&Sources::from_env("scraper-worker"))
    }
}

/// How pages are opened: which WebDriver, which browser, how many sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WebDriverSettings {
    /// An already running WebDriver server (`http://127.0.0.1:9515`); empty = spawn chromedriver.
    pub url: String,
    /// The chromedriver executable spawned when `url` is empty.
    pub chromedriver: String,
    /// The Chromium binary chromedriver drives.
    pub chromium: String,
    /// Browser sessions kept open and reused across jobs (one job per session at a time).
    pub pool_size: usize,
    /// A session is closed and replaced after this many pages, so leaks cannot build up.
    pub pages_per_session: u32,
    /// Extra Chromium flags appended to the fixed headless set.
    pub extra_args: Vec<String>,
}

impl Default for WebDriverSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            chromedriver: "chromedriver".to_owned(),
            chromium: "/usr/bin/chromium".to_owned(),
            // Two cores: two pages in flight keep them busy without thrashing.
            pool_size: 2,
            pages_per_session: 50,
            extra_args: Vec::new(),
        }
    }
}

/// Budgets for one page; each breach is a `ScrapeError` with its reason.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ScrapeSettings {
    /// Navigation must finish (load event) within this.
    pub page_load_timeout_ms: u64,
    /// After load, wait until the DOM has been quiet this long...
    pub settle_quiet_ms: u64,
    /// ...but never longer than this after load (ticking timers never go quiet).
    pub settle_deadline_ms: u64,
    /// Pages with more elements than this are refused (the walk is linear, the stem search is not).
    pub max_dom_nodes: u64,
    /// Pages with more text than this are refused.
    pub max_text_chars: u64,
    /// Consumer prefetch: scrape jobs taken at once (sessions bound the real concurrency).
    pub prefetch: u16,
}

impl Default for ScrapeSettings {
    fn default() -> Self {
        Self {
            page_load_timeout_ms: 20_000,
            // Scripts that render after a short timeout (300 ms is common) land inside this window.
            settle_quiet_ms: 700,
            settle_deadline_ms: 5_000,
            max_dom_nodes: 50_000,
            max_text_chars: 2_000_000,
            prefetch: 4,
        }
    }
}
