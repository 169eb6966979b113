//! The local OpenAI-compatible LLM server (llama-cpp-python serving SmolLM2) on 127.0.0.1:8088.

use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::llm_setup;
use crate::util::{self, answers_ok, log_tail, wait_for};

pub const PORT: u16 = 8088;

/// The base URL the services default to (`QUIZSTATS_LLM__BASE_URL`) and tests are given.
pub const BASE_URL: &str = "http://127.0.0.1:8088/v1";

/// The model name clients ask for; the services' default `QUIZSTATS_LLM__MODEL`.
const MODEL_ALIAS: &str = "smollm2";

/// Context window: SmolLM2 was trained to 8k; batches of long questions and the original
/// whole-quiz prompt in `bench analyzer` need more than 2k.
const CONTEXT_TOKENS: &str = "8192";

/// Loading a 135M model takes seconds; the margin is for a cold disk and a busy CI machine.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Also the log file's name and the state file entry's.
pub const NAME: &str = "llm";

pub fn models_url() -> String {
    format!("{BASE_URL}/models")
}

pub fn is_ready() -> bool {
    answers_ok(&models_url())
}

/// Starts the server unless something already answers on 8088, and waits until it serves.
/// Returns the child when this call started one. `detached` servers outlive xtask (`up`);
/// attached ones share our process group, so a Ctrl-C during `test` stops them too.
pub fn ensure_running(detached: bool) -> Result<Option<Child>> {
    if is_ready() {
        println!("LLM server already answers {}", models_url());
        return Ok(None);
    }
    // Something holds the port but did not answer in time: a server busy with a long
    // generation, or one still loading. Starting a second one could only fail to bind;
    // wait for this one instead.
    if util::port_open(PORT) {
        println!("something listens on {PORT} but is slow to answer; waiting for it");
        wait_for(
            "the LLM server on the port to answer /v1/models",
            READY_TIMEOUT,
            || Ok(is_ready().then_some(())),
        )?;
        println!("LLM server ready at {BASE_URL}");
        return Ok(None);
    }
    let gguf = llm_setup::ensure()?;
    let mut command = Command::new(llm_setup::venv_python());
    command
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&gguf)
        .args(["--model_alias", MODEL_ALIAS])
        .args(["--host", "127.0.0.1", "--port", &PORT.to_string()])
        .args(["--n_ctx", CONTEXT_TOKENS]);
    let mut child = util::spawn_logged(NAME, &mut command, detached)?;
    println!(
        "started the LLM server (pid {}), logging to {}",
        child.id(),
        util::log_path(NAME).display()
    );
    let waited = wait_for("the LLM server to answer /v1/models", READY_TIMEOUT, || {
        if let Some(status) = child.try_wait()? {
            bail!("the LLM server exited with {status}\n{}", log_tail(NAME, 20));
        }
        Ok(is_ready().then_some(()))
    });
    if let Err(error) = waited {
        // Do not leave a server that never became ready holding the port.
        let _ = stop_child(child);
        return Err(error);
    }
    println!("LLM server ready at {BASE_URL} (model {MODEL_ALIAS})");
    Ok(Some(child))
}

/// Stops a server this process started and reaps it.
pub fn stop_child(mut child: Child) -> Result<()> {
    util::stop_pid(child.id())?;
    child.wait()?;
    Ok(())
}
