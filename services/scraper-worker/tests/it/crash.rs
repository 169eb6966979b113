//! A browser, or the chromedriver driving it, that dies in the middle of a job: the job fails
//! with an error the worker retries (within the queue's delivery limit), never hangs, and the
//! pool replaces the session (and respawns chromedriver) so the next job works.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use scraper_worker::scrape::scrape_page;
use scraper_worker::settings::ScrapeSettings;

use crate::helpers::{Reply, loopback_only, pool_with, serve_routes};

const QUIZ: &str = r#"<!doctype html><html><head><title>Crash check</title></head><body>
<form><fieldset><legend>Which number is even?</legend>
<label><input type="radio" name="q1" value="a"> 3</label>
<label><input type="radio" name="q1" value="b"> 4</label>
<label><input type="radio" name="q1" value="c"> 7</label>
</fieldset></form></body></html>"#;

/// SIGKILLs every process whose command line names `profile` (this session's Chromium and
/// its helpers, nobody else's) and returns how many there were.
fn kill_browser(profile: &Path) -> usize {
    let needle = format!("--user-data-dir={}", profile.display());
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let status = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
            if status.success() {
                killed += 1;
            }
        }
    }
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_killed_mid_job_fails_the_job_retryably_and_is_replaced() {
    let server = serve_routes(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |path| match path {
        "/never" => Reply::Hang,
        _ => Reply::html(QUIZ),
    })
    .await
    .unwrap();
    // A long page-load budget: the job must end because the browser died, not on a timeout.
    let budgets = ScrapeSettings {
        page_load_timeout_ms: 60_000,
        ..ScrapeSettings::default()
    };
    let pool = pool_with(1, loopback_only(&[server.port]), budgets.page_load_timeout_ms);

    let pooled = pool
        .acquire()
        .await
        .expect("chromedriver and chromium must be available");
    let profile = pooled.session.profile_dir().to_owned();
    let killer = tokio::spawn(async move {
        // Kill while the page is loading (the server never answers /never).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        kill_browser(&profile)
    });
    let result = scrape_page(&pooled.session, &format!("{}/never", server.base), &budgets).await;
    let killed = killer.await.unwrap();
    assert!(killed > 0, "found no chromium process of this session to kill");
    let error = result.expect_err("a job whose browser was killed cannot succeed");
    eprintln!("the crash surfaced as {error:?}");
    assert!(
        !error.is_permanent(),
        "a crash is the browser's fault, so the worker retries the job: {error:?}"
    );
    assert!(
        error.poisons_session(),
        "the dead session must not go back to the pool: {error:?}"
    );
    pool.release(pooled, Some(&error)).await;

    // The pool opens a fresh browser for the next job, which succeeds.
    let pooled = pool.acquire().await.expect("a fresh session after the crash");
    let quiz = scrape_page(&pooled.session, &format!("{}/quiz.html", server.base), &budgets)
        .await
        .expect("the replacement session scrapes normally");
    pool.release(pooled, None).await;
    assert_eq!(quiz.questions.len(), 1, "{quiz:?}");
    pool.shutdown().await;
}

/// The pids of the processes whose command line starts with `program` (as spawned, argv[0]).
fn pids_running(program: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline.starts_with(program.as_bytes()) && cmdline.get(program.len()) == Some(&0) {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chromedriver_killed_mid_job_fails_it_retryably_and_is_respawned_with_its_browser_gone() {
    use std::sync::Arc;

    use scraper_worker::browser::{BrowserPool, NetworkPolicy};
    use scraper_worker::egress::EgressPolicy;
    use scraper_worker::settings::WebDriverSettings;

    let server = serve_routes(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), |path| match path {
        "/never" => Reply::Hang,
        _ => Reply::html(QUIZ),
    })
    .await
    .unwrap();
    // chromedriver runs as a link named for this test, so the test kills only the pool's own.
    let dir = tempfile::tempdir().unwrap();
    let driver = dir.path().join("chromedriver");
    let real = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| Path::new(dir).join("chromedriver"))
        .find(|path| path.is_file())
        .expect("chromedriver must be installed");
    std::os::unix::fs::symlink(real, &driver).unwrap();
    let driver = driver.display().to_string();
    let budgets = ScrapeSettings {
        page_load_timeout_ms: 60_000,
        ..ScrapeSettings::default()
    };
    let pool = BrowserPool::new(
        WebDriverSettings {
            chromedriver: driver.clone(),
            pool_size: 1,
            ..WebDriverSettings::default()
        },
        NetworkPolicy::Egress(Arc::new(EgressPolicy::new(&loopback_only(&[server.port])))),
        Duration::from_millis(budgets.page_load_timeout_ms),
    );

    let pooled = pool
        .acquire()
        .await
        .expect("chromedriver and chromium must be available");
    let profile = format!("--user-data-dir={}", pooled.session.profile_dir().display());
    let first = pids_running(&driver);
    assert_eq!(first.len(), 1);
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for pid in first {
            std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
        }
    });
    let started = std::time::Instant::now();
    let result = scrape_page(&pooled.session, &format!("{}/never", server.base), &budgets).await;
    killer.await.unwrap();
    let error = result.expect_err("a job whose chromedriver was killed cannot succeed");
    eprintln!(
        "the chromedriver crash surfaced as {error:?} after {:?}",
        started.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(20), "the job hung");
    assert!(!error.is_permanent(), "retried, not failed: {error:?}");
    assert!(error.poisons_session(), "{error:?}");
    pool.release(pooled, Some(&error)).await;

    // The browser went with its chromedriver (driven over a pipe), instead of lingering orphaned.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while pids_running_with(&profile) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !pids_running_with(&profile),
        "the killed chromedriver's chromium still runs"
    );

    // The next checkout starts a new chromedriver, and the job works.
    let pooled = pool.acquire().await.expect("a new chromedriver and session");
    assert_eq!(pids_running(&driver).len(), 1);
    let quiz = scrape_page(&pooled.session, &format!("{}/quiz.html", server.base), &budgets)
        .await
        .expect("the new chromedriver's session scrapes normally");
    pool.release(pooled, None).await;
    assert_eq!(quiz.questions.len(), 1, "{quiz:?}");
    pool.shutdown().await;
}

/// Whether any process's command line contains `needle`.
fn pids_running_with(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(needle))
    })
}
