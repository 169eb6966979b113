//! `quizstats`, the QuizStats command-line client: submit a quiz, follow its answers live
//! over the broadcaster's WebSocket, read a quiz's answers and stats.
//!
//! [`run`] is the whole program; `main.rs` only gives it the process's arguments and
//! terminal. Tests call it in-process with a [`Console`] that captures what it prints.

mod api;
mod args;
mod commands;
mod console;
mod credentials;
mod error;
mod progress;
mod render;
mod stream;
mod view;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

pub use crate::args::{Cli, DEFAULT_GATEWAY_URL, DEFAULT_STREAM_URL};
pub use crate::console::{Captured, Console};
pub use crate::error::{CliError, exit};

/// Runs `quizstats` with `args` (the program name first, as in `std::env::args_os`).
///
/// Every failure the user can act on (bad usage, an API error, a failed quiz) is
/// printed to `console`'s stderr as one line and becomes its exit code (see [`exit`]);
/// `Err` means the console itself could not be written to.
pub async fn run<I, T>(args: I, console: &mut Console) -> std::io::Result<ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` come back as errors too, meant for stdout.
            let text = error.render().to_string();
            return if error.use_stderr() {
                console.write_err(&text)?;
                Ok(ExitCode::from(exit::USAGE))
            } else {
                console.write_out(&text)?;
                Ok(ExitCode::SUCCESS)
            };
        }
    };
    match commands::execute(cli, console).await {
        Ok(code) => Ok(code),
        Err(CliError::Output(error)) => Err(error),
        Err(error) => {
            console.error_line(&error.to_string())?;
            Ok(error.exit_code())
        }
    }
}
