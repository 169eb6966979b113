//! The four service binaries as children of the driver: started in their own process group
//! (the scraper-worker's chromedriver and Chromium die with it), SIGKILLed and restarted on the
//! same port, asked for `/readyz`, measured for RSS.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// The services, in start order.
pub const NAMES: [&str; 4] = ["gateway", "analyzer", "scraper-worker", "stats-broadcaster"];

/// How long a (re)started service gets to report ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(120);

pub struct ServiceProcess {
    pub name: &'static str,
    pub port: u16,
    binary: PathBuf,
    env: Vec<(String, String)>,
    log_path: PathBuf,
    child: Option<Child>,
}

impl ServiceProcess {
    pub fn new(
        name: &'static str,
        port: u16,
        bin_dir: &Path,
        env: Vec<(String, String)>,
        log_dir: &Path,
    ) -> Self {
        Self {
            name,
            port,
            binary: bin_dir.join(name),
            env,
            log_path: log_dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Starts the binary; its output is appended to the log, so restarts keep the history.
    pub fn spawn(&mut self) -> Result<()> {
        if !self.binary.is_file() {
            bail!("{} is missing; build the services first", self.binary.display());
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let env_var_port = format!(
            "QUIZSTATS_{}__HTTP__PORT",
            self.name.to_uppercase().replace('-', "_")
        );
        let mut command = Command::new(&self.binary);
        // QUIZSTATS_* from the caller's shell (say, a real LLM's URL) would override the run's
        // config: the run is only reproducible from its own base.toml.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("QUIZSTATS_") {
                command.env_remove(key);
            }
        }
        let child = command
            .envs(self.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .env(env_var_port, self.port.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL to the whole process group (the service and anything it spawned), then reap.
    pub async fn kill(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id() {
            kill_group(pid);
        }
        child
            .wait()
            .await
            .with_context(|| format!("reaping {}", self.name))?;
        Ok(())
    }

    /// Fails if the process exited (a crash is a finding, not something to wait out).
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            bail!(
                "{} exited with {status}; see {}",
                self.name,
                self.log_path.display()
            );
        }
        Ok(())
    }

    pub async fn is_ready(&self, http: &reqwest::Client) -> bool {
        http.get(self.url("/readyz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|reply| reply.status().is_success())
    }

    /// Resident memory of the service process itself (not the scraper's Chromium), in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            kill_group(pid);
        }
    }
}

/// `kill -KILL -- -<pgid>`: the group `pid` leads (spawned with `process_group(0)`): a service,
/// or a broker node and whatever its start script started.
pub(crate) fn kill_group(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-KILL", "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

/// Waits until every service in `services` answers `/readyz` 200; fails when one exits.
pub async fn wait_all_ready(services: &mut [ServiceProcess], http: &reqwest::Client) -> Result<Duration> {
    let started = Instant::now();
    loop {
        let mut waiting = Vec::new();
        for service in services.iter_mut() {
            service.check_alive()?;
            if !service.is_ready(http).await {
                waiting.push(service.name);
            }
        }
        if waiting.is_empty() {
            return Ok(started.elapsed());
        }
        if started.elapsed() > READY_TIMEOUT {
            bail!("{waiting:?} not ready after {READY_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
