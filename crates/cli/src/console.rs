//! Where `quizstats` writes: the process's stdout and stderr, or buffers a test reads back.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex};

/// Results and JSON go to `out`; messages, warnings and the progress bar to `err`.
pub struct Console {
    out: Box<dyn Write + Send>,
    err: Box<dyn Write + Send>,
    /// Whether a person watches stderr: the progress bar is drawn only then.
    stderr_is_terminal: bool,
}

impl Console {
    /// The process's own stdout and stderr.
    pub fn terminal() -> Self {
        Self {
            out: Box::new(io::stdout()),
            err: Box::new(io::stderr()),
            stderr_is_terminal: io::stderr().is_terminal(),
        }
    }

    /// A console that keeps what is written, for tests; it is never a terminal.
    pub fn captured() -> (Self, Captured) {
        let captured = Captured::default();
        let console = Self {
            out: Box::new(SharedBuffer(Arc::clone(&captured.out))),
            err: Box::new(SharedBuffer(Arc::clone(&captured.err))),
            stderr_is_terminal: false,
        };
        (console, captured)
    }

    /// Whether to draw a progress bar: never with `--json`, only on a terminal.
    pub fn shows_progress(&self, json: bool) -> bool {
        !json && self.stderr_is_terminal
    }

    pub fn write_out(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(text.as_bytes())?;
        self.out.flush()
    }

    pub fn write_err(&mut self, text: &str) -> io::Result<()> {
        self.err.write_all(text.as_bytes())?;
        self.err.flush()
    }

    /// `error: <message>` on stderr.
    pub fn error_line(&mut self, message: &str) -> io::Result<()> {
        self.write_err(&format!("error: {message}\n"))
    }

    /// `warning: <message>` on stderr.
    pub fn warning_line(&mut self, message: &str) -> io::Result<()> {
        self.write_err(&format!("warning: {message}\n"))
    }
}

/// What a [`Console::captured`] console was given.
#[derive(Clone, Default)]
pub struct Captured {
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
}

impl Captured {
    pub fn stdout(&self) -> String {
        read(&self.out)
    }

    pub fn stderr(&self) -> String {
        read(&self.err)
    }
}

fn read(buffer: &Mutex<Vec<u8>>) -> String {
    buffer
        .lock()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut buffer = self
            .0
            .lock()
            .map_err(|_| io::Error::other("the capture buffer is poisoned"))?;
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
