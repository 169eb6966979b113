//! `cargo xtask up`: brokers, the local LLM, the four services, then the sample quiz end to end.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::state::{Kind, Started, State};
use crate::util::{self, SERVICES, Service, answers_ok, http_get, log_tail, port_open};
use crate::{infra, llm_server, sample};

/// Deadline for all four services to report ready after they were started.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How often the ready wait says what it is still waiting for.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub fn run() -> Result<()> {
    let mut state = State::load_live()?;
    state.save()?;

    infra::ensure_running(&mut state)?;

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
    build_services()?;
    let mut spawned = start_services(&mut state)?;
    wait_until_ready(&mut spawned)?;

    util::section("sample quiz");
    let sample_result = sample::submit_and_report();

    print_urls();
    sample_result
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

fn start_services(state: &mut State) -> Result<Vec<Spawned>> {
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

fn print_urls() {
    util::section("QuizStats is running");
    println!("gateway     http://127.0.0.1:8080  (POST /v1/quizzes, GET /v1/quizzes/{{id}})");
    println!("dashboard   http://127.0.0.1:8083/  (WebSocket ws://127.0.0.1:8083/v1/ws)");
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
