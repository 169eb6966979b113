//! `target/xtask/state.json`: what xtask started, so `down` stops exactly that and nothing else.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use crate::util::{self, pid_alive, port_open};

/// How `down` stops an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A process xtask spawned: SIGTERM its pid.
    Process,
    /// A RabbitMQ node started with `rabbitmq-server -detached`: `rabbitmqctl stop`.
    Rabbitmq,
    /// A Redis started with `redis-server --daemonize yes`: `redis-cli shutdown nosave`.
    Redis,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Rabbitmq => "rabbitmq",
            Self::Redis => "redis",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Process, Self::Rabbitmq, Self::Redis]
            .into_iter()
            .find(|kind| kind.as_str() == text)
    }
}

/// One thing xtask started.
#[derive(Clone, Debug)]
pub struct Started {
    /// `gateway`, `llm`, `rabbitmq`, ...; also the log file's name.
    pub name: String,
    pub kind: Kind,
    /// The pid for spawned processes; daemons that fork away have none.
    pub pid: Option<u32>,
    /// The program that was run, to recognise the pid later (pids get reused).
    pub program: String,
    /// The port it listens on, to tell whether a daemon is still there.
    pub port: Option<u16>,
}

impl Started {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "kind": self.kind.as_str(),
            "pid": self.pid,
            "program": self.program,
            "port": self.port,
        })
    }

    fn from_json(value: &Value) -> Option<Self> {
        Some(Self {
            name: value.get("name")?.as_str()?.to_owned(),
            kind: Kind::parse(value.get("kind")?.as_str()?)?,
            pid: value
                .get("pid")
                .and_then(Value::as_u64)
                .and_then(|pid| u32::try_from(pid).ok()),
            program: value
                .get("program")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            port: value
                .get("port")
                .and_then(Value::as_u64)
                .and_then(|port| u16::try_from(port).ok()),
        })
    }

    /// Whether it still seems to run: its pid is alive, or for a daemon, its port still listens.
    pub fn seems_alive(&self) -> bool {
        match (self.pid, self.port) {
            (Some(pid), _) => pid_alive(pid),
            (None, Some(port)) => port_open(port),
            (None, None) => false,
        }
    }
}

/// The contents of the state file, in the order things were started.
#[derive(Debug, Default)]
pub struct State {
    entries: Vec<Started>,
}

impl State {
    pub fn path() -> PathBuf {
        util::xtask_dir().join("state.json")
    }

    /// Reads the state file; a missing file is an empty state.
    pub fn load() -> Result<Self> {
        let path = Self::path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        let value: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let entries = value
            .get("started")
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Started::from_json).collect())
            .unwrap_or_default();
        Ok(Self { entries })
    }

    /// Loads the state and drops entries whose process is gone, so a stale file from an earlier
    /// session neither blocks nor misleads.
    pub fn load_live() -> Result<Self> {
        let mut state = Self::load()?;
        state.entries.retain(Started::seems_alive);
        Ok(state)
    }

    pub fn save(&self) -> Result<()> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let started: Vec<Value> = self.entries.iter().map(Started::to_json).collect();
        let text = serde_json::to_string_pretty(&json!({ "started": started }))?;
        // Write then rename, so an interrupted write never leaves half a file behind.
        let temporary = path.with_extension("json.tmp");
        fs::write(&temporary, text + "\n").with_context(|| format!("writing {}", temporary.display()))?;
        fs::rename(&temporary, &path).with_context(|| format!("writing {}", path.display()))
    }

    /// Records `started` (replacing an older entry of the same name) and saves at once, so a
    /// later failure in the same run still leaves `down` able to stop it.
    pub fn record(&mut self, started: Started) -> Result<()> {
        self.entries.retain(|entry| entry.name != started.name);
        self.entries.push(started);
        self.save()
    }

    pub fn entries(&self) -> &[Started] {
        &self.entries
    }

    pub fn find(&self, name: &str) -> Option<&Started> {
        self.entries.iter().find(|entry| entry.name == name)
    }

    pub fn replace_entries(&mut self, entries: Vec<Started>) {
        self.entries = entries;
    }
}
