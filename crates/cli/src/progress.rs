//! The live progress bar on stderr, fed by [`Update`]s from the stream (or from polling).

use std::collections::BTreeSet;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::stream::Update;

/// Redraws per second: smooth enough to look live, cheap on a slow terminal.
const REFRESH_HZ: u8 = 10;
const TICK: Duration = Duration::from_millis(120);

pub struct Progress {
    bar: ProgressBar,
    /// Questions that have ended, so a count from `stats` and one from events agree.
    ended: BTreeSet<u32>,
    failed: u32,
    cached: u32,
}

impl Progress {
    /// A bar drawn on stderr when `visible`, otherwise one that draws nothing.
    pub fn new(visible: bool, quiz_id: &str) -> Self {
        let bar = if visible {
            ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(REFRESH_HZ))
        } else {
            ProgressBar::hidden()
        };
        if visible {
            // Keeps the spinner and the clock moving between answers (a ticker thread).
            bar.enable_steady_tick(TICK);
        }
        // The template is a constant: it parses, and `default_spinner` is the fallback anyway.
        let style = ProgressStyle::with_template(
            "{spinner} {prefix} [{bar:30}] {pos}/{len} answered{msg} ({elapsed})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(format!("quiz {}", short_id(quiz_id)));
        Self {
            bar,
            ended: BTreeSet::new(),
            failed: 0,
            cached: 0,
        }
    }

    pub fn apply(&mut self, update: &Update) {
        match update {
            Update::Total(total) => self.set_total(*total),
            Update::Answered {
                index,
                failed,
                cached,
            } => {
                if self.ended.insert(*index) {
                    self.failed += u32::from(*failed);
                    self.cached += u32::from(*cached);
                    self.bar.set_position(self.ended.len() as u64);
                }
            }
            Update::Counts {
                total,
                answered,
                failed,
            } => {
                self.set_total(*total);
                self.failed = *failed;
                self.bar
                    .set_position(u64::from(answered + failed).max(self.ended.len() as u64));
            }
            Update::Reconnecting { why } => self.bar.println(format!("stream interrupted ({why}); resuming")),
        }
        self.bar.set_message(self.details());
    }

    /// Runs `write` (a message to stderr) with the bar out of the way.
    pub fn suspend<T>(&self, write: impl FnOnce() -> T) -> T {
        self.bar.suspend(write)
    }

    /// Removes the bar, so the table starts on a clean line.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn set_total(&self, total: u32) {
        // 0 while a page is being scraped: keep spinning without a length.
        if total > 0 {
            self.bar.set_length(u64::from(total));
        }
    }

    fn details(&self) -> String {
        let mut parts = Vec::new();
        if self.failed > 0 {
            parts.push(format!("{} failed", self.failed));
        }
        if self.cached > 0 {
            parts.push(format!("{} from cache", self.cached));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" · {}", parts.join(", "))
        }
    }
}

/// The first block of a UUID is enough to tell quizzes apart on one screen.
fn short_id(quiz_id: &str) -> &str {
    quiz_id.split('-').next().unwrap_or(quiz_id)
}
