//! The sweeper: every accepted quiz ends. A quiz that is neither completed nor failed and
//! made no progress for `reliability.quiz_deadline_secs` (its job was lost or dead-lettered
//! while no analyzer watched, or its analysis hangs) is failed with the reason
//! "timed out: no progress for N s", and clients are told through `quiz.failed`.
//!
//! Progress is creation, a status change and every recorded answer (see
//! [`QuizStore::record`]): the deadline is a silence limit, not a total run-time limit,
//! so a long quiz that keeps answering is never swept.
//!
//! Each pass also relays the outbox (`common::relay`): events logged but never confirmed on
//! the bus (a crash or a broker failure between the two) that no redelivery will send are
//! published again, so live streams are not left waiting.
//!
//! Safe with several analyzer replicas: each stale quiz is claimed atomically
//! ([`QuizStore::claim_stale`]) before it is failed, and ending a quiz is once-only
//! ([`QuizStore::end`]), so two sweepers never fail one quiz twice and a quiz the analyzer
//! completes meanwhile stays completed.

use std::time::Duration;

use common::bus::Bus;
use common::lifecycle::{self, FailError};
use common::redis::RedisError;
use common::relay;
use common::store::QuizStore;
use tokio_util::sync::CancellationToken;

use crate::metrics;
use crate::settings::ReliabilitySettings;

pub struct Sweeper {
    store: QuizStore,
    bus: Bus,
    /// Silence after which an open quiz is failed.
    deadline: Duration,
    interval: Duration,
    batch: usize,
    /// Unconfirmed events this old are relayed.
    relay_after: Duration,
}

impl Sweeper {
    pub fn new(store: QuizStore, bus: Bus, settings: &ReliabilitySettings) -> Self {
        Self {
            store,
            bus,
            deadline: Duration::from_secs(settings.quiz_deadline_secs),
            interval: Duration::from_millis(settings.sweep_interval_ms.max(1)),
            batch: settings.sweep_batch.max(1),
            relay_after: Duration::from_millis(settings.relay_after_ms),
        }
    }

    /// The reason a swept quiz is failed with.
    pub fn reason(&self) -> String {
        format!("timed out: no progress for {} s", self.deadline.as_secs())
    }

    /// One pass: fails the open quizzes past the deadline that this replica claims first.
    /// Returns how many it failed.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_once(&self) -> Result<usize, RedisError> {
        let now = common::now_ms();
        let deadline_ms = i64::try_from(self.deadline.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now.saturating_sub(deadline_ms);
        // A claim that is never followed by an end (this replica died, the broker was away)
        // comes due again this much later.
        let claim_ms = i64::try_from((self.interval * 2).as_millis()).unwrap_or(i64::MAX);
        let retry_at = cutoff.saturating_add(claim_ms.max(1_000));
        let reason = self.reason();
        let mut swept = 0;
        for quiz_id in self.store.open_before(cutoff, self.batch).await? {
            if !self.store.claim_stale(&quiz_id, cutoff, retry_at).await? {
                continue;
            }
            match lifecycle::fail_quiz(&self.store, &self.bus, &quiz_id, &reason).await {
                Ok(true) => {
                    swept += 1;
                    metrics::quiz_swept();
                    metrics::quiz_finished("failed");
                    tracing::warn!(%quiz_id, %reason, "stuck quiz failed by the sweeper");
                }
                // Ended meanwhile, expired or deleted: it no longer belongs in the index.
                Ok(false) => self.store.forget_open(&quiz_id).await?,
                Err(FailError::Store(error)) => return Err(error),
                Err(FailError::Bus(error)) => {
                    // The quiz is failed in Redis and its event logged (a subscriber's replay
                    // shows it); only the live broadcast is missing.
                    tracing::warn!(%quiz_id, error = %error, "quiz failed but quiz.failed not published");
                    swept += 1;
                    metrics::quiz_swept();
                }
            }
        }
        Ok(swept)
    }

    /// One relay pass: republishes logged events whose quiz's last log write is older than
    /// `relay_after` and still unconfirmed. Returns how many events it sent.
    #[tracing::instrument(skip_all)]
    pub async fn relay_once(&self) -> Result<usize, RedisError> {
        let after_ms = i64::try_from(self.relay_after.as_millis()).unwrap_or(i64::MAX);
        let cutoff = common::now_ms().saturating_sub(after_ms);
        let sent = relay::relay_due(&self.store, &self.bus, cutoff, self.batch).await?;
        metrics::events_relayed(sent);
        Ok(sent)
    }

    /// Sweeps every `interval` until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.sweep_once().await {
                Ok(0) => {}
                Ok(swept) => tracing::info!(swept, "sweep failed stuck quizzes"),
                Err(error) => tracing::warn!(error = %error, "sweep interrupted, trying again next interval"),
            }
            match self.relay_once().await {
                Ok(0) => {}
                Ok(sent) => tracing::info!(sent, "relayed logged events the bus had not confirmed"),
                Err(error) => tracing::warn!(error = %error, "relay interrupted, trying again next interval"),
            }
        }
    }
}
