//! Everything a run needs, started in order and stopped on drop: private RabbitMQ and Redis,
//! the scripted LLM, the loopback page server and the four services.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use testkit::scripted_llm::{RandomFaults, ScriptedLlm};
use testkit::static_pages::StaticPages;

use crate::brokers::{PrivateRabbit, PrivateRedis};
use crate::client::Gateway;
use crate::config::{self, Endpoints, RunConfig, Tuning};
use crate::ports;
use crate::services::{self, NAMES, ServiceProcess};

pub struct Options {
    pub tuning: Tuning,
    pub llm_faults: Option<RandomFaults>,
    /// Added to every LLM reply, so quizzes take long enough to be in flight when a fault hits.
    pub llm_latency: Duration,
}

/// Fields drop in declaration order: services before the brokers they talk to.
pub struct Harness {
    pub services: Vec<ServiceProcess>,
    pub gateway: Arc<Gateway>,
    pub http: reqwest::Client,
    pub config: RunConfig,
    pub llm: ScriptedLlm,
    pub pages: StaticPages,
    pub pages_dir: PathBuf,
    pub rabbit: PrivateRabbit,
    pub redis: PrivateRedis,
    pub run_dir: PathBuf,
}

impl Harness {
    pub async fn start(bin_dir: &Path, options: Options) -> Result<Self> {
        let bin_dir = bin_dir
            .canonicalize()
            .with_context(|| format!("finding the binaries in {}", bin_dir.display()))?;
        let run_dir = run_dir(&bin_dir)?;
        println!("run folder (logs, broker data): {}", run_dir.display());
        let (rabbit, redis) = tokio::join!(PrivateRabbit::start(&run_dir), PrivateRedis::start(&run_dir));
        let (rabbit, redis) = (rabbit?, redis?);
        let llm = ScriptedLlm::start().context("starting the scripted LLM")?;
        llm.set_random_faults(options.llm_faults);
        llm.set_latency(options.llm_latency);
        let pages_dir = run_dir.join("pages");
        std::fs::create_dir_all(&pages_dir)?;
        let pages = StaticPages::serve(&pages_dir).context("starting the page server")?;
        let endpoints = Endpoints {
            amqp_url: rabbit.url(),
            redis_url: redis.url(),
            llm_base_url: llm.base_url(),
            pages_port: pages.port(),
        };
        let config = config::write(&run_dir, &endpoints, &options.tuning)?;
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()?;
        let log_dir = run_dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let env = vec![
            (
                "QUIZSTATS_CONFIG_DIR".to_owned(),
                config.config_dir.display().to_string(),
            ),
            // No chaos.toml exists: only the defaults and our base.toml apply.
            ("QUIZSTATS_ENV".to_owned(), "chaos".to_owned()),
        ];
        let ports = ports::free_ports(NAMES.len())?;
        let mut services: Vec<ServiceProcess> = NAMES
            .iter()
            .zip(ports)
            .map(|(name, port)| ServiceProcess::new(name, port, &bin_dir, env.clone(), &log_dir))
            .collect();
        for service in &mut services {
            service.spawn()?;
        }
        let took = services::wait_all_ready(&mut services, &http).await?;
        println!("four services ready in {:.1}s", took.as_secs_f64());
        let gateway = Arc::new(Gateway::new(services[0].port, &config.api_key, http.clone()));
        Ok(Self {
            services,
            gateway,
            http,
            config,
            llm,
            pages,
            pages_dir,
            rabbit,
            redis,
            run_dir,
        })
    }

    pub fn service(&mut self, name: &str) -> Option<&mut ServiceProcess> {
        self.services.iter_mut().find(|service| service.name == name)
    }

    pub fn broadcaster_port(&self) -> u16 {
        self.services[3].port
    }

    /// Stops the services (SIGKILL: nothing of theirs is kept) and the brokers, then deletes
    /// the brokers' data, keeping the logs.
    pub async fn shutdown(mut self) {
        for service in &mut self.services {
            let _ = service.kill().await;
        }
        let _ = self.rabbit.stop().await;
        let _ = self.redis.kill().await;
        let run_dir = self.run_dir.clone();
        drop(self);
        for data in ["rabbitmq/mnesia", "redis"] {
            let _ = std::fs::remove_dir_all(run_dir.join(data));
        }
    }
}

/// `target/chaos/<seconds>-<pid>` next to the binaries' profile folder.
fn run_dir(bin_dir: &Path) -> Result<PathBuf> {
    let target = bin_dir.parent().unwrap_or(bin_dir);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let dir = target
        .join("chaos")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
