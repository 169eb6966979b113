//! `cargo xtask bench <name>`: runs one benchmark binary of `crates/bench` in release mode,
//! with the brokers up. Every benchmark measures its own floors in the same run, so its
//! figures are ratios that survive a noisy machine.

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::state::State;
use crate::{infra, util};

/// The benchmarks there are, as binaries of `crates/bench`.
pub const NAMES: &[&str] = &["e2e", "analyzer", "scraper", "gateway", "broadcaster"];

pub fn run(name: &str) -> Result<ExitCode> {
    anyhow::ensure!(
        NAMES.contains(&name),
        "unknown benchmark {name}; there are: {}",
        NAMES.join(", ")
    );
    // The gateway benchmark drives its targets with wrk; say how to get it before building.
    if name == "gateway"
        && std::process::Command::new("wrk")
            .arg("--version")
            .output()
            .is_err()
    {
        anyhow::bail!("bench gateway needs wrk, which is not installed; on Debian: apt-get install -y wrk");
    }
    let mut state = State::load_live()?;
    state.save()?;
    infra::ensure_running(&mut state)?;
    util::section(&format!("bench {name} (release build)"));
    let status = util::cargo_command()
        .current_dir(util::workspace_root())
        .args([
            "run",
            "--release",
            "--quiet",
            "--package",
            "bench",
            "--bin",
            &format!("bench-{name}"),
        ])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned()),
        )
        .status()
        .context("running the benchmark")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
