//! The dashboard in real headless Chromium: a quiz's events published on the bus
//! end up as the final numbers on the page.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::helpers::{OWNER_KEY, answer, quiz_spec, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver of our own on a free port; killed (this child only) on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser() -> (Driver, Client) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian chromium-driver)");
    let driver = Driver {
        child,
        port,
        _profile: tempfile::tempdir().unwrap(),
    };
    testkit::eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", driver.port))
            .await
            .ok()
    })
    .await
    .unwrap();
    let profile = driver._profile.path().display().to_string();
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", format!("--user-data-dir={profile}"), "--window-size=1100,1500"
            ]
        }),
    );
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    (driver, client)
}

async fn text(client: &Client, selector: &str) -> String {
    match client.find(Locator::Css(selector)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls until every selector shows its expected text; returns what was last seen on failure.
async fn wait_for_texts(
    client: &Client,
    expected: &[(&str, &str)],
    deadline: Duration,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        let mut seen = Vec::new();
        for (selector, _) in expected {
            seen.push(text(client, selector).await);
        }
        if expected.iter().zip(&seen).all(|((_, want), got)| got == want) {
            return Ok(());
        }
        if started.elapsed() > deadline {
            return Err(format!("{seen:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_dashboard_shows_a_quiz_live_until_its_final_numbers() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(3)).await.unwrap();
    let (driver, client) = browser().await;
    let page = format!("http://{}/#/quiz/{id}", app.replicas[0]);
    client.goto(&page).await.unwrap();
    // No key yet: the server closes with 4401 and the page asks for one.
    let form = client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#key-form:not([hidden])"))
        .await
        .unwrap();
    let reason = text(&client, "#key-reason").await;
    assert!(reason.contains("API key"), "{reason}");
    form.find(Locator::Css("#key-input"))
        .await
        .unwrap()
        .send_keys(OWNER_KEY)
        .await
        .unwrap();
    form.find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_texts(
        &client,
        &[("#quiz-status", "queued"), ("#total", "3")],
        Duration::from_secs(20),
    )
    .await
    .unwrap();

    // The quiz runs while the page watches: one agreement, one disputed disagreement, one cache hit.
    app.emit(&id, vec![answer(0, 1, 0.72, false)]).await.unwrap();
    app.emit(&id, vec![answer(1, 2, 0.93, false)]).await.unwrap();
    app.emit(&id, vec![answer(2, 1, 0.64, true)]).await.unwrap();
    app.finish(&id, 3).await.unwrap();

    let finals = [
        ("#quiz-status", "completed"),
        ("#answered", "3"),
        ("#total", "3"),
        ("#failed", "0"),
        ("#mean-confidence", "76%"),
        ("#agreement", "67%"),
        ("#disagreements", "1"),
        ("#disputed", "1"),
        ("#cache-share", "33%"),
        ("#tokens", "280"),
        ("#latency", "100 / 200"),
        ("#histogram li:nth-child(2) .bar-count", "2"),
        ("#histogram li:nth-child(3) .bar-count", "1"),
        // The server closed the stream with 1000 after the last event.
        ("#connection", "finished"),
    ];
    let reached = wait_for_texts(&client, &finals, Duration::from_secs(20)).await;
    let answers = client.find_all(Locator::Css("#answers li")).await.unwrap();
    let disagreeing = client
        .find_all(Locator::Css("#answers li.disagrees"))
        .await
        .unwrap();
    let verdict = text(&client, "#answers li.disagrees .verdict").await;

    let screenshot = client.screenshot().await.unwrap();
    let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dashboard.png");
    std::fs::write(target, screenshot).unwrap();
    client.set_window_size(390, 1400).await.unwrap();
    let phone = client.screenshot().await.unwrap();
    std::fs::write(
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/dashboard-phone.png"),
        phone,
    )
    .unwrap();
    client.close().await.unwrap();
    drop(driver);

    reached.unwrap();
    assert_eq!(answers.len(), 3);
    assert_eq!(disagreeing.len(), 1);
    // Disagreement is said in words, not only by colour.
    assert!(verdict.contains("Disagrees with the key"), "{verdict}");
    app.stop().await.unwrap();
}
