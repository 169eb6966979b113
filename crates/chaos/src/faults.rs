//! The fault schedule and its execution: every service SIGKILLed and restarted some number of
//! times, RabbitMQ and Redis restarted once, in a seeded random order at random moments, one
//! fault at a time so each recovery can be timed on its own.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::harness::Harness;
use crate::services::{self, NAMES};
use crate::watch::Progress;

/// How long after a restart the driver waits for an answer event before calling it "none".
const PROGRESS_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    Kill(&'static str),
    RestartRabbit,
    RestartRedis,
}

impl Fault {
    pub fn label(self) -> String {
        match self {
            Fault::Kill(name) => format!("SIGKILL {name}"),
            Fault::RestartRabbit => "restart RabbitMQ (rabbitmqctl stop)".to_owned(),
            Fault::RestartRedis => "restart Redis (SIGKILL, AOF)".to_owned(),
        }
    }
}

pub struct FaultPlan {
    pub kills_per_service: usize,
    /// Quiet time before each fault, in milliseconds.
    pub gap_ms: Range<u64>,
    /// How long the process stays down, in milliseconds.
    pub downtime_ms: Range<u64>,
}

/// One fault and how the system came back.
pub struct Recovery {
    pub fault: Fault,
    /// Since the run started.
    pub at: Duration,
    pub down: Duration,
    /// From the restart command to all four services answering `/readyz` 200 (for a broker,
    /// this includes the broker's own boot).
    pub ready_after: Duration,
    /// From the restart command to the next `question_answered` any watcher saw; `None` when no
    /// quiz was open, or none came within a minute.
    pub progress_after: Option<Duration>,
    /// Whether quizzes were still open at the restart (so `progress_after` is meaningful).
    pub work_pending: bool,
}

/// The faults in a random order.
pub fn schedule(plan: &FaultPlan, rng: &mut StdRng) -> Vec<Fault> {
    let mut faults: Vec<Fault> = NAMES
        .iter()
        .flat_map(|name| std::iter::repeat_n(Fault::Kill(name), plan.kills_per_service))
        .chain([Fault::RestartRabbit, Fault::RestartRedis])
        .collect();
    faults.shuffle(rng);
    faults
}

/// Runs `faults` one after the other; `pending()` says whether accepted quizzes are still open.
pub async fn run(
    harness: &mut Harness,
    faults: &[Fault],
    plan: &FaultPlan,
    rng: &mut StdRng,
    progress: &Arc<Progress>,
    run_started: Instant,
    pending: impl Fn() -> bool,
) -> Result<Vec<Recovery>> {
    let mut recoveries = Vec::new();
    for (number, fault) in faults.iter().copied().enumerate() {
        tokio::time::sleep(Duration::from_millis(rng.random_range(plan.gap_ms.clone()))).await;
        let downtime = Duration::from_millis(rng.random_range(plan.downtime_ms.clone()));
        let at = run_started.elapsed();
        println!(
            "[{:>6.1}s] fault {}/{}: {}",
            at.as_secs_f64(),
            number + 1,
            faults.len(),
            fault.label()
        );
        let went_down = Instant::now();
        match fault {
            Fault::Kill(name) => {
                if let Some(service) = harness.service(name) {
                    service.kill().await?;
                }
            }
            Fault::RestartRabbit => harness.rabbit.stop().await?,
            Fault::RestartRedis => harness.redis.kill().await?,
        }
        tokio::time::sleep(downtime).await;
        let restarted = Instant::now();
        let down = restarted - went_down;
        let work_pending = pending();
        let answered_before = progress.answered.load(Ordering::SeqCst);
        match fault {
            Fault::Kill(name) => {
                if let Some(service) = harness.service(name) {
                    service.spawn()?;
                }
            }
            Fault::RestartRabbit => harness.rabbit.restart().await?,
            Fault::RestartRedis => harness.redis.restart().await?,
        }
        services::wait_all_ready(&mut harness.services, &harness.http).await?;
        let ready_after = restarted.elapsed();
        let progress_after = if work_pending {
            wait_for_progress(progress, answered_before, restarted, &pending).await
        } else {
            None
        };
        println!(
            "          ready after {:.1}s, next answer after {}",
            ready_after.as_secs_f64(),
            progress_after.map_or("-".to_owned(), |took| format!("{:.1}s", took.as_secs_f64()))
        );
        recoveries.push(Recovery {
            fault,
            at,
            down,
            ready_after,
            progress_after,
            work_pending,
        });
    }
    Ok(recoveries)
}

async fn wait_for_progress(
    progress: &Progress,
    answered_before: u64,
    restarted: Instant,
    pending: &impl Fn() -> bool,
) -> Option<Duration> {
    while restarted.elapsed() < PROGRESS_WAIT {
        if progress.answered.load(Ordering::SeqCst) > answered_before {
            return Some(restarted.elapsed());
        }
        if !pending() {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
