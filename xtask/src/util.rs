//! Helpers every subcommand shares: paths, port and HTTP checks, deadlines, detached processes.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How often the wait loops look again; short enough that `up` feels prompt.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// Timeout for health probes: a local service that takes longer than this is not healthy.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Timeout for ordinary API calls to the gateway.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long `stop_pid` waits after SIGTERM before it sends SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// One QuizStats service binary and the port it serves `/healthz` and `/readyz` on.
pub struct Service {
    pub name: &'static str,
    pub port: u16,
}

impl Service {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// The four services with their default ports (the fixed contract in `HttpSettings`).
pub static SERVICES: [Service; 4] = [
    Service {
        name: "gateway",
        port: 8080,
    },
    Service {
        name: "analyzer",
        port: 8081,
    },
    Service {
        name: "scraper-worker",
        port: 8082,
    },
    Service {
        name: "stats-broadcaster",
        port: 8083,
    },
];

/// The workspace root: xtask lives one folder below it.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// `target/xtask` under the workspace root, whatever `CARGO_TARGET_DIR` says, so `down` always
/// finds the state file `up` wrote.
pub fn xtask_dir() -> PathBuf {
    workspace_root().join("target").join("xtask")
}

pub fn log_path(name: &str) -> PathBuf {
    xtask_dir().join("logs").join(format!("{name}.log"))
}

/// Where cargo puts build output, honouring `CARGO_TARGET_DIR` the way cargo does (relative to
/// the current directory), as an absolute path so it can be handed to a cargo run elsewhere.
pub fn cargo_target_dir() -> PathBuf {
    let from_env = ["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]
        .iter()
        .find_map(|name| std::env::var_os(name).filter(|value| !value.is_empty()));
    match from_env {
        Some(dir) => std::env::current_dir()
            .map(|cwd| cwd.join(&dir))
            .unwrap_or_else(|_| PathBuf::from(dir)),
        None => workspace_root().join("target"),
    }
}

/// The cargo that runs us (`cargo run` sets `CARGO`), so nested builds use the same toolchain.
pub fn cargo_command() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Prints a section header, so long runs read as steps.
pub fn section(title: &str) {
    println!("\n==> {title}");
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// A finished HTTP exchange; non-2xx statuses are answers too, not errors.
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

fn agent(timeout: Duration) -> ureq::Agent {
    // Everything xtask talks to is on loopback, so an `http_proxy` in the environment must not apply.
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into()
}

fn read_reply(mut response: ureq::http::Response<ureq::Body>) -> Result<HttpReply> {
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string()?;
    Ok(HttpReply { status, body })
}

/// A quick GET, meant for health probes.
pub fn http_get(url: &str) -> Result<HttpReply> {
    let response = agent(PROBE_TIMEOUT)
        .get(url)
        .call()
        .with_context(|| format!("GET {url}"))?;
    read_reply(response).with_context(|| format!("reading the answer to GET {url}"))
}

/// A GET that may take a while (API calls rather than probes), with `api_key` as a Bearer token.
pub fn http_get_slow(url: &str, api_key: &str) -> Result<HttpReply> {
    let response = agent(REQUEST_TIMEOUT)
        .get(url)
        .header("authorization", &format!("Bearer {api_key}"))
        .call()
        .with_context(|| format!("GET {url}"))?;
    read_reply(response).with_context(|| format!("reading the answer to GET {url}"))
}

/// A JSON POST with `api_key` as a Bearer token.
pub fn http_post_json(url: &str, json_body: &str, api_key: &str) -> Result<HttpReply> {
    let response = agent(REQUEST_TIMEOUT)
        .post(url)
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {api_key}"))
        .send(json_body)
        .with_context(|| format!("POST {url}"))?;
    read_reply(response).with_context(|| format!("reading the answer to POST {url}"))
}

/// Whether `url` answers 200 right now.
pub fn answers_ok(url: &str) -> bool {
    http_get(url).is_ok_and(|reply| reply.status == 200)
}

/// Calls `check` until it yields a value; fails after `timeout`, naming `what`. `check` may fail
/// early (say, the process being waited for died) to stop the wait.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check()? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {}s waiting for {what}", timeout.as_secs());
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Spawns `command` from the workspace root with stdin closed and stdout and stderr going to
/// `target/xtask/logs/<name>.log`. `detached` puts it in its own process group so a Ctrl-C in
/// this terminal does not reach it and it outlives xtask.
pub fn spawn_logged(name: &str, command: &mut Command, detached: bool) -> Result<Child> {
    let log_path = log_path(name);
    if let Some(log_dir) = log_path.parent() {
        fs::create_dir_all(log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    }
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    command
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if detached {
        command.process_group(0);
    }
    command
        .spawn()
        .with_context(|| format!("starting {name}: {command:?}"))
}

/// The last `n_lines` of a process's log, for error messages when it dies early.
pub fn log_tail(name: &str, n_lines: usize) -> String {
    let path = log_path(name);
    let Ok(text) = fs::read_to_string(&path) else {
        return format!("(no log at {})", path.display());
    };
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n_lines);
    format!("last lines of {}:\n{}", path.display(), lines[start..].join("\n"))
}

/// Finds an executable on `PATH`, or in the sbin folders where Debian puts daemons
/// (`rabbitmq-server` is `/usr/sbin`, which a non-root `PATH` often lacks).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let sbin_dirs = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from);
    path_dirs
        .into_iter()
        .chain(sbin_dirs)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            fs::metadata(candidate).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs `command` with inherited stdio and fails unless it exits 0.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed with {status}");
    }
    Ok(())
}

/// Whether xtask runs as root (`id -u` is 0).
pub fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// Whether `pid` is a live process; a zombie counts as gone.
pub fn pid_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) if Path::new("/proc/self").exists() => false,
        // Without /proc (macOS), ask the kernel whether the pid can be signalled.
        Err(_) => signal(pid, "0").unwrap_or(false),
    }
}

/// The command line of `pid` with arguments joined by spaces, where /proc exists.
pub fn pid_command_line(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text = String::from_utf8_lossy(&raw).replace('\0', " ");
    Some(text.trim().to_owned())
}

/// Sends `signal_name` (`TERM`, `KILL`, `0`) with the `kill` program; true when it was delivered.
fn signal(pid: u32, signal_name: &str) -> Result<bool> {
    let status = Command::new("kill")
        .args(["-s", signal_name, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .context("running kill")?;
    Ok(status.success())
}

/// Stops `pid`: SIGTERM, up to ten seconds for it to exit, then SIGKILL.
pub fn stop_pid(pid: u32) -> Result<()> {
    if !pid_alive(pid) {
        return Ok(());
    }
    signal(pid, "TERM")?;
    let exited = wait_for("exit", TERM_GRACE, || Ok((!pid_alive(pid)).then_some(()))).is_ok();
    if !exited {
        println!(
            "  pid {pid} ignored SIGTERM for {}s, sending SIGKILL",
            TERM_GRACE.as_secs()
        );
        signal(pid, "KILL")?;
        wait_for("exit after SIGKILL", Duration::from_secs(5), || {
            Ok((!pid_alive(pid)).then_some(()))
        })?;
    }
    Ok(())
}

/// The file name of a program path, for matching it against a command line.
pub fn program_name(program: &Path) -> &OsStr {
    program.file_name().unwrap_or(program.as_os_str())
}

/// Shortens `text` to `width` characters, marking the cut with an ellipsis.
pub fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let kept: String = text.chars().take(width.saturating_sub(1)).collect();
    format!("{kept}…")
}
