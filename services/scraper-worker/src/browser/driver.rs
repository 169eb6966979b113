//! Spawns `chromedriver --port=<free port>` and waits until it answers on it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
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
            if answers_status(address).await {
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

/// True when a WebDriver server answers `GET /status` on `address` with 200.
///
/// A bare TCP connect was the check once, and CI saw a start pass it and the session then
/// meet a refused connection. A connect proves little: while nothing listens yet it can meet
/// itself (TCP simultaneous open, when the kernel picks the probed port as the source port,
/// which then holds the port so chromedriver fails to bind it and exits), or another process
/// that took the port. Only a WebDriver server answers `/status` with 200.
pub async fn answers_status(address: SocketAddr) -> bool {
    const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        if stream.local_addr().ok()? == stream.peer_addr().ok()? {
            return None;
        }
        // chromedriver refuses HTTP/1.0 ("Cannot handle request with protocol").
        let request = format!("GET /status HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        // The status line is all that matters; the connection may stay open after it.
        let mut response = Vec::new();
        let mut chunk = [0_u8; 256];
        while !response.contains(&b'\n') {
            let read = stream.read(&mut chunk).await.ok()?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
        }
        let code = response.split(|&byte| byte == b' ').nth(1)?;
        Some(response.starts_with(b"HTTP/1.1 ") && code == b"200")
    };
    matches!(tokio::time::timeout(PROBE_TIMEOUT, probe).await, Ok(Some(true)))
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

    /// A loopback server that answers every connection with `reply` (and then keeps it open).
    async fn answering(reply: &'static [u8]) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = [0_u8; 512];
                let _ = stream.read(&mut request).await;
                let _ = stream.write_all(reply).await;
                open.push(stream);
            }
        });
        address
    }

    #[tokio::test]
    async fn only_a_200_from_status_counts_as_started() {
        let ready = answering(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{}").await;
        assert!(answers_status(ready).await);
        let not_found = answering(b"HTTP/1.1 404 Not Found\r\n\r\n").await;
        assert!(!answers_status(not_found).await);
        let not_http = answering(b"SSH-2.0-OpenSSH\r\n").await;
        assert!(!answers_status(not_http).await);
        let closed = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port().unwrap()));
        assert!(!answers_status(closed).await);
    }

    #[tokio::test]
    async fn a_port_that_accepts_but_never_answers_is_not_started() {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap();
        let address = listener.local_addr().unwrap();
        // Accepted by the kernel's backlog, never read: a bare connect would have passed.
        assert!(!answers_status(address).await);
        drop(listener);
    }

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
