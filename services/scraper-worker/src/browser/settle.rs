//! The settle wait: after load, wait until the DOM has been quiet for a while.
//!
//! The wait runs inside the page as one asynchronous script rather than as WebDriver polls:
//! each poll was a round trip through chromedriver (CPU on a small machine, and 100 ms of
//! granularity added to every page), while the page's own timers see every change at once.

use std::time::Duration;

use fantoccini::Client;
use serde_json::json;

use crate::error::ScrapeError;

/// Resolves with `"quiet"` at once for a loaded page without scripts, frames or plugins (nothing
/// can change it any more), otherwise once nothing changed for `quiet` ms after the document
/// finished loading, or `"deadline"` after `deadline` ms. A change is a mutation the observer sees or a
/// different element count (a fallback for changes it cannot see, e.g. inside shadow roots).
const SETTLE_JS: &str = r"
const quiet = arguments[0], deadline = arguments[1], done = arguments[arguments.length - 1];
const start = performance.now();
let last = start;
let count = -1;
let observer = null;
try {
  observer = new MutationObserver(() => { last = performance.now(); });
  observer.observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
} catch (e) {}
let finished = false;
const finish = (how) => {
  if (finished) return;
  finished = true;
  if (observer) observer.disconnect();
  done(how);
};
// A script navigating the page away ends this document's wait at once (its timers die with it).
window.addEventListener('pagehide', () => finish('navigated'));
window.addEventListener('beforeunload', () => finish('navigated'));
// Only scripts change a document after it has loaded: a page without any (in it or in a frame,
// and without a timed refresh) is final as soon as it is complete.
const inert = () => document.readyState === 'complete' && document.scripts.length === 0 &&
  window.frames.length === 0 && !document.querySelector('object, embed, meta[http-equiv=refresh i]');
if (inert()) return finish('quiet');
const tick = () => {
  const now = performance.now();
  const n = document.getElementsByTagName('*').length;
  if (n !== count || document.readyState !== 'complete') { count = n; last = now; }
  if (finished) return;
  if (now - last >= quiet) return finish('quiet');
  if (now - start >= deadline) return finish('deadline');
  setTimeout(tick, 25);
};
tick();
";

/// What the wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Quiet for the whole window.
    Quiet,
    /// Still changing at the deadline (a ticking clock); the page is extracted as it is.
    Deadline,
}

/// Waits until nothing changed for `quiet`, or `deadline` passed. When a script navigates the
/// page meanwhile, the wait starts over in the new document with what is left of the deadline.
pub async fn wait_for_settle(
    client: &Client,
    quiet: Duration,
    deadline: Duration,
) -> Result<Settled, ScrapeError> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Ok(Settled::Deadline);
        }
        let args = vec![json!(millis(quiet)), json!(millis(left))];
        let outcome = client
            .execute_async(SETTLE_JS, args)
            .await
            .map_err(|error| ScrapeError::from_cmd(error, deadline))?;
        match outcome.as_str() {
            Some("quiet") => return Ok(Settled::Quiet),
            Some("navigated") => {}
            _ => return Ok(Settled::Deadline),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
