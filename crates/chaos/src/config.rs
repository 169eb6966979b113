//! The configuration every service of a run reads: one `base.toml` in a folder of the run's
//! own (`QUIZSTATS_CONFIG_DIR`), plus an API key file for the gateway and the broadcaster.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Where the services find their brokers, the LLM and the pages.
pub struct Endpoints {
    pub amqp_url: String,
    pub redis_url: String,
    pub llm_base_url: String,
    /// The loopback page server's port: the one destination the scraper's egress policy allows.
    pub pages_port: u16,
}

/// Knobs the chaos run turns down so faults resolve within the run.
pub struct Tuning {
    /// The analyzer's per-call LLM timeout; the scripted LLM's "timeout" faults hang longer.
    pub llm_timeout_ms: u64,
    /// The sweeper's silence limit: a quiz with no progress this long is failed.
    pub quiz_deadline_secs: u64,
    pub sweep_interval_ms: u64,
    /// A killed analyzer's claim on a job lapses after this; the default 30 s would make
    /// every analyzer kill stall its jobs for 30 s.
    pub message_lease_ms: u64,
}

pub struct RunConfig {
    /// `QUIZSTATS_CONFIG_DIR` for the services.
    pub config_dir: PathBuf,
    /// The admin key the driver submits and watches with.
    pub api_key: String,
    /// AMQP name prefix and (with a colon) Redis key prefix of this run.
    pub prefix: String,
}

impl RunConfig {
    pub fn redis_key_prefix(&self) -> String {
        format!("{}:", self.prefix)
    }
}

pub fn write(run_dir: &Path, endpoints: &Endpoints, tuning: &Tuning) -> Result<RunConfig> {
    let config_dir = run_dir.join("config");
    std::fs::create_dir_all(&config_dir).with_context(|| format!("creating {}", config_dir.display()))?;
    let prefix = format!("chaos-{}", uuid::Uuid::new_v4().simple());
    let api_key = uuid::Uuid::new_v4().simple().to_string();
    let keys_file = config_dir.join("api-keys.json");
    let entry = serde_json::json!([{
        "id": "chaos",
        "sha256": hex::encode(Sha256::digest(api_key.as_bytes())),
        "scopes": ["admin"],
    }]);
    std::fs::write(&keys_file, format!("{entry}\n"))
        .with_context(|| format!("writing {}", keys_file.display()))?;
    let base = base_toml(endpoints, tuning, &prefix, &keys_file);
    let base_path = config_dir.join("base.toml");
    std::fs::write(&base_path, base).with_context(|| format!("writing {}", base_path.display()))?;
    Ok(RunConfig {
        config_dir,
        api_key,
        prefix,
    })
}

fn base_toml(endpoints: &Endpoints, tuning: &Tuning, prefix: &str, keys_file: &Path) -> String {
    let Endpoints {
        amqp_url,
        redis_url,
        llm_base_url,
        pages_port,
    } = endpoints;
    let Tuning {
        llm_timeout_ms,
        quiz_deadline_secs,
        sweep_interval_ms,
        message_lease_ms,
    } = tuning;
    let keys_file = keys_file.display();
    format!(
        r#"# Written by the chaos driver for one run; the services read it through QUIZSTATS_CONFIG_DIR.
[amqp]
url = "{amqp_url}"
prefix = "{prefix}"
# Shorter than the default 3 s, so a dead broker is noticed quickly.
connect_timeout_ms = 2000

[redis]
url = "{redis_url}"
key_prefix = "{prefix}:"

[telemetry]
log_filter = "info"

[llm]
base_url = "{llm_base_url}"
model = "scripted"
timeout_ms = {llm_timeout_ms}

[reliability]
quiz_deadline_secs = {quiz_deadline_secs}
sweep_interval_ms = {sweep_interval_ms}
message_lease_ms = {message_lease_ms}

[auth]
mode = "api_keys"
keys_file = "{keys_file}"

# One client submits everything: the per-key budgets would only measure the limiter.
[rate_limit]
requests_per_second = 100000
burst = 100000
submissions_per_minute = 100000
submission_burst = 100000

# The scraper may reach the loopback page server and nothing else.
[egress]
allow_public = false
allow = [{{ cidr = "127.0.0.1/32", ports = [{pages_port}] }}]
"#
    )
}
