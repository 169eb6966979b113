//! `quizstats watch <id>`: a finished quiz is printed at once; a running one is followed.

use std::process::ExitCode;

use super::{Context, show, wait};
use crate::args::WatchArgs;
use crate::console::Console;
use crate::error::CliError;
use crate::stream::StreamEndpoint;

pub async fn run(context: &Context, args: WatchArgs, console: &mut Console) -> Result<ExitCode, CliError> {
    let stream = StreamEndpoint::parse(&context.stream_url)?;
    // Through the gateway first: it checks the key and the quiz's owner, and a finished
    // quiz needs no stream at all.
    let quiz = context.gateway.quiz(&args.id).await?;
    if quiz.view.status.is_terminal() {
        return show(context, &quiz, console);
    }
    let quiz = wait::until_done(context, &stream, &args.id, args.wait.timeout, console).await?;
    show(context, &quiz, console)
}
