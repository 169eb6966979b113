//! Test helpers: a loopback static file server and a browser pool wired to real chromedriver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use scraper_worker::browser::{BrowserPool, NetworkPolicy};
use scraper_worker::egress::EgressPolicy;
use scraper_worker::settings::{AllowRule, EgressSettings, ScrapeSettings, WebDriverSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The shared quiz-page corpus; CI places `shared/` beside the repository.
pub const CORPUS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/quiz-pages");
/// The scorer that measures extraction F1.
pub const SCORER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/tools/score-extraction.py"
);

/// Serves the files of `root` on 127.0.0.1:<random port> until the test's runtime ends.
pub async fn serve_dir(root: impl Into<PathBuf>) -> String {
    let root: PathBuf = root.into();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let root = root.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 8192];
                let Ok(n) = stream.read(&mut buffer).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&buffer[..n]);
                let path = request
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .split('?')
                    .next()
                    .unwrap_or("/")
                    .to_owned();
                let response = respond(&root, &path);
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{address}")
}

fn respond(root: &Path, path: &str) -> Vec<u8> {
    let relative = path.trim_start_matches('/');
    let file = root.join(relative);
    let body = if relative.contains("..") {
        None
    } else {
        std::fs::read(&file).ok()
    };
    let Some(body) = body else {
        return b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec();
    };
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript",
        Some("css") => "text/css",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    };
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend(body);
    response
}

/// A pool that spawns the real chromedriver, allowed to reach 127.0.0.1 on any port and
/// nothing else (no name is ever resolved); a missing driver or browser fails the test.
pub fn pool(size: usize) -> BrowserPool {
    pool_with(
        size,
        loopback_only(&[]),
        ScrapeSettings::default().page_load_timeout_ms,
    )
}

/// Egress settings allowing 127.0.0.1 on `ports` (every port when empty) and nothing else.
pub fn loopback_only(ports: &[u16]) -> EgressSettings {
    EgressSettings {
        allow: vec![AllowRule {
            cidr: "127.0.0.1/32".parse().unwrap(),
            ports: ports.to_vec(),
        }],
        allow_public: false,
        ..EgressSettings::default()
    }
}

pub fn pool_with(size: usize, egress: EgressSettings, page_load_timeout_ms: u64) -> BrowserPool {
    let settings = WebDriverSettings {
        pool_size: size,
        ..WebDriverSettings::default()
    };
    BrowserPool::new(
        settings,
        NetworkPolicy::Egress(Arc::new(EgressPolicy::new(&egress))),
        Duration::from_millis(page_load_timeout_ms),
    )
}

/// What a scripted test server answers to one path.
pub enum Reply {
    /// A complete response (status line, headers, body).
    Raw(Vec<u8>),
    /// Accept and never answer (a page that never finishes loading).
    Hang,
}

impl Reply {
    pub fn page(status: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let mut raw = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend(body);
        Self::Raw(raw)
    }

    pub fn html(body: &str) -> Self {
        Self::page("200 OK", "text/html; charset=utf-8", body)
    }

    pub fn redirect(location: &str) -> Self {
        Self::Raw(
            format!(
                "HTTP/1.1 302 Found\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .into_bytes(),
        )
    }
}

/// A scripted loopback server: its base URL and how many requests it received.
pub struct TestServer {
    pub base: String,
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
}

impl TestServer {
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Serves `routes(path)` on `address` (a loopback address, port 0 for a free one).
pub async fn serve_routes(
    address: SocketAddr,
    routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> std::io::Result<TestServer> {
    assert!(address.ip().is_loopback(), "tests only ever bind loopback");
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&requests);
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let routes = Arc::clone(&routes);
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                let mut buffer = vec![0_u8; 8192];
                let Ok(n) = stream.read(&mut buffer).await else {
                    return;
                };
                if n == 0 {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let request = String::from_utf8_lossy(&buffer[..n]);
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                match routes(&path) {
                    Reply::Raw(bytes) => {
                        let _ = stream.write_all(&bytes).await;
                        let _ = stream.shutdown().await;
                    }
                    Reply::Hang => {
                        tokio::time::sleep(Duration::from_secs(600)).await;
                    }
                }
            });
        }
    });
    Ok(TestServer {
        base: format!("http://{local}"),
        port: local.port(),
        requests,
    })
}
