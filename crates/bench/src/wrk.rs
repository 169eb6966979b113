//! Driving wrk (Debian's `wrk`, closed loop, max throughput) and reading its report.
//!
//! Every request is described by a Lua script (method, headers, body), so the same
//! code drives a bare GET, an authenticated GET and an authenticated POST.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

/// One request wrk repeats.
pub struct Request<'a> {
    pub method: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a str>,
}

/// How hard wrk pushes: threads, open connections, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub threads: u32,
    pub connections: u32,
    pub duration: Duration,
}

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct WrkReport {
    pub requests: u64,
    pub requests_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
    /// Responses outside 2xx/3xx (wrk's "Non-2xx or 3xx responses").
    pub non_2xx: u64,
    /// connect + read + write + timeout socket errors.
    pub socket_errors: u64,
}

/// Whether wrk can be started at all.
pub fn available() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// Writes the Lua script that makes wrk send `request`.
pub fn write_script(dir: &Path, name: &str, request: &Request<'_>) -> anyhow::Result<PathBuf> {
    let mut lua = format!("wrk.method = {:?}\n", request.method);
    for (name, value) in request.headers {
        lua.push_str(&format!("wrk.headers[{name:?}] = {value:?}\n"));
    }
    if let Some(body) = request.body {
        // A level-3 long bracket: JSON never contains `]===]`, and nothing inside is escaped.
        anyhow::ensure!(!body.contains("]===]"), "body would end the Lua long string");
        lua.push_str(&format!("wrk.body = [===[{body}]===]\n"));
    }
    let path = dir.join(format!("{name}.lua"));
    std::fs::write(&path, lua).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Runs wrk against `url` with `script` and parses its report. Blocking: call it from
/// `spawn_blocking` when the servers under test share this process's runtime.
pub fn run(url: &str, script: &Path, load: Load) -> anyhow::Result<WrkReport> {
    let output = Command::new("wrk")
        .arg(format!("--threads={}", load.threads))
        .arg(format!("--connections={}", load.connections))
        .arg(format!("--duration={}s", load.duration.as_secs().max(1)))
        .arg("--timeout=10s")
        .arg("--latency")
        .arg(format!("--script={}", script.display()))
        .arg(url)
        .output()
        .context("starting wrk (Debian: apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(
        output.status.success(),
        "wrk failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse(&stdout).with_context(|| format!("reading wrk's report:\n{stdout}"))
}

fn parse(report: &str) -> anyhow::Result<WrkReport> {
    let mut requests = None;
    let mut requests_per_sec = None;
    let (mut p50, mut p99) = (None, None);
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    for line in report.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rate] => requests_per_sec = Some(rate.parse::<f64>()?),
            ["50%", value] => p50 = Some(duration(value)?),
            ["99%", value] => p99 = Some(duration(value)?),
            [count, "requests", "in", ..] => requests = Some(count.parse::<u64>()?),
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                socket_errors = rest
                    .iter()
                    .filter_map(|word| word.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    Ok(WrkReport {
        requests: requests.context("no request count")?,
        requests_per_sec: requests_per_sec.context("no Requests/sec")?,
        p50: p50.context("no 50% latency")?,
        p99: p99.context("no 99% latency")?,
        non_2xx,
        socket_errors,
    })
}

/// wrk's durations: `812.00us`, `1.23ms`, `2.01s`, `1.50m`.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .with_context(|| format!("no unit in {text}"))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => anyhow::bail!("unknown unit {other}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn reads_a_wrk_report() {
        let report = "Running 10s test @ http://127.0.0.1:1/hello
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.23ms  456.00us  12.34ms   89.00%
    Req/Sec    50.00k     2.00k   55.00k    70.00%
  Latency Distribution
     50%  812.00us
     75%    1.40ms
     90%    1.80ms
     99%    3.20ms
  500123 requests in 10.00s, 60.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 12
Requests/sec:  50012.30
Transfer/sec:      6.00MB
";
        let parsed = parse(report).unwrap();
        assert_eq!(parsed.requests, 500_123);
        assert!((parsed.requests_per_sec - 50_012.3).abs() < 1e-6);
        assert_eq!(parsed.p50, Duration::from_micros(812));
        assert_eq!(parsed.p99, Duration::from_micros(3_200));
        assert_eq!(parsed.non_2xx, 12);
        assert_eq!(parsed.socket_errors, 3);
    }
}
