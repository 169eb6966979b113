//! `chaos-driver chaos`: submits the workload while the fault schedule kills and restarts every
//! process, waits (bounded) for every accepted quiz to end, audits them and prints the table.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::SeedableRng;
use rand::rngs::StdRng;
use testkit::scripted_llm::RandomFaults;

use crate::Profile;
use crate::audit::{self, QuizAudit};
use crate::config::Tuning;
use crate::faults::{self, FaultPlan};
use crate::harness::{Harness, Options};
use crate::report::{self, ChaosReport};
use crate::submission::{self, Accepted, Ledger, Plan};
use crate::watch::Progress;
use crate::workload::{self, PlannedQuiz, WorkloadSpec};

/// The analyzer's LLM timeout in chaos runs; the scripted "timeout" fault hangs a second longer.
const LLM_TIMEOUT_MS: u64 = 2000;

struct ProfileSettings {
    name: &'static str,
    workload: WorkloadSpec,
    faults: FaultPlan,
    /// Submissions are spread over this window, so faults land while work is in flight.
    submit_window: Duration,
    /// After the last fault and submission, how long quizzes get to end before they count as lost.
    drain_deadline: Duration,
    quiz_deadline_secs: u64,
}

impl ProfileSettings {
    fn of(profile: Profile) -> Self {
        match profile {
            Profile::Ci => Self {
                name: "ci",
                workload: WorkloadSpec {
                    n_quizzes: 20,
                    questions_per_quiz: 10,
                    url_share: 0.2,
                    shared_share: 0.2,
                },
                faults: FaultPlan {
                    kills_per_service: 1,
                    gap_ms: 2000..6000,
                    downtime_ms: 300..2000,
                },
                submit_window: Duration::from_secs(55),
                drain_deadline: Duration::from_secs(90),
                quiz_deadline_secs: 60,
            },
            Profile::Full => Self {
                name: "full",
                workload: WorkloadSpec {
                    n_quizzes: 100,
                    questions_per_quiz: 20,
                    url_share: 0.2,
                    shared_share: 0.15,
                },
                faults: FaultPlan {
                    kills_per_service: 3,
                    gap_ms: 3000..12000,
                    downtime_ms: 300..3000,
                },
                submit_window: Duration::from_secs(150),
                drain_deadline: Duration::from_secs(180),
                quiz_deadline_secs: 120,
            },
        }
    }
}

pub async fn run(bin_dir: &Path, profile: Profile, seed: u64) -> Result<bool> {
    let settings = ProfileSettings::of(profile);
    println!(
        "chaos: profile {}, seed {seed} (reproduce: cargo xtask chaos --profile {} --seed {seed})",
        settings.name, settings.name
    );
    let options = Options {
        tuning: Tuning {
            llm_timeout_ms: LLM_TIMEOUT_MS,
            quiz_deadline_secs: settings.quiz_deadline_secs,
            sweep_interval_ms: 5000,
            message_lease_ms: 5000,
        },
        llm_faults: Some(RandomFaults {
            probability: 0.10,
            seed,
            hang: Duration::from_millis(LLM_TIMEOUT_MS + 1000),
            retry_after_secs: 1,
        }),
        // A hosted model answers in about a second; a tenth of that keeps the run short while
        // the analyzer still has several calls in flight when it is killed.
        llm_latency: Duration::from_millis(100),
    };
    let mut harness = Harness::start(bin_dir, options).await?;
    let outcome = drive(&mut harness, &settings, seed).await;
    harness.shutdown().await;
    let report = outcome?;
    report::print_chaos(&report);
    Ok(report.passed())
}

async fn drive(harness: &mut Harness, settings: &ProfileSettings, seed: u64) -> Result<ChaosReport> {
    let mut rng = StdRng::seed_from_u64(seed);
    let pages = &harness.pages;
    let quizzes = workload::plan(&settings.workload, seed, &harness.pages_dir, |name| {
        pages.url(name)
    })?;
    let quizzes: Vec<Arc<PlannedQuiz>> = quizzes.into_iter().map(Arc::new).collect();
    let fault_list = faults::schedule(&settings.faults, &mut rng);
    let progress = Arc::new(Progress::default());
    let ledger = Arc::new(Ledger::default());
    let started = Instant::now();
    let plan = Plan {
        gateway: Arc::clone(&harness.gateway),
        broadcaster_port: harness.broadcaster_port(),
        api_key: harness.config.api_key.clone(),
        started,
        window: settings.submit_window,
        // Each submission may retry for as long as the whole window plus a broker restart.
        submit_deadline: started + settings.submit_window + Duration::from_secs(120),
        // Watchers give up well after the drain deadline; the driver stops them sooner.
        watch_deadline: started + settings.submit_window + settings.drain_deadline + Duration::from_secs(600),
    };
    let pending = {
        let ledger = Arc::clone(&ledger);
        move || ledger.pending()
    };
    let (_, recoveries) = tokio::join!(
        submission::submit_all(&quizzes, plan, Arc::clone(&progress), Arc::clone(&ledger)),
        faults::run(
            harness,
            &fault_list,
            &settings.faults,
            &mut rng,
            &progress,
            started,
            pending
        )
    );
    let recoveries = recoveries?;
    println!(
        "[{:>6.1}s] faults done; waiting for every accepted quiz to end",
        started.elapsed().as_secs_f64()
    );

    let mut accepted = ledger.take_accepted();
    let views = drain(harness, &accepted, settings.drain_deadline).await;
    let drained_at = started.elapsed();
    let n_ended = views
        .iter()
        .filter(|view| view.as_ref().is_some_and(|view| view.is_terminal()))
        .count() as u64;
    let watch_reports = submission::collect_watchers(&mut accepted, n_ended, &progress, &ledger).await;

    let ids: Vec<String> = accepted.iter().map(|quiz| quiz.id.clone()).collect();
    let logs = audit::event_logs(&harness.redis.url(), &harness.config.redis_key_prefix(), &ids).await?;
    let audits: Vec<Option<QuizAudit>> = views
        .iter()
        .zip(&accepted)
        .map(|(view, quiz)| {
            view.as_ref()
                .filter(|view| view.is_terminal())
                .map(|view| audit::check(view, logs.get(&quiz.id).map_or(&[][..], Vec::as_slice)))
        })
        .collect();

    Ok(ChaosReport {
        profile: settings.name,
        seed,
        planned: quizzes.len(),
        planned_questions: quizzes.iter().map(|quiz| quiz.n_questions).sum(),
        accepted,
        refused: ledger.take_refused(),
        audits,
        watch_reports,
        recoveries,
        llm_calls: harness.llm.calls(),
        distinct_questions: harness.llm.distinct_questions(),
        llm_faults: harness.llm.faults_injected(),
        submit_retries: harness.gateway.retries(),
        drained_at,
        took: started.elapsed(),
        started,
    })
}

/// Polls every accepted quiz until it is completed or failed, or `deadline` passes; the last
/// view of each (None if the gateway never answered for it).
async fn drain(
    harness: &Harness,
    accepted: &[Accepted],
    deadline: Duration,
) -> Vec<Option<crate::client::QuizView>> {
    let started = Instant::now();
    let mut views: Vec<Option<crate::client::QuizView>> = accepted.iter().map(|_| None).collect();
    loop {
        for (slot, quiz) in views.iter_mut().zip(accepted) {
            if slot.as_ref().is_some_and(|view| view.is_terminal()) {
                continue;
            }
            if let Some(view) = harness.gateway.get(&quiz.id).await {
                *slot = Some(view);
            }
        }
        let open = views
            .iter()
            .filter(|view| !view.as_ref().is_some_and(|view| view.is_terminal()))
            .count();
        if open == 0 || started.elapsed() > deadline {
            return views;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
