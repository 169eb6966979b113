//! The command line: global connection flags, `--json`, and the three commands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Where `cargo xtask up` serves the gateway.
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:8080";
/// Where `cargo xtask up` serves the stats-broadcaster's stream.
pub const DEFAULT_STREAM_URL: &str = "ws://127.0.0.1:8083/v1/ws";

/// Submit quizzes to QuizStats, follow their answers live, read their answers and stats.
///
/// Exit codes: 0 done (the quiz completed), 1 unexpected failure (e.g. the gateway is
/// unreachable), 2 usage error, 3 the gateway answered an error, 4 the quiz failed,
/// 5 gave up waiting (--timeout).
#[derive(Debug, Parser)]
#[command(name = "quizstats", version)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,

    /// Print machine-readable JSON on stdout (the gateway's quiz view) and no progress.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Connection {
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "QUIZSTATS_GATEWAY_URL",
        default_value = DEFAULT_GATEWAY_URL
    )]
    pub gateway: String,

    /// The stats-broadcaster's WebSocket URL (ws:// or wss://).
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "QUIZSTATS_STREAM_URL",
        default_value = DEFAULT_STREAM_URL
    )]
    pub stream: String,

    /// The API key. Without it: --api-key-file, then $QUIZSTATS_API_KEY, then
    /// $QUIZSTATS_API_KEY_FILE, then .quizstats/dev-api-key in this directory or a parent.
    #[arg(long, global = true, value_name = "KEY", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,

    /// A file holding the API key (surrounding whitespace is ignored).
    #[arg(long, global = true, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Submit a quiz and follow it until it completes or fails, then print its answers.
    Submit(SubmitArgs),
    /// Print a quiz's answers and stats as they are now.
    Get {
        /// The quiz id (from `submit`).
        id: String,
    },
    /// Follow a running quiz until it ends (or print it at once if it already has).
    Watch(WatchArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A .json file holding a quiz as POST /v1/quizzes takes it (`-` reads stdin), or an
    /// http(s) URL of a page to extract the questions from.
    #[arg(value_name = "FILE.json|URL")]
    pub source: String,

    /// Print the quiz id and exit without waiting for the answers.
    #[arg(long)]
    pub no_wait: bool,

    /// Ask each question this many times and keep the most frequent answer (1 to 9).
    #[arg(long, value_name = "N")]
    pub votes: Option<u32>,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The quiz id.
    pub id: String,

    #[command(flatten)]
    pub wait: WaitArgs,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Give up (exit code 5) when the quiz has not ended after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
}
