//! The session pool: reuse with state cleared, recycling after N pages, and typed failures.

use scraper_worker::ScrapeError;
use scraper_worker::scrape::scrape_page;
use scraper_worker::settings::ScrapeSettings;

use crate::helpers::{pool, serve_dir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_reused_with_cookies_cleared() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cookie.html"),
        "<html><body><script>document.cookie='seen=1'</script><p id=c></p>\
         <script>document.getElementById('c').textContent=document.cookie</script></body></html>",
    )
    .unwrap();
    let base = serve_dir(dir.path().to_path_buf()).await;
    let pool = pool(1);
    for _ in 0..2 {
        let pooled = pool
            .acquire()
            .await
            .expect("chromedriver and chromium must be available");
        pooled
            .session
            .client()
            .goto(&format!("{base}/cookie.html"))
            .await
            .unwrap();
        let text = pooled
            .session
            .client()
            .execute("return document.cookie", Vec::new())
            .await
            .unwrap();
        assert_eq!(text.as_str(), Some("seen=1"), "cookie set by this page only");
        pooled
            .session
            .client()
            .execute("document.cookie='other=2'", Vec::new())
            .await
            .unwrap();
        pool.release(pooled, None).await;
        let pooled = pool.acquire().await.unwrap();
        let url = pooled.session.client().current_url().await.unwrap();
        assert_eq!(url.as_str(), "about:blank", "a reused session starts blank");
        pool.release(pooled, None).await;
    }
    pool.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_non_html_pages_are_permanent_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data.json"), "{\"a\": 1}").unwrap();
    std::fs::write(
        dir.path().join("empty.html"),
        "<html><body><p>No quiz here.</p></body></html>",
    )
    .unwrap();
    let base = serve_dir(dir.path().to_path_buf()).await;
    let closed_port = scraper_worker::browser::driver::free_port().unwrap();
    let pool = pool(1);
    let budgets = ScrapeSettings::default();

    let pooled = pool
        .acquire()
        .await
        .expect("chromedriver and chromium must be available");
    let refused = scrape_page(
        &pooled.session,
        &format!("http://127.0.0.1:{closed_port}/"),
        &budgets,
    )
    .await;
    assert!(matches!(refused, Err(ScrapeError::Unreachable(_))), "{refused:?}");
    pool.release(pooled, refused.as_ref().err()).await;

    let pooled = pool.acquire().await.unwrap();
    let json = scrape_page(&pooled.session, &format!("{base}/data.json"), &budgets).await;
    assert!(matches!(json, Err(ScrapeError::NotHtml(_))), "{json:?}");
    assert!(json.as_ref().err().is_some_and(ScrapeError::is_permanent));
    pool.release(pooled, json.as_ref().err()).await;

    let pooled = pool.acquire().await.unwrap();
    let tiny = ScrapeSettings {
        max_dom_nodes: 3,
        ..ScrapeSettings::default()
    };
    let big = scrape_page(&pooled.session, &format!("{base}/empty.html"), &tiny).await;
    assert!(
        matches!(big, Err(ScrapeError::TooManyNodes { limit: 3, .. })),
        "{big:?}"
    );
    pool.release(pooled, big.as_ref().err()).await;

    let pooled = pool.acquire().await.unwrap();
    let empty = scrape_page(&pooled.session, &format!("{base}/empty.html"), &budgets)
        .await
        .unwrap();
    assert!(empty.questions.is_empty());
    pool.release(pooled, None).await;
    pool.shutdown().await;
}
