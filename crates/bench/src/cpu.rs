//! CPU time of this process and of the local broker and Redis over a stretch of a run,
//! from `/proc`: on a two-core machine shared by all three, where the cores went says
//! what bounds a throughput figure.

use std::time::{Duration, Instant};

/// The processes watched besides this one, by their `comm` name.
const OTHERS: [(&str, &str); 2] = [("rabbitmq", "beam.smp"), ("redis", "redis-server")];

/// Clock ticks per second in `/proc/*/stat`: `USER_HZ`, which the kernel's ABI fixes at
/// 100 on every architecture Linux supports for userspace.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time used so far by this process and by each watched process (summed over every
/// process of that name), at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    own: Duration,
    others: Vec<(&'static str, Duration)>,
}

impl CpuSnapshot {
    pub fn take() -> Self {
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_time(&stat))
            .unwrap_or_default();
        Self {
            at: Instant::now(),
            own,
            others: cpu_time_by_name(),
        }
    }

    /// Wall time between `earlier` and this snapshot.
    pub fn since(&self, earlier: &CpuSnapshot) -> Duration {
        self.at.saturating_duration_since(earlier.at)
    }

    /// Cores each process kept busy on average since `earlier`, as a line for the report.
    pub fn line_since(&self, earlier: &CpuSnapshot, own_label: &str) -> String {
        let wall = self.since(earlier).as_secs_f64().max(1e-9);
        let cores = |now: Duration, then: Duration| now.saturating_sub(then).as_secs_f64() / wall;
        let mut parts = vec![format!("{own_label} {:.2}", cores(self.own, earlier.own))];
        for ((label, now), (_, then)) in self.others.iter().zip(&earlier.others) {
            parts.push(format!("{label} {:.2}", cores(*now, *then)));
        }
        format!(
            "cores busy on average (of {}): {}",
            std::thread::available_parallelism().map_or(0, usize::from),
            parts.join(", ")
        )
    }
}

/// Total CPU time of each watched name in [`OTHERS`] (every process of that name), in one
/// pass over `/proc`.
fn cpu_time_by_name() -> Vec<(&'static str, Duration)> {
    let mut totals: Vec<(&'static str, Duration)> =
        OTHERS.iter().map(|(label, _)| (*label, Duration::ZERO)).collect();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return totals;
    };
    for entry in entries.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(name) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let Some(slot) = OTHERS.iter().position(|(_, comm)| name.trim() == *comm) else {
            continue;
        };
        if let Some(time) = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|stat| cpu_time(&stat))
        {
            totals[slot].1 += time;
        }
    }
    totals
}

/// `utime + stime` from one `/proc/<pid>/stat` line. The command name in parentheses may
/// hold spaces, so fields are counted from the last `)`.
fn cpu_time(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((user + system) as f64 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_and_system_time_after_a_command_name_with_spaces() {
        let stat = "42 (beam (smp) x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 30 0 1 2 3";
        assert_eq!(cpu_time(stat), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reads_this_process_and_a_snapshot_moves_forward() -> std::io::Result<()> {
        let stat = std::fs::read_to_string("/proc/self/stat")?;
        assert!(cpu_time(&stat).is_some(), "unparsed: {stat}");
        let before = CpuSnapshot::take();
        let after = CpuSnapshot::take();
        assert!(after.own >= before.own);
        assert!(
            after
                .line_since(&before, "me")
                .starts_with("cores busy on average")
        );
        Ok(())
    }
}
