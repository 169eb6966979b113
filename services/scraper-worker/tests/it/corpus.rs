//! Extracts every page of the shared corpus through real Chromium and fails below F1 0.98.

use std::process::Command;

use scraper_worker::scrape::scrape_page;
use scraper_worker::settings::ScrapeSettings;

use crate::helpers::{CORPUS_DIR, SCORER, pool, serve_dir};

/// The quality bar from the "Scraper-worker" issue.
const MIN_F1: f64 = 0.98;

/// Variants written for this crate (other platforms' review pages, paging, printed keys, iframes, chrome).
const VARIANTS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/variants");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_extraction_f1_is_at_least_0_98() {
    let f1 = extract_and_score(CORPUS_DIR).await;
    assert!(f1 >= MIN_F1, "extraction F1 {f1} is below {MIN_F1}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variant_extraction_f1_is_at_least_0_98() {
    let f1 = extract_and_score(VARIANTS_DIR).await;
    assert!(f1 >= MIN_F1, "extraction F1 {f1} is below {MIN_F1}");
}

/// Serves `dir`, extracts each page into a temp dir, runs the scorer and returns its F1.
async fn extract_and_score(dir: &str) -> f64 {
    let base = serve_dir(dir).await;
    let pool = pool(1);
    let out = tempfile::tempdir().unwrap();
    let mut pages: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("corpus not found at {dir}: {error}"))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".html"))
        .collect();
    pages.sort();
    assert!(!pages.is_empty(), "no pages in {dir}");
    for page in &pages {
        let pooled = pool
            .acquire()
            .await
            .expect("chromedriver and chromium must be available");
        let result = scrape_page(
            &pooled.session,
            &format!("{base}/{page}"),
            &ScrapeSettings::default(),
        )
        .await;
        pool.release(pooled, result.as_ref().err()).await;
        let quiz = result.unwrap_or_else(|error| panic!("{page}: {error}"));
        let name = page.trim_end_matches(".html");
        std::fs::write(
            out.path().join(format!("{name}.json")),
            serde_json::to_vec_pretty(&quiz).unwrap(),
        )
        .unwrap();
    }
    pool.shutdown().await;
    let output = Command::new("python3")
        .arg(SCORER)
        .arg(dir)
        .arg(out.path())
        .output()
        .expect("python3 must be available");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("{report}");
    report
        .lines()
        .last()
        .and_then(|line| line.strip_prefix("extraction F1: "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("scorer output has no F1 line:\n{report}"))
}
