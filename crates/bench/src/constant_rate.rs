//! An open-loop, constant-rate HTTP/1.1 load generator (what wrk2 does; Debian ships only wrk).
//!
//! Request `i` is due at `start + i / rate`, whatever happened to earlier requests, and
//! requests are dealt round-robin to keep-alive connections. Latency is measured the way
//! wrk2 measures it, so coordinated omission does not hide a stall: a request that is
//! due while its connection is still busy counts from the moment it was due, so the
//! queueing behind a slow response is part of its latency. A request whose connection
//! is idle counts from when it is actually written: tokio's timer wakes up to a
//! millisecond late, and that lateness is the generator's, not the server's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Latencies are recorded in microseconds, up to a minute, to 3 significant digits.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

/// What a constant-rate run measured.
pub struct RateReport {
    /// Requests per second asked for.
    pub target_rate: f64,
    /// Responses per second received over the run.
    pub achieved_rate: f64,
    pub responses: u64,
    /// Responses whose status was not 200.
    pub non_200: u64,
    /// Latency in microseconds, from when each request was due (or written, see the module doc).
    pub latency_us: Histogram<u64>,
}

impl RateReport {
    pub fn quantile(&self, quantile: f64) -> Duration {
        Duration::from_micros(self.latency_us.value_at_quantile(quantile))
    }
}

/// Sends `request` (raw HTTP/1.1 bytes, keep-alive) to `address` at `rate` per second
/// over `connections` connections for `duration`.
pub async fn run(
    address: SocketAddr,
    request: Vec<u8>,
    rate: f64,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<RateReport> {
    anyhow::ensure!(
        rate > 0.0 && connections > 0,
        "rate and connections must be positive"
    );
    let request: Arc<[u8]> = request.into();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        streams.push(stream);
    }
    // Connections are open before the clock starts, so connecting is not counted.
    let start = Instant::now() + Duration::from_millis(20);
    let workers: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(lane, stream)| {
            let request = Arc::clone(&request);
            let schedule = Schedule {
                start,
                rate,
                first: lane as u64,
                step: connections as u64,
                total,
            };
            tokio::spawn(lane_loop(stream, request, schedule))
        })
        .collect();
    let mut latency_us = latency_histogram()?;
    let (mut responses, mut non_200) = (0, 0);
    for worker in workers {
        let lane = worker.await??;
        latency_us.add(&lane.latency_us)?;
        responses += lane.responses;
        non_200 += lane.non_200;
    }
    let elapsed = start.elapsed().as_secs_f64().max(1e-9);
    Ok(RateReport {
        target_rate: rate,
        achieved_rate: responses as f64 / elapsed,
        responses,
        non_200,
        latency_us,
    })
}

/// Which requests one connection sends: `first`, `first + step`, … below `total`.
struct Schedule {
    start: Instant,
    rate: f64,
    first: u64,
    step: u64,
    total: u64,
}

struct LaneReport {
    latency_us: Histogram<u64>,
    responses: u64,
    non_200: u64,
}

async fn lane_loop(
    mut stream: TcpStream,
    request: Arc<[u8]>,
    schedule: Schedule,
) -> anyhow::Result<LaneReport> {
    let mut report = LaneReport {
        latency_us: latency_histogram()?,
        responses: 0,
        non_200: 0,
    };
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut index = schedule.first;
    while index < schedule.total {
        let due = schedule.start + Duration::from_secs_f64(index as f64 / schedule.rate);
        let began = if Instant::now() < due {
            tokio::time::sleep_until(due.into()).await;
            Instant::now()
        } else {
            due
        };
        stream.write_all(&request).await?;
        let status = read_response(&mut stream, &mut buffer).await?;
        let micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX);
        report.latency_us.saturating_record(micros.max(1));
        report.responses += 1;
        if status != 200 {
            report.non_200 += 1;
        }
        index += schedule.step;
    }
    Ok(report)
}

/// Reads one response with a `Content-Length` body; returns its status. Leftover bytes
/// stay in `buffer` (there are none: one request is in flight per connection).
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<u16> {
    loop {
        if let Some(header_end) = find(buffer, b"\r\n\r\n") {
            let head = std::str::from_utf8(&buffer[..header_end]).context("response head is not UTF-8")?;
            let status: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .context("no status in the response")?;
            let mut length = None;
            for line in head.split("\r\n").skip(1) {
                let Some((name, value)) = line.split_once(':') else {
                    continue;
                };
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
                anyhow::ensure!(
                    !name.eq_ignore_ascii_case("transfer-encoding"),
                    "chunked responses are not supported"
                );
            }
            let end = header_end + 4 + length.context("no content-length")?;
            while buffer.len() < end {
                fill(stream, buffer).await?;
            }
            buffer.drain(..end);
            return Ok(status);
        }
        fill(stream, buffer).await?;
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<()> {
    buffer.reserve(8 * 1024);
    let read = stream.read_buf(buffer).await?;
    anyhow::ensure!(read > 0, "the server closed the connection");
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
