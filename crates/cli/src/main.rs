//! The `quizstats` binary: a runtime and the real terminal around [`quizstats_cli::run`].

use std::process::ExitCode;

use quizstats_cli::{Console, exit};

fn main() -> ExitCode {
    // One thread is plenty for one HTTP client and one WebSocket.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let mut console = Console::terminal();
    match runtime.block_on(quizstats_cli::run(std::env::args_os(), &mut console)) {
        Ok(code) => code,
        // A reader that went away (`quizstats get … | head`) is not worth a message.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(exit::FAILURE),
        Err(error) => {
            eprintln!("error: cannot write the output: {error}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
