//! The scraper-worker's settings: the shared parts plus the browser and the page budgets.

use common::settings::{AmqpSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings};
use serde::{Deserialize, Serialize};

use crate::egress::IpRange;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub webdriver: WebDriverSettings,
    pub scrape: ScrapeSettings,
    pub egress: EgressSettings,
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
            egress: EgressSettings::default(),
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
    /// Consumer prefetch of synchronous extractions (`POST /v1/extract`), which share the sessions.
    pub extract_prefetch: u16,
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
            extract_prefetch: 2,
        }
    }
}

/// Where URL jobs may connect (the SSRF policy enforced by the egress proxy, see `egress`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EgressSettings {
    /// Ports a public destination may use: http, https and their two common alternates.
    pub allowed_ports: Vec<u16>,
    /// Destinations reachable although their addresses are refused (loopback, private, ...);
    /// each rule is a range plus the ports it opens (empty = every port).
    pub allow: Vec<AllowRule>,
    /// Host names (exact, case-insensitive) reachable whatever they resolve to, on `allowed_ports`.
    pub allow_hosts: Vec<String>,
    /// False: only `allow` and `allow_hosts` are reachable, and other names are refused without
    /// being resolved (an allow-list-only deployment; the tests, which must not query DNS).
    pub allow_public: bool,
}

impl Default for EgressSettings {
    fn default() -> Self {
        Self {
            allowed_ports: vec![80, 443, 8080, 8443],
            allow: Vec::new(),
            allow_hosts: Vec::new(),
            allow_public: true,
        }
    }
}

/// One allow-list entry: `{ cidr = "10.20.0.0/16", ports = [8080] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllowRule {
    /// The addresses opened (`10.20.0.0/16`, `127.0.0.1/32`, `fd12::/64`, or a bare address).
    pub cidr: IpRange,
    /// The ports opened on them; empty opens every port.
    #[serde(default)]
    pub ports: Vec<u16>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn egress_allow_rules_read_as_documented() {
        let egress: EgressSettings = serde_json::from_value(serde_json::json!({
            "allow_public": false,
            "allow": [{"cidr": "127.0.0.1/32", "ports": [8080]}, {"cidr": "10.20.0.0/16"}],
        }))
        .unwrap();
        assert_eq!(egress.allow[0].ports, vec![8080]);
        assert!(egress.allow[1].ports.is_empty());
        assert_eq!(egress.allowed_ports, vec![80, 443, 8080, 8443]);
        assert!(
            serde_json::from_value::<EgressSettings>(serde_json::json!({"allow": [{"cidr": "nope"}]}))
                .is_err()
        );
        let round_trip = serde_json::to_value(&egress).unwrap();
        assert_eq!(round_trip["allow"][1]["cidr"], "10.20.0.0/16");
    }
}
