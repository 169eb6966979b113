//! The analyzer service: consumes analysis requests, answers each question through
//! an OpenAI-compatible LLM (cached in Redis), records results and publishes events.

pub mod analysis;
pub mod cache;
pub mod dead_letters;
pub mod dedup;
pub mod llm;
pub mod metrics;
pub mod recording;
pub mod settings;
pub mod single_flight;
pub mod sweeper;

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

pub use settings::Settings;

use analysis::Analyzer;
use cache::AnswerCache;
use llm::LlmClient;

/// How long in-flight analyses may take to finish after a shutdown signal.
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

pub struct Application {
    settings: Settings,
    address: SocketAddr,
    server: actix_web::dev::Server,
    analyzer: Arc<Analyzer>,
    sweeper: sweeper::Sweeper,
    bus: Bus,
}

impl Application {
    /// Binds the HTTP listener and wires the parts; nothing runs until [`Self::run_until_stopped`].
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = common::redis::pool(&settings.redis)?;
        let bus = Bus::new(&settings.amqp, "analyzer");
        let keys = Keys::new(settings.redis.key_prefix.clone());
        let analyzer = Arc::new(Analyzer {
            store: QuizStore::new(pool.clone(), keys.clone(), settings.redis.quiz_ttl_secs),
            cache: AnswerCache::new(pool.clone(), settings.cache.ttl_secs),
            llm: LlmClient::new(&settings.llm),
            bus: bus.clone(),
            flight: single_flight::SingleFlight::new(
                pool.clone(),
                keys.clone(),
                Duration::from_millis(settings.cache.lock_ttl_ms),
                Duration::from_millis(settings.cache.lock_poll_ms),
                settings.cache.failure_ttl_secs,
            ),
            per_quiz_concurrency: settings.llm.max_concurrency,
            batch_size: settings.llm.batch_size,
            dispute_confidence: settings.audit.dispute_confidence,
            claims: dedup::MessageClaims::new(
                pool.clone(),
                keys.clone(),
                Duration::from_millis(settings.reliability.message_lease_ms),
                settings.reliability.message_dedup_ttl_secs,
            ),
        });
        let sweeper = sweeper::Sweeper::new(analyzer.store.clone(), bus.clone(), &settings.reliability);
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
            settings,
            address,
            server,
            analyzer,
            sweeper,
            bus,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Runs until `shutdown`, then stops taking messages, finishes in-flight ones and exits.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bus_shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(self.bus.clone().run_supervisor(bus_shutdown.clone()));
        let analyzer = Arc::clone(&self.analyzer);
        let consuming = tokio::spawn(consumer::run(
            self.bus.clone(),
            QueueSource::Shared(self.bus.topology().analyze_queue()),
            self.settings.amqp.prefetch,
            move |delivered| Arc::clone(&analyzer).handle(delivered),
            shutdown.clone(),
        ));
        let watcher = Arc::clone(&self.analyzer);
        let watching = tokio::spawn(consumer::run(
            self.bus.clone(),
            QueueSource::Shared(self.bus.topology().dead_letter_watch_queue()),
            8,
            move |delivered| dead_letters::handle(Arc::clone(&watcher), delivered),
            shutdown.clone(),
        ));
        let sweeping = tokio::spawn(self.sweeper.run(shutdown.clone()));
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        let _ = watching.await;
        let _ = sweeping.await;
        if tokio::time::timeout(DRAIN_DEADLINE, consuming).await.is_err() {
            tracing::warn!("in-flight analyses did not finish in time; the broker will redeliver them");
        }
        bus_shutdown.cancel();
        let _ = supervisor.await;
        server_handle.stop(true).await;
        let _ = server.await;
        Ok(())
    }
}
