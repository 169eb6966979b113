//! Test helpers: a loopback static file server and a browser pool wired to real chromedriver.

use std::path::{Path, PathBuf};
use std::time::Duration;

use scraper_worker::browser::{BrowserPool, NetworkPolicy};
use scraper_worker::settings::{ScrapeSettings, WebDriverSettings};
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

/// A pool that spawns the real chromedriver; a missing driver or browser fails the test.
pub fn pool(size: usize) -> BrowserPool {
    let settings = WebDriverSettings {
        pool_size: size,
        ..WebDriverSettings::default()
    };
    BrowserPool::new(
        settings,
        NetworkPolicy::Direct,
        Duration::from_millis(ScrapeSettings::default().page_load_timeout_ms),
    )
}
