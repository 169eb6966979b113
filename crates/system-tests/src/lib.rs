//! The harness for end-to-end tests: the gateway, analyzer and broadcaster started
//! in-process on port 0, isolated by a unique AMQP prefix and Redis key prefix,
//! against the real RabbitMQ and Redis and a scripted (or the real local) LLM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use serde_json::Value;
use testkit::fault_proxy::FaultProxy;
use testkit::scripted_llm::ScriptedLlm;
use tokio_util::sync::CancellationToken;

/// Broker and Redis the tests use; `QUIZSTATS_TEST_AMQP_URL` / `QUIZSTATS_TEST_REDIS_URL` override.
pub fn amqp_url() -> String {
    std::env::var("QUIZSTATS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("QUIZSTATS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// How to start the system.
#[derive(Default)]
pub struct Options {
    /// Use this LLM instead of a scripted one (the real local llama.cpp server).
    pub llm: Option<RealLlm>,
    /// Route the gateway's broker connection through a fault proxy.
    pub gateway_through_proxy: bool,
    /// Legacy `/api/analyze` wait limit, in milliseconds.
    pub legacy_wait_ms: Option<u64>,
    /// Last-minute changes to the analyzer's settings (breaker, timeouts, prices…).
    pub tune_analyzer: Option<fn(&mut analyzer::Settings)>,
    /// Last-minute changes to the gateway's settings.
    pub tune_gateway: Option<fn(&mut gateway::Settings)>,
    /// Also start the scraper-worker (real Chromium through chromedriver), allowed to
    /// reach 127.0.0.1 only.
    pub with_scraper: bool,
}

pub struct RealLlm {
    pub base_url: String,
    pub model: String,
    pub timeout_ms: u64,
}

/// The API keys the harness configures on the gateway, in clear.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    /// `submit` + `read`; the helper methods send it.
    pub submit_read: String,
    /// `read` only.
    pub read_only: String,
    /// `admin`: everything, every key's quizzes.
    pub admin: String,
}

impl ApiKeys {
    /// Fresh keys, unique to one app.
    fn generate(prefix: &str) -> Self {
        Self {
            submit_read: format!("submit-read-{prefix}"),
            read_only: format!("read-only-{prefix}"),
            admin: format!("admin-{prefix}"),
        }
    }

    /// The `[[auth.keys]]` entries holding their hashes, with ids `submit-read`, `read-only`, `admin`.
    fn entries(&self) -> Vec<gateway::settings::ApiKeyEntry> {
        use gateway::settings::{ApiKeyEntry, Scope};
        [
            ("submit-read", &self.submit_read, vec![Scope::Submit, Scope::Read]),
            ("read-only", &self.read_only, vec![Scope::Read]),
            ("admin", &self.admin, vec![Scope::Admin]),
        ]
        .into_iter()
        .map(|(id, key, scopes)| ApiKeyEntry {
            id: id.to_owned(),
            sha256: gateway::auth::key_ring::sha256_hex(key).into(),
            scopes,
        })
        .collect()
    }
}

pub struct TestApp {
    pub gateway: SocketAddr,
    pub analyzer: SocketAddr,
    pub broadcaster: SocketAddr,
    /// The scraper-worker's ops address, when started.
    pub scraper: Option<SocketAddr>,
    pub llm: Option<ScriptedLlm>,
    pub gateway_proxy: Option<FaultProxy>,
    pub http: reqwest::Client,
    pub prefix: String,
    /// The Redis key names this app's services use.
    pub keys: common::keys::Keys,
    /// The gateway's API keys; the helper methods send `api_keys.submit_read`.
    pub api_keys: ApiKeys,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app() -> anyhow::Result<TestApp> {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> anyhow::Result<TestApp> {
    testkit::init_telemetry();
    let prefix = testkit::unique_prefix("e2e");
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
    let http = |port: u16| common::settings::HttpSettings {
        host: "127.0.0.1".into(),
        port,
        workers: 2,
    };

    let gateway_proxy = if options.gateway_through_proxy {
        let target = amqp_socket_addr()?;
        Some(FaultProxy::start(target).await?)
    } else {
        None
    };
    let mut gateway_settings = gateway::Settings {
        http: http(0),
        amqp: amqp.clone(),
        redis: redis.clone(),
        ..Default::default()
    };
    if let Some(proxy) = &gateway_proxy {
        gateway_settings.amqp.url = format!("amqp://guest:guest@{}/%2f", proxy.address());
        gateway_settings.amqp.max_backoff_ms = 300;
    }
    if let Some(wait) = options.legacy_wait_ms {
        gateway_settings.legacy.wait_timeout_ms = wait;
    }
    let api_keys = ApiKeys::generate(&prefix);
    gateway_settings.auth.keys = api_keys.entries();
    // Budgets no test (or benchmark) reaches unless it means to; `tune_gateway` can shrink them.
    gateway_settings.rate_limit = gateway::settings::RateLimitSettings {
        requests_per_second: 100_000,
        burst: 100_000,
        submissions_per_minute: 1_000_000,
        submission_burst: 100_000,
    };

    let (llm, mut llm_settings) = match options.llm {
        Some(real) => (
            None,
            analyzer::settings::LlmSettings {
                base_url: real.base_url,
                model: real.model,
                timeout_ms: real.timeout_ms,
                max_concurrency: 2,
                ..Default::default()
            },
        ),
        None => {
            let scripted = ScriptedLlm::start()?;
            let settings = analyzer::settings::LlmSettings {
                base_url: scripted.base_url(),
                model: "scripted-model".into(),
                timeout_ms: 2_000,
                ..Default::default()
            };
            (Some(scripted), settings)
        }
    };
    llm_settings.dialect = Some(analyzer::settings::Dialect::LlamaCpp);
    let mut analyzer_settings = analyzer::Settings {
        http: http(0),
        amqp: amqp.clone(),
        redis: redis.clone(),
        llm: llm_settings,
        ..Default::default()
    };
    if let Some(tune) = options.tune_analyzer {
        tune(&mut analyzer_settings);
    }
    if let Some(tune) = options.tune_gateway {
        tune(&mut gateway_settings);
    }
    // The broadcaster checks the gateway's keys, as a deployment shares `[auth]`.
    let broadcaster_settings = stats_broadcaster::Settings {
        http: http(0),
        amqp: amqp.clone(),
        redis: redis.clone(),
        auth: gateway_settings.auth.clone(),
        ..Default::default()
    };

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    let mut scraper = None;
    if options.with_scraper {
        let settings = scraper_worker::Settings {
            http: http(0),
            amqp: amqp.clone(),
            redis: redis.clone(),
            egress: scraper_worker::settings::EgressSettings {
                allow: vec![scraper_worker::settings::AllowRule {
                    cidr: "127.0.0.1/32"
                        .parse()
                        .map_err(|error: String| anyhow::anyhow!(error))?,
                    ports: Vec::new(),
                }],
                allow_public: false,
                ..Default::default()
            },
            ..Default::default()
        };
        let app = scraper_worker::Application::build(settings).await?;
        scraper = Some(app.local_addr());
        tasks.push(tokio::spawn(app.run_until_stopped(shutdown.clone())));
    }
    let gateway_app = gateway::Application::build(gateway_settings).await?;
    let analyzer_app = analyzer::Application::build(analyzer_settings).await?;
    let broadcaster_app = stats_broadcaster::Application::build(broadcaster_settings).await?;
    let app = TestApp {
        gateway: gateway_app.local_addr(),
        analyzer: analyzer_app.local_addr(),
        broadcaster: broadcaster_app.local_addr(),
        llm,
        gateway_proxy,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?,
        keys: common::keys::Keys::new(format!("{prefix}:")),
        api_keys,
        prefix,
        scraper,
        tasks: {
            tasks.push(tokio::spawn(gateway_app.run_until_stopped(shutdown.clone())));
            tasks.push(tokio::spawn(analyzer_app.run_until_stopped(shutdown.clone())));
            tasks.push(tokio::spawn(broadcaster_app.run_until_stopped(shutdown.clone())));
            tasks
        },
        shutdown,
    };
    app.wait_ready(Duration::from_secs(20)).await?;
    Ok(app)
}

fn amqp_socket_addr() -> anyhow::Result<SocketAddr> {
    let url = amqp_url();
    let authority = url.split('@').nth(1).unwrap_or("127.0.0.1:5672/%2f");
    let host_port = authority.split('/').next().unwrap_or("127.0.0.1:5672");
    host_port
        .parse()
        .with_context(|| format!("broker address {host_port} is not ip:port"))
}

impl TestApp {
    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway)
    }

    pub fn scripted(&self) -> &ScriptedLlm {
        match &self.llm {
            Some(llm) => llm,
            None => panic!("this app runs against a real LLM"),
        }
    }

    /// The process's metrics as Prometheus text (every service in it serves the same registry).
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.gateway_url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    /// A counter summed over the series whose labels contain `label` (`outcome="expired"`;
    /// empty = every series); 0 before its first sample.
    pub async fn counter(&self, name: &str, label: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        Ok(text
            .lines()
            .filter(|line| {
                (line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} ")))
                    && line.contains(label)
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until every service's `/readyz` is 200.
    pub async fn wait_ready(&self, deadline: Duration) -> anyhow::Result<()> {
        for address in [self.gateway, self.analyzer, self.broadcaster]
            .into_iter()
            .chain(self.scraper)
        {
            let url = format!("http://{address}/readyz");
            testkit::eventually(deadline, || async {
                let response = self.http.get(&url).send().await.ok()?;
                response.status().is_success().then_some(())
            })
            .await
            .with_context(|| format!("{url} never became ready"))?;
        }
        Ok(())
    }

    /// A gateway request carrying the default (`submit` + `read`) key as a Bearer token.
    pub fn gateway_request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.gateway_url(path))
            .bearer_auth(&self.api_keys.submit_read)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .gateway_request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .await?)
    }

    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .gateway_request(reqwest::Method::POST, path)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?)
    }

    /// Submits a quiz and returns its id; fails unless the gateway answers 202.
    pub async fn submit(&self, quiz: &Value) -> anyhow::Result<String> {
        let response = self.post_json("/v1/quizzes", quiz).await?;
        anyhow::ensure!(
            response.status() == 202,
            "submit answered {}: {}",
            response.status(),
            response.text().await?
        );
        let body: Value = response.json().await?;
        body["id"].as_str().map(str::to_owned).context("no id in the 202")
    }

    pub async fn get_quiz(&self, id: &str) -> anyhow::Result<Value> {
        let response = self
            .gateway_request(reqwest::Method::GET, &format!("/v1/quizzes/{id}"))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "get answered {}", response.status());
        Ok(response.json().await?)
    }

    /// Polls until the quiz is completed or failed.
    pub async fn wait_finished(&self, id: &str, deadline: Duration) -> anyhow::Result<Value> {
        testkit::eventually(deadline, || async {
            let quiz = self.get_quiz(id).await.ok()?;
            matches!(quiz["status"].as_str(), Some("completed" | "failed")).then_some(quiz)
        })
        .await
        .with_context(|| format!("quiz {id} did not finish"))
    }

    /// Subscribes to a quiz's events and collects them until the server closes the stream.
    pub async fn collect_events(
        &self,
        id: &str,
        after: u64,
        deadline: Duration,
    ) -> anyhow::Result<Vec<Value>> {
        // The admin key reads every quiz, whichever key submitted it.
        let url = format!(
            "ws://{}/v1/ws?quiz_id={id}&after={after}&token={}",
            self.broadcaster, self.api_keys.admin
        );
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        let mut events = Vec::new();
        let collecting = async {
            while let Some(message) = socket.next().await {
                match message? {
                    tokio_tungstenite::tungstenite::Message::Text(text) => {
                        events.push(serde_json::from_str(&text)?)
                    }
                    tokio_tungstenite::tungstenite::Message::Close(_) => break,
                    _ => {}
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(deadline, collecting)
            .await
            .context("event stream did not end")??;
        Ok(events)
    }

    /// Stops the services and removes the test's queues, exchanges and keys.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await??;
        }
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
        if let Some(llm) = self.llm {
            llm.stop().await;
        }
        Ok(())
    }
}
