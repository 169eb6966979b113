//! The dashboard in real headless Chromium: a quiz's events published on the bus
//! end up as the final numbers on the page; with reduced motion nothing animates; the
//! board and a quiz work by keyboard alone; text keeps its contrast; a phone-sized window
//! never scrolls sideways.

use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use scraper_worker::browser::ChromeDriver;
use serde_json::{Value, json};

use crate::helpers::{OWNER_KEY, TestApp, answer, quiz_spec, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver of our own, started by the scraper-worker's spawner (a port free on both
/// loopbacks, started only once it answers `/status`, retried on another port), with the
/// browser profile it serves; the process is killed (this child only) on drop.
struct Driver {
    process: ChromeDriver,
    profile: tempfile::TempDir,
}

async fn browser() -> (Driver, Client) {
    browser_with(&[], Screen::Desktop(1100, 1500)).await
}

/// The window Chromium runs in.
enum Screen {
    /// A desktop window of this many CSS pixels.
    Desktop(u32, u32),
    /// A phone's viewport of this many CSS pixels (Chromium's mobile emulation: a desktop
    /// window cannot be made narrower than 500 pixels).
    Phone(u32, u32),
}

/// Headless Chromium with `extra` flags, on `screen`.
async fn browser_with(extra: &[&str], screen: Screen) -> (Driver, Client) {
    let driver = Driver {
        process: ChromeDriver::spawn(CHROMEDRIVER)
            .await
            .expect("chromedriver must be installed (Debian chromium-driver)"),
        profile: tempfile::tempdir().unwrap(),
    };
    let profile = driver.profile.path().display().to_string();
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--disable-dev-shm-usage".into(),
        "--disable-background-networking".into(),
        "--disable-component-update".into(),
        "--disable-sync".into(),
        "--no-first-run".into(),
        format!("--user-data-dir={profile}"),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    let mut options = json!({"binary": CHROMIUM, "args": args});
    match screen {
        Screen::Desktop(width, height) => options["args"]
            .as_array_mut()
            .unwrap()
            .push(json!(format!("--window-size={width},{height}"))),
        Screen::Phone(width, height) => {
            options["mobileEmulation"] = json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true}
            });
        }
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let client = ClientBuilder::rustls()
        .unwrap()
        .capabilities(capabilities)
        .connect(driver.process.url())
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

    watch_counters(&client).await;
    run_the_quiz(&app, &id).await;
    let reached = wait_for_texts(&client, &FINALS, Duration::from_secs(20)).await;
    // With motion allowed the counters count up: the page showed numbers between the old
    // value and the new one (the reduced-motion test checks that it never does).
    let watched = client
        .execute("return window.counterFrames", vec![])
        .await
        .unwrap();
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
    assert!(
        watched["between"].as_u64().unwrap() > 0,
        "no count-up seen: {watched}"
    );
    assert_eq!(answers.len(), 3);
    assert_eq!(disagreeing.len(), 1);
    // Disagreement is said in words, not only by colour.
    assert!(verdict.contains("Disagrees with the key"), "{verdict}");
    app.stop().await.unwrap();
}

/// What the quiz view shows once [`run_the_quiz`] has run.
const FINALS: [(&str, &str); 14] = [
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

/// The quiz runs while the page watches: one agreement, one disputed disagreement, one
/// cache hit, then the end.
async fn run_the_quiz(app: &TestApp, id: &str) {
    app.emit(id, vec![answer(0, 1, 0.72, false)]).await.unwrap();
    app.emit(id, vec![answer(1, 2, 0.93, false)]).await.unwrap();
    app.emit(id, vec![answer(2, 1, 0.64, true)]).await.unwrap();
    app.finish(id, 3).await.unwrap();
}

/// Counts every change of a counting number (an element with `data-final`, set by
/// `countTo`) in the quiz view, and those that showed something other than the final value:
/// a count-up in progress. Read back as `window.counterFrames`.
async fn watch_counters(client: &Client) {
    client
        .execute(
            r"
            window.counterFrames = {changes: 0, between: 0, seen: []};
            const watch = new MutationObserver((records) => {
              for (const record of records) {
                const element = record.target.nodeType === Node.TEXT_NODE ? record.target.parentElement : record.target;
                if (!element || element.dataset.final === undefined) continue;
                window.counterFrames.changes += 1;
                if (element.textContent !== element.dataset.final) {
                  window.counterFrames.between += 1;
                  if (window.counterFrames.seen.length < 10) window.counterFrames.seen.push(`${element.id || element.className}: ${element.textContent}`);
                }
              }
            });
            watch.observe(document.getElementById('quiz-view'), {subtree: true, childList: true, characterData: true});
            ",
            vec![],
        )
        .await
        .unwrap();
}

/// Presses and releases one key, sent to whatever has the focus.
async fn press(client: &Client, key: Key) {
    let key = char::from(key);
    client
        .perform_actions(
            KeyActions::new("keyboard".into())
                .then(KeyAction::Down { value: key })
                .then(KeyAction::Up { value: key }),
        )
        .await
        .unwrap();
}

async fn script(client: &Client, body: &str) -> Value {
    client.execute(body, vec![]).await.unwrap()
}

/// Every visible element with text of its own whose colour has less than the WCAG AA
/// contrast against the first opaque background behind it (4.5:1, or 3:1 for large text).
const LOW_CONTRAST: &str = r"
    const parse = (colour) => {
      const parts = (colour.match(/rgba?\(([^)]+)\)/) || [])[1];
      if (!parts) return null;
      const [r, g, b, a = 1] = parts.split(',').map(Number);
      return {r, g, b, a};
    };
    const luminance = ({r, g, b}) => {
      const linear = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
      return 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
    };
    const background = (element) => {
      for (let e = element; e; e = e.parentElement) {
        const colour = parse(getComputedStyle(e).backgroundColor);
        if (colour && colour.a > 0) return colour;
      }
      return {r: 255, g: 255, b: 255, a: 1};
    };
    const failures = [];
    for (const element of document.querySelectorAll('body *')) {
      if (!element.getClientRects().length) continue;
      const text = [...element.childNodes].some((node) => node.nodeType === Node.TEXT_NODE && node.textContent.trim());
      if (!text) continue;
      const style = getComputedStyle(element);
      const [high, low] = [luminance(parse(style.color)), luminance(background(element))].sort((a, b) => b - a);
      const ratio = (high + 0.05) / (low + 0.05);
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
      if (ratio < (large ? 3 : 4.5)) failures.push(`${element.tagName}#${element.id}.${element.className}: ${ratio.toFixed(2)}:1`);
    }
    return failures;
";

/// How far the page is wider than the window (0 when it never scrolls sideways), and what sticks out.
const OVERFLOW: &str = r"
    const width = window.innerWidth;
    const wide = [...document.querySelectorAll('body *')]
      .filter((element) => element.getClientRects().length && element.getBoundingClientRect().right > width + 0.5)
      .slice(0, 5)
      .map((element) => `${element.tagName}#${element.id}.${element.className}: right ${element.getBoundingClientRect().right}`);
    return {scroll_width: document.documentElement.scrollWidth, inner_width: width, wide};
";

/// `Err` says which view scrolls sideways (or that the window is not phone-sized).
async fn sideways_scroll(client: &Client, view: &str) -> Result<(), String> {
    let overflow = script(client, OVERFLOW).await;
    let scroll_width = overflow["scroll_width"].as_f64().unwrap_or(f64::MAX);
    let inner_width = overflow["inner_width"].as_f64().unwrap_or(f64::MAX);
    if inner_width > 400.0 {
        return Err(format!("{view}: not a phone-sized window: {overflow}"));
    }
    if scroll_width > inner_width {
        return Err(format!("{view} scrolls sideways: {overflow}"));
    }
    Ok(())
}

#[tokio::test]
async fn with_reduced_motion_nothing_animates_and_the_keyboard_reaches_a_quiz() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    let id = app.create_quiz(&quiz_spec(3)).await.unwrap();
    let (driver, client) =
        browser_with(&["--force-prefers-reduced-motion"], Screen::Desktop(1100, 1500)).await;
    let base = format!("http://{}", app.replicas[0]);
    client.goto(&format!("{base}/#key={OWNER_KEY}")).await.unwrap();
    let link = format!("#/quiz/{id}");
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!(r#"#quiz-list a[href="{link}"]"#)))
        .await
        .unwrap();
    let reduced = script(
        &client,
        "return matchMedia('(prefers-reduced-motion: reduce)').matches",
    )
    .await;
    let board_contrast = script(&client, LOW_CONTRAST).await;

    // Tab from the top of the page to the quiz's link (skip link, brand, then the board), then Enter.
    let mut focused = Value::Null;
    let mut focus_ring = Value::Null;
    for _ in 0..10 {
        press(&client, Key::Tab).await;
        focused = script(&client, "return document.activeElement.getAttribute('href')").await;
        if focused == json!(link) {
            focus_ring = script(
                &client,
                "const style = getComputedStyle(document.activeElement); return [style.outlineStyle, style.outlineWidth]",
            )
            .await;
            press(&client, Key::Enter).await;
            break;
        }
    }
    let opened = wait_for_texts(
        &client,
        &[
            ("#quiz-id", id.as_str()),
            ("#quiz-status", "queued"),
            ("#total", "3"),
        ],
        Duration::from_secs(20),
    )
    .await;
    let hash = script(&client, "return location.hash").await;
    let focus_after = script(&client, "return document.activeElement.id").await;

    watch_counters(&client).await;
    run_the_quiz(&app, &id).await;
    let reached = wait_for_texts(&client, &FINALS, Duration::from_secs(20)).await;
    let watched = script(&client, "return window.counterFrames").await;
    let motion = script(
        &client,
        r"
        const answer = getComputedStyle(document.querySelector('#answers li'));
        const bar = getComputedStyle(document.getElementById('progress-fill'));
        return {
          running: document.getAnimations().length,
          answer_animation: answer.animationName,
          bar_transition: bar.transitionDuration,
          bar_width: document.getElementById('progress-fill').style.width,
        };
        ",
    )
    .await;
    let quiz_contrast = script(&client, LOW_CONTRAST).await;
    client.close().await.unwrap();
    drop(driver);

    assert_eq!(
        reduced,
        json!(true),
        "--force-prefers-reduced-motion did not apply"
    );
    assert_eq!(focused, json!(link), "Tab never reached the quiz's link");
    assert_eq!(focus_ring[0], json!("solid"), "no visible focus: {focus_ring}");
    opened.unwrap();
    assert_eq!(hash, json!(link));
    // Focus moves to the quiz's heading, so keyboard and screen-reader users land there.
    assert_eq!(focus_after, json!("quiz-title"));
    reached.unwrap();
    // Numbers change straight to their final values: not one frame of a count-up.
    assert!(watched["changes"].as_u64().unwrap() > 0, "{watched}");
    assert_eq!(
        watched["between"],
        json!(0),
        "counted up with reduced motion: {watched}"
    );
    assert_eq!(motion["running"], json!(0), "{motion}");
    assert_eq!(motion["answer_animation"], json!("none"), "{motion}");
    assert_eq!(motion["bar_transition"], json!("0s"), "{motion}");
    assert_eq!(motion["bar_width"], json!("100%"), "{motion}");
    assert_eq!(board_contrast, json!([]), "low contrast on the board");
    assert_eq!(quiz_contrast, json!([]), "low contrast on the quiz");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn on_a_phone_sized_window_nothing_scrolls_sideways() {
    let app = spawn_app(1, |_| {}).await.unwrap();
    // Quizzes scraped from pages can carry long unbroken words (URLs, identifiers, code).
    let mut spec = quiz_spec(3);
    spec.questions[0].text =
        "What does https://quiz.example/lessons/chapter-3/an_identifier_with_no_spaces_at_all_1234567890 return?".into();
    spec.questions[1].options[2] = "Rome_or_some_other_very_long_option_without_any_spaces_in_it".into();
    let id = app.create_quiz(&spec).await.unwrap();
    let (driver, client) = browser_with(&[], Screen::Phone(390, 844)).await;
    let base = format!("http://{}", app.replicas[0]);
    let shot = |name: &str| {
        format!(
            "{}/../../target/dashboard-phone-{name}.png",
            env!("CARGO_MANIFEST_DIR")
        )
    };

    // No key yet: the key form.
    client.goto(&format!("{base}/")).await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#key-form:not([hidden])"))
        .await
        .unwrap();
    let mut checks = vec![sideways_scroll(&client, "the key form").await];
    std::fs::write(shot("key"), client.screenshot().await.unwrap()).unwrap();

    // The board.
    client.goto(&format!("{base}/#key={OWNER_KEY}")).await.unwrap();
    client.refresh().await.unwrap();
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!(r##"#quiz-list a[href="#/quiz/{id}"]"##)))
        .await
        .unwrap();
    checks.push(sideways_scroll(&client, "the board").await);
    std::fs::write(shot("board"), client.screenshot().await.unwrap()).unwrap();

    // A quiz, with its answers.
    client.goto(&format!("{base}/#/quiz/{id}")).await.unwrap();
    wait_for_texts(&client, &[("#quiz-status", "queued")], Duration::from_secs(20))
        .await
        .unwrap();
    run_the_quiz(&app, &id).await;
    let reached = wait_for_texts(&client, &FINALS, Duration::from_secs(20)).await;
    checks.push(sideways_scroll(&client, "the quiz").await);
    std::fs::write(shot("quiz"), client.screenshot().await.unwrap()).unwrap();
    script(&client, "document.getElementById('answers').scrollIntoView()").await;
    std::fs::write(shot("answers"), client.screenshot().await.unwrap()).unwrap();
    client.close().await.unwrap();
    drop(driver);
    reached.unwrap();
    let failed: Vec<_> = checks.into_iter().filter_map(Result::err).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    app.stop().await.unwrap();
}
