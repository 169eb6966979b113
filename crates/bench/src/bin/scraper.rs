//! `cargo xtask bench scraper`: the 13 sample pages of `shared/quiz-pages`, repeated
//! `BENCH_ROUNDS` times (default 4), extracted through real Chromium two at a time, once with
//! the scraper-worker's session pool (2 sessions, reused) and once with a fresh WebDriver
//! session per page (what the original system did), both on one chromedriver and behind the
//! same egress policy (127.0.0.1 on the page server's port only). Target: the pool extracts at
//! least 5x as many pages per second. Every extraction's question count is checked against the
//! page's `<name>.expected.json`; a mismatch or a failed extraction fails the benchmark.
#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::{Summary, ms};
use futures::StreamExt;
use scraper_worker::ScrapeError;
use scraper_worker::browser::{BrowserPool, BrowserSession, ChromeDriver, NetworkPolicy};
use scraper_worker::egress::EgressPolicy;
use scraper_worker::scrape::scrape_page;
use scraper_worker::settings::{AllowRule, EgressSettings, ScrapeSettings, WebDriverSettings};
use testkit::static_pages::StaticPages;

/// The shared sample corpus; CI places `shared/` beside the repository.
const PAGES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/quiz-pages");
/// Passes over the corpus per mode: 4 x 13 = 52 extractions each, about a minute for the
/// fresh-session mode on 2 cores.
const ROUNDS: usize = 4;
/// Pages in flight at once in both modes: the pool's default size (two cores, two pages).
const CONCURRENCY: usize = 2;
/// The pool must extract at least this many times as many pages per second as fresh sessions.
const TARGET_RATIO: f64 = 5.0;

/// A sample page and how many questions its ground truth holds.
struct Page {
    name: String,
    expected_questions: usize,
}

/// One timed extraction: the session phase before the page, the page itself, the session
/// phase after it (pool: acquire / scrape / release; fresh: open / scrape / close).
struct Extraction {
    page: usize,
    before: Duration,
    scrape: Duration,
    after: Duration,
    questions: Result<usize, ScrapeError>,
}

impl Extraction {
    fn total(&self) -> Duration {
        self.before + self.scrape + self.after
    }
}

/// What one mode measured.
struct ModeResult {
    wall: Duration,
    extractions: Vec<Extraction>,
}

impl ModeResult {
    fn pages_per_second(&self) -> f64 {
        self.extractions.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    fn summary(&self, phase: impl Fn(&Extraction) -> Duration) -> Summary {
        Summary::of(self.extractions.iter().map(phase).collect())
    }
}

fn load_pages() -> anyhow::Result<Vec<Page>> {
    let mut names: Vec<String> = std::fs::read_dir(PAGES_DIR)
        .map_err(|error| anyhow::anyhow!("corpus not found at {PAGES_DIR}: {error}"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".html").map(str::to_owned))
        .collect();
    names.sort();
    anyhow::ensure!(!names.is_empty(), "no pages in {PAGES_DIR}");
    names
        .into_iter()
        .map(|name| {
            let path = format!("{PAGES_DIR}/{name}.expected.json");
            let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            let expected_questions = truth
                .get("questions")
                .and_then(serde_json::Value::as_array)
                .map(Vec::len)
                .ok_or_else(|| anyhow::anyhow!("{path} has no questions array"))?;
            Ok(Page {
                name,
                expected_questions,
            })
        })
        .collect()
}

/// Runs `extract` over `jobs` (page indices) with `CONCURRENCY` in flight, timing the whole pass.
async fn run_mode<F, Fut>(jobs: &[usize], extract: F) -> ModeResult
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Extraction>,
{
    let started = Instant::now();
    let extractions: Vec<Extraction> = futures::stream::iter(jobs.iter().copied())
        .map(&extract)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    ModeResult {
        wall: started.elapsed(),
        extractions,
    }
}

/// The service's way: a session from the pool, given back (state cleared) afterwards.
async fn pooled(pool: &BrowserPool, page: usize, url: &str, budgets: &ScrapeSettings) -> Extraction {
    let started = Instant::now();
    let acquired = pool.acquire().await;
    let before = started.elapsed();
    let session = match acquired {
        Ok(session) => session,
        Err(error) => return failed(page, before, error),
    };
    let started = Instant::now();
    let result = scrape_page(&session.session, url, budgets).await;
    let scrape = started.elapsed();
    let started = Instant::now();
    pool.release(session, result.as_ref().err()).await;
    Extraction {
        page,
        before,
        scrape,
        after: started.elapsed(),
        questions: result.map(|quiz| quiz.questions.len()),
    }
}

/// The original system's way: a new WebDriver session (a new Chromium) for the page, then closed.
async fn fresh(browser: &Browser, page: usize, url: &str, budgets: &ScrapeSettings) -> Extraction {
    let started = Instant::now();
    let opened = BrowserSession::open(
        &browser.settings.url,
        &browser.settings,
        browser.network.clone(),
        browser.page_load,
    )
    .await;
    let before = started.elapsed();
    let session = match opened {
        Ok(session) => session,
        Err(error) => return failed(page, before, error),
    };
    let started = Instant::now();
    let result = scrape_page(&session, url, budgets).await;
    let scrape = started.elapsed();
    let started = Instant::now();
    session.close().await;
    Extraction {
        page,
        before,
        scrape,
        after: started.elapsed(),
        questions: result.map(|quiz| quiz.questions.len()),
    }
}

fn failed(page: usize, before: Duration, error: ScrapeError) -> Extraction {
    Extraction {
        page,
        before,
        scrape: Duration::ZERO,
        after: Duration::ZERO,
        questions: Err(error),
    }
}

/// What both modes open sessions with: one chromedriver, one egress policy.
struct Browser {
    settings: WebDriverSettings,
    network: NetworkPolicy,
    page_load: Duration,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(ROUNDS);
    let pages = load_pages()?;
    let server = StaticPages::serve(PAGES_DIR)?;
    let defaults = WebDriverSettings::default();
    let driver = ChromeDriver::spawn(&defaults.chromedriver).await?;
    let budgets = ScrapeSettings::default();
    // Exactly the page server, as the crate's SSRF tests allow it: no name is resolved, nothing
    // but 127.0.0.1:<port> is reachable.
    let egress = EgressSettings {
        allow: vec![AllowRule {
            cidr: "127.0.0.1/32".parse().map_err(anyhow::Error::msg)?,
            ports: vec![server.port()],
        }],
        allow_public: false,
        ..EgressSettings::default()
    };
    let browser = Browser {
        settings: WebDriverSettings {
            url: driver.url().to_owned(),
            pool_size: CONCURRENCY,
            ..defaults
        },
        network: NetworkPolicy::Egress(Arc::new(EgressPolicy::new(&egress))),
        page_load: Duration::from_millis(budgets.page_load_timeout_ms),
    };
    let pool = BrowserPool::new(
        browser.settings.clone(),
        browser.network.clone(),
        browser.page_load,
    );
    let urls: Vec<String> = pages
        .iter()
        .map(|page| server.url(&format!("{}.html", page.name)))
        .collect();
    let jobs: Vec<usize> = (0..rounds).flat_map(|_| 0..pages.len()).collect();

    // Untimed warm-up: the pool opens its sessions (a running service has them), and one fresh
    // session warms Chromium's files in the page cache for both modes alike.
    let warm_up = vec![0; CONCURRENCY];
    run_mode(&warm_up, |page| pooled(&pool, page, &urls[page], &budgets)).await;
    run_mode(&[0], |page| fresh(&browser, page, &urls[page], &budgets)).await;

    let pool_result = run_mode(&jobs, |page| pooled(&pool, page, &urls[page], &budgets)).await;
    let fresh_result = run_mode(&jobs, |page| fresh(&browser, page, &urls[page], &budgets)).await;
    pool.shutdown().await;
    server.stop().await;
    drop(driver);

    report(&pages, rounds, &budgets, &pool_result, &fresh_result)
}

fn report(
    pages: &[Page],
    rounds: usize,
    budgets: &ScrapeSettings,
    pool: &ModeResult,
    fresh: &ModeResult,
) -> anyhow::Result<()> {
    println!(
        "bench scraper: {} pages x {rounds} rounds = {} extractions per mode, {CONCURRENCY} at a time, \
         one chromedriver, release build",
        pages.len(),
        pool.extractions.len()
    );
    println!(
        "settle: pages with scripts wait for a quiet DOM of scrape.settle_quiet_ms = {} ms; pages without \
         scripts, frames or plugins are extracted once loaded",
        budgets.settle_quiet_ms
    );
    println!(
        "{}",
        pool.summary(Extraction::total)
            .line("pool (2 sessions reused): per page")
    );
    println!("{}", pool.summary(|e| e.before).line("  pool: acquire"));
    println!("{}", pool.summary(|e| e.scrape).line("  pool: scrape_page"));
    println!(
        "{}",
        pool.summary(|e| e.after)
            .line("  pool: release (reset to about:blank)")
    );
    println!(
        "{}",
        fresh
            .summary(Extraction::total)
            .line("fresh session per page: per page")
    );
    println!(
        "{}",
        fresh
            .summary(|e| e.before)
            .line("  fresh: open session (new chromium)")
    );
    println!("{}", fresh.summary(|e| e.scrape).line("  fresh: scrape_page"));
    println!("{}", fresh.summary(|e| e.after).line("  fresh: close session"));
    println!(
        "throughput: pool {:.2} pages/s ({:.1} s wall), fresh {:.2} pages/s ({:.1} s wall)",
        pool.pages_per_second(),
        pool.wall.as_secs_f64(),
        fresh.pages_per_second(),
        fresh.wall.as_secs_f64()
    );
    let overhead = |result: &ModeResult| ms(result.summary(|e| e.before + e.after).p50);
    println!(
        "session cost per page (p50 of before + after the page): pool {:.1} ms, fresh {:.1} ms ({:.1}x)",
        overhead(pool),
        overhead(fresh),
        overhead(fresh) / overhead(pool).max(1e-9)
    );
    let ratio = pool.pages_per_second() / fresh.pages_per_second().max(1e-9);
    println!(
        "ratios pool/fresh: {ratio:.2}x pages/s, {:.2}x per-page p50, {:.2}x per-page p99",
        ms(fresh.summary(Extraction::total).p50) / ms(pool.summary(Extraction::total).p50).max(1e-9),
        ms(fresh.summary(Extraction::total).p99) / ms(pool.summary(Extraction::total).p99).max(1e-9)
    );
    println!(
        "target pool/fresh >= {TARGET_RATIO}x pages/s: {} ({ratio:.2}x)",
        if ratio >= TARGET_RATIO { "met" } else { "NOT met" }
    );
    let problems = check_counts(pages, "pool", pool) + check_counts(pages, "fresh", fresh);
    let total = pool.extractions.len() + fresh.extractions.len();
    println!(
        "question counts: {}/{total} extractions match <name>.expected.json",
        total - problems
    );
    anyhow::ensure!(
        problems == 0,
        "{problems} extractions failed or had the wrong question count"
    );
    Ok(())
}

/// Prints every extraction that failed or found another number of questions than the ground truth.
fn check_counts(pages: &[Page], mode: &str, result: &ModeResult) -> usize {
    let mut problems = 0;
    for extraction in &result.extractions {
        let page = &pages[extraction.page];
        match &extraction.questions {
            Ok(found) if *found == page.expected_questions => {}
            Ok(found) => {
                problems += 1;
                println!(
                    "MISMATCH {mode}: {} found {found} questions, expected {}",
                    page.name, page.expected_questions
                );
            }
            Err(error) => {
                problems += 1;
                println!("FAILED {mode}: {}: {error}", page.name);
            }
        }
    }
    problems
}
