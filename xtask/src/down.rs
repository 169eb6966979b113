//! `cargo xtask down`: stops what xtask started, per `target/xtask/state.json`, and nothing else.

use std::path::Path;

use anyhow::{Result, bail};

use crate::infra;
use crate::state::{Kind, Started, State};
use crate::util::{self, pid_command_line, program_name};

pub fn run() -> Result<()> {
    let mut state = State::load()?;
    if state.entries().is_empty() {
        println!(
            "nothing to stop: {} lists nothing xtask started",
            State::path().display()
        );
        return Ok(());
    }
    // Newest first: services go before the LLM and the brokers they depend on.
    let mut not_stopped = Vec::new();
    for entry in state.entries().iter().rev() {
        if let Err(error) = stop(entry) {
            println!("could not stop {}: {error:#}", entry.name);
            not_stopped.push(entry.clone());
        }
    }
    not_stopped.reverse();
    let n_left = not_stopped.len();
    state.replace_entries(not_stopped);
    state.save()?;
    if n_left > 0 {
        bail!(
            "{n_left} left running; they stay listed in {}",
            State::path().display()
        );
    }
    Ok(())
}

fn stop(entry: &Started) -> Result<()> {
    match (entry.kind, entry.pid) {
        (Kind::Process, Some(pid)) => stop_process(entry, pid),
        (Kind::Process, None) => bail!("no pid recorded"),
        (Kind::Rabbitmq | Kind::Redis, _) => {
            if !entry.seems_alive() {
                println!("{}: already stopped", entry.name);
                return Ok(());
            }
            println!("{}: stopping", entry.name);
            infra::stop(entry)?;
            println!("{}: stopped", entry.name);
            Ok(())
        }
    }
}

fn stop_process(entry: &Started, pid: u32) -> Result<()> {
    if !util::pid_alive(pid) {
        println!("{} (pid {pid}): already gone", entry.name);
        return Ok(());
    }
    // Pids are reused: only signal a pid that still runs the program xtask started.
    let expected = program_name(Path::new(&entry.program)).to_string_lossy();
    if let Some(command_line) = pid_command_line(pid)
        && !command_line.contains(expected.as_ref())
    {
        println!(
            "{} (pid {pid}): that pid now runs `{command_line}`, not {expected}; leaving it alone",
            entry.name
        );
        return Ok(());
    }
    println!("{} (pid {pid}): stopping", entry.name);
    util::stop_pid(pid)?;
    println!("{} (pid {pid}): stopped", entry.name);
    Ok(())
}
