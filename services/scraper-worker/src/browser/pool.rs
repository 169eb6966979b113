//! A pool of browser sessions reused across jobs: state cleared between pages, recycled after
//! N pages or any error, and a dead chromedriver respawned on the next checkout.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

use super::driver::ChromeDriver;
use super::session::{BrowserSession, NetworkPolicy};
use crate::error::ScrapeError;
use crate::settings::WebDriverSettings;

/// The same browser settings with one session: for rarely used pools (raw HTML jobs).
pub fn single(settings: WebDriverSettings) -> WebDriverSettings {
    WebDriverSettings {
        pool_size: 1,
        ..settings
    }
}

/// Shared by every job; cheap to clone.
#[derive(Clone)]
pub struct BrowserPool {
    inner: Arc<Inner>,
}

struct Inner {
    settings: WebDriverSettings,
    network: NetworkPolicy,
    page_load_timeout: Duration,
    /// Bounds sessions in use plus idle ones to `pool_size`.
    permits: Arc<Semaphore>,
    idle: Mutex<Vec<BrowserSession>>,
    /// The chromedriver we spawned, when `settings.url` is empty.
    driver: Mutex<Option<ChromeDriver>>,
}

/// A checked-out session; give it back with [`BrowserPool::release`].
pub struct PooledSession {
    pub session: BrowserSession,
    _permit: OwnedSemaphorePermit,
}

impl BrowserPool {
    pub fn new(settings: WebDriverSettings, network: NetworkPolicy, page_load_timeout: Duration) -> Self {
        let size = settings.pool_size.max(1);
        Self {
            inner: Arc::new(Inner {
                settings,
                network,
                page_load_timeout,
                permits: Arc::new(Semaphore::new(size)),
                idle: Mutex::new(Vec::new()),
                driver: Mutex::new(None),
            }),
        }
    }

    /// Waits for a free slot, then hands out an idle session or opens a new one.
    pub async fn acquire(&self) -> Result<PooledSession, ScrapeError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| ScrapeError::Session("browser pool closed".to_owned()))?;
        let driver_alive = self.ensure_driver().await?;
        let idle = self.inner.idle.lock().await.pop();
        let session = match idle {
            // Sessions of a driver that died died with it.
            Some(session) if driver_alive => session,
            Some(session) => {
                drop(session);
                self.open_or_respawn().await?
            }
            None => self.open_or_respawn().await?,
        };
        Ok(PooledSession {
            session,
            _permit: permit,
        })
    }

    /// Returns a session after a job: reused when it did fine, replaced otherwise.
    pub async fn release(&self, mut pooled: PooledSession, error: Option<&ScrapeError>) {
        pooled.session.pages += 1;
        let poisoned = error.is_some_and(ScrapeError::poisons_session);
        let worn_out = pooled.session.pages >= self.inner.settings.pages_per_session.max(1);
        if poisoned || worn_out {
            pooled.session.close().await;
            return;
        }
        match pooled.session.reset().await {
            Ok(()) => self.inner.idle.lock().await.push(pooled.session),
            Err(error) => {
                tracing::warn!(%error, "browser session failed to reset, replacing it");
                pooled.session.close().await;
            }
        }
    }

    /// Closes idle sessions and stops the spawned chromedriver.
    pub async fn shutdown(&self) {
        let sessions: Vec<_> = self.inner.idle.lock().await.drain(..).collect();
        for session in sessions {
            session.close().await;
        }
        self.inner.driver.lock().await.take();
    }

    /// Opens a session; when the chromedriver we own died since it was checked (so the session
    /// could not even reach it), starts a new one and tries once more instead of failing a job
    /// that never reached a browser.
    async fn open_or_respawn(&self) -> Result<BrowserSession, ScrapeError> {
        match self.open().await {
            Err(error) if self.owned_driver_died().await => {
                tracing::warn!(%error, "chromedriver died before a session could open, starting a new one");
                self.ensure_driver().await?;
                self.open().await
            }
            other => other,
        }
    }

    /// True when we spawned chromedriver and it is no longer running.
    async fn owned_driver_died(&self) -> bool {
        if !self.inner.settings.url.is_empty() {
            return false;
        }
        // chromedriver that has just closed its socket may still be exiting.
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.inner
            .driver
            .lock()
            .await
            .as_mut()
            .is_some_and(|driver| !driver.is_alive())
    }

    async fn open(&self) -> Result<BrowserSession, ScrapeError> {
        let url = self.webdriver_url().await;
        BrowserSession::open(
            &url,
            &self.inner.settings,
            self.inner.network.clone(),
            self.inner.page_load_timeout,
        )
        .await
    }

    async fn webdriver_url(&self) -> String {
        if !self.inner.settings.url.is_empty() {
            return self.inner.settings.url.clone();
        }
        self.inner
            .driver
            .lock()
            .await
            .as_ref()
            .map_or_else(String::new, |driver| driver.url().to_owned())
    }

    /// Spawns chromedriver when we own it and it is not running; false when it had to be replaced.
    async fn ensure_driver(&self) -> Result<bool, ScrapeError> {
        if !self.inner.settings.url.is_empty() {
            return Ok(true);
        }
        let mut driver = self.inner.driver.lock().await;
        if let Some(running) = driver.as_mut()
            && running.is_alive()
        {
            return Ok(true);
        }
        if driver.is_some() {
            tracing::warn!("chromedriver died, starting a new one");
        }
        *driver = Some(ChromeDriver::spawn(&self.inner.settings.chromedriver).await?);
        Ok(false)
    }
}
