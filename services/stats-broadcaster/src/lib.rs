//! The stats-broadcaster: every replica binds its own queue to the events
//! exchange, streams each quiz's events (and, on request, its running stats) to
//! its WebSocket clients, keeps a board of recent quizzes and serves the dashboard.

pub mod access;
pub mod aggregate;
pub mod allocator;
pub mod board;
pub mod dashboard;
pub mod events;
pub mod hub;
pub mod settings;
pub mod ws;

use std::net::{SocketAddr, TcpListener};

use actix_web::web;
use anyhow::Context;
use common::bus::consumer::{self, QueueSource};
use common::bus::{Bus, routing};
use common::http::Readiness;
use common::keys::Keys;
use common::store::QuizStore;
use tokio_util::sync::CancellationToken;

pub use allocator::Allocator;
pub use settings::Settings;

use board::Board;
use hub::Hub;
use ws::WsState;

pub struct Application {
    address: SocketAddr,
    server: actix_web::dev::Server,
    bus: Bus,
    hub: Hub,
    board: Board,
    store: QuizStore,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let pool = common::redis::pool(&settings.redis)?;
        let bus = Bus::new(&settings.amqp, "stats-broadcaster");
        let access = access::Access::from_settings(&settings.auth).context("auth settings")?;
        let hub = Hub::new(settings.ws.buffer);
        let board = Board::default();
        let listener = TcpListener::bind((settings.http.host.as_str(), settings.http.port))
            .with_context(|| format!("cannot bind {}:{}", settings.http.host, settings.http.port))?;
        let address = listener.local_addr()?;
        let store = QuizStore::new(
            pool.clone(),
            Keys::new(settings.redis.key_prefix.clone()),
            settings.redis.quiz_ttl_secs,
        );
        let state = web::Data::new(WsState {
            hub: hub.clone(),
            board: board.clone(),
            store: store.clone(),
            settings: settings.ws.clone(),
            dispute_confidence: settings.audit.dispute_confidence,
            access,
        });
        let readiness = web::Data::new(Readiness {
            bus: Some(bus.clone()),
            redis: Some(pool),
        });
        let server = common::http::serve(listener, settings.http.workers, move |config| {
            config
                .app_data(state.clone())
                .app_data(readiness.clone())
                .route("/v1/ws", web::get().to(ws::connect))
                .configure(dashboard::configure);
        })?;
        Ok(Self {
            address,
            server,
            bus,
            hub,
            board,
            store,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bus_shutdown = CancellationToken::new();
        let supervisor = tokio::spawn(self.bus.clone().run_supervisor(bus_shutdown.clone()));
        let (hub, board, store) = (self.hub.clone(), self.board.clone(), self.store.clone());
        // Each time the event queue is consumed again, streams catch up from the log (Hub::resync).
        let (consuming_now, mut consuming_changes) = tokio::sync::watch::channel(false);
        // The board catches up too: its open quizzes' missed events are read from the log.
        let (resync_hub, resync_board, resync_store) =
            (self.hub.clone(), self.board.clone(), self.store.clone());
        let resyncing = tokio::spawn(async move {
            while consuming_changes.changed().await.is_ok() {
                if *consuming_changes.borrow_and_update() {
                    resync_hub.resync();
                    events::catch_up_board(&resync_board, &resync_store).await;
                }
            }
        });
        let consuming = tokio::spawn(consumer::run_reporting(
            self.bus.clone(),
            QueueSource::Replica {
                name: self.bus.topology().replica_queue("broadcaster"),
                exchange: self.bus.topology().events_exchange(),
                bindings: vec![
                    routing::QUIZ_SUBMITTED,
                    routing::QUESTION_ANSWERED,
                    routing::QUIZ_COMPLETED,
                    routing::QUIZ_FAILED,
                ],
            },
            256,
            move |delivered| events::handle(hub.clone(), board.clone(), store.clone(), delivered),
            shutdown.clone(),
            consuming_now,
        ));
        let server_handle = self.server.handle();
        let server = tokio::spawn(self.server);
        shutdown.cancelled().await;
        let _ = consuming.await;
        resyncing.abort();
        server_handle.stop(true).await;
        let _ = server.await;
        bus_shutdown.cancel();
        let _ = supervisor.await;
        Ok(())
    }
}
