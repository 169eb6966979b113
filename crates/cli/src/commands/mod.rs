//! The three commands, and what they share: the connection, and how a quiz is shown.

mod submit;
mod wait;
mod watch;

use std::process::ExitCode;

use common::views::QuizStatus;

use crate::api::Gateway;
use crate::args::{Cli, Command};
use crate::console::Console;
use crate::credentials::{self, ApiKey};
use crate::error::{CliError, exit};
use crate::render;
use crate::view::Fetched;

/// What every command needs: where the services are, the key, the output mode.
pub struct Context {
    pub gateway: Gateway,
    pub key: Option<ApiKey>,
    /// `--stream`, parsed only by the commands that follow a quiz.
    pub stream_url: String,
    pub json: bool,
}

pub async fn execute(cli: Cli, console: &mut Console) -> Result<ExitCode, CliError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let key = credentials::resolve(
        cli.connection.api_key.as_deref(),
        cli.connection.api_key_file.as_deref(),
        |name| std::env::var(name).ok(),
        &cwd,
    )?;
    let context = Context {
        gateway: Gateway::new(&cli.connection.gateway, key.clone())?,
        key,
        stream_url: cli.connection.stream,
        json: cli.json,
    };
    match cli.command {
        Command::Submit(args) => submit::run(&context, args, console).await,
        Command::Get { id } => {
            let quiz = context.gateway.quiz(&id).await?;
            show(&context, &quiz, console)
        }
        Command::Watch(args) => watch::run(&context, args, console).await,
    }
}

/// Prints `quiz` (its JSON as the gateway sent it, or the table) and picks the exit code:
/// a failed quiz exits with [`exit::QUIZ_FAILED`] and says why on stderr.
pub fn show(context: &Context, quiz: &Fetched, console: &mut Console) -> Result<ExitCode, CliError> {
    if context.json {
        let text = serde_json::to_string_pretty(&quiz.raw).map_err(|error| {
            CliError::UnexpectedResponse(format!("cannot print the quiz as JSON: {error}"))
        })?;
        console.write_out(&format!("{text}\n"))?;
    } else {
        console.write_out(&render::report(&quiz.view))?;
    }
    if quiz.view.status == QuizStatus::Failed {
        let reason = quiz.view.reason.as_deref().unwrap_or("no reason given");
        console.error_line(&format!("quiz {} failed: {reason}", quiz.view.id))?;
        return Ok(ExitCode::from(exit::QUIZ_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
