//! The broadcaster's settings.

use common::auth::AuthSettings;
use common::settings::{
    AmqpSettings, AuditSettings, HttpSettings, RedisSettings, Sources, TelemetrySettings,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub redis: RedisSettings,
    pub telemetry: TelemetrySettings,
    pub ws: WsSettings,
    pub audit: AuditSettings,
    /// The gateway's API keys: watching a quiz needs the same key as reading it.
    pub auth: AuthSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8083),
            amqp: AmqpSettings::default(),
            redis: RedisSettings::default(),
            telemetry: TelemetrySettings::default(),
            ws: WsSettings::default(),
            audit: AuditSettings::default(),
            auth: AuthSettings::default(),
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, common::settings::SettingsError> {
        common::settings::load(&Sources::from_env("stats-broadcaster"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct WsSettings {
    /// Events buffered per quiz for live subscribers; a client that falls further
    /// behind is disconnected (it resumes from its last sequence number).
    pub buffer: usize,
    /// Seconds between server pings.
    pub heartbeat_secs: u64,
    /// Seconds without any client frame (pongs included) before the server closes.
    pub idle_timeout_secs: u64,
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            buffer: 256,
            heartbeat_secs: 15,
            idle_timeout_secs: 45,
        }
    }
}
