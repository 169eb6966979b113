//! `POST /v1/extract`: gateway → `extract.requested` → scraper-worker (real Chromium) → reply
//! queue → gateway, answered synchronously with the page's questions, or a problem document
//! with the scraper's reason. No quiz is created and the LLM is never asked.

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

/// The scraper-worker's `scrape_extract_jobs_total` for one outcome (0 when not exported yet).
async fn extract_jobs(app: &TestApp, outcome: &str) -> f64 {
    let scraper = app.scraper.expect("the scraper-worker runs");
    let text = app
        .http
        .get(format!("http://{scraper}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| {
            line.starts_with("scrape_extract_jobs_total{") && line.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
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
