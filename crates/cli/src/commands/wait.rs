//! Waiting for a quiz to end: the stream drives the progress bar; the gateway has the
//! final word (and takes over, polled, when the stream cannot be used).

use std::time::Duration;

use tokio::time::Instant;

use super::Context;
use crate::console::Console;
use crate::error::CliError;
use crate::progress::Progress;
use crate::stream::{self, StreamEndpoint, Update};
use crate::view::Fetched;

/// How often the gateway is asked when the stream is not available. The stream is the
/// live path; polling is the fallback, so it need not be fast.
const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Follows `quiz_id` until it is completed or failed and returns the gateway's view of it.
/// `timeout_secs` bounds the whole wait ([`CliError::TimedOut`]).
pub async fn until_done(
    context: &Context,
    endpoint: &StreamEndpoint,
    quiz_id: &str,
    timeout_secs: Option<u64>,
    console: &mut Console,
) -> Result<Fetched, CliError> {
    let deadline = timeout_secs.map(|seconds| (Instant::now() + Duration::from_secs(seconds), seconds));
    let shows_progress = console.shows_progress(context.json);
    let mut progress = Progress::new(shows_progress, quiz_id);
    let followed = {
        let following = stream::follow(endpoint, quiz_id, context.key.as_ref(), |update| {
            // Without a bar to print it above, an interruption is still worth a line in the log.
            if let Update::Reconnecting { why } = &update
                && !shows_progress
            {
                let _ = console.warning_line(&format!("stream interrupted ({why}); resuming"));
            }
            progress.apply(&update);
        });
        match deadline {
            Some((deadline, _)) => tokio::time::timeout_at(deadline, following).await.ok(),
            None => Some(following.await),
        }
    };
    if let Some(Err(error)) = followed {
        progress.suspend(|| {
            console.warning_line(&format!(
                "{error}; following quiz {quiz_id} by polling the gateway instead"
            ))
        })?;
    }
    // Whatever the stream said, the gateway's record is what gets printed; right after
    // the terminal event it already says so, and without a stream it is polled.
    let result = poll(context, quiz_id, deadline, &mut progress).await;
    progress.finish();
    result
}

async fn poll(
    context: &Context,
    quiz_id: &str,
    deadline: Option<(Instant, u64)>,
    progress: &mut Progress,
) -> Result<Fetched, CliError> {
    loop {
        let quiz = context.gateway.quiz(quiz_id).await?;
        if quiz.view.status.is_terminal() {
            return Ok(quiz);
        }
        let stats = &quiz.view.stats;
        progress.apply(&Update::Counts {
            total: stats.total,
            answered: stats.answered,
            failed: stats.failed,
        });
        if let Some((deadline, seconds)) = deadline
            && Instant::now() + POLL_INTERVAL > deadline
        {
            return Err(CliError::TimedOut {
                quiz_id: quiz_id.to_owned(),
                status: quiz.view.status.as_str().to_owned(),
                seconds,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
