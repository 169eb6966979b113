//! `cargo xtask`: QuizStats developer tasks (local stack, local LLM, the full test run).
#![allow(clippy::print_stdout, reason = "xtask is a CLI that reports to the terminal")]

mod bench;
mod chaos;
mod dlq;
mod down;
mod infra;
mod llm_server;
mod llm_setup;
mod sample;
mod soak;
mod state;
mod status;
mod test;
mod up;
mod util;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "QuizStats developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Create or refresh the Python venv with the local LLM server and model; print the model path
    LlmSetup,
    /// Start RabbitMQ, Redis, the local LLM and the four services, then run the sample quiz
    Up,
    /// Stop what `up` started (listed in target/xtask/state.json)
    Down,
    /// Show whether the services, the LLM, RabbitMQ and Redis are up
    Status,
    /// Start RabbitMQ, Redis and the local LLM, then run `cargo test --workspace --all-targets`
    Test {
        /// Extra arguments for `cargo test`, after `--`
        #[arg(last = true)]
        cargo_test_args: Vec<String>,
    },
    /// Run a benchmark in release mode (e2e, analyzer, scraper, gateway, broadcaster)
    Bench {
        /// Which benchmark
        name: String,
    },
    /// Dead letters in `{prefix}.dead`: list, show, requeue or purge them
    Dlq {
        #[command(subcommand)]
        action: dlq::Action,
    },
    /// Kill and restart every service, RabbitMQ and Redis under load; print the lost/duplicated table
    Chaos {
        /// `ci` (20 quizzes, debug binaries, about 3 minutes) or `full` (issue #7: 100 quizzes, 2,000 questions, release)
        #[arg(long, default_value = "ci")]
        profile: String,
        /// Seed of the workload, the fault schedule and the LLM's faults (printed by every run)
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Steady mixed load for N minutes; RSS of every service, errors and p99 latencies over time
    Soak {
        #[arg(long, default_value_t = 5)]
        minutes: u64,
        #[arg(long)]
        seed: Option<u64>,
        /// Use the debug binaries instead of a release build
        #[arg(long)]
        debug: bool,
    },
    /// Check every deployment file offline (compose, nginx, Prometheus, Grafana, k8s, workflows)
    Validate {
        /// Also run the real nginx and Prometheus in front of the services `up` started
        #[arg(long)]
        live: bool,
        /// Also run the backup and restore drill (Redis snapshot restore, RabbitMQ definitions)
        #[arg(long)]
        drill: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::LlmSetup => llm_setup::run().map(|()| ExitCode::SUCCESS),
        Task::Up => up::run().map(|()| ExitCode::SUCCESS),
        Task::Down => down::run().map(|()| ExitCode::SUCCESS),
        Task::Status => status::run().map(|()| ExitCode::SUCCESS),
        Task::Test { cargo_test_args } => test::run(&cargo_test_args),
        Task::Bench { name } => bench::run(&name),
        Task::Dlq { action } => dlq::run(action).map(|()| ExitCode::SUCCESS),
        Task::Validate { live, drill } => validate::run(live, drill),
        Task::Chaos { profile, seed } => chaos::run(&profile, seed),
        Task::Soak { minutes, seed, debug } => soak::run(minutes, seed, debug),
    };
    // The cause chain on one line, without the backtrace `RUST_BACKTRACE` would add to a
    // returned error: these are reports for a person, not crashes.
    result.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::FAILURE
    })
}
