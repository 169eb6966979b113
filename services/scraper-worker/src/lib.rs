//! The scraper-worker: turns quiz pages into questions for the analyzer, through headless Chromium.
//!
//! `extract` (the in-page engine and its post-processing), `browser` (chromedriver,
//! sessions, settle wait, pool), `egress` (the SSRF policy and each session's proxy),
//! `scrape` (one page to one quiz), `worker` (scrape jobs), `extraction` (synchronous extract
//! requests, answered to the requester's reply queue), `cli` (the `extract` subcommand); the
//! service itself serves health, readiness and metrics.

pub mod browser;
pub mod cli;
pub mod egress;
pub mod error;
pub mod extract;
pub mod extraction;
pub mod metrics;
pub mod scrape;
pub mod settings;
pub mod spec_store;
pub mod worker;

pub use error::ScrapeError;
pub use settings::Settings;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use anyhow::Context;
use common::bus::Bus;
use common::bus::consumer::{self, QueueSource};
use common::http::Readiness;
use common::keys::Keys;
use common::store::QuizStore;
use tokio_util::sync::CancellationToken;

use browser::{BrowserPool, NetworkPolicy};
use egress::EgressPolicy;
use worker::ScrapeWorker;

/// How long in-flight scrapes may take to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    bus: Bus,
    worker: Arc<ScrapeWorker>,
    prefetch: u16,
    extract_prefetch: u16,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let bus = Bus::new(&settings.amqp, "scraper-worker");
        let pool = common::redis::pool(&settings.redis)?;
        let page_load = Duration::from_millis(settings.scrape.page_load_timeout_ms);
        let worker = Arc::new(ScrapeWorker {
            store: QuizStore::new(
                pool.clone(),
                Keys::new(settings.redis.key_prefix.clone()),
                settings.redis.quiz_ttl_secs,
            ),
            bus: bus.clone(),
            url_pool: BrowserPool::new(
                settings.webdriver.clone(),
                NetworkPolicy::Egress(Arc::new(EgressPolicy::new(&settings.egress))),
                page_load,
            ),
            html_pool: BrowserPool::new(
                browser::pool::single(settings.webdriver.clone()),
                NetworkPolicy::Offline,
                page_load,
            ),
            budgets: settings.scrape.clone(),
        });
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .with_context(|| format!("cannot bind {}:{}", settings.http.host, settings.http.port))?;
        let address = listener.local_addr()?;
        let readiness = web::Data::new(Readiness {
            bus: Some(bus.clone()),
            redis: Some(pool),
        });
        let server = common::http::serve(listener, settings.http.workers, move |config| {
            config.app_data(readiness.clone());
        })?;
        Ok(Self {
            address,
            server,
            bus,
            worker,
            prefetch: settings.scrape.prefetch,
            extract_prefetch: settings.scrape.extract_prefetch,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bus_shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(self.bus.clone().run_supervisor(bus_shutdown.clone()));
        let worker = Arc::clone(&self.worker);
        let consuming = tokio::spawn(consumer::run(
            self.bus.clone(),
            QueueSource::Shared(self.bus.topology().scrape_queue()),
            self.prefetch,
            move |delivered| {
                let worker = Arc::clone(&worker);
                async move { worker.handle(delivered).await }
            },
            shutdown.clone(),
        ));
        let worker = Arc::clone(&self.worker);
        let extracting = tokio::spawn(consumer::run(
            self.bus.clone(),
            QueueSource::Shared(self.bus.topology().extract_queue()),
            self.extract_prefetch,
            move |delivered| {
                let worker = Arc::clone(&worker);
                async move { worker.handle_extract(delivered).await }
            },
            shutdown.clone(),
        ));
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        let draining = async {
            let _ = consuming.await;
            let _ = extracting.await;
        };
        if tokio::time::timeout(DRAIN_DEADLINE, draining).await.is_err() {
            tracing::warn!("in-flight scrapes did not finish in time; the broker will redeliver them");
        }
        self.worker.url_pool.shutdown().await;
        self.worker.html_pool.shutdown().await;
        server_handle.stop(true).await;
        let _ = server.await;
        bus_shutdown.cancel();
        let _ = supervisor.await;
        Ok(())
    }
}
