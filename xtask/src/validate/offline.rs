//! The offline checks that need more than one command: Dockerfile, alerts, Grafana, overlays, nginx.

use super::*;

/// At least this many alerts, as the operations issue asks.
pub(super) const MIN_ALERTS: usize = 15;

/// Splits a rendered overlay: custom resources are checked against k8s/schemas, core objects
/// are written one per file for kubernetes-validate, a PrometheusRule's spec for promtool.
pub(super) const SPLIT_PY: &str = r##"
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
pub(super) const PROMETHEUS_RULE_PY: &str = r##"
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
pub(super) const GRAFANA_PY: &str = r##"
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

/// The runtime stage runs as a non-root user and every COPY source is in the build context.
pub(super) fn check_dockerfile(root: &Path) -> Result<String> {
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
pub(super) fn check_alert_runbooks(root: &Path) -> Result<String> {
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

pub(super) fn check_grafana(python: &Path, work: &Path) -> Result<String> {
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
pub(super) fn check_overlay(venv: &Path, work: &Path, overlay: &str) -> Result<String> {
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
pub(super) fn prepare_nginx(root: &Path, work: &Path) -> Result<PathBuf> {
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

pub(super) fn nginx_program() -> Result<PathBuf> {
    util::find_program("nginx").context("nginx is not installed")
}

pub(super) fn nginx_test(dir: &Path, conf: &str) -> Result<String> {
    output_of(
        Command::new(nginx_program()?)
            .arg("-t")
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join(conf)),
    )
}

/// Finds where each deployment hands the gateway and the stats-broadcaster their API keys:
/// both refuse to start without them, so a compose file or overlay that forgets them deploys
/// a service that never becomes ready. Reads `docker-compose config` of each compose file and the overlays
/// `check_overlay` rendered into the work folder.
const GATEWAY_KEYS_PY: &str = r##"
import os, subprocess, sys, yaml
work = sys.argv[1]
compose_files, overlays = sys.argv[2].split(","), sys.argv[3].split(",")
problems, found = [], []
SERVICES = ["gateway", "stats-broadcaster"]
for path, service in [(p, s) for p in compose_files for s in SERVICES]:
    rendered = subprocess.run(["docker-compose", "-f", path, "config"], capture_output=True, text=True,
                              env={**os.environ, "RABBITMQ_PASSWORD": "validate-only"}, check=True).stdout
    doc = yaml.safe_load(rendered)
    gateway = doc["services"][service]
    env = gateway.get("environment") or {}
    keys_file = env.get("QUIZSTATS_AUTH__KEYS_FILE")
    if not keys_file:
        problems.append(f"{path}: {service} has no QUIZSTATS_AUTH__KEYS_FILE")
        continue
    secrets = [s["source"] if isinstance(s, dict) else s for s in gateway.get("secrets") or []]
    mounted = [s for s in secrets if keys_file == f"/run/secrets/{s}"]
    if not mounted or mounted[0] not in (doc.get("secrets") or {}):
        problems.append(f"{path}: {keys_file} is not a secret the file declares and mounts")
    else:
        found.append(f"{os.path.basename(path)}:{service}:{mounted[0]}")
for overlay, service in [(o, s) for o in overlays for s in SERVICES]:
    docs = [d for d in yaml.safe_load_all(open(os.path.join(work, overlay.replace("/", "-") + ".yaml"))) if d]
    deployments = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == service]
    if len(deployments) != 1:
        problems.append(f"{overlay}: {len(deployments)} {service} Deployments")
        continue
    pod = deployments[0]["spec"]["template"]["spec"]
    container = next(c for c in pod["containers"] if c["name"] == service)
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    keys_file = env.get("QUIZSTATS_AUTH__KEYS_FILE")
    if not keys_file:
        problems.append(f"{overlay}: {service} has no QUIZSTATS_AUTH__KEYS_FILE")
        continue
    folder, name = os.path.split(keys_file)
    mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == folder]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    secret = mounts and volumes.get(mounts[0]["name"], {}).get("secret")
    items = [i for i in (secret or {}).get("items") or [] if i["path"] == name]
    if not items:
        problems.append(f"{overlay}: no Secret volume mounted at {folder} provides {name}")
        continue
    # An overlay that generates its Secret must put the key in it; base and prod create it out of band.
    generated = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"].startswith(secret["secretName"])]
    for generated_secret in generated:
        data = {**(generated_secret.get("data") or {}), **(generated_secret.get("stringData") or {})}
        if items[0]["key"] not in data:
            problems.append(f"{overlay}: the generated Secret lacks {items[0]['key']}")
    found.append(f"{overlay}:{service}:{secret['secretName']}/{items[0]['key']}")
for problem in problems:
    print(problem)
print(f"API keys mounted in {len(found)} service deployments")
sys.exit(1 if problems else 0)
"##;

pub(super) fn check_gateway_keys(python: &Path, work: &Path) -> Result<String> {
    output_of(
        Command::new(python)
            .arg("-c")
            .arg(GATEWAY_KEYS_PY)
            .arg(work)
            .arg(COMPOSE_FILES.join(","))
            .arg(OVERLAYS.join(",")),
    )
}
