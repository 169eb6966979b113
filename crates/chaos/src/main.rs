//! `chaos-driver`: the chaos suite and the soak run of issue #7, started by `cargo xtask chaos`
//! and `cargo xtask soak`. It runs private RabbitMQ and Redis instances, the scripted LLM, a
//! loopback page server and the four service binaries as its own children, so it can SIGKILL
//! and restart any of them without touching the shared brokers other tests use.
#![allow(
    clippy::print_stdout,
    reason = "the driver is a CLI whose report is its output"
)]

mod audit;
mod brokers;
mod chaos_run;
mod client;
mod config;
mod faults;
mod harness;
mod ports;
mod report;
mod services;
mod soak;
mod submission;
mod watch;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "chaos-driver", about = "QuizStats chaos suite and soak run")]
struct Cli {
    /// Folder holding the gateway, analyzer, scraper-worker and stats-broadcaster binaries
    #[arg(long, global = true, default_value = "target/debug")]
    bin_dir: PathBuf,
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Submit quizzes while killing and restarting every process; print the table
    Chaos {
        /// `ci`: 20 quizzes x 10 questions, each process killed once; `full`: the 100 x 20
        #[arg(long, value_enum, default_value = "ci")]
        profile: Profile,
        /// Seed of the workload, the fault schedule and the LLM's faults
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Steady mixed load without faults; RSS, errors and p99 per interval
    Soak {
        /// How long the load runs
        #[arg(long, default_value_t = 5)]
        minutes: u64,
        /// Seed of the workload
        #[arg(long)]
        seed: Option<u64>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Profile {
    Ci,
    Full,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: starting the tokio runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let seed_or_now = |seed: Option<u64>| {
        seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |elapsed| elapsed.as_secs())
        })
    };
    let result = runtime.block_on(async {
        let run = async {
            match cli.task {
                Task::Chaos { profile, seed } => chaos_run::run(&cli.bin_dir, profile, seed_or_now(seed)).await,
                Task::Soak { minutes, seed } => soak::run(&cli.bin_dir, minutes, seed_or_now(seed)).await,
            }
        };
        // On Ctrl-C or SIGTERM the run is dropped, and with it the harness: its guards kill the
        // services' process groups and stop the private brokers, which would otherwise outlive us
        // (they run in process groups of their own, so the terminal's signal does not reach them).
        tokio::select! {
            result = run => result,
            () = interrupted() => Err(anyhow::anyhow!("interrupted; stopped the services and the private brokers")),
        }
    });
    // Children (services, brokers) are stopped by their guards' Drop before we get here.
    match result {
        Ok(passed) if passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn interrupted() {
    let Ok(mut terminate) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
