//! The workload on its schedule: each quiz submitted at its moment (retried until accepted),
//! each accepted quiz followed by its own WebSocket watcher; and, at the end, the watchers'
//! reports collected.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::Gateway;
use crate::watch::{self, Progress, WatchReport};
use crate::workload::{PlannedQuiz, SourceKind};

/// An accepted quiz.
pub struct Accepted {
    pub number: usize,
    pub id: String,
    pub source: SourceKind,
    pub n_questions: usize,
    /// The quiz's WebSocket watcher, taken out when the run collects the reports.
    watcher: Option<tokio::task::JoinHandle<WatchReport>>,
}

/// What the submissions and the watchers report to the driver while they run.
#[derive(Default)]
pub struct Ledger {
    accepted: Mutex<Vec<Accepted>>,
    /// Submissions the gateway never accepted, with why.
    refused: Mutex<Vec<String>>,
    /// Watchers that saw their quiz's terminal event.
    ended: AtomicU64,
    submissions_done: AtomicBool,
}

impl Ledger {
    /// Whether work remains: submissions still going, or accepted quizzes not seen ending.
    pub fn pending(&self) -> bool {
        let n_accepted = self.accepted.lock().map_or(0, |accepted| accepted.len()) as u64;
        !self.submissions_done.load(Ordering::SeqCst) || self.ended.load(Ordering::SeqCst) < n_accepted
    }

    pub fn take_accepted(&self) -> Vec<Accepted> {
        self.accepted
            .lock()
            .map(|mut accepted| std::mem::take(&mut *accepted))
            .unwrap_or_default()
    }

    pub fn take_refused(&self) -> Vec<String> {
        self.refused
            .lock()
            .map(|mut refused| std::mem::take(&mut *refused))
            .unwrap_or_default()
    }
}

/// Where and when to submit.
pub struct Plan {
    pub gateway: Arc<Gateway>,
    pub broadcaster_port: u16,
    pub api_key: String,
    pub started: Instant,
    /// Submissions are spread evenly over this window.
    pub window: Duration,
    /// A submission retries until this instant.
    pub submit_deadline: Instant,
    /// A watcher gives up at this instant.
    pub watch_deadline: Instant,
}

/// Submits every quiz at its moment; returns when every submission is accepted or given up.
pub async fn submit_all(
    quizzes: &[Arc<PlannedQuiz>],
    plan: Plan,
    progress: Arc<Progress>,
    ledger: Arc<Ledger>,
) {
    let plan = Arc::new(plan);
    let interval = plan.window / quizzes.len().max(1) as u32;
    let mut tasks = Vec::new();
    for (position, quiz) in quizzes.iter().enumerate() {
        tokio::time::sleep_until((plan.started + interval * position as u32).into()).await;
        let (plan, quiz, progress, ledger) = (
            Arc::clone(&plan),
            Arc::clone(quiz),
            Arc::clone(&progress),
            Arc::clone(&ledger),
        );
        tasks.push(tokio::spawn(async move {
            submit_one(&plan, &quiz, progress, &ledger).await
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    ledger.submissions_done.store(true, Ordering::SeqCst);
}

async fn submit_one(plan: &Plan, quiz: &PlannedQuiz, progress: Arc<Progress>, ledger: &Arc<Ledger>) {
    let id = match plan.gateway.submit(quiz, plan.submit_deadline).await {
        Ok((id, _latency)) => id,
        Err(error) => {
            if let Ok(mut refused) = ledger.refused.lock() {
                refused.push(format!("{error:#}"));
            }
            return;
        }
    };
    let watcher = tokio::spawn({
        let (port, api_key, id, deadline) = (
            plan.broadcaster_port,
            plan.api_key.clone(),
            id.clone(),
            plan.watch_deadline,
        );
        let ledger = Arc::clone(ledger);
        async move {
            let report = watch::watch(port, api_key, id, progress, deadline).await;
            if report.terminal {
                ledger.ended.fetch_add(1, Ordering::SeqCst);
            }
            report
        }
    });
    if let Ok(mut accepted) = ledger.accepted.lock() {
        accepted.push(Accepted {
            number: quiz.number,
            id,
            source: quiz.source,
            n_questions: quiz.n_questions,
            watcher: Some(watcher),
        });
    }
}

/// The watchers' reports, in the order of `accepted`. `n_ended` quizzes ended (by the
/// gateway's account): their streams get 10 s to end by themselves, then every watcher still
/// open is told to reconnect once (and counts as stopped short); 20 s later the rest are
/// cut off with what they saw.
pub async fn collect_watchers(
    accepted: &mut [Accepted],
    n_ended: u64,
    progress: &Progress,
    ledger: &Ledger,
) -> Vec<WatchReport> {
    let settle = Instant::now();
    while ledger.ended.load(Ordering::SeqCst) < n_ended && settle.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    progress.resume_epoch.fetch_add(1, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut reports = Vec::with_capacity(accepted.len());
    for quiz in accepted {
        let Some(handle) = quiz.watcher.take() else {
            reports.push(WatchReport::default());
            continue;
        };
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(report)) => reports.push(report),
            _ => {
                abort.abort();
                reports.push(WatchReport::default());
            }
        }
    }
    reports
}
