//! `cargo xtask up`: brokers, the local LLM, the four services, then the sample quiz end to end.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::state::{Kind, Started, State};
use crate::util::{self, SERVICES, Service, answers_ok, http_get, log_tail, port_open};
use crate::{infra, llm_server, sample};

/// Deadline for all four services to report ready after they were started.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the ready wait says what it is still waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The local admin API key, relative to the workspace root (`.quizstats/` is git-ignored).
pub const DEV_KEY_PATH: &str = ".quizstats/dev-api-key";
/// The gateway's key list for that key (hashes only), read through `QUIZSTATS_AUTH__KEYS_FILE`
/// by the services `up` starts and by compose/docker-compose.yml's `api_keys` secret.
const DEV_KEYS_FILE_PATH: &str = ".quizstats/api-keys.json";

/// The id the gateway knows the local key by (logs, quiz ownership).
const DEV_KEY_ID: &str = "dev";

pub fn run() -> Result<()> {
    let mut state = State::load_live()?;
    state.save()?;

    infra::ensure_running(&mut state)?;
    infra::enable_rabbitmq_management();

    util::section("LLM");
    match std::env::var("QUIZSTATS_LLM__BASE_URL") {
        Ok(base_url) => {
            println!("QUIZSTATS_LLM__BASE_URL is set ({base_url}); the services use it, no local LLM started")
        }
        Err(_) => {
            if let Some(child) = llm_server::ensure_running(true)? {
                state.record(Started {
                    name: llm_server::NAME.to_owned(),
                    kind: Kind::Process,
                    pid: Some(child.id()),
                    program: crate::llm_setup::venv_python().display().to_string(),
                    port: Some(llm_server::PORT),
                })?;
            }
        }
    }

    util::section("services");
    let dev_key = DevKey::load_or_create()?;
    build_services()?;
    let mut spawned = start_services(&mut state, &dev_key)?;
    wait_until_ready(&mut spawned)?;

    util::section("sample quiz");
    let sample_result = sample::submit_and_report(&dev_key.key);

    print_urls(&dev_key);
    sample_result
}

/// The local API key: made once from /dev/urandom, kept in `.quizstats/dev-api-key`, handed to
/// the gateway only as its SHA-256 (an admin key, so it reads every quiz).
struct DevKey {
    key: String,
    path: PathBuf,
}

impl DevKey {
    fn load_or_create() -> Result<Self> {
        let path = util::workspace_root().join(DEV_KEY_PATH);
        if let Ok(text) = fs::read_to_string(&path) {
            let key = text.trim().to_owned();
            if !key.is_empty() {
                println!("API key: using {}", path.display());
                return Ok(Self { key, path });
            }
        }
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut bytes))
            .context("reading 32 random bytes from /dev/urandom")?;
        let key: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        if let Some(folder) = path.parent() {
            fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        }
        // Owner-only from the start: the key is a credential.
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        writeln!(file, "{key}").with_context(|| format!("writing {}", path.display()))?;
        println!("API key: created a local admin key in {}", path.display());
        Ok(Self { key, path })
    }

    /// Writes the gateway's key file (the key's hash, never the key) and returns its path, for
    /// `QUIZSTATS_AUTH__KEYS_FILE`. Rewritten on every `up`, so it always matches the key.
    fn write_gateway_keys_file(&self) -> Result<PathBuf> {
        let entry = serde_json::json!([{
            "id": DEV_KEY_ID,
            "sha256": sha256_hex(&self.key)?,
            "scopes": ["admin"],
        }]);
        let path = util::workspace_root().join(DEV_KEYS_FILE_PATH);
        fs::write(&path, format!("{entry}\n")).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// SHA-256 of `text` as hex, through coreutils' `sha256sum` (xtask keeps its dependencies few).
fn sha256_hex(text: &str) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("running sha256sum (coreutils)")?;
    child
        .stdin
        .take()
        .context("sha256sum's stdin")?
        .write_all(text.as_bytes())
        .context("writing to sha256sum")?;
    let output = child.wait_with_output().context("waiting for sha256sum")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let digest = stdout.split_whitespace().next().unwrap_or_default();
    if !output.status.success() || digest.len() != 64 {
        bail!("sha256sum failed with {}", output.status);
    }
    Ok(digest.to_owned())
}

fn build_services() -> Result<()> {
    println!("cargo build --bins");
    let status = util::cargo_command()
        .current_dir(util::workspace_root())
        .args(["build", "--bins"])
        // Absolute, because a relative CARGO_TARGET_DIR means the caller's directory, not ours.
        .env("CARGO_TARGET_DIR", util::cargo_target_dir())
        .status()
        .context("running cargo build --bins")?;
    if !status.success() {
        bail!("cargo build --bins failed with {status}");
    }
    Ok(())
}

/// A service this run started, kept to notice when it dies during startup.
struct Spawned {
    service: &'static Service,
    child: Child,
}

fn start_services(state: &mut State, dev_key: &DevKey) -> Result<Vec<Spawned>> {
    let binary_dir = util::cargo_target_dir().join("debug");
    let profile = std::env::var("QUIZSTATS_ENV").unwrap_or_else(|_| "dev".to_owned());
    let mut spawned = Vec::new();
    for service in &SERVICES {
        if answers_ok(&service.url("/healthz")) {
            println!(
                "{} already answers on port {}; leaving it",
                service.name, service.port
            );
            continue;
        }
        let binary = binary_dir.join(service.name);
        if !binary.is_file() {
            bail!(
                "{} is missing after cargo build --bins; is services/{} a workspace member?",
                binary.display(),
                service.name
            );
        }
        let mut command = Command::new(&binary);
        command.env("QUIZSTATS_ENV", &profile);
        // The broadcaster checks the same keys: watching a quiz needs the key that reads it.
        if matches!(service.name, "gateway" | "stats-broadcaster") {
            command.env("QUIZSTATS_AUTH__KEYS_FILE", dev_key.write_gateway_keys_file()?);
        }
        let child = util::spawn_logged(service.name, &mut command, true)?;
        println!(
            "started {} (pid {}) on port {}, logging to {}",
            service.name,
            child.id(),
            service.port,
            util::log_path(service.name).display()
        );
        state.record(Started {
            name: service.name.to_owned(),
            kind: Kind::Process,
            pid: Some(child.id()),
            program: binary.display().to_string(),
            port: Some(service.port),
        })?;
        spawned.push(Spawned { service, child });
    }
    Ok(spawned)
}

/// What `/readyz` says for a service, in words for the progress line.
fn readiness(service: &Service) -> Option<String> {
    match http_get(&service.url("/readyz")) {
        Ok(reply) if reply.status == 200 => None,
        Ok(reply) => Some(format!("{} ({})", service.name, reply.status)),
        Err(_) => Some(format!("{} (not listening)", service.name)),
    }
}

fn wait_until_ready(spawned: &mut [Spawned]) -> Result<()> {
    let started_at = Instant::now();
    let mut last_progress = started_at;
    loop {
        for entry in spawned.iter_mut() {
            if let Some(status) = entry.child.try_wait()? {
                bail!(
                    "{} exited with {status} while starting\n{}",
                    entry.service.name,
                    log_tail(entry.service.name, 20)
                );
            }
        }
        let waiting: Vec<String> = SERVICES.iter().filter_map(readiness).collect();
        if waiting.is_empty() {
            println!(
                "all four services are ready ({}s)",
                started_at.elapsed().as_secs()
            );
            return Ok(());
        }
        if started_at.elapsed() >= READY_TIMEOUT {
            bail!(
                "services not ready after {}s: {}; see the logs in {}",
                READY_TIMEOUT.as_secs(),
                waiting.join(", "),
                util::xtask_dir().join("logs").display()
            );
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            println!("waiting for /readyz: {}", waiting.join(", "));
            last_progress = Instant::now();
        }
        std::thread::sleep(util::POLL_INTERVAL);
    }
}

fn print_urls(dev_key: &DevKey) {
    util::section("QuizStats is running");
    println!("gateway     http://127.0.0.1:8080  (POST /v1/quizzes, GET /v1/quizzes/{{id}})");
    println!(
        "api key     {}  (admin; saved in {})",
        dev_key.key,
        dev_key.path.display()
    );
    println!(
        "            curl -H \"Authorization: Bearer $(cat {DEV_KEY_PATH})\" http://127.0.0.1:8080/v1/quizzes/<id>"
    );
    println!(
        "dashboard   http://127.0.0.1:8083/#key={}  (the key is kept in the tab, not in the URL; \
         WebSocket ws://127.0.0.1:8083/v1/ws)",
        dev_key.key
    );
    if port_open(infra::RABBITMQ_MANAGEMENT_PORT) {
        println!(
            "rabbitmq    http://127.0.0.1:{}  (management UI, guest/guest)",
            infra::RABBITMQ_MANAGEMENT_PORT
        );
    } else {
        println!("rabbitmq    management UI not enabled (rabbitmq-plugins enable rabbitmq_management)");
    }
    println!("logs        {}", util::xtask_dir().join("logs").display());
    println!("stop with   cargo xtask down");
}
