//! RabbitMQ and Redis on 127.0.0.1: found running, started from installed binaries, or installed
//! with apt when xtask runs as root on Debian or Ubuntu.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::state::{Kind, Started, State};
use crate::util::{self, find_program, port_open, run_checked, wait_for};

pub const RABBITMQ_PORT: u16 = 5672;
pub const RABBITMQ_MANAGEMENT_PORT: u16 = 15672;
pub const REDIS_PORT: u16 = 6379;

/// A daemon QuizStats needs and how to get one.
pub struct Daemon {
    pub name: &'static str,
    pub port: u16,
    kind: Kind,
    /// The server program, which is also the Debian package name.
    server_program: &'static str,
    /// Arguments that start it in the background.
    start_args: &'static [&'static str],
    /// How long it may take to listen after the start command returns; a cold RabbitMQ boot
    /// on a small CI machine takes 10-30 s.
    start_timeout: Duration,
    /// What to tell a user who has to install it themselves.
    install_hint: &'static str,
}

pub const RABBITMQ: Daemon = Daemon {
    name: "rabbitmq",
    port: RABBITMQ_PORT,
    kind: Kind::Rabbitmq,
    server_program: "rabbitmq-server",
    start_args: &["-detached"],
    start_timeout: Duration::from_secs(60),
    install_hint: "  Debian/Ubuntu: sudo apt-get install -y rabbitmq-server\n  \
                   macOS:         brew install rabbitmq && brew services start rabbitmq\n  \
                   Docker:        docker run -d --name quizstats-rabbitmq -p 5672:5672 -p 15672:15672 rabbitmq:3-management",
};

pub const REDIS: Daemon = Daemon {
    name: "redis",
    port: REDIS_PORT,
    kind: Kind::Redis,
    server_program: "redis-server",
    start_args: &[
        "--daemonize",
        "yes",
        "--bind",
        "127.0.0.1",
        "--port",
        "6379",
        "--save",
        "",
        "--appendonly",
        "no",
    ],
    start_timeout: Duration::from_secs(15),
    install_hint: "  Debian/Ubuntu: sudo apt-get install -y redis-server\n  \
                   macOS:         brew install redis && brew services start redis\n  \
                   Docker:        docker run -d --name quizstats-redis -p 6379:6379 redis:7",
};

/// Makes sure RabbitMQ and Redis listen, recording in `state` whatever this call started.
pub fn ensure_running(state: &mut State) -> Result<()> {
    util::section("RabbitMQ and Redis");
    let missing: Vec<&Daemon> = [&RABBITMQ, &REDIS]
        .into_iter()
        .filter(|daemon| {
            let listening = port_open(daemon.port);
            if listening {
                println!("{} is listening on 127.0.0.1:{}", daemon.name, daemon.port);
            }
            !listening
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }

    let not_installed: Vec<&Daemon> = missing
        .iter()
        .copied()
        .filter(|daemon| find_program(daemon.server_program).is_none())
        .collect();
    if !not_installed.is_empty() {
        install_with_apt(&not_installed)?;
    }

    for daemon in missing {
        // Installing a package may already have started it (systemd hosts do).
        if port_open(daemon.port) {
            println!("{} is listening on 127.0.0.1:{}", daemon.name, daemon.port);
            continue;
        }
        start(daemon, state)?;
    }
    Ok(())
}

fn start(daemon: &Daemon, state: &mut State) -> Result<()> {
    let Some(program) = find_program(daemon.server_program) else {
        bail!(
            "{} is still not on PATH after installing it",
            daemon.server_program
        );
    };
    println!(
        "{} is not listening on 127.0.0.1:{}; starting it: {} {}",
        daemon.name,
        daemon.port,
        program.display(),
        daemon.start_args.join(" ")
    );
    run_checked(Command::new(&program).args(daemon.start_args))?;
    // Record before waiting, so `down` can stop a daemon that was slow to come up.
    state.record(Started {
        name: daemon.name.to_owned(),
        kind: daemon.kind,
        pid: None,
        program: program.display().to_string(),
        port: Some(daemon.port),
    })?;
    let what = format!("{} on 127.0.0.1:{}", daemon.name, daemon.port);
    wait_for(&what, daemon.start_timeout, || {
        Ok(port_open(daemon.port).then_some(()))
    })?;
    println!("{} is listening on 127.0.0.1:{}", daemon.name, daemon.port);
    Ok(())
}

/// Installs the missing daemons with apt when that is possible, else explains what to install.
fn install_with_apt(daemons: &[&Daemon]) -> Result<()> {
    let packages: Vec<&str> = daemons.iter().map(|daemon| daemon.server_program).collect();
    let on_debian = Path::new("/etc/debian_version").exists();
    if !(on_debian && util::running_as_root()) {
        let mut message = String::from("QuizStats needs RabbitMQ and Redis on 127.0.0.1.\n");
        for daemon in daemons {
            message.push_str(&format!(
                "{} is not listening on 127.0.0.1:{} and `{}` is not installed. Install it, or start one, and run this again:\n{}\n",
                daemon.name, daemon.port, daemon.server_program, daemon.install_hint
            ));
        }
        bail!("{}", message.trim_end());
    }
    println!("installing {} with apt-get", packages.join(" "));
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y"])
            .args(&packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// Stops a daemon `up` started, using its own tool, and waits for its port to close.
pub fn stop(started: &Started) -> Result<()> {
    let (program, args): (&str, &[&str]) = match started.kind {
        Kind::Rabbitmq => ("rabbitmqctl", &["stop"]),
        Kind::Redis => ("redis-cli", &["-p", "6379", "shutdown", "nosave"]),
        Kind::Process => bail!("{} is a process, not a daemon", started.name),
    };
    let Some(path) = find_program(program) else {
        bail!(
            "`{program}` is not on PATH, so {} cannot be stopped",
            started.name
        );
    };
    // `redis-cli shutdown` may report the dropped connection as an error; the port tells the truth.
    let status = Command::new(path).args(args).status()?;
    let port = started.port.unwrap_or(match started.kind {
        Kind::Rabbitmq => RABBITMQ_PORT,
        _ => REDIS_PORT,
    });
    wait_for(
        &format!("{} to close port {port}", started.name),
        Duration::from_secs(30),
        || Ok((!port_open(port)).then_some(())),
    )
    .map_err(|error| error.context(format!("`{program} {}` exited with {status}", args.join(" "))))
}

/// Turns on RabbitMQ's management UI (queue inspection at 127.0.0.1:15672) when it is off. Not
/// fatal: the system runs without it, so a failure is reported and `up` goes on.
pub fn enable_rabbitmq_management() {
    if port_open(RABBITMQ_MANAGEMENT_PORT) {
        return;
    }
    let Some(plugins) = find_program("rabbitmq-plugins") else {
        println!("rabbitmq-plugins not found; the management UI stays off");
        return;
    };
    println!("enabling the RabbitMQ management UI (rabbitmq-plugins enable rabbitmq_management)");
    let enabled = run_checked(Command::new(plugins).args(["enable", "rabbitmq_management"])).and_then(|()| {
        wait_for("the RabbitMQ management UI", Duration::from_secs(30), || {
            Ok(port_open(RABBITMQ_MANAGEMENT_PORT).then_some(()))
        })
    });
    if let Err(error) = enabled {
        println!("the management UI stays off: {error:#}");
    }
}
