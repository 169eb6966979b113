//! `EgressProxy`: one browser session's HTTP proxy on 127.0.0.1:<ephemeral port>.
//!
//! Chromium sends everything here (`--proxy-server`, with `<-loopback>` so loopback is not
//! bypassed): `CONNECT host:port` for https and websockets, absolute-form `GET http://host/...`
//! for http. Each connection carries one destination: the host is resolved once, every address
//! is checked with the policy, and the proxy connects only to a checked address (so a second,
//! different DNS answer is never used). Plain http requests are forwarded with `Connection:
//! close` both ways, so the browser cannot reuse the connection for another host.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use url::{Position, Url};

use super::log::{Blocked, BlockedKind, EgressLog};
use super::policy::{EgressPolicy, Reason, Refusal};
use super::target::{Target, resolve};

/// A request or response head larger than this is refused (Chromium's own limit is 256 KiB for
/// responses; request heads are small).
const MAX_HEAD_BYTES: usize = 256 * 1024;
/// How long the browser may take to send a request head on a fresh connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to one checked address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Hop-by-hop headers the proxy replaces with its own `Connection: close`.
const HOP_BY_HOP: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
];

/// A running proxy; it stops (with all its connections) when dropped.
#[derive(Debug)]
pub struct EgressProxy {
    port: u16,
    log: EgressLog,
    shutdown: CancellationToken,
}

impl EgressProxy {
    /// Binds 127.0.0.1:0 and serves until dropped.
    pub async fn start(policy: Arc<EgressPolicy>) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let port = listener.local_addr()?.port();
        let log = EgressLog::default();
        let shutdown = CancellationToken::new();
        tokio::spawn(accept_loop(listener, policy, log.clone(), shutdown.clone()));
        Ok(Self { port, log, shutdown })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// What this proxy refused or could not reach since the log was last cleared.
    pub fn log(&self) -> &EgressLog {
        &self.log
    }
}

impl Drop for EgressProxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    policy: Arc<EgressPolicy>,
    log: EgressLog,
    shutdown: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, _)) => {
                let (policy, log, shutdown) = (Arc::clone(&policy), log.clone(), shutdown.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        result = serve(client, &policy, &log) => {
                            if let Err(error) = result {
                                tracing::debug!(%error, "egress proxy connection ended with an error");
                            }
                        }
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "egress proxy accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the browser asked for.
enum Request {
    /// `CONNECT host:port`: a tunnel.
    Connect(Target),
    /// An absolute-form http request, rewritten to origin form for the upstream server.
    Forward { target: Target, head: Vec<u8> },
}

async fn serve(mut client: TcpStream, policy: &EgressPolicy, log: &EgressLog) -> std::io::Result<()> {
    let mut from_client = HeadReader::default();
    let head = match tokio::time::timeout(HEAD_TIMEOUT, from_client.next_head(&mut client)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(error)) => return Err(error),
    };
    let request = match parse_request(&head, policy) {
        Ok(request) => request,
        Err(refusal) => {
            let blocked = Blocked::new(refusal.subject.clone(), BlockedKind::Refused(refusal));
            return reply_blocked(&mut client, record(log, blocked)).await;
        }
    };
    match request {
        Request::Connect(target) => {
            let mut upstream = match open(policy, &target).await {
                Ok(upstream) => upstream,
                Err(blocked) => return reply_blocked(&mut client, record(log, blocked)).await,
            };
            client
                .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await?;
            upstream.write_all(&from_client.buffer).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
        Request::Forward { target, head } => {
            let mut upstream = match open(policy, &target).await {
                Ok(upstream) => upstream,
                Err(blocked) => return reply_blocked(&mut client, record(log, blocked)).await,
            };
            upstream.write_all(&head).await?;
            upstream.write_all(&from_client.buffer).await?;
            let mut from_upstream = HeadReader::default();
            // Interim 1xx heads pass through unchanged; the final head gets `Connection: close`.
            while let Some(response) = from_upstream.next_head(&mut upstream).await? {
                let interim = response.starts_with(b"HTTP/1.1 1") && !response.starts_with(b"HTTP/1.1 101");
                if interim {
                    client.write_all(&response).await?;
                    continue;
                }
                client.write_all(&rewrite_head(&response, None)).await?;
                break;
            }
            client.write_all(&from_upstream.buffer).await?;
            tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
        }
    }
    Ok(())
}

/// Logs, counts and remembers a blocked request; returns it for the reply.
fn record(log: &EgressLog, blocked: Blocked) -> Blocked {
    match &blocked.kind {
        BlockedKind::Refused(refusal) => {
            crate::metrics::egress_refusal(refusal.reason);
            tracing::info!(target = %blocked.target, reason = refusal.reason.label(), %refusal, "egress refused");
        }
        BlockedKind::Unreachable(reason) => {
            tracing::debug!(target = %blocked.target, %reason, "egress destination unreachable");
        }
    }
    log.record(blocked.clone());
    blocked
}

/// Resolves once, checks, and connects to the first checked address that answers.
async fn open(policy: &EgressPolicy, target: &Target) -> Result<TcpStream, Blocked> {
    let addresses = resolve(policy, target).await?;
    let mut last_error = String::from("no address");
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(error)) => last_error = format!("{address}: {error}"),
            Err(_) => last_error = format!("{address}: connect timed out"),
        }
    }
    Err(Blocked::new(target.key(), BlockedKind::Unreachable(last_error)))
}

async fn reply_blocked(client: &mut TcpStream, blocked: Blocked) -> std::io::Result<()> {
    let (status, label, body) = match &blocked.kind {
        BlockedKind::Refused(refusal) => (
            "403 Forbidden",
            refusal.reason.label(),
            format!("refused: {refusal}\n"),
        ),
        BlockedKind::Unreachable(reason) => (
            "502 Bad Gateway",
            "unreachable",
            format!("unreachable: {reason}\n"),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\nx-egress-refused: {label}\r\n\
         content-length: {}\r\nconnection: close\r\nproxy-connection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// Parses a request head; anything the proxy will not carry is a `Refusal`.
fn parse_request(head: &[u8], policy: &EgressPolicy) -> Result<Request, Refusal> {
    let malformed = |what: &str| Refusal {
        reason: Reason::Malformed,
        subject: what.to_owned(),
        ip: None,
        port: 0,
    };
    let line_end = head
        .windows(2)
        .position(|pair| pair == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| malformed("request line is not utf-8"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("bad request line"));
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(malformed("unsupported http version"));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        return Target::from_authority(target)
            .map(Request::Connect)
            .ok_or_else(|| malformed("bad connect authority"));
    }
    let url = Url::parse(target).map_err(|_| malformed("request target is not an absolute url"))?;
    policy.check_scheme(url.scheme())?;
    if url.scheme() != "http" {
        return Err(malformed("https must be tunnelled with connect"));
    }
    let target_host = Target::from_url(&url).ok_or_else(|| malformed("request url has no host"))?;
    let request_line = format!(
        "{method} {} {version}",
        &url[Position::BeforePath..Position::AfterQuery]
    );
    Ok(Request::Forward {
        target: target_host,
        head: rewrite_head(head, Some(&request_line)),
    })
}

/// The same head with hop-by-hop headers replaced by `Connection: close` (and, when given, a new first line).
fn rewrite_head(head: &[u8], first_line: Option<&str>) -> Vec<u8> {
    let mut lines = head
        .split(|byte| *byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let original_first = lines.next().unwrap_or_default();
    let mut out = Vec::with_capacity(head.len() + 64);
    out.extend_from_slice(first_line.map_or(original_first, str::as_bytes));
    out.extend_from_slice(b"\r\n");
    for line in lines.filter(|line| !line.is_empty()) {
        let name = line.split(|byte| *byte == b':').next().unwrap_or_default();
        let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n");
    if first_line.is_none() {
        out.extend_from_slice(b"proxy-connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Reads heads (everything up to a blank line) and keeps the bytes after them.
#[derive(Default)]
struct HeadReader {
    buffer: Vec<u8>,
}

impl HeadReader {
    /// The next head, or `None` when the stream ended before one was complete.
    async fn next_head(&mut self, stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = [0_u8; 8192];
        loop {
            if let Some(end) = self.buffer.windows(4).position(|window| window == b"\r\n\r\n") {
                let rest = self.buffer.split_off(end + 4);
                return Ok(Some(std::mem::replace(&mut self.buffer, rest)));
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(std::io::Error::other("head too large"));
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;
    use crate::settings::EgressSettings;

    fn policy() -> EgressPolicy {
        EgressPolicy::new(&EgressSettings::default())
    }

    #[test]
    fn absolute_form_requests_become_origin_form_with_connection_close() {
        let head =
            b"GET http://1.1.1.1/a/b?c=d HTTP/1.1\r\nHost: 1.1.1.1\r\nProxy-Connection: keep-alive\r\n\
                     Accept: */*\r\n\r\n";
        let Ok(Request::Forward { target, head }) = parse_request(head, &policy()) else {
            panic!("not a forward");
        };
        assert_eq!(target.key(), "1.1.1.1:80");
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET /a/b?c=d HTTP/1.1\r\nHost: 1.1.1.1\r\nAccept: */*\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn connect_and_bad_requests_are_parsed_without_connecting() {
        let Ok(Request::Connect(target)) = parse_request(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", &policy())
        else {
            panic!("not a connect");
        };
        assert_eq!(target.key(), "[::1]:443");
        for head in [
            &b"GET /relative HTTP/1.1\r\n\r\n"[..],
            b"GET ftp://1.1.1.1/ HTTP/1.1\r\n\r\n",
            b"GET https://1.1.1.1/ HTTP/1.1\r\n\r\n",
            b"CONNECT user@1.1.1.1:443 HTTP/1.1\r\n\r\n",
            b"GET http://1.1.1.1/ HTTP/2\r\n\r\n",
        ] {
            assert!(
                parse_request(head, &policy()).is_err(),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn responses_are_marked_connection_close() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n";
        assert_eq!(
            String::from_utf8(rewrite_head(head, None)).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: close\r\nproxy-connection: close\r\n\r\n"
        );
    }
}
