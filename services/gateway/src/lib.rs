//! The gateway: validates quizzes, records them in Redis, publishes them for analysis,
//! and serves their results; also keeps the original system's `/api/analyze` working.

pub mod auth;
pub mod completion;
pub mod cors;
pub mod deletion;
pub mod error;
pub mod extraction;
pub mod finished;
pub mod idempotency;
pub mod input;
pub mod listing;
pub mod openapi;
pub mod owners;
pub mod rate_limit;
pub mod routes;
pub mod settings;
pub mod state;
pub mod submit;

use std::net::{SocketAddr, TcpListener};

use actix_web::{App, HttpServer, web};
use anyhow::Context;
use common::bus::consumer::{self, QueueSource};
use common::bus::{Bus, routing};
use common::http::Readiness;
use common::keys::Keys;
use common::store::QuizStore;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

use completion::Completions;
use extraction::Extractions;
use state::AppState;

pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    bus: Bus,
    completions: Completions,
    extractions: Extractions,
    /// Tells the extractions whether the reply queue is consumed; handed to its consumer.
    reply_queue_consuming: tokio::sync::watch::Sender<bool>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = common::redis::pool(&settings.redis)?;
        let bus = Bus::new(&settings.amqp, "gateway");
        let completions = Completions::default();
        let (extractions, reply_queue_consuming) = Extractions::new(bus.topology().reply_queue("gateway"));
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .with_context(|| format!("cannot bind {}:{}", settings.http.host, settings.http.port))?;
        let address = listener.local_addr()?;
        let workers = settings.http.workers;
        let json_limit = settings.limits.max_json_bytes;
        let html_limit = settings.limits.max_html_bytes;
        let key_ring = auth::KeyRing::from_settings(&settings.auth)?;
        match key_ring.mode() {
            auth::AuthMode::Disabled => tracing::warn!(
                "AUTHENTICATION IS DISABLED (auth.mode = \"disabled\"): anyone who can reach the gateway \
                 may submit quizzes (paid LLM calls) and read every quiz"
            ),
            auth::AuthMode::ApiKeys => tracing::info!(n_keys = key_ring.len(), "api keys loaded"),
        }
        let rate_limits = rate_limit::RateLimits::new(&settings.rate_limit)?;
        let cors = cors::CorsPolicy::new(&settings.cors)?;
        if cors.allows_any_origin() {
            tracing::warn!(
                "cors.allow_any_origin is set: pages from any origin may call the api (development only)"
            );
        }
        let security_headers = settings.security_headers.clone();
        let keys = Keys::new(settings.redis.key_prefix.clone());
        let state = web::Data::new(AppState {
            store: QuizStore::new(pool.clone(), keys.clone(), settings.redis.quiz_ttl_secs),
            owners: owners::QuizOwners::new(pool.clone(), keys.clone(), settings.redis.quiz_ttl_secs),
            idempotency: idempotency::Idempotency::new(pool.clone(), keys, settings.idempotency.clone()),
            finished: finished::FinishedQuizzes::new(&settings.read_cache),
            key_ring,
            rate_limits,
            bus: bus.clone(),
            completions: completions.clone(),
            extractions: extractions.clone(),
            settings,
        });
        let readiness = web::Data::new(Readiness {
            bus: Some(bus.clone()),
            redis: Some(pool),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(rate_limit::add_headers))
                .wrap(cors.middleware())
                .wrap(actix_web::middleware::from_fn(common::http::trace_requests))
                .wrap(common::http::problem_fallback())
                // Outermost, so every answer carries them, CORS refusals and problem documents too.
                .wrap(actix_web::middleware::from_fn(common::http::security_headers))
                .app_data(security_headers.clone())
                .app_data(state.clone())
                .app_data(readiness.clone())
                .app_data(routes::json_config(json_limit))
                .app_data(routes::payload_config(html_limit, json_limit))
                .configure(common::http::configure_ops)
                .configure(routes::configure)
        })
        .disable_signals()
        // Small frames (events, JSON answers) must not wait for Nagle.
        .tcp_nodelay(true)
        .listen(listener)?;
        if workers > 0 {
            server = server.workers(workers);
        }
        Ok(Self {
            address,
            server: server.run(),
            bus,
            completions,
            extractions,
            reply_queue_consuming,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown`; in-flight requests get the actix grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bus_shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(self.bus.clone().run_supervisor(bus_shutdown.clone()));
        let completions = self.completions.clone();
        let waiting = tokio::spawn(consumer::run(
            self.bus.clone(),
            QueueSource::Replica {
                name: self.bus.topology().replica_queue("gateway"),
                exchange: self.bus.topology().events_exchange(),
                bindings: vec![routing::QUIZ_COMPLETED, routing::QUIZ_FAILED],
            },
            64,
            move |delivered| completions.clone().handle(delivered),
            shutdown.clone(),
        ));
        let extractions = self.extractions.clone();
        let replies = tokio::spawn(consumer::run_reporting(
            self.bus.clone(),
            QueueSource::Replica {
                name: extractions.reply_queue().to_owned(),
                // Replies come through the default exchange, which routes by queue name: no binding.
                exchange: String::new(),
                bindings: Vec::new(),
            },
            64,
            move |delivered| extractions.clone().handle(delivered),
            shutdown.clone(),
            self.reply_queue_consuming,
        ));
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        server_handle.stop(true).await;
        let _ = server.await;
        let _ = waiting.await;
        let _ = replies.await;
        bus_shutdown.cancel();
        let _ = supervisor.await;
        Ok(())
    }
}
