//! The tables the runs print: markdown, so a run's output can be pasted into docs as it is.

use std::collections::BTreeMap;
use std::time::Duration;

use testkit::scripted_llm::FaultKind;

use crate::audit::{self, QuizAudit};
use crate::faults::Recovery;
use crate::submission::Accepted;
use crate::watch::WatchReport;

pub struct ChaosReport {
    pub profile: &'static str,
    pub seed: u64,
    pub planned: usize,
    pub planned_questions: usize,
    pub accepted: Vec<Accepted>,
    /// Submissions the gateway never accepted, with why.
    pub refused: Vec<String>,
    /// One per accepted quiz, `None` when it had not ended by the deadline (lost).
    pub audits: Vec<Option<QuizAudit>>,
    pub watch_reports: Vec<WatchReport>,
    pub recoveries: Vec<Recovery>,
    pub llm_calls: usize,
    pub distinct_questions: usize,
    pub llm_faults: Vec<(FaultKind, usize)>,
    pub submit_retries: BTreeMap<String, u64>,
    /// When every accepted quiz had ended (or the drain deadline passed), since the start.
    pub drained_at: Duration,
    pub took: Duration,
    /// When the run started, to place stalls on the fault timeline.
    pub started: std::time::Instant,
}

impl ChaosReport {
    pub fn lost(&self) -> usize {
        self.audits.iter().filter(|audit| audit.is_none()).count()
    }

    pub fn duplicated(&self) -> usize {
        self.audits
            .iter()
            .flatten()
            .filter(|audit| !audit.duplications.is_empty())
            .count()
    }

    /// Watchers that saw a gap, a duplicate or a question twice, or missed the end of a quiz
    /// that ended: their live stream stopped short of it (only the driver's final resume showed
    /// it), or they never saw it at all. A client must be told its quiz ended without having
    /// to guess that it should reconnect.
    pub fn bad_watchers(&self) -> usize {
        self.watch_reports
            .iter()
            .filter(|report| {
                report.gaps + report.duplicates + report.repeated_indices > 0
                    || report.stalled
                    || !report.terminal
            })
            .count()
    }

    pub fn passed(&self) -> bool {
        self.lost() == 0 && self.duplicated() == 0 && self.bad_watchers() == 0
    }
}

fn joined<K: std::fmt::Display, V: std::fmt::Display>(entries: impl IntoIterator<Item = (K, V)>) -> String {
    let parts: Vec<String> = entries
        .into_iter()
        .map(|(key, value)| format!("{key}: {value}"))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        parts.join(", ")
    }
}

pub fn print_chaos(report: &ChaosReport) {
    let ended: Vec<&QuizAudit> = report.audits.iter().flatten().collect();
    let completed = ended.iter().filter(|audit| audit.status == "completed").count();
    let mut failed_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for audit in ended.iter().filter(|audit| audit.status == "failed") {
        let reason = audit
            .reason
            .as_deref()
            .map_or("(no reason)".to_owned(), audit::short_reason);
        *failed_by_reason.entry(reason).or_default() += 1;
    }
    let mut question_errors: BTreeMap<String, u64> = BTreeMap::new();
    for audit in &ended {
        for (reason, count) in &audit.question_errors {
            *question_errors.entry(reason.clone()).or_default() += count;
        }
    }
    let incomplete = ended.iter().filter(|audit| audit.incomplete).count();
    let by_source = |kind: &str| {
        report
            .accepted
            .iter()
            .filter(|quiz| quiz.source.name() == kind)
            .count()
    };
    let accepted_questions: usize = report.accepted.iter().map(|quiz| quiz.n_questions).sum();
    let watchers = &report.watch_reports;
    let sum = |field: fn(&WatchReport) -> u64| watchers.iter().map(field).sum::<u64>();

    println!(
        "\n## Chaos table: profile {}, seed {}\n",
        report.profile, report.seed
    );
    println!("| measure | value | must be |");
    println!("|---|---|---|");
    println!(
        "| quizzes submitted (questions) | {} ({}) | |",
        report.planned, report.planned_questions
    );
    println!(
        "| accepted (json / url sources; questions) | {} ({} / {}; {accepted_questions}) | all |",
        report.accepted.len(),
        by_source("json"),
        by_source("url")
    );
    for refusal in &report.refused {
        println!("| not accepted | {} | |", refusal.replace('|', "/"));
    }
    println!("| completed | {completed} | |");
    println!("| failed | {} | |", ended.len() - completed);
    for (reason, count) in &failed_by_reason {
        println!("| failed: {} | {count} | |", reason.replace('|', "/"));
    }
    println!(
        "| **lost** (accepted, not ended by the drain deadline) | **{}** | 0 |",
        report.lost()
    );
    for (quiz, _) in report
        .accepted
        .iter()
        .zip(&report.audits)
        .filter(|(_, audit)| audit.is_none())
    {
        println!(
            "| lost: quiz #{} ({} source) {} | 1 | |",
            quiz.number,
            quiz.source.name(),
            quiz.id
        );
    }
    println!(
        "| **quizzes with duplicated stats** (stats or event log count an answer twice) | **{}** | 0 |",
        report.duplicated()
    );
    for audit in ended.iter().filter(|audit| !audit.duplications.is_empty()) {
        println!("| duplicated: {} | 1 | |", audit.duplications.join("; "));
    }
    println!("| completed quizzes missing outcomes | {incomplete} | 0 |");
    let holes: Vec<String> = report
        .accepted
        .iter()
        .zip(&report.audits)
        .filter_map(|(quiz, audit)| {
            let audit = audit.as_ref()?;
            (!audit.log_seq_holes.is_empty())
                .then(|| format!("quiz #{} seq {:?}", quiz.number, audit.log_seq_holes))
        })
        .collect();
    println!(
        "| quizzes whose event log skips a sequence number (numbers reserved, never written) | {} {} | 0 |",
        holes.len(),
        if holes.is_empty() {
            String::new()
        } else {
            format!("({})", holes.join(", "))
        }
    );
    println!(
        "| questions answered with an error | {} | |",
        joined(&question_errors)
    );
    println!(
        "| LLM calls / distinct questions asked | {} / {} | |",
        report.llm_calls, report.distinct_questions
    );
    println!(
        "| LLM faults injected (10 % of calls) | {} | |",
        joined(report.llm_faults.iter().map(|(kind, count)| (kind.name(), count)))
    );
    println!(
        "| submission retries (gateway or broker down) | {} | |",
        joined(&report.submit_retries)
    );
    println!(
        "| WebSocket watchers (reconnects with resume) | {} ({}) | |",
        watchers.len(),
        sum(|r| r.reconnects)
    );
    println!(
        "| **WebSocket clients that saw a gap or duplicate** (seq gaps {}, duplicate seqs {}, answers twice {}, live stream stopped short of the end {}, never saw the end {}) | **{}** | 0 |",
        sum(|r| r.gaps),
        sum(|r| r.duplicates),
        sum(|r| r.repeated_indices),
        watchers.iter().filter(|r| r.stalled).count(),
        watchers.iter().filter(|r| !r.terminal).count(),
        report.bad_watchers()
    );
    for (quiz, watcher) in report
        .accepted
        .iter()
        .zip(watchers)
        .filter(|(_, watcher)| !watcher.anomalies.is_empty())
    {
        println!(
            "| quiz #{} ({}) {}: {} | 1 | |",
            quiz.number,
            quiz.source.name(),
            quiz.id,
            watcher.anomalies.join("; ")
        );
    }
    for (quiz, watcher) in report
        .accepted
        .iter()
        .zip(watchers)
        .filter(|(_, watcher)| watcher.stalled)
    {
        let since = watcher.stalled_since.map_or("before any event".to_owned(), |at| {
            format!("at {:.1}s", at.duration_since(report.started).as_secs_f64())
        });
        println!(
            "| stopped short: quiz #{} ({}) {} live stream silent after seq {} ({since}); the final resume got it to seq {} | 1 | |",
            quiz.number,
            quiz.source.name(),
            quiz.id,
            watcher.stalled_after_seq,
            watcher.last_seq
        );
    }
    println!(
        "| all quizzes ended at / run took | {:.0}s / {:.0}s | |",
        report.drained_at.as_secs_f64(),
        report.took.as_secs_f64()
    );

    println!("\n### Recovery after each fault\n");
    println!(
        "ready = from the restart command to all four services answering /readyz 200 (a broker's own boot included);"
    );
    println!(
        "next answer = from the restart command to the next question_answered event any WebSocket client received.\n"
    );
    println!("| # | at | fault | down | ready after | next answer after |");
    println!("|---|---|---|---|---|---|");
    for (number, recovery) in report.recoveries.iter().enumerate() {
        let progress = match (recovery.work_pending, recovery.progress_after) {
            (false, _) => "- (no open quiz)".to_owned(),
            (true, Some(took)) => format!("{:.1}s", took.as_secs_f64()),
            (true, None) => "none within 60s".to_owned(),
        };
        println!(
            "| {} | {:.0}s | {} | {:.1}s | {:.1}s | {progress} |",
            number + 1,
            recovery.at.as_secs_f64(),
            recovery.fault.label(),
            recovery.down.as_secs_f64(),
            recovery.ready_after.as_secs_f64()
        );
    }
    let verdict = if report.passed() { "PASSED" } else { "FAILED" };
    println!(
        "\nchaos {verdict}: lost {}, duplicated {}, WebSocket clients with a gap/duplicate/no end {}",
        report.lost(),
        report.duplicated(),
        report.bad_watchers()
    );
}
