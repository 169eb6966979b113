//! `cargo xtask test`: the README's test command. Brokers and the local LLM up, then
//! `cargo test --workspace --all-targets` against them.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::state::State;
use crate::{infra, llm_server, util};

pub fn run(cargo_test_args: &[String]) -> Result<ExitCode> {
    let mut state = State::load_live()?;
    state.save()?;
    infra::ensure_running(&mut state)?;

    util::section("LLM");
    // Attached: if this run is interrupted with Ctrl-C, the server gets the signal too.
    let llm_child = llm_server::ensure_running(false)?;

    util::section("cargo test --workspace --all-targets");
    let status = util::cargo_command()
        .current_dir(util::workspace_root())
        .args(["test", "--workspace", "--all-targets"])
        .args(cargo_test_args)
        .env("QUIZSTATS_TEST_LLM_URL", llm_server::BASE_URL)
        .status()
        .context("running cargo test");

    if let Some(child) = llm_child {
        println!("stopping the LLM server this run started");
        llm_server::stop_child(child)?;
    }

    let status = status?;
    // A test run killed by a signal reports it the way a shell would.
    let code = status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1);
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
