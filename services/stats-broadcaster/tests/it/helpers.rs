//! The harness: broadcaster replicas started in-process on port 0, plus a publisher
//! that writes quizzes and events exactly as the gateway and the analyzer do
//! (Redis first, then the events exchange).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use common::bus::{Bus, Outgoing, routing};
use common::keys::Keys;
use common::store::QuizStore;
use common::views::{self, AnswerView, EventView, QuestionOutcome, QuizSpec, QuizStatus, StatsView};
use futures::{SinkExt, StreamExt};
use proto::v1;
use serde_json::Value;
use stats_broadcaster::{Application, Settings};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The key id that owns every quiz `create_quiz` makes, and its key (read scope).
pub const OWNER: &str = "alice";
pub const OWNER_KEY: &str = "alice-test-key";
/// Another reader, who must not see alice's quizzes.
pub const OTHER_KEY: &str = "bob-test-key";
/// An admin, who sees every quiz.
pub const ADMIN_KEY: &str = "admin-test-key";
/// A key that may submit but not read.
pub const SUBMIT_ONLY_KEY: &str = "submitter-test-key";

/// The `[auth]` the replicas run with: the four keys above, by hash.
pub fn test_auth() -> common::auth::AuthSettings {
    use common::auth::key_ring::sha256_hex;
    use common::auth::{ApiKeyEntry, Scope};
    let entry = |id: &str, key: &str, scopes: Vec<Scope>| ApiKeyEntry {
        id: id.into(),
        sha256: sha256_hex(key).into(),
        scopes,
    };
    common::auth::AuthSettings {
        keys: vec![
            entry(OWNER, OWNER_KEY, vec![Scope::Submit, Scope::Read]),
            entry("bob", OTHER_KEY, vec![Scope::Read]),
            entry("admin", ADMIN_KEY, vec![Scope::Admin]),
            entry("submitter", SUBMIT_ONLY_KEY, vec![Scope::Submit]),
        ],
        ..Default::default()
    }
}

pub fn amqp_url() -> String {
    std::env::var("QUIZSTATS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("QUIZSTATS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

pub struct TestApp {
    /// One address per broadcaster replica.
    pub replicas: Vec<SocketAddr>,
    pub store: QuizStore,
    pub bus: Bus,
    prefix: String,
    shutdown: CancellationToken,
    bus_shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    publisher: tokio::task::JoinHandle<()>,
}

/// Starts `replicas` broadcasters on one fresh prefix, `tune` changing their settings.
pub async fn spawn_app(replicas: usize, tune: fn(&mut Settings)) -> anyhow::Result<TestApp> {
    testkit::init_telemetry();
    let prefix = testkit::unique_prefix("broadcaster");
    let amqp = common::settings::AmqpSettings {
        url: amqp_url(),
        prefix: prefix.clone(),
        ..Default::default()
    };
    let redis = common::settings::RedisSettings {
        url: redis_url(),
        key_prefix: format!("{prefix}:"),
        pool_size: 8,
        ..Default::default()
    };
    let shutdown = CancellationToken::new();
    let mut addresses = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..replicas {
        let mut settings = Settings {
            http: common::settings::HttpSettings {
                host: "127.0.0.1".into(),
                port: 0,
                workers: 2,
            },
            amqp: amqp.clone(),
            redis: redis.clone(),
            auth: test_auth(),
            ..Default::default()
        };
        tune(&mut settings);
        let app = Application::build(settings).await?;
        addresses.push(app.local_addr());
        tasks.push(tokio::spawn(app.run_until_stopped(shutdown.clone())));
    }
    let bus = Bus::new(&amqp, "test-publisher");
    let bus_shutdown = CancellationToken::new();
    let publisher = tokio::spawn(bus.clone().run_supervisor(bus_shutdown.clone()));
    testkit::eventually(Duration::from_secs(20), || async {
        bus.is_connected().then_some(())
    })
    .await?;
    let store = QuizStore::new(
        common::redis::pool(&redis)?,
        Keys::new(format!("{prefix}:")),
        3600,
    );
    let app = TestApp {
        replicas: addresses,
        store,
        bus,
        prefix,
        shutdown,
        bus_shutdown,
        tasks,
        publisher,
    };
    app.wait_consuming().await?;
    Ok(app)
}

/// A quiz of `n` single-choice questions with four options, keyed to option 1.
pub fn quiz_spec(n: usize) -> QuizSpec {
    QuizSpec {
        questions: (0..n)
            .map(|index| views::QuestionSpec {
                text: format!("Question number {} of the test quiz?", index + 1),
                options: vec!["Berlin".into(), "Paris".into(), "Rome".into(), "Madrid".into()],
                kind: views::QuestionKind::Single,
            })
            .collect(),
        answer_key: Some(vec![vec![1]; n]),
        votes: 1,
    }
}

/// An answer choosing `selected` with `confidence`, fresh (not cached) unless said.
pub fn answer(index: u32, selected: u32, confidence: f64, cached: bool) -> QuestionOutcome {
    QuestionOutcome {
        index,
        answer: Some(AnswerView {
            selected: vec![selected],
            confidence: Some(confidence),
            confidence_source: Some("logprobs".into()),
            rationale: "because".into(),
            model: "scripted-model".into(),
            cached,
            prompt_tokens: if cached { 0 } else { 120 },
            completion_tokens: if cached { 0 } else { 20 },
            latency_ms: if cached { 0 } else { 100 * (index + 1) },
            cost_usd: if cached { 0.0 } else { 0.001 },
        }),
        error: None,
        agrees_with_key: Some(selected == 1),
    }
}

impl TestApp {
    /// The WebSocket URL with `query` (`""` or `?…`), authenticated as the owner of the
    /// test quizzes through the query string (other ways are tested in `access.rs`).
    pub fn ws_url(&self, replica: usize, query: &str) -> String {
        let separator = if query.is_empty() { '?' } else { '&' };
        format!(
            "ws://{}/v1/ws{query}{separator}token={OWNER_KEY}",
            self.replicas[replica]
        )
    }

    /// The WebSocket URL with `query` and no key at all.
    pub fn anonymous_ws_url(&self, replica: usize, query: &str) -> String {
        format!("ws://{}/v1/ws{query}", self.replicas[replica])
    }

    pub async fn connect(&self, replica: usize, query: &str) -> anyhow::Result<Socket> {
        let (socket, _) = tokio_tungstenite::connect_async(self.ws_url(replica, query)).await?;
        Ok(socket)
    }

    /// Records a quiz as the gateway does (owned by [`OWNER`]) and announces it on the
    /// events exchange.
    pub async fn create_quiz(&self, spec: &QuizSpec) -> anyhow::Result<String> {
        self.create_quiz_for(spec, OWNER).await
    }

    /// [`Self::create_quiz`] for the key id `owner`.
    pub async fn create_quiz_for(&self, spec: &QuizSpec, owner: &str) -> anyhow::Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        self.store.create(&id, spec).await?;
        let mut connection = self.store.pool().get().await?;
        redis::AsyncCommands::set_ex::<_, _, ()>(
            &mut connection,
            self.store.keys().quiz_owner(&id),
            owner,
            3600,
        )
        .await?;
        self.announce_for(&id, u32::try_from(spec.questions.len())?, owner)
            .await?;
        Ok(id)
    }

    async fn announce(&self, id: &str, n_questions: u32) -> anyhow::Result<()> {
        self.announce_for(id, n_questions, OWNER).await
    }

    async fn announce_for(&self, id: &str, n_questions: u32, owner: &str) -> anyhow::Result<()> {
        let meta = views::new_meta(id);
        let message = v1::QuizSubmitted {
            meta: Some(meta.clone()),
            n_questions,
            source: "json".into(),
            has_answer_key: true,
            owner: owner.into(),
        };
        self.bus
            .publish(Outgoing::new(
                self.bus.topology().events_exchange(),
                routing::QUIZ_SUBMITTED,
                &meta.message_id,
                &message,
            ))
            .await?;
        Ok(())
    }

    /// Records outcomes with fresh sequence numbers, then publishes them (the analyzer's `emit`).
    pub async fn emit(&self, quiz_id: &str, outcomes: Vec<QuestionOutcome>) -> anyhow::Result<()> {
        self.store
            .set_status(quiz_id, QuizStatus::Analyzing, None)
            .await?;
        let events = self
            .store
            .record(quiz_id, &outcomes)
            .await?
            .context("quiz ended before its answers were recorded")?;
        common::relay::publish_logged(&self.store, &self.bus, quiz_id, &events).await?;
        Ok(())
    }

    /// Computes the final stats, records and publishes `quiz_completed` (the analyzer's `finish`).
    pub async fn finish(&self, quiz_id: &str, total: u32) -> anyhow::Result<StatsView> {
        let outcomes = self.store.outcomes(quiz_id).await?;
        let stats = StatsView::compute(total, &outcomes, 0.8);
        let event = EventView::QuizCompleted {
            quiz_id: quiz_id.to_owned(),
            seq: 0,
            stats: stats.clone(),
        };
        let event = self
            .store
            .end(quiz_id, QuizStatus::Completed, None, event)
            .await?
            .context("quiz already ended")?;
        common::relay::publish_logged(&self.store, &self.bus, quiz_id, std::slice::from_ref(&event)).await?;
        Ok(stats)
    }

    /// Events are not mandatory, so publishing before a replica has bound its queue
    /// loses them: announce probe quizzes until every replica's board has seen one.
    async fn wait_consuming(&self) -> anyhow::Result<()> {
        for replica in 0..self.replicas.len() {
            let mut board = self.connect(replica, "").await?;
            board.send(Message::text(r#"{"type":"subscribe_all"}"#)).await?;
            // Subscribed once the snapshot is here; changes after it are ours to see.
            while next_json(&mut board).await?["type"] != "quizzes" {}
            let probe = format!("probe-{}", uuid::Uuid::new_v4().simple());
            let seen = async {
                loop {
                    self.announce(&probe, 0).await?;
                    let deadline = tokio::time::sleep(Duration::from_millis(200));
                    tokio::pin!(deadline);
                    loop {
                        tokio::select! {
                            () = &mut deadline => break,
                            message = next_json(&mut board) => {
                                let message = message?;
                                if message["quiz"]["id"] == probe.as_str() {
                                    return anyhow::Ok(());
                                }
                            }
                        }
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(60), seen)
                .await
                .context("replica never consumed the events exchange")??;
            let _ = board.close(None).await;
        }
        Ok(())
    }

    /// Stops the replicas and removes this test's queues, exchanges and keys.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await??;
        }
        self.bus_shutdown.cancel();
        let _ = self.publisher.await;
        let connection =
            lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let settings = common::settings::AmqpSettings {
            prefix: self.prefix.clone(),
            ..Default::default()
        };
        common::bus::Topology::new(&settings).delete_all(&channel).await?;
        let _ = connection.close(200, "done".into()).await;
        testkit::cleanup_redis(&redis_url(), &format!("{}:", self.prefix)).await?;
        Ok(())
    }
}

/// The next text message as JSON; an error on close or end of stream.
pub async fn next_json(socket: &mut Socket) -> anyhow::Result<Value> {
    loop {
        match socket.next().await.context("stream ended")?? {
            Message::Text(text) => return Ok(serde_json::from_str(&text)?),
            Message::Close(frame) => anyhow::bail!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// Every text message until the server closes, and the close code and reason.
pub async fn read_to_close(
    socket: &mut Socket,
    deadline: Duration,
) -> anyhow::Result<(Vec<Value>, u16, String)> {
    let reading = async {
        let mut messages = Vec::new();
        while let Some(message) = socket.next().await {
            match message? {
                Message::Text(text) => messages.push(serde_json::from_str(&text)?),
                Message::Close(frame) => {
                    let (code, reason) = frame
                        .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return anyhow::Ok((messages, code, reason));
                }
                _ => {}
            }
        }
        anyhow::bail!("stream ended without a close frame")
    };
    tokio::time::timeout(deadline, reading)
        .await
        .context("no close in time")?
}

/// The sequence numbers of the event messages (those with a `seq`).
pub fn seqs(messages: &[Value]) -> Vec<u64> {
    messages
        .iter()
        .filter_map(|message| message["seq"].as_u64())
        .collect()
}
