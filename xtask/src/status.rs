//! `cargo xtask status`: whether each service, the LLM, RabbitMQ and Redis are up.

use anyhow::Result;

use crate::infra::{RABBITMQ, RABBITMQ_MANAGEMENT_PORT, REDIS};
use crate::llm_server;
use crate::state::State;
use crate::util::{SERVICES, http_get, port_open};

pub fn run() -> Result<()> {
    let state = State::load()?;
    let started_by = |name: &str| match state.find(name) {
        Some(entry) if entry.seems_alive() => match entry.pid {
            Some(pid) => format!("  (started by xtask, pid {pid})"),
            None => "  (started by xtask)".to_owned(),
        },
        _ => String::new(),
    };

    println!("{:<18} {:>5}  state", "component", "port");
    for service in &SERVICES {
        let state_text = match http_get(&service.url("/readyz")) {
            Ok(reply) if reply.status == 200 => "up (ready)".to_owned(),
            Ok(reply) => format!("up, not ready (/readyz {})", reply.status),
            Err(_) => "down".to_owned(),
        };
        println!(
            "{:<18} {:>5}  {state_text}{}",
            service.name,
            service.port,
            started_by(service.name)
        );
    }

    let llm_state = if llm_server::is_ready() {
        "up (/v1/models answers)"
    } else if port_open(llm_server::PORT) {
        "listening, /v1/models not answering yet"
    } else {
        "down"
    };
    println!(
        "{:<18} {:>5}  {llm_state}{}",
        "llm",
        llm_server::PORT,
        started_by(llm_server::NAME)
    );
    if let Ok(base_url) = std::env::var("QUIZSTATS_LLM__BASE_URL") {
        println!(
            "{:<18} {:>5}  services use QUIZSTATS_LLM__BASE_URL={base_url}",
            "", ""
        );
    }

    for (name, port) in [
        (RABBITMQ.name, RABBITMQ.port),
        ("rabbitmq-mgmt", RABBITMQ_MANAGEMENT_PORT),
        (REDIS.name, REDIS.port),
    ] {
        let listening = if port_open(port) { "up (listening)" } else { "down" };
        println!("{name:<18} {port:>5}  {listening}{}", started_by(name));
    }
    Ok(())
}
