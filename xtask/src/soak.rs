//! `cargo xtask soak --minutes N`: steady mixed load on release binaries (or `--debug`), with
//! each service's RSS and the p99 latencies sampled over time (docs/reliability.md, "Soak").

use std::process::ExitCode;

use anyhow::Result;

use crate::chaos;

pub fn run(minutes: u64, seed: Option<u64>, debug: bool) -> Result<ExitCode> {
    let mut args = vec!["soak".to_owned(), "--minutes".to_owned(), minutes.to_string()];
    if let Some(seed) = seed {
        args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    chaos::build_and_run_driver(!debug, &args)
}
