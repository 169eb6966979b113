//! Private RabbitMQ and Redis instances on free ports, which the chaos run may kill and
//! restart. The shared brokers on 5672 and 6379 belong to other tests running at the same
//! time: the driver never touches them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use crate::ports;
use crate::services::kill_group;

/// How long a broker gets to come up; RabbitMQ takes 3-10 s on two busy cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Redis with an append-only file fsynced on every write, so a SIGKILL loses nothing that was
/// acknowledged and a restart finds every quiz where it was.
pub struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    pub async fn start(dir: &Path) -> Result<Self> {
        let dir = dir.join("redis");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut redis = Self {
            port: ports::free_port()?,
            dir,
            child: None,
        };
        redis.spawn().await?;
        Ok(redis)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) -> Result<()> {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--appendonly", "yes", "--appendfsync", "always", "--save", ""])
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own group, so a Ctrl-C in the terminal reaches the driver, which cleans up.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server (apt-get install -y redis-server)")?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Waits for `PING` to answer `PONG`; while Redis replays its AOF it answers `LOADING`.
    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "redis-server exited with {status}; see {}",
                    self.dir.join("redis.log").display()
                );
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "private redis on port {} not ready after {BOOT_TIMEOUT:?}",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL, the harshest stop: only the fsynced AOF survives.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await.context("killing the private redis")?;
        }
        Ok(())
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.spawn().await
    }
}

async fn ping(port: u16) -> bool {
    let Ok(Ok(mut stream)) = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(("127.0.0.1", port)),
    )
    .await
    else {
        return false;
    };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut reply)).await {
        Ok(Ok(n)) => reply[..n].starts_with(b"+PONG"),
        _ => false,
    }
}

/// A RabbitMQ node of its own (`quizstats-chaos-<pid>@localhost`): its own ports, data, logs
/// and Erlang cookie under the run's folder, no plugins (so it does not take 15672). It runs
/// in the foreground as our child rather than `-detached`, so a node that dies at start is
/// noticed at once and its output (`server.out`) says why.
pub struct PrivateRabbit {
    node: String,
    port: u16,
    /// Erlang distribution port; the default (port + 20000) could collide or overflow.
    dist_port: u16,
    dir: PathBuf,
    server: Option<Child>,
}

impl PrivateRabbit {
    pub async fn start(dir: &Path) -> Result<Self> {
        let dir = dir.join("rabbitmq");
        for sub in ["mnesia", "log", "home"] {
            std::fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.display()))?;
        }
        let picked = ports::free_ports(2)?;
        let (port, dist_port) = (picked[0], picked[1]);
        // Loopback only, like the shared node's /etc/rabbitmq/rabbitmq.conf (which we must not
        // read: it binds 5672).
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!("listeners.tcp.local = 127.0.0.1:{port}\nloopback_users.guest = true\n"),
        )?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS=127.0.0.1\nexport ERL_FLAGS=\"-kernel inet_dist_use_interface {127,0,0,1}\"\n",
        )?;
        let mut rabbit = Self {
            node: format!("quizstats-chaos-{}@localhost", std::process::id()),
            port,
            dist_port,
            dir,
            server: None,
        };
        rabbit.boot().await?;
        Ok(rabbit)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The scripts under /usr/lib/rabbitmq/bin, not the /usr/sbin wrappers: run as root, the
    /// wrappers `su` to the rabbitmq user, who cannot write the run's folder.
    fn program(name: &str) -> PathBuf {
        let direct = Path::new("/usr/lib/rabbitmq/bin").join(name);
        if direct.is_file() {
            direct
        } else {
            PathBuf::from(name)
        }
    }

    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(Self::program(name));
        command
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Starts the node, then `rabbitmqctl await_startup` until it answers (that fails fast
    /// while the node has not registered with epmd yet).
    async fn boot(&mut self) -> Result<()> {
        let out_path = self.dir.join("server.out");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&out_path)
            .with_context(|| format!("opening {}", out_path.display()))?;
        let server = self
            .command("rabbitmq-server")
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own group: the terminal's Ctrl-C reaches the driver, which stops it cleanly.
            .process_group(0)
            .spawn()
            .context("starting rabbitmq-server (apt-get install -y rabbitmq-server)")?;
        self.server = Some(server);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(server) = self.server.as_mut()
                && let Some(status) = server.try_wait()?
            {
                self.server = None;
                let output = std::fs::read_to_string(&out_path).unwrap_or_default();
                let tail: Vec<&str> = output.lines().rev().take(15).collect();
                bail!(
                    "private RabbitMQ {} exited with {status} while starting:\n{}",
                    self.node,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            let ready = self
                .command("rabbitmqctl")
                .args(["-n", &self.node, "await_startup", "--timeout", "10"])
                .status()
                .await
                .is_ok_and(|status| status.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "private RabbitMQ {} not up after {BOOT_TIMEOUT:?}; see {}",
                    self.node,
                    out_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// `rabbitmqctl stop`, as an operator's restart does, then waits for the node to exit.
    pub async fn stop(&mut self) -> Result<()> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let status = self
            .command("rabbitmqctl")
            .args(["-n", &self.node, "stop"])
            .status()
            .await
            .context("rabbitmqctl stop")?;
        let exited = tokio::time::timeout(Duration::from_secs(30), server.wait()).await;
        if !status.success() || exited.is_err() {
            if let Some(pid) = server.id() {
                kill_group(pid);
            }
            let _ = server.wait().await;
            bail!(
                "rabbitmqctl -n {} stop failed ({status}); killed the node",
                self.node
            );
        }
        Ok(())
    }

    pub async fn restart(&mut self) -> Result<()> {
        self.boot().await
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let Some(server) = self.server.as_ref() else {
            return;
        };
        let stopped = std::process::Command::new(Self::program("rabbitmqctl"))
            .env("HOME", self.dir.join("home"))
            .args(["-n", &self.node, "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !stopped && let Some(pid) = server.id() {
            kill_group(pid);
        }
    }
}
