//! The one error type of the CLI, and the exit code each failure maps to.

use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit codes, one per kind of outcome a script may want to tell apart.
pub mod exit {
    /// Something unexpected: the gateway unreachable, an answer this client cannot read.
    pub const FAILURE: u8 = 1;
    /// The command line or its inputs are wrong (clap uses 2 as well).
    pub const USAGE: u8 = 2;
    /// The gateway answered with an error status (401, 404, 422, 429, 503…).
    pub const API: u8 = 3;
    /// The quiz ended `failed`.
    pub const QUIZ_FAILED: u8 = 4;
    /// `--timeout` passed before the quiz ended.
    pub const TIMED_OUT: u8 = 5;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or inputs, with what to do about it.
    #[error("{0}")]
    Usage(String),
    /// The gateway answered an error status; the message is the problem in one line.
    #[error("{0}")]
    Api(String),
    #[error("cannot reach the gateway at {url}: {cause}")]
    GatewayUnreachable { url: String, cause: String },
    #[error("{0}")]
    UnexpectedResponse(String),
    #[error(
        "quiz {quiz_id} is still {status} after {seconds} s; `quizstats watch {quiz_id}` follows it again"
    )]
    TimedOut {
        quiz_id: String,
        status: String,
        seconds: u64,
    },
    /// stdout or stderr could not be written.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Self::Usage(_) => exit::USAGE,
            Self::Api(_) => exit::API,
            Self::TimedOut { .. } => exit::TIMED_OUT,
            Self::GatewayUnreachable { .. } | Self::UnexpectedResponse(_) | Self::Output(_) => exit::FAILURE,
        })
    }
}

/// An error and its causes on one line, `outer: inner: innermost`.
pub fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // reqwest and hyper repeat their cause in their own message at times.
        if !text.contains(&inner_text) {
            let _ = write!(text, ": {inner_text}");
        }
        cause = inner.source();
    }
    text
}
