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
