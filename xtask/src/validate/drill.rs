//! `--drill`: the backup and restore drill of docs/operations/backup-restore.md.

use common::bus::Topology;

use super::*;

/// Loopback ports of the drill's throwaway Redis servers (the source, then the restored copy).
pub(super) const DRILL_REDIS_PORTS: [u16; 2] = [16379, 16380];

/// Keys the drill writes and expects back after the restore.
pub(super) const DRILL_N_KEYS: usize = 200;

pub(super) fn redis_cli(port: u16, args: &[&str]) -> Result<String> {
    let port = port.to_string();
    output_of(
        Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port])
            .args(args),
    )
    .map(|text| text.trim().to_owned())
}

pub(super) fn start_redis(name: &str, port: u16, dir: &Path) -> Result<Guard> {
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
pub(super) fn drill_redis(work: &Path) -> Result<String> {
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
///
/// The topology is declared first, as every service does when it starts (idempotent, the
/// configured prefix): a broker nothing has run against yet has none, and the drill would
/// otherwise prove only that an empty export is empty.
pub(super) fn drill_rabbitmq_definitions(work: &Path) -> Result<String> {
    let program = util::find_program("rabbitmqctl").context("rabbitmqctl is not installed")?;
    let topology = declare_topology().context("declaring the QuizStats topology to export")?;
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
    let names = |key: &str| -> Vec<String> {
        definitions[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (exchanges, queues) = (names("exchanges"), names("queues"));
    for (kind, wanted, found) in [
        ("exchange", topology.jobs_exchange(), &exchanges),
        ("exchange", topology.events_exchange(), &exchanges),
        ("queue", topology.analyze_queue(), &queues),
        ("queue", topology.dead_letter_queue(), &queues),
    ] {
        if !found.contains(&wanted) {
            bail!("{} lacks the {kind} {wanted}", path.display());
        }
    }
    Ok(format!(
        "{} exchanges, {} queues, {} bindings exported to {}",
        count("exchanges"),
        count("queues"),
        count("bindings"),
        path.display()
    ))
}

/// Declares the durable exchanges, queues and bindings of the configured prefix on the local
/// broker, with the services' own settings and declaration.
fn declare_topology() -> Result<Topology> {
    let settings = crate::dlq::DlqSettings::load()?;
    let topology = Topology::new(&settings.amqp);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let connection = crate::dlq::connect_broker(&settings.amqp, "quizstats-xtask-drill").await?;
        let channel = connection.create_channel().await?;
        topology.declare(&channel).await?;
        let _ = connection.close(200, "done".into()).await;
        Ok(topology)
    })
}
