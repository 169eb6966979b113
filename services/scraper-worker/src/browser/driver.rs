//! Spawns `chromedriver --port=<free port>` and waits until it accepts connections.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::error::ScrapeError;

/// How long chromedriver may take to listen after being spawned.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// Starts tried, each on a new port, before the job fails with `DriverStart`.
const START_ATTEMPTS: u32 = 3;

/// Ports tried per [`free_port`] call before giving up.
const PORT_TRIES: usize = 20;

/// A chromedriver child process; killed when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts `executable` on a free loopback port. chromedriver listens on `127.0.0.1` and
    /// `::1` and exits when the port is taken; the port is checked on both, and a start that
    /// still loses the race (another process binds it meanwhile) is tried on a new port.
    pub async fn spawn(executable: &str) -> Result<Self, ScrapeError> {
        let mut attempt = 1;
        loop {
            match Self::spawn_once(executable).await {
                Err(ScrapeError::DriverStart(reason)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(%reason, attempt, "chromedriver did not start, trying another port");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn spawn_once(executable: &str) -> Result<Self, ScrapeError> {
        let port = free_port().map_err(|error| ScrapeError::DriverStart(format!("no free port: {error}")))?;
        let mut child = Command::new(executable)
            // No `--allowed-ips`: with it chromedriver listens on every interface, binding `0.0.0.0`
            // and a dual-stack `[::]` that collide, so about one start in six exited at once
            // ("IPv6 port not available"). Without it, it listens on loopback only, which is all
            // the worker needs.
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| ScrapeError::DriverStart(format!("{executable}: {error}")))?;
        // chromedriver only writes errors there (`[SEVERE]: bind() failed: ...`): kept as log
        // lines, and the last one is why a start failed.
        let last_error = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(log_stderr(stderr, Arc::clone(&last_error)));
        }
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        if let Err(error) = driver.wait_until_listening(port).await {
            // The reader may still be draining what the process wrote before it exited.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let said = last_error.lock().map(|line| line.clone()).unwrap_or_default();
            return Err(match error {
                ScrapeError::DriverStart(reason) if !said.is_empty() => {
                    ScrapeError::DriverStart(format!("{reason}: {said}"))
                }
                other => other,
            });
        }
        Ok(driver)
    }

    /// The WebDriver endpoint.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// False once the process has exited (crashed or killed).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    async fn wait_until_listening(&mut self, port: u16) -> Result<(), ScrapeError> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                return Ok(());
            }
            if !self.is_alive() {
                return Err(ScrapeError::DriverStart(format!(
                    "chromedriver exited at start-up (port {port})"
                )));
            }
            if tokio::time::Instant::now() > deadline {
                return Err(ScrapeError::DriverStart(format!(
                    "not listening on port {port} after {START_DEADLINE:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Logs each line chromedriver writes to stderr and remembers the last one.
async fn log_stderr(stderr: tokio::process::ChildStderr, last: Arc<Mutex<String>>) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(%line, "chromedriver");
        if let Ok(mut last) = last.lock() {
            *last = line;
        }
    }
}

/// A port free right now on `127.0.0.1` and, where the host has IPv6, on `::1`: chromedriver
/// binds both and exits when either is taken (a port free on IPv4 only made it exit at start-up
/// under load). A small race with other binders remains; [`ChromeDriver::spawn`] retries it.
pub fn free_port() -> std::io::Result<u16> {
    let mut last_error = None;
    for _ in 0..PORT_TRIES {
        let ipv4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = ipv4.local_addr()?.port();
        match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
            Ok(_) => return Ok(port),
            // No IPv6 loopback here: chromedriver does without it too.
            Err(error) if error.kind() == std::io::ErrorKind::AddrNotAvailable => return Ok(port),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| std::io::Error::other("no port free on both loopbacks")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn a_free_port_is_free_on_both_loopbacks() {
        for _ in 0..50 {
            let port = free_port().unwrap();
            drop(TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap());
            match TcpListener::bind((Ipv6Addr::LOCALHOST, port)) {
                Ok(_) => {}
                Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::AddrNotAvailable, "{error}"),
            }
        }
    }
}
