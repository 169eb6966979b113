//! SSRF end to end, through real Chromium and the egress proxy, on loopback only: the policy
//! allows exactly 127.0.0.1:<test server port>; every other loopback destination stands in for
//! the network behind the worker, and servers bound there prove nothing reached them.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use scraper_worker::ScrapeError;
use scraper_worker::browser::BrowserPool;
use scraper_worker::egress::BlockedKind;
use scraper_worker::scrape::scrape_page;
use scraper_worker::settings::ScrapeSettings;

use crate::helpers::{Reply, TestServer, loopback_only, pool_with, serve_routes};

/// The refused stand-ins: 127.0.0.2, 127.0.0.1 on another port, and [::1] when IPv6 is up.
struct Refused {
    other_address: TestServer,
    other_port: TestServer,
    ipv6: Option<TestServer>,
}

impl Refused {
    async fn start() -> Self {
        let probe = |_: &str| Reply::html("<p>you should not see this</p>");
        let other_address = serve_routes(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)), probe)
            .await
            .expect("127.0.0.2 is loopback on linux");
        let other_port = serve_routes(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), probe)
            .await
            .unwrap();
        let ipv6 = serve_routes(SocketAddr::from((Ipv6Addr::LOCALHOST, 0)), probe)
            .await
            .ok();
        Self {
            other_address,
            other_port,
            ipv6,
        }
    }

    /// Every refused URL a page can point at, each naming a server that counts requests.
    fn urls(&self) -> Vec<String> {
        let other = self.other_port.port;
        let mut urls = vec![
            format!("http://127.0.0.2:{}/probe", self.other_address.port),
            format!("http://127.0.0.1:{other}/probe"),
            format!("http://localhost:{other}/probe"),
            format!("http://2130706433:{other}/probe"),
            format!("http://0x7f.0.0.1:{other}/probe"),
        ];
        if let Some(ipv6) = &self.ipv6 {
            urls.push(format!("http://[::1]:{}/probe", ipv6.port));
        }
        urls
    }

    fn requests(&self) -> usize {
        self.other_address.requests()
            + self.other_port.requests()
            + self.ipv6.as_ref().map_or(0, TestServer::requests)
    }
}

/// The allowed server: pages that redirect to, embed, or navigate to the refused URLs.
/// `probes` counts requests for `/probe` paths that reached it (the mapped-address case).
async fn allowed_server(refused: &[String], probes: Arc<AtomicUsize>) -> TestServer {
    let refused = refused.to_vec();
    serve_routes(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), move |path| {
        if path.contains("probe") {
            probes.fetch_add(1, Ordering::SeqCst);
            return Reply::html("<p>probe</p>");
        }
        if let Some(index) = path.strip_prefix("/redirect/") {
            let index: usize = index.parse().unwrap_or(0);
            return Reply::redirect(&refused[index % refused.len()]);
        }
        match path {
            "/embeds.html" => {
                let mut body = String::from("<html><body><p>embeds</p>");
                for url in &refused {
                    body.push_str(&format!("<iframe src=\"{url}\"></iframe><img src=\"{url}\">"));
                    body.push_str(&format!("<script>fetch('{url}').catch(() => {{}});</script>"));
                }
                body.push_str("</body></html>");
                Reply::html(&body)
            }
            "/navigate.html" => Reply::html(&format!(
                "<html><body><p>moving</p><script>location.href = '{}';</script></body></html>",
                refused[0]
            )),
            "/later.html" => Reply::html(&format!(
                "<html><body><p>moving later</p><script>setTimeout(() => {{ location.href = '{}'; }}, 200);</script></body></html>",
                refused[0]
            )),
            "/loop" => Reply::redirect("/loop"),
            "/missing" => Reply::page("404 Not Found", "text/html", "<p>gone</p>"),
            "/broken" => Reply::page("500 Internal Server Error", "text/html", "<p>oops</p>"),
            "/doc.pdf" => Reply::page("200 OK", "application/pdf", b"%PDF-1.4\n%%EOF\n".to_vec()),
            "/never" => Reply::Hang,
            "/huge.html" => {
                // 50 MB of text in one element: the parse is cheap, the text budget is not.
                let mut body = b"<html><body><pre>".to_vec();
                body.resize(body.len() + 50 * 1024 * 1024, b'a');
                body.extend_from_slice(b"</pre></body></html>");
                Reply::page("200 OK", "text/html", body)
            }
            _ => Reply::html("<html><body><p>No quiz here.</p></body></html>"),
        }
    })
    .await
    .unwrap()
}

/// The refusals the page caused: Chromium's own calls home (e.g. `accounts.google.com:443`,
/// which Chromium 156 makes despite `--disable-background-networking`) go through the proxy
/// too and are refused like everything else, but they are not the page's doing.
fn page_targets(targets: Vec<String>) -> Vec<String> {
    const BROWSER_HOME: [&str; 3] = [".google.com:", ".googleapis.com:", ".gstatic.com:"];
    targets
        .into_iter()
        .filter(|target| !BROWSER_HOME.iter().any(|home| target.contains(home)))
        .collect()
}

async fn scrape(pool: &BrowserPool, url: &str) -> (Result<(), ScrapeError>, Vec<String>) {
    let pooled = pool
        .acquire()
        .await
        .expect("chromedriver and chromium must be available");
    let result = scrape_page(&pooled.session, url, &ScrapeSettings::default())
        .await
        .map(drop);
    let refused_targets = pooled
        .session
        .egress_log()
        .snapshot()
        .into_iter()
        .filter(|entry| matches!(entry.kind, BlockedKind::Refused(_)))
        .map(|entry| entry.target)
        .collect();
    pool.release(pooled, result.as_ref().err()).await;
    (result, refused_targets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_urls_redirects_and_embeds_never_reach_their_target() {
    let refused = Refused::start().await;
    let urls = refused.urls();
    let probes = Arc::new(AtomicUsize::new(0));
    let allowed = allowed_server(&urls, Arc::clone(&probes)).await;
    let pool = pool_with(1, loopback_only(&[allowed.port]), 20_000);

    // Direct navigation, including the encoded forms and the mapped form of the allowed address.
    let mut direct = urls.clone();
    direct.push(format!("http://[::ffff:127.0.0.1]:{}/probe", allowed.port));
    direct.push("http://2130706433/".to_owned());
    direct.push("http://0x7f.0.0.1/".to_owned());
    for url in &direct {
        let (result, _) = scrape(&pool, url).await;
        assert!(
            matches!(result, Err(ScrapeError::Refused(_))),
            "{url}: {result:?}"
        );
    }

    // A redirect from the allowed server to each refused address: the job fails as refused.
    for index in 0..urls.len() {
        let url = format!("{}/redirect/{index}", allowed.base);
        let (result, refused_targets) = scrape(&pool, &url).await;
        assert!(
            matches!(result, Err(ScrapeError::Refused(_))),
            "{url}: {result:?}"
        );
        // One destination refused (the browser may also ask it for a favicon).
        let refused_targets = page_targets(refused_targets);
        assert!(
            !refused_targets.is_empty() && refused_targets.iter().all(|target| *target == refused_targets[0]),
            "{url}: {refused_targets:?}"
        );
    }

    // Iframes, images and fetches to refused addresses do not load; the page itself does.
    let (result, refused_targets) = scrape(&pool, &format!("{}/embeds.html", allowed.base)).await;
    assert!(
        result.is_ok(),
        "subresource refusals do not fail the job: {result:?}"
    );
    for key in ["127.0.0.2", "localhost", "[::1]"] {
        if key == "[::1]" && refused.ipv6.is_none() {
            continue;
        }
        assert!(
            refused_targets.iter().any(|target| target.starts_with(key)),
            "no refusal for {key}: {refused_targets:?}"
        );
    }
    let other = format!("127.0.0.1:{}", refused.other_port.port);
    assert!(refused_targets.contains(&other), "{refused_targets:?}");

    // A script navigating the page (during and after load) to a refused address.
    for page in ["navigate.html", "later.html"] {
        let (result, refused_targets) = scrape(&pool, &format!("{}/{page}", allowed.base)).await;
        assert!(
            matches!(result, Err(ScrapeError::Refused(_))),
            "{page}: {result:?}"
        );
        assert!(
            refused_targets
                .iter()
                .any(|target| target.starts_with("127.0.0.2")),
            "{page}: {refused_targets:?}"
        );
    }
    pool.shutdown().await;

    assert_eq!(refused.requests(), 0, "a refused server was reached");
    assert_eq!(
        probes.load(Ordering::SeqCst),
        0,
        "the mapped form reached the allowed server"
    );
    let metrics = common::telemetry::encode_metrics();
    assert!(
        metrics.contains("scrape_egress_refusals_total{") && metrics.contains("reason=\"loopback\""),
        "refusals are counted:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_pages_end_as_clear_failures() {
    let probes = Arc::new(AtomicUsize::new(0));
    let allowed = allowed_server(&["http://127.0.0.2:9/".to_owned()], probes).await;
    let pool = pool_with(1, loopback_only(&[allowed.port]), 6_000);
    let base = &allowed.base;

    let (missing, _) = scrape(&pool, &format!("{base}/missing")).await;
    assert!(
        matches!(missing, Err(ScrapeError::HttpStatus(404))),
        "{missing:?}"
    );
    let (broken, _) = scrape(&pool, &format!("{base}/broken")).await;
    assert!(matches!(broken, Err(ScrapeError::HttpStatus(500))), "{broken:?}");
    let (looping, _) = scrape(&pool, &format!("{base}/loop")).await;
    // Chromium gives up after 20 hops (ERR_TOO_MANY_REDIRECTS); on a loaded machine the budget may run out first.
    assert!(
        matches!(
            looping,
            Err(ScrapeError::Unreachable(_) | ScrapeError::PageLoadTimeout(_))
        ),
        "{looping:?}"
    );
    let (pdf, _) = scrape(&pool, &format!("{base}/doc.pdf")).await;
    assert!(
        pdf.as_ref().err().is_some_and(ScrapeError::is_permanent),
        "a pdf is a permanent failure: {pdf:?}"
    );
    let (never, _) = scrape(&pool, &format!("{base}/never")).await;
    assert!(matches!(never, Err(ScrapeError::PageLoadTimeout(_))), "{never:?}");
    let (huge, _) = scrape(&pool, &format!("{base}/huge.html")).await;
    assert!(
        matches!(
            huge,
            Err(ScrapeError::TextTooLong { .. } | ScrapeError::PageLoadTimeout(_))
        ),
        "{huge:?}"
    );
    // After all that, the pool still serves a page.
    let (fine, _) = scrape(&pool, &format!("{base}/fine.html")).await;
    assert!(fine.is_ok(), "{fine:?}");
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_html_gets_no_network_at_all() {
    let target = serve_routes(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |_| {
        Reply::html("<p>x</p>")
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("raw.html");
    std::fs::write(
        &file,
        format!(
            "<html><body><p>raw</p><img src=\"{0}/img\"><iframe src=\"{0}/frame\"></iframe>\
             <script>fetch('{0}/fetch').catch(() => {{}});</script></body></html>",
            target.base
        ),
    )
    .unwrap();
    let pool = BrowserPool::new(
        scraper_worker::settings::WebDriverSettings::default(),
        scraper_worker::browser::NetworkPolicy::Offline,
        std::time::Duration::from_secs(20),
    );
    let url = url::Url::from_file_path(&file).unwrap();
    let (result, refused_targets) = scrape(&pool, url.as_str()).await;
    pool.shutdown().await;
    assert!(result.is_ok(), "{result:?}");
    assert!(!refused_targets.is_empty(), "the page's requests were refused");
    assert_eq!(target.requests(), 0, "raw html reached the network");
}
