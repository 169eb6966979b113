//! The settle wait: after load, poll a mutation counter until the DOM has been quiet for a while.

use std::time::Duration;

use fantoccini::Client;

use crate::error::ScrapeError;

/// Installs a MutationObserver once and returns the number of mutations seen so far plus the
/// element count (a fallback signal for changes the observer cannot see, e.g. inside shadow roots).
const PROBE_JS: &str = r"
if (!window.__quizstatsMutations) {
  window.__quizstatsMutations = {n: 0};
  try {
    new MutationObserver(m => { window.__quizstatsMutations.n += m.length; })
      .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  } catch (e) {}
}
return [window.__quizstatsMutations.n, document.getElementsByTagName('*').length, document.readyState];
";

/// How often the counter is read.
const POLL: Duration = Duration::from_millis(100);

/// What the wait ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Quiet for the whole window.
    Quiet,
    /// Still changing at the deadline (a ticking clock); the page is extracted as it is.
    Deadline,
}

/// Waits until nothing changed for `quiet`, or `deadline` passed.
pub async fn wait_for_settle(
    client: &Client,
    quiet: Duration,
    deadline: Duration,
) -> Result<Settled, ScrapeError> {
    let start = tokio::time::Instant::now();
    let mut last: Option<serde_json::Value> = None;
    let mut quiet_since = start;
    loop {
        let probe = client
            .execute(PROBE_JS, Vec::new())
            .await
            .map_err(|error| ScrapeError::from_cmd(error, deadline))?;
        let now = tokio::time::Instant::now();
        let loaded = probe.get(2).and_then(|state| state.as_str()) == Some("complete");
        if last.as_ref() != Some(&probe) || !loaded {
            last = Some(probe);
            quiet_since = now;
        } else if now.duration_since(quiet_since) >= quiet {
            return Ok(Settled::Quiet);
        }
        if now.duration_since(start) >= deadline {
            return Ok(Settled::Deadline);
        }
        tokio::time::sleep(POLL).await;
    }
}
