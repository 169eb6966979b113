//! The scraper-worker: will turn URL and HTML sources into questions for the analyzer.
//!
//! So far it holds its place in the cluster (health, readiness, metrics, and the
//! broker connection whose topology declares the scrape queue). Extraction
//! through Chromium is the "Scraper-worker" issue; until it lands the gateway
//! refuses URL and HTML sources with a 422, so no scrape job is ever queued.

use std::net::{SocketAddr, TcpListener};

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::bus::Bus;
use common::http::Readiness;
use common::settings::{AmqpSettings, HttpSettings, Sources, TelemetrySettings};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub amqp: AmqpSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings::on_port(8082),
            amqp: AmqpSettings::default(),
            telemetry: TelemetrySettings::default(),
        }
    }
}

impl Settings {
    pub fn load() -> Result<Self, common::settings::SettingsError> {
        common::settings::load(&Sources::from_env("scraper-worker"))
    }
}

pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    bus: Bus,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let bus = Bus::new(&settings.amqp, "scraper-worker");
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .with_context(|| format!("cannot bind {}:{}", settings.http.host, settings.http.port))?;
        let address = listener.local_addr()?;
        let readiness = web::Data::new(Readiness {
            bus: Some(bus.clone()),
            redis: None,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(common::http::trace_requests))
                .wrap(common::http::problem_fallback())
                .app_data(readiness.clone())
                .configure(common::http::configure_ops)
        })
        .disable_signals()
        // Small frames (events, JSON answers) must not wait for Nagle.
        .tcp_nodelay(true)
        .listen(listener)?;
        if settings.http.workers > 0 {
            server = server.workers(settings.http.workers);
        }
        Ok(Self {
            address,
            server: server.run(),
            bus,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bus_shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(self.bus.clone().run_supervisor(bus_shutdown.clone()));
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        server_handle.stop(true).await;
        let _ = server.await;
        bus_shutdown.cancel();
        let _ = supervisor.await;
        Ok(())
    }
}
