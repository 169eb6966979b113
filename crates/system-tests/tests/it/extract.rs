//! `POST /v1/extract`: gateway → `extract.requested` → scraper-worker (real Chromium) → reply
//! queue → gateway, answered synchronously with the page's questions, or a problem document
//! with the scraper's reason. No quiz is created and the LLM is never asked. Also what goes
//! wrong: documents that are not HTML, pages over budget, requests that expired in the queue,
//! and a Chromium or chromedriver killed mid-extraction.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use system_tests::{Options, TestApp, spawn_app_with};
use testkit::static_pages::StaticPages;

const PAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/quiz-pages");

fn expected(page: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{PAGES}/{page}.expected.json")).unwrap()).unwrap()
}

async fn app_with_scraper() -> TestApp {
    spawn_app_with(Options {
        with_scraper: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn extract(app: &TestApp, body: &Value) -> reqwest::Response {
    app.post_json("/v1/extract", body).await.unwrap()
}

/// A problem document's status, type (after `urn:quizstats:problem:`) and detail.
async fn problem(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        common::problem::PROBLEM_JSON,
        "status {status}"
    );
    let problem: common::problem::Problem = response.json().await.unwrap();
    assert_eq!(problem.status, status);
    (
        status,
        problem
            .kind
            .trim_start_matches("urn:quizstats:problem:")
            .to_owned(),
        problem.detail.unwrap_or_default(),
    )
}

/// The scraper-worker's `scrape_extract_jobs_total` for one outcome (0 when not exported yet),
/// read from the gateway: every service in the test process serves the same registry.
async fn extract_jobs(app: &TestApp, outcome: &str) -> f64 {
    app.counter("scrape_extract_jobs_total", &format!("outcome=\"{outcome}\""))
        .await
        .unwrap()
}

#[tokio::test]
async fn html_and_url_sources_answer_with_the_pages_questions() {
    let app = app_with_scraper().await;
    let ok_before = extract_jobs(&app, "ok").await;

    let html = std::fs::read_to_string(format!("{PAGES}/fieldset-nested-labels.html")).unwrap();
    let response = extract(&app, &json!({"source": {"html": html}})).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let quiz: Value = response.json().await.unwrap();
    let want = expected("fieldset-nested-labels");
    assert_eq!(quiz["questions"], want["questions"], "{quiz:#}");
    assert_eq!(quiz["title"], want["title"]);
    // Raw HTML has no URL; the answer is the documented shape, nothing more.
    assert!(quiz.get("url").is_none(), "{quiz:#}");
    let view: gateway::openapi::schemas::ExtractedQuizView = serde_json::from_value(quiz).unwrap();
    assert_eq!(view.questions.len(), 5);

    let pages = StaticPages::serve(PAGES).unwrap();
    let url = pages.url("german-kurztest.html");
    let response = extract(&app, &json!({"source": {"url": url}})).await;
    assert_eq!(response.status(), 200);
    let quiz: Value = response.json().await.unwrap();
    let want = expected("german-kurztest");
    assert_eq!(quiz["questions"], want["questions"], "{quiz:#}");
    assert_eq!(quiz["url"], url.as_str());

    // Nothing was analysed and no quiz was made.
    assert_eq!(app.scripted().calls(), 0);
    let listing = app
        .gateway_request(Method::GET, "/v1/quizzes")
        .send()
        .await
        .unwrap();
    let listing: Value = listing.json().await.unwrap();
    assert_eq!(listing["items"], json!([]), "{listing:#}");
    assert!(extract_jobs(&app, "ok").await >= ok_before + 2.0);
    pages.stop().await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refused_and_quizless_pages_are_problems_with_the_reason() {
    let app = app_with_scraper().await;
    let pages = StaticPages::serve(PAGES).unwrap();
    let refused_before = extract_jobs(&app, "refused").await;
    let no_questions_before = extract_jobs(&app, "no_questions").await;

    // Same port on 127.0.0.2: a loopback address the test's allow-list (127.0.0.1/32) does not open.
    let refused = format!("http://127.0.0.2:{}/german-kurztest.html", pages.port());
    let (status, kind, detail) = problem(extract(&app, &json!({"source": {"url": refused}})).await).await;
    assert_eq!((status, kind.as_str()), (422, "source-refused"), "{detail}");
    assert!(detail.starts_with("refused: "), "{detail}");
    assert!(detail.contains("127.0.0.2"), "{detail}");

    let quizless = pages.url("negative-recipe-faq.html");
    let (status, kind, detail) = problem(extract(&app, &json!({"source": {"url": quizless}})).await).await;
    assert_eq!((status, kind.as_str()), (422, "no-questions"), "{detail}");
    assert!(detail.contains("no multiple-choice questions"), "{detail}");

    let html = "<html><body><h1>Lemon tart</h1><p>Zest two lemons.</p></body></html>";
    let (status, kind, _) = problem(extract(&app, &json!({"source": {"html": html}})).await).await;
    assert_eq!((status, kind.as_str()), (422, "no-questions"));

    // An allowed address where nothing listens: the page cannot be fetched.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let closed = format!("http://127.0.0.1:{closed_port}/quiz.html");
    let (status, kind, detail) = problem(extract(&app, &json!({"source": {"url": closed}})).await).await;
    assert_eq!((status, kind.as_str()), (502, "page-unreachable"), "{detail}");
    assert!(detail.starts_with("page unreachable: "), "{detail}");
    assert!(detail.contains("refused"), "{detail}");

    assert!(extract_jobs(&app, "refused").await >= refused_before + 1.0);
    assert!(extract_jobs(&app, "no_questions").await >= no_questions_before + 2.0);
    assert_eq!(app.scripted().calls(), 0);
    pages.stop().await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn keys_scopes_and_validation_are_checked_before_any_browser() {
    // No scraper-worker: none of these may reach the broker.
    let app = spawn_app_with(Options::default()).await.unwrap();
    let body = json!({"source": {"html": "<p>q</p>"}});

    let response = app
        .http
        .post(app.gateway_url("/v1/extract"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.headers().contains_key("www-authenticate"));
    let (status, kind, _) = problem(response).await;
    assert_eq!((status, kind.as_str()), (401, "unauthenticated"));

    let response = app
        .http
        .post(app.gateway_url("/v1/extract"))
        .bearer_auth(&app.api_keys.read_only)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, kind, detail) = problem(response).await;
    assert_eq!((status, kind.as_str()), (403, "forbidden"));
    assert!(detail.contains("submit"), "{detail}");

    for (body, pointer) in [
        (json!({"source": {"url": "file:///etc/passwd"}}), "/source/url"),
        (
            json!({"source": {"url": "https://a.test/q", "html": "<p>"}}),
            "/source",
        ),
        (json!({"source": {"html": " "}}), "/source/html"),
    ] {
        let response = extract(&app, &body).await;
        let status = response.status();
        let problem: common::problem::Problem = response.json().await.unwrap();
        assert_eq!(status, 422, "{body}");
        assert_eq!(problem.errors[0].pointer, pointer, "{body}");
    }
    let (status, kind, _) = problem(app.post_raw("/v1/extract", "{\"source\": ").await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (400, "malformed-body"));
    // The same size limit as a quiz's `source.html`.
    let huge = json!({"source": {"html": "x".repeat(2 * 1024 * 1024 + 1)}});
    let (status, kind, _) = problem(extract(&app, &huge).await).await;
    assert_eq!((status, kind.as_str()), (413, "body-too-large"));

    let response = app
        .gateway_request(Method::GET, "/v1/extract")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_a_scraper_the_call_times_out_with_504() {
    let app = spawn_app_with(Options {
        tune_gateway: Some(|settings| settings.extract.timeout_ms = 1_500),
        ..Default::default()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let response = extract(&app, &json!({"source": {"html": "<p>q</p>"}})).await;
    let elapsed = started.elapsed();
    let (status, kind, detail) = problem(response).await;
    assert_eq!((status, kind.as_str()), (504, "extract-timeout"), "{detail}");
    assert!(detail.contains("1500 ms"), "{detail}");
    assert!(
        elapsed >= Duration::from_millis(1_500) && elapsed < Duration::from_secs(10),
        "answered after {elapsed:?}"
    );
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Pages that cannot give questions, stale requests, and a browser or chromedriver that dies.
// These start their own scraper-worker on the app's prefix (`OwnScraper`) when they need
// settings the harness does not set: small page budgets, a marked Chromium, a chromedriver of
// their own to kill.
// ---------------------------------------------------------------------------------------------

/// A one-question quiz page, well inside every budget the tests set.
const QUIZ: &str = r#"<!doctype html><html><head><title>Crash check</title></head><body>
<form><fieldset><legend>Which number is even?</legend>
<label><input type="radio" name="q1" value="a"> 3</label>
<label><input type="radio" name="q1" value="b"> 4</label>
<label><input type="radio" name="q1" value="c"> 7</label>
</fieldset></form></body></html>"#;

/// What the scripted page server answers to one request.
enum Reply {
    /// A complete response: status line, headers, body.
    Raw(Vec<u8>),
    /// Accept and never answer (a page still loading when its browser is killed).
    Hang,
}

impl Reply {
    fn page(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend(body);
        Self::Raw(raw)
    }

    fn html(body: &str) -> Self {
        Self::page("text/html; charset=utf-8", body)
    }
}

/// A loopback page server scripted per request: `routes(path, n)` answers the `n`th request
/// (counting from 0) for `path`. Counts every request, so a test can show a page was never opened.
struct PageServer {
    base: String,
    requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl PageServer {
    async fn start(routes: impl Fn(&str, usize) -> Reply + Send + Sync + 'static) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&requests);
        let per_path = Arc::new(std::sync::Mutex::new(
            std::collections::HashMap::<String, usize>::new(),
        ));
        let routes = Arc::new(routes);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (routes, counter, per_path) =
                    (Arc::clone(&routes), Arc::clone(&counter), Arc::clone(&per_path));
                tokio::spawn(async move {
                    let mut buffer = vec![0_u8; 8192];
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let request = String::from_utf8_lossy(&buffer[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                    // Chromium asks for a favicon on its own; it is not a page the test counts.
                    if path == "/favicon.ico" {
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let nth = {
                        let mut seen = per_path.lock().unwrap();
                        let count = seen.entry(path.clone()).or_default();
                        *count += 1;
                        *count - 1
                    };
                    match routes(&path, nth) {
                        Reply::Raw(bytes) => {
                            let _ = stream.write_all(&bytes).await;
                            let _ = stream.shutdown().await;
                        }
                        Reply::Hang => tokio::time::sleep(Duration::from_secs(600)).await,
                    }
                });
            }
        });
        Self { base, requests }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits until the server has received at least `n` page requests.
    async fn wait_requests(&self, n: usize) {
        testkit::eventually(Duration::from_secs(30), || async {
            (self.requests() >= n).then_some(())
        })
        .await
        .unwrap_or_else(|_| panic!("the page server never saw {n} requests"));
    }
}

/// A scraper-worker the test starts itself on `app`'s prefix, with its own settings.
struct OwnScraper {
    shutdown: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl OwnScraper {
    /// The harness's scraper settings (loopback allowed, nothing else), changed by `tune`.
    async fn start(app: &TestApp, tune: impl FnOnce(&mut scraper_worker::Settings)) -> Self {
        let mut settings = scraper_worker::Settings {
            http: common::settings::HttpSettings {
                host: "127.0.0.1".into(),
                port: 0,
                workers: 1,
            },
            amqp: common::settings::AmqpSettings {
                url: system_tests::amqp_url(),
                prefix: app.prefix.clone(),
                ..Default::default()
            },
            redis: common::settings::RedisSettings {
                url: system_tests::redis_url(),
                key_prefix: format!("{}:", app.prefix),
                pool_size: 4,
                ..Default::default()
            },
            egress: scraper_worker::settings::EgressSettings {
                allow: vec![scraper_worker::settings::AllowRule {
                    cidr: "127.0.0.1/32".parse().unwrap(),
                    ports: Vec::new(),
                }],
                allow_public: false,
                ..Default::default()
            },
            ..Default::default()
        };
        tune(&mut settings);
        let scraper = scraper_worker::Application::build(settings).await.unwrap();
        let address = scraper.local_addr();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(scraper.run_until_stopped(shutdown.clone()));
        let ready = format!("http://{address}/readyz");
        testkit::eventually(Duration::from_secs(20), || async {
            let response = app.http.get(&ready).send().await.ok()?;
            response.status().is_success().then_some(())
        })
        .await
        .expect("the test's scraper-worker never became ready");
        Self { shutdown, task }
    }

    /// Stops it the way SIGTERM does (in-flight work finishes, sessions and chromedriver closed).
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(40), self.task)
            .await
            .expect("the scraper-worker did not stop")
            .unwrap()
            .unwrap();
    }
}

/// Every process whose command line contains `needle` (its pid and command line).
fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// SIGKILLs every process whose command line contains `needle`; returns how many it killed.
fn kill_processes_with(needle: &str) -> usize {
    processes_with(needle)
        .into_iter()
        .filter(|(pid, _)| {
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .is_ok_and(|status| status.success())
        })
        .count()
}

/// A flag Chromium ignores, naming this test: every browser process the test's scraper starts
/// carries it, which is how the test finds (and kills) exactly its own browsers.
fn browser_marker(app: &TestApp) -> String {
    format!("--quizstats-test-marker={}", app.prefix)
}

#[tokio::test]
async fn non_html_documents_are_422_not_html_with_their_content_type() {
    let app = app_with_scraper().await;
    let server = PageServer::start(|path, _| match path {
        "/report.pdf" => Reply::page(
            "application/pdf",
            "%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        ),
        blob if blob.starts_with("/blob-") => {
            Reply::page("application/octet-stream", vec![0_u8, 159, 146, 150, 1, 2, 3])
        }
        "/data.json" => Reply::page("application/json", "{\"questions\": []}"),
        // HTML, but sent as a download.
        "/attachment.html" => {
            let mut raw = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-disposition: attachment; \
                 filename=quiz.html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                QUIZ.len()
            )
            .into_bytes();
            raw.extend(QUIZ.as_bytes());
            Reply::Raw(raw)
        }
        _ => Reply::html(QUIZ),
    })
    .await;
    let not_html_before = extract_jobs(&app, "not_html").await;

    // Named for this test, so a download of it would be recognisable in `~/Downloads`.
    let blob = format!("/blob-{}", app.prefix);
    // What Chromium displays reports its content type; what it would only download (saved to
    // disk, past every budget, before downloads were blocked) reports that.
    let downloaded = "unknown: the browser would download it, not display it";
    for (path, content_type) in [
        ("/report.pdf", "application/pdf"),
        ("/data.json", "application/json"),
        (blob.as_str(), downloaded),
        ("/attachment.html", downloaded),
    ] {
        let url = server.url(path);
        let (status, kind, detail) = problem(extract(&app, &json!({"source": {"url": url}})).await).await;
        assert_eq!((status, kind.as_str()), (422, "not-html"), "{path}: {detail}");
        assert_eq!(
            detail,
            format!("page is not html (content type {content_type})"),
            "{path}"
        );
    }
    assert!(extract_jobs(&app, "not_html").await >= not_html_before + 4.0);
    // Blocked, not saved: before, Chromium wrote every such response to `~/Downloads`, whatever its size.
    if let Ok(home) = std::env::var("HOME") {
        let saved = std::path::Path::new(&home)
            .join("Downloads")
            .join(blob.trim_start_matches('/'));
        assert!(!saved.exists(), "{} was downloaded", saved.display());
    }

    // The browser is none the worse for them: the next page extracts.
    let response = extract(&app, &json!({"source": {"url": server.url("/quiz.html")}})).await;
    assert_eq!(response.status(), 200);
    let quiz: Value = response.json().await.unwrap();
    assert_eq!(quiz["questions"].as_array().unwrap().len(), 1, "{quiz:#}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn pages_over_the_dom_or_text_budget_are_422_page_too_large() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    // Small budgets instead of huge pages: the quiz (about 15 elements, 60 characters) fits them.
    let scraper = OwnScraper::start(&app, |settings| {
        settings.scrape.max_dom_nodes = 100;
        settings.scrape.max_text_chars = 5_000;
    })
    .await;
    let too_large_before = extract_jobs(&app, "too_large").await;
    let many_nodes = format!(
        "<!doctype html><html><body>{}</body></html>",
        "<div><span>x</span></div>".repeat(200)
    );
    let long_text = format!(
        "<!doctype html><html><body><p>{}</p></body></html>",
        "lorem ipsum ".repeat(1_000)
    );

    let (status, kind, detail) = problem(extract(&app, &json!({"source": {"html": many_nodes}})).await).await;
    assert_eq!((status, kind.as_str()), (422, "page-too-large"), "{detail}");
    assert!(
        detail.contains("dom nodes, more than the limit of 100"),
        "{detail}"
    );

    let server = PageServer::start(move |_, _| Reply::html(&long_text)).await;
    let (status, kind, detail) =
        problem(extract(&app, &json!({"source": {"url": server.url("/long.html")}})).await).await;
    assert_eq!((status, kind.as_str()), (422, "page-too-large"), "{detail}");
    assert!(
        detail.contains("characters of text, more than the limit of 5000"),
        "{detail}"
    );
    assert!(extract_jobs(&app, "too_large").await >= too_large_before + 2.0);

    // The budgets only refuse what breaks them.
    let response = extract(&app, &json!({"source": {"html": QUIZ}})).await;
    assert_eq!(response.status(), 200);
    scraper.stop().await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_request_that_expired_in_the_queue_is_dropped_unopened() {
    // No scraper at first: the request waits in `{p}.extract` until the gateway gives up.
    let app = spawn_app_with(Options {
        tune_gateway: Some(|settings| settings.extract.timeout_ms = 1_500),
        ..Default::default()
    })
    .await
    .unwrap();
    let server = PageServer::start(|_, _| Reply::html(QUIZ)).await;
    let expired_before = extract_jobs(&app, "expired").await;
    let (status, kind, detail) =
        problem(extract(&app, &json!({"source": {"url": server.url("/stale.html")}})).await).await;
    assert_eq!((status, kind.as_str()), (504, "extract-timeout"), "{detail}");

    // A worker that starts now finds the request past its deadline: it acknowledges it without
    // opening the page (the caller has its 504 already), and leaves the queue empty.
    let scraper = OwnScraper::start(&app, |_| {}).await;
    testkit::eventually(Duration::from_secs(30), || async {
        (extract_jobs(&app, "expired").await > expired_before).then_some(())
    })
    .await
    .expect("the worker never dropped the expired request");
    let connection =
        lapin::Connection::connect(&system_tests::amqp_url(), lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = channel
        .queue_declare(
            format!("{}.extract", app.prefix).as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        queue.message_count(),
        0,
        "the expired request is gone, not requeued"
    );
    let _ = connection.close(200, "done".into()).await;
    // Give a wrongly started browser time to reach the page before checking it did not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(server.requests(), 0, "the expired request's page was opened");
    scraper.stop().await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_browser_killed_mid_extraction_is_retried_in_a_fresh_one_and_the_call_succeeds() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let marker = browser_marker(&app);
    let scraper = OwnScraper::start(&app, {
        let marker = marker.clone();
        move |settings| {
            settings.webdriver.extra_args = vec![marker];
            // The extraction must end because the browser died, not on a timeout.
            settings.scrape.page_load_timeout_ms = 60_000;
        }
    })
    .await;
    // The first load of the page never finishes; the retry's is served.
    let server = PageServer::start(|_, nth| if nth == 0 { Reply::Hang } else { Reply::html(QUIZ) }).await;
    let retries_before = app.counter("scrape_extract_retries_total", "").await.unwrap();

    let url = server.url("/quiz.html");
    let call = spawn_extract(&app, &url);
    server.wait_requests(1).await;
    let killed = kill_processes_with(&marker);
    assert!(killed > 0, "found no chromium of the test's scraper to kill");
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the extraction hung after its browser was killed")
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let quiz: Value = response.json().await.unwrap();
    assert_eq!(quiz["questions"].as_array().unwrap().len(), 1, "{quiz:#}");
    assert_eq!(
        server.requests(),
        2,
        "one load in the killed browser, one in its replacement"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        app.counter("scrape_extract_retries_total", "").await.unwrap() > retries_before,
        "the retry is counted"
    );
    scraper.stop().await;
    // Nothing of the test's browsers outlives its scraper.
    testkit::eventually(Duration::from_secs(10), || async {
        processes_with(&marker).is_empty().then_some(())
    })
    .await
    .unwrap_or_else(|_| panic!("browsers left running: {:#?}", processes_with(&marker)));
    app.stop().await.unwrap();
}

/// Starts `POST /v1/extract` of `url` in the background, so the test can break things meanwhile.
fn spawn_extract(app: &TestApp, url: &str) -> tokio::task::JoinHandle<reqwest::Response> {
    let request = app
        .gateway_request(Method::POST, "/v1/extract")
        .json(&json!({"source": {"url": url}}));
    tokio::spawn(async move { request.send().await.unwrap() })
}

/// The chromedriver executable on `PATH` (what the worker spawns by default).
fn chromedriver_path() -> std::path::PathBuf {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| std::path::Path::new(dir).join("chromedriver"))
        .find(|path| path.is_file())
        .expect("chromedriver must be installed")
}

/// A directory unique to this test holding a `chromedriver` link to the real one: every
/// chromedriver the test's scraper spawns runs as that path, which is how the test finds it.
struct MarkedDriver {
    dir: std::path::PathBuf,
    path: String,
}

impl MarkedDriver {
    fn new(app: &TestApp) -> Self {
        let dir = std::env::temp_dir().join(format!("{}-driver", app.prefix));
        std::fs::create_dir_all(&dir).unwrap();
        let link = dir.join("chromedriver");
        std::os::unix::fs::symlink(chromedriver_path(), &link).unwrap();
        Self {
            dir,
            path: link.display().to_string(),
        }
    }

    fn pids(&self) -> Vec<u32> {
        processes_with(&self.path)
            .into_iter()
            .filter(|(_, cmdline)| cmdline.starts_with(&self.path))
            .map(|(pid, _)| pid)
            .collect()
    }
}

impl Drop for MarkedDriver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_chromedriver_killed_mid_extraction_is_respawned_and_the_call_succeeds() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let marker = browser_marker(&app);
    let driver = MarkedDriver::new(&app);
    let scraper = OwnScraper::start(&app, {
        let (marker, driver) = (marker.clone(), driver.path.clone());
        move |settings| {
            settings.webdriver.chromedriver = driver;
            settings.webdriver.extra_args = vec![marker];
            settings.scrape.page_load_timeout_ms = 60_000;
        }
    })
    .await;
    // The first load of /quiz.html never finishes; every other is served.
    let server = PageServer::start(|path, nth| {
        if path == "/quiz.html" && nth == 0 {
            Reply::Hang
        } else {
            Reply::html(QUIZ)
        }
    })
    .await;
    let retries_before = app.counter("scrape_extract_retries_total", "").await.unwrap();

    let call = spawn_extract(&app, &server.url("/quiz.html"));
    server.wait_requests(1).await;
    // Only URL extractions ran, so the URL pool's chromedriver is the only one started.
    let first = driver.pids();
    assert_eq!(first.len(), 1, "{:#?}", processes_with(&driver.path));
    let first_browsers: Vec<u32> = processes_with(&marker).into_iter().map(|(pid, _)| pid).collect();
    assert!(
        !first_browsers.is_empty(),
        "no chromium of the test's scraper runs"
    );
    assert_eq!(kill_processes_with(&driver.path), 1);
    let response = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the extraction hung after chromedriver was killed")
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    assert_eq!(
        server.requests(),
        2,
        "the page was loaded again through a new chromedriver"
    );
    assert!(app.counter("scrape_extract_retries_total", "").await.unwrap() > retries_before);
    let second = driver.pids();
    assert_eq!(second.len(), 1, "{:#?}", processes_with(&driver.path));
    assert_ne!(second, first, "a new chromedriver process");
    // The killed chromedriver's browser does not outlive it (it did, orphaned, before Chromium
    // was driven over a pipe that closes with chromedriver).
    testkit::eventually(Duration::from_secs(10), || async {
        let alive: Vec<u32> = processes_with(&marker).into_iter().map(|(pid, _)| pid).collect();
        (!first_browsers.iter().any(|pid| alive.contains(pid))).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the killed chromedriver's chromium still runs: {:#?}",
            processes_with(&marker)
        )
    });

    // The worker recovered: later extractions work as before.
    let response = extract(&app, &json!({"source": {"url": server.url("/again.html")}})).await;
    assert_eq!(response.status(), 200);
    scraper.stop().await;
    testkit::eventually(Duration::from_secs(10), || async {
        (driver.pids().is_empty() && processes_with(&marker).is_empty()).then_some(())
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "left running after the scraper stopped: {:#?}",
            [processes_with(&driver.path), processes_with(&marker)].concat()
        )
    });
    app.stop().await.unwrap();
}

/// Starts chromedriver on `port` (loopback only, its default) and waits until it answers.
async fn start_chromedriver(port: u16) -> tokio::process::Child {
    let child = tokio::process::Command::new(chromedriver_path())
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    testkit::eventually(Duration::from_secs(15), || async {
        scraper_worker::browser::driver::answers_status(address)
            .await
            .then_some(())
    })
    .await
    .expect("chromedriver did not answer");
    child
}

#[tokio::test]
async fn an_external_chromedriver_that_dies_is_a_503_and_the_worker_works_once_it_is_back() {
    let app = spawn_app_with(Options::default()).await.unwrap();
    let marker = browser_marker(&app);
    // chromedriver binds this port on both loopbacks and exits if either is taken.
    let port = scraper_worker::browser::driver::free_port().unwrap();
    let mut chromedriver = start_chromedriver(port).await;
    let scraper = OwnScraper::start(&app, {
        let marker = marker.clone();
        move |settings| {
            settings.webdriver.url = format!("http://127.0.0.1:{port}");
            settings.webdriver.extra_args = vec![marker];
            settings.scrape.page_load_timeout_ms = 60_000;
        }
    })
    .await;
    let server = PageServer::start(|path, _| match path {
        "/hang.html" => Reply::Hang,
        _ => Reply::html(QUIZ),
    })
    .await;
    let browser_before = extract_jobs(&app, "browser").await;

    // The worker does not own this chromedriver, so it cannot bring it back: the extraction
    // (and its one retry) fails as the browser's fault, promptly, with a retryable 503.
    let call = spawn_extract(&app, &server.url("/hang.html"));
    server.wait_requests(1).await;
    chromedriver.kill().await.unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the extraction hung after chromedriver died")
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(response.headers()["retry-after"], "5");
    let (status, kind, detail) = problem(response).await;
    assert_eq!((status, kind.as_str()), (503, "scraper-unavailable"), "{detail}");
    assert!(detail.contains("browser session"), "{detail}");
    assert!(extract_jobs(&app, "browser").await > browser_before);

    // Chromedriver back on its address: the next extraction opens a new session and works.
    let mut chromedriver = start_chromedriver(port).await;
    let response = extract(&app, &json!({"source": {"url": server.url("/quiz.html")}})).await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    scraper.stop().await;
    chromedriver.kill().await.unwrap();
    // Browsers of the killed chromedriver are orphans nobody else would end.
    kill_processes_with(&marker);
    app.stop().await.unwrap();
}
