//! Spawns `chromedriver --port=<free port>` and waits until it accepts connections.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::error::ScrapeError;

/// How long chromedriver may take to listen after being spawned.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// A chromedriver child process; killed when dropped.
#[derive(Debug)]
pub struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    /// Starts `executable` on a free loopback port.
    pub async fn spawn(executable: &str) -> Result<Self, ScrapeError> {
        let port = free_port().map_err(|error| ScrapeError::DriverStart(format!("no free port: {error}")))?;
        let child = Command::new(executable)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| ScrapeError::DriverStart(format!("{executable}: {error}")))?;
        let mut driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        driver.wait_until_listening(port).await?;
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
                return Err(ScrapeError::DriverStart(
                    "chromedriver exited at start-up".to_owned(),
                ));
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

/// A port the OS reports free right now (a small race with other binders is accepted).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}
