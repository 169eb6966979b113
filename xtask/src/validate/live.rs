//! `--live`: the real nginx and Prometheus in front of the services `cargo xtask up` started.

use super::*;

/// Port the live nginx listens on (loopback only).
pub(super) const LIVE_NGINX_PORT: u16 = 18080;

/// Port the live Prometheus listens on (loopback only).
pub(super) const LIVE_PROMETHEUS_PORT: u16 = 19090;

/// A child process that is stopped when this goes out of scope, pass or fail.
pub(super) struct Guard(pub(super) Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = util::stop_pid(self.0.id());
        let _ = self.0.wait();
    }
}

pub(super) fn require_services() -> Result<()> {
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
pub(super) fn raw_request(port: u16, request_head: &str, body: &str) -> Result<(u16, String)> {
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

pub(super) fn get(port: u16, path: &str) -> Result<(u16, String)> {
    raw_request(port, &format!("GET {path} HTTP/1.1\r\nConnection: close"), "")
}

/// The dev nginx.conf on a loopback port in front of the running gateway and broadcaster:
/// security headers, /metrics hidden, a WebSocket upgrade, 429s for a burst.
pub(super) fn live_nginx(nginx_dir: &Path) -> Result<String> {
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
    // The broadcaster checks the dev key `cargo xtask up` made, so this also shows nginx passes
    // `Authorization` through on the upgrade; without it the broadcaster answers 401.
    let key_path = util::workspace_root().join(crate::up::DEV_KEY_PATH);
    let key = fs::read_to_string(&key_path)
        .with_context(|| format!("reading {} (cargo xtask up writes it)", key_path.display()))?;
    let quiz_id = "0193a0c0-0000-7000-8000-000000000000";
    let upgrade = |authorization: &str| {
        raw_request(
            LIVE_NGINX_PORT,
            &format!(
                "GET /v1/ws?quiz_id={quiz_id} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13{authorization}"
            ),
            "",
        )
    };
    let (status, _) = upgrade("")?;
    if status != 401 {
        bail!("a WebSocket upgrade without a key answered {status} through nginx, wanted 401");
    }
    let (status, head) = upgrade(&format!("\r\nAuthorization: Bearer {}", key.trim()))?;
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
pub(super) fn live_prometheus(root: &Path, work: &Path) -> Result<String> {
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
pub(super) fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (byte as char).to_string(),
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The schemathesis checks of the live run: no 5xx, and every answer as the document says
/// (status code, content type, body schema, required headers).
pub(super) const SCHEMATHESIS_CHECKS: &str = "not_a_server_error,status_code_conformance,\
     content_type_conformance,response_schema_conformance,response_headers_conformance";

/// The live run's schemathesis.toml, bounded to well under two minutes on two cores:
/// - reads and deletes: 25 examples per operation, at most 15 requests a second (the gateway's
///   default budget is 20 a second per key);
/// - submissions: each valid one is real work for the local LLM (`POST /api/analyze` waits for
///   it), so 4 examples per operation, no coverage phase (it sends about 120 boundary bodies per
///   operation, up to 200 questions of 4,000 characters), and one a second (the submission budget
///   refills at 60 a minute). The 429s that still come are documented answers and checked too;
/// - `POST /api/analyze` waits for the LLM, and fuzzed valid quizzes (up to 200 questions) made a
///   run take over a minute: its valid case is the document's example (a real wait for a real
///   answer), its fuzzing sends invalid bodies only. `POST /v1/quizzes` fuzzes valid quizzes,
///   which share its validation, without waiting for them;
/// - `POST /v1/extract` fuzzes invalid bodies only: a valid one opens a browser on a fuzzed URL
///   (real egress from this machine, which must not happen) and its 502/504 answers for
///   unreachable pages are server errors by design; for the same reason its example (a URL)
///   is not sent.
///
/// No stateful phase: the document declares no links. `request-timeout` stays under the
/// gateway's own 120 s wait for `/api/analyze`, so a slow analysis fails here rather than as a 504.
pub(super) fn schemathesis_config(api_key: &str) -> String {
    format!(
        r#"# Written by `cargo xtask validate --live` (xtask/src/validate/live.rs) on every run.
workers = 1
rate-limit = "15/s"
request-timeout = 100

[headers]
Authorization = "Bearer {api_key}"

[generation]
max-examples = 25
database = "none"

[phases.stateful]
enabled = false

[[operations]]
include-method = "POST"
rate-limit = "1/s"
generation.max-examples = 4
phases.coverage.enabled = false

[[operations]]
include-path = "/api/analyze"
generation.mode = "negative"

[[operations]]
include-path = "/v1/extract"
generation.mode = "negative"
phases.examples.enabled = false
"#
    )
}

/// schemathesis against the gateway `cargo xtask up` started, from the document it serves at
/// `/openapi.json` (which must be the committed docs/openapi.json, or the gateway is stale).
pub(super) fn live_schemathesis(venv: &Path, work: &Path) -> Result<String> {
    require_services()?;
    let gateway = format!("http://127.0.0.1:{}", util::SERVICES[0].port);
    let served = util::http_get(&format!("{gateway}/openapi.json")).context(
        "the running gateway has no /openapi.json: restart it (cargo xtask down && cargo xtask up)",
    )?;
    let committed = fs::read_to_string(util::workspace_root().join("docs/openapi.json"))?;
    if served.body != committed {
        bail!(
            "the running gateway serves another document than docs/openapi.json: restart it \
             (cargo xtask down && cargo xtask up), or regenerate the file \
             (UPDATE_EXPECT=1 cargo test -p system-tests openapi)"
        );
    }
    let key_path = util::workspace_root().join(crate::up::DEV_KEY_PATH);
    let key = fs::read_to_string(&key_path)
        .with_context(|| format!("reading {} (cargo xtask up writes it)", key_path.display()))?;
    let dir = work.join("schemathesis");
    fs::create_dir_all(&dir)?;
    let config = dir.join("schemathesis.toml");
    fs::write(&config, schemathesis_config(key.trim()))?;
    let mut command = Command::new(venv.join("bin").join("schemathesis"));
    command
        .arg("--config-file")
        .arg(&config)
        .args(["run", "--no-color", "--checks", SCHEMATHESIS_CHECKS])
        .arg("--report")
        .arg("junit")
        .arg("--report-dir")
        .arg(&dir)
        .arg(format!("{gateway}/openapi.json"))
        // Hypothesis keeps its files in the working directory: target/, not the work tree.
        .current_dir(&dir)
        .stdin(Stdio::null());
    let output = command
        .output()
        .with_context(|| format!("running {}", shown(&command)))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let errors = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!(
            "{} exited with {}\n{}{}",
            shown(&command),
            output.status,
            text.trim_end(),
            errors.trim_end()
        );
    }
    // "302 generated, 302 passed" and the closing "== 1 warning in 31.1s ==".
    let cases = text
        .lines()
        .skip_while(|line| !line.starts_with("Test cases:"))
        .nth(1)
        .unwrap_or_default()
        .trim();
    let closing = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    Ok(format!(
        "test cases: {cases}; {}",
        closing.trim_matches(|c: char| c == '=' || c.is_whitespace())
    ))
}
