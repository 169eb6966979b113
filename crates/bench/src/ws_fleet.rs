//! Thousands of WebSocket clients following one quiz, from one process and few tasks.
//!
//! Clients are split into groups; one task owns a group's sockets (a `SelectAll` of
//! tokio-tungstenite streams with 4 KiB read buffers instead of the default 128 KiB), so
//! 10,000 clients cost 100 tasks. Each event frame is matched by its `seq` against the
//! publisher's table of due times ([`Ledger`]), and its delivery latency goes into the
//! group's histogram for the step that published it; groups fold their histograms into
//! the shared ones every 100 ms. Pings are answered by tungstenite while reading.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::SelectAll;
use hdrhistogram::Histogram;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::constant_rate::latency_histogram;

/// Loopback source addresses the clients spread over (127.0.0.1–4): ~28k ephemeral ports
/// each, so reruns never run out even with sockets still in TIME_WAIT.
const SOURCE_ADDRESSES: u8 = 4;
/// How often a group folds its counts into the shared ledger.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// When each sequence number was due to be published, which step it belongs to, and
/// what the clients received, per step.
pub struct Ledger {
    pub base: Instant,
    /// Due time of `seq`, in nanoseconds after `base`; 0 while unknown.
    due_ns: Vec<AtomicU64>,
    /// Step of `seq` (index into the per-step vectors).
    step_of: Vec<AtomicU32>,
    latency_us: Vec<Mutex<Histogram<u64>>>,
    delivered: Vec<AtomicU64>,
    /// Latest receipt per step, in nanoseconds after `base`.
    last_receipt_ns: Vec<AtomicU64>,
    /// Clients that got their `subscribed` message.
    pub subscribed: AtomicUsize,
    /// Clients whose socket ended (closed by the server, or an error), and why (the first few).
    pub ended: AtomicUsize,
    pub end_reasons: Mutex<Vec<String>>,
    pub failed_connects: AtomicUsize,
}

impl Ledger {
    pub fn new(max_seq: usize, steps: usize) -> anyhow::Result<Self> {
        Ok(Self {
            base: Instant::now(),
            due_ns: (0..=max_seq).map(|_| AtomicU64::new(0)).collect(),
            step_of: (0..=max_seq).map(|_| AtomicU32::new(0)).collect(),
            latency_us: (0..steps)
                .map(|_| latency_histogram().map(Mutex::new))
                .collect::<anyhow::Result<_>>()?,
            delivered: (0..steps).map(|_| AtomicU64::new(0)).collect(),
            last_receipt_ns: (0..steps).map(|_| AtomicU64::new(0)).collect(),
            subscribed: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            end_reasons: Mutex::new(Vec::new()),
            failed_connects: AtomicUsize::new(0),
        })
    }

    pub fn max_seq(&self) -> u64 {
        self.due_ns.len() as u64 - 1
    }

    /// Records that `seq` (of `step`) is due at `due`; call before publishing it.
    pub fn schedule(&self, seq: u64, step: usize, due: Instant) {
        let Some(slot) = self.due_ns.get(seq as usize) else {
            return;
        };
        if let Some(step_slot) = self.step_of.get(seq as usize) {
            step_slot.store(step as u32, Ordering::SeqCst);
        }
        let nanos = u64::try_from(due.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        slot.store(nanos.max(1), Ordering::SeqCst);
    }

    pub fn delivered(&self, step: usize) -> u64 {
        self.delivered
            .get(step)
            .map_or(0, |count| count.load(Ordering::SeqCst))
    }

    pub fn last_receipt(&self, step: usize) -> Option<Instant> {
        let nanos = self.last_receipt_ns.get(step)?.load(Ordering::SeqCst);
        (nanos > 0).then(|| self.base + Duration::from_nanos(nanos))
    }

    /// The step's latency histogram so far (µs).
    pub fn latency(&self, step: usize) -> anyhow::Result<Histogram<u64>> {
        let histogram = self
            .latency_us
            .get(step)
            .ok_or_else(|| anyhow::anyhow!("no step {step}"))?;
        Ok(histogram
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone())
    }

    fn note_reason(&self, reason: String) {
        let mut reasons = self
            .end_reasons
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if reasons.len() < 5 {
            reasons.push(reason);
        }
    }
}

/// A group's counts since its last flush.
struct Local {
    latency_us: Vec<Histogram<u64>>,
    delivered: Vec<u64>,
    last_receipt_ns: Vec<u64>,
}

impl Local {
    fn flush(&mut self, ledger: &Ledger) -> anyhow::Result<()> {
        for (step, histogram) in self.latency_us.iter_mut().enumerate() {
            if histogram.is_empty() {
                continue;
            }
            if let Some(shared) = ledger.latency_us.get(step) {
                shared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .add(&*histogram)?;
            }
            histogram.reset();
            if let Some(count) = ledger.delivered.get(step) {
                count.fetch_add(std::mem::take(&mut self.delivered[step]), Ordering::SeqCst);
            }
            if let Some(last) = ledger.last_receipt_ns.get(step) {
                last.fetch_max(self.last_receipt_ns[step], Ordering::SeqCst);
            }
        }
        Ok(())
    }
}

/// Where the clients connect and what they ask for.
#[derive(Clone)]
pub struct Target {
    pub server: SocketAddr,
    /// The request path and query, e.g. `/v1/ws?quiz_id=…&after=1`.
    pub path: String,
    /// An API key with the read scope, sent as `Authorization: Bearer`.
    pub api_key: String,
}

/// Connects clients `first..first + count` (sequentially) and serves them until `stop`.
pub async fn run_group(
    target: Target,
    first: usize,
    count: usize,
    ledger: Arc<Ledger>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let url = format!("ws://{}{}", target.server, target.path);
    let mut sockets = SelectAll::new();
    for client in first..first + count {
        if stop.is_cancelled() {
            return Ok(());
        }
        let source = Ipv4Addr::new(127, 0, 0, 1 + (client % usize::from(SOURCE_ADDRESSES)) as u8);
        match connect(&url, &target.api_key, target.server, source, config).await {
            Ok(socket) => {
                // Stop after the first error or close: the stream has nothing more to say.
                // Then one `None`, so the group counts every socket that ends, however it ends.
                let socket = socket
                    .scan(false, |ended, item| {
                        let output = if *ended { None } else { Some(item) };
                        if let Some(item) = &output {
                            *ended = matches!(item, Err(_) | Ok(Message::Close(_)));
                        }
                        futures::future::ready(output)
                    })
                    .map(Some)
                    .chain(futures::stream::once(futures::future::ready(None)));
                sockets.push(Box::pin(socket));
            }
            Err(error) => {
                ledger.failed_connects.fetch_add(1, Ordering::SeqCst);
                ledger.note_reason(format!("client {client} could not connect: {error}"));
            }
        }
    }
    let steps = ledger.delivered.len();
    let mut local = Local {
        latency_us: (0..steps)
            .map(|_| latency_histogram())
            .collect::<anyhow::Result<_>>()?,
        delivered: vec![0; steps],
        last_receipt_ns: vec![0; steps],
    };
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    loop {
        tokio::select! {
            item = sockets.next() => match item {
                Some(Some(Ok(Message::Text(text)))) => receive(text.as_str(), &ledger, &mut local),
                Some(Some(Ok(Message::Close(frame)))) => ledger.note_reason(format!("closed: {frame:?}")),
                Some(Some(Ok(_))) => {}
                Some(Some(Err(error))) => ledger.note_reason(format!("error: {error}")),
                Some(None) => {
                    ledger.ended.fetch_add(1, Ordering::SeqCst);
                }
                None => break,
            },
            _ = flush.tick() => local.flush(&ledger)?,
            () = stop.cancelled() => break,
        }
    }
    local.flush(&ledger)
}

async fn connect(
    url: &str,
    api_key: &str,
    server: SocketAddr,
    source: Ipv4Addr,
    config: WebSocketConfig,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(server).await?;
    stream.set_nodelay(true)?;
    let request = authorized_request(url, api_key)?;
    let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// A WebSocket handshake request for `url` carrying `Authorization: Bearer <api_key>`.
pub fn authorized_request(
    url: &str,
    api_key: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {api_key}").parse()?);
    Ok(request)
}

fn receive(text: &str, ledger: &Ledger, local: &mut Local) {
    let now_ns = u64::try_from(ledger.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
    let Some(seq) = seq_of(text) else {
        if text.contains(r#""type":"subscribed""#) {
            ledger.subscribed.fetch_add(1, Ordering::SeqCst);
        }
        return;
    };
    let index = seq as usize;
    let due = ledger
        .due_ns
        .get(index)
        .map_or(0, |due| due.load(Ordering::SeqCst));
    if due == 0 {
        return;
    }
    let step = ledger
        .step_of
        .get(index)
        .map_or(0, |step| step.load(Ordering::SeqCst)) as usize;
    let Some(histogram) = local.latency_us.get_mut(step) else {
        return;
    };
    histogram.saturating_record((now_ns.saturating_sub(due) / 1_000).max(1));
    local.delivered[step] += 1;
    local.last_receipt_ns[step] = local.last_receipt_ns[step].max(now_ns);
}

/// The `"seq":N` of an event frame, without parsing the whole JSON.
fn seq_of(text: &str) -> Option<u64> {
    let start = text.find(r#""seq":"#)? + r#""seq":"#.len();
    let digits = &text[start..];
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::seq_of;

    #[test]
    fn finds_the_sequence_number() {
        assert_eq!(
            seq_of(r#"{"type":"question_answered","quiz_id":"q","seq":42,"index":1}"#),
            Some(42)
        );
        assert_eq!(seq_of(r#"{"type":"subscribed","quiz_id":"q","after":1}"#), None);
    }
}
