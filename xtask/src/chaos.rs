//! `cargo xtask chaos [--profile ci|full] [--seed N]`: builds the four services and the chaos
//! driver (`crates/chaos`), then runs the driver, which starts private brokers and the services
//! as its own children and kills them (docs/reliability.md, "Chaos suite").

use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::util;

/// The packages the driver runs, plus the driver itself.
const PACKAGES: [&str; 5] = [
    "gateway",
    "analyzer",
    "scraper-worker",
    "stats-broadcaster",
    "chaos",
];

pub fn run(profile: &str, seed: Option<u64>) -> Result<ExitCode> {
    // CI reuses the debug binaries `cargo test --workspace --all-targets` already built; the
    // full run measures recovery times on release binaries.
    let release = match profile {
        "ci" => false,
        "full" => true,
        other => bail!("unknown chaos profile {other}; there are: ci, full"),
    };
    let mut args = vec!["chaos".to_owned(), "--profile".to_owned(), profile.to_owned()];
    if let Some(seed) = seed {
        args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    build_and_run_driver(release, &args)
}

/// Builds [`PACKAGES`] (release or debug) and runs `chaos-driver <args>` from the workspace root.
pub fn build_and_run_driver(release: bool, args: &[String]) -> Result<ExitCode> {
    let profile_dir = if release { "release" } else { "debug" };
    util::section(&format!(
        "build the services and the chaos driver ({profile_dir})"
    ));
    let mut build = util::cargo_command();
    build
        .current_dir(util::workspace_root())
        .args(["build", "--bins"]);
    if release {
        build.arg("--release");
    }
    for package in PACKAGES {
        build.args(["--package", package]);
    }
    util::run_checked(build.env("CARGO_TARGET_DIR", util::cargo_target_dir()))?;

    let bin_dir = util::cargo_target_dir().join(profile_dir);
    let driver = bin_dir.join("chaos-driver");
    util::section(&format!("{} {}", driver.display(), args.join(" ")));
    let status = std::process::Command::new(&driver)
        .current_dir(util::workspace_root())
        .arg("--bin-dir")
        .arg(&bin_dir)
        .args(args)
        .status()
        .with_context(|| format!("running {}", driver.display()))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
