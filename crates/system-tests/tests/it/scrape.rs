//! Quizzes from raw HTML and from URLs: gateway → scraper-worker (real Chromium) →
//! analyzer → completed, or failed with the scraper's reason.

use std::time::Duration;

use serde_json::{Value, json};
use system_tests::{Options, TestApp, spawn_app_with};
use testkit::static_pages::StaticPages;

const PAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/quiz-pages");

fn expected_texts(page: &str) -> Vec<String> {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{PAGES}/{page}.expected.json")).unwrap())
            .unwrap();
    expected["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["text"].as_str().unwrap().to_owned())
        .collect()
}

async fn app() -> TestApp {
    spawn_app_with(Options {
        with_scraper: true,
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn quizzes_from_html_and_from_a_url_are_scraped_then_answered() {
    let app = app().await;
    let html = std::fs::read_to_string(format!("{PAGES}/fieldset-nested-labels.html")).unwrap();
    let id = app.submit(&json!({"source": {"html": html}})).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    let texts: Vec<String> = quiz["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(texts, expected_texts("fieldset-nested-labels"));
    assert!(
        quiz["questions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|q| q["answer"]["selected"].is_array())
    );

    let pages = StaticPages::serve(PAGES).unwrap();
    let id = app
        .submit(&json!({"source": {"url": pages.url("german-kurztest.html")}}))
        .await
        .unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(quiz["status"], "completed", "{quiz:#}");
    assert_eq!(quiz["stats"]["total"], expected_texts("german-kurztest").len());
    pages.stop().await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refused_and_quizless_pages_fail_with_the_reason() {
    let app = app().await;
    let pages = StaticPages::serve(PAGES).unwrap();
    // Same port on 127.0.0.2: a private address the egress policy does not allow.
    let refused = format!("http://127.0.0.2:{}/german-kurztest.html", pages.port());
    let id = app.submit(&json!({"source": {"url": refused}})).await.unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(quiz["status"], "failed", "{quiz:#}");
    assert!(quiz["reason"].as_str().unwrap().contains("refused"), "{quiz:#}");

    let id = app
        .submit(&json!({"source": {"url": pages.url("negative-recipe-faq.html")}}))
        .await
        .unwrap();
    let quiz = app.wait_finished(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(quiz["status"], "failed", "{quiz:#}");
    assert!(
        quiz["reason"]
            .as_str()
            .unwrap()
            .contains("no multiple-choice questions"),
        "{quiz:#}"
    );
    // Nothing was scraped, so nothing was asked.
    assert_eq!(app.scripted().calls(), 0);
    pages.stop().await;
    app.stop().await.unwrap();
}
