//! Which API key to send, and where it came from (named in a 401's message).

use std::fmt;
use std::path::Path;

use crate::error::CliError;

/// Where `cargo xtask up` keeps the local admin key, relative to the workspace root.
pub const DEV_KEY_FILE: &str = ".quizstats/dev-api-key";

#[derive(Clone)]
pub struct ApiKey {
    secret: String,
    /// Where the key came from, for messages: `--api-key`, `$QUIZSTATS_API_KEY`, a path.
    pub source: String,
}

impl ApiKey {
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

// The secret never reaches a log line or a panic message.
impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ApiKey")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// The key to send, first found of: `--api-key`, `--api-key-file`, `$QUIZSTATS_API_KEY`,
/// `$QUIZSTATS_API_KEY_FILE`, then [`DEV_KEY_FILE`] in `cwd` or one of its parents.
/// `None` when there is none: a gateway with `auth.mode = "disabled"` needs none.
pub fn resolve(
    flag_key: Option<&str>,
    flag_file: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<Option<ApiKey>, CliError> {
    if let Some(key) = flag_key {
        return given("--api-key", key).map(Some);
    }
    if let Some(path) = flag_file {
        return from_file(path).map(Some);
    }
    if let Some(key) = env("QUIZSTATS_API_KEY").filter(|key| !key.is_empty()) {
        return given("$QUIZSTATS_API_KEY", &key).map(Some);
    }
    if let Some(path) = env("QUIZSTATS_API_KEY_FILE").filter(|path| !path.is_empty()) {
        return from_file(Path::new(&path)).map(Some);
    }
    cwd.ancestors()
        .map(|directory| directory.join(DEV_KEY_FILE))
        .find(|path| path.is_file())
        .map(|path| from_file(&path))
        .transpose()
}

fn given(source: &str, key: &str) -> Result<ApiKey, CliError> {
    let secret = key.trim();
    if secret.is_empty() {
        return Err(CliError::Usage(format!("{source} is empty")));
    }
    Ok(ApiKey {
        secret: secret.to_owned(),
        source: source.to_owned(),
    })
}

fn from_file(path: &Path) -> Result<ApiKey, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the API key file {}: {error}",
            path.display()
        ))
    })?;
    given(&path.display().to_string(), &text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use std::path::PathBuf;

    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn scratch() -> PathBuf {
        let directory = std::env::temp_dir().join(format!(
            "quizstats-cli-credentials-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(directory.join("nested/deeper")).unwrap();
        directory
    }

    #[test]
    fn flags_beat_the_environment_and_the_environment_beats_the_dev_file() {
        let directory = scratch();
        std::fs::create_dir_all(directory.join(".quizstats")).unwrap();
        std::fs::write(directory.join(DEV_KEY_FILE), "dev-key\n").unwrap();
        std::fs::write(directory.join("flag-file"), "  file-key \n").unwrap();
        let env = |name: &str| (name == "QUIZSTATS_API_KEY").then(|| "env-key".to_owned());
        let cwd = directory.join("nested/deeper");

        let key = resolve(Some("flag-key"), None, env, &cwd).unwrap().unwrap();
        assert_eq!((key.secret(), key.source.as_str()), ("flag-key", "--api-key"));
        let key = resolve(None, Some(&directory.join("flag-file")), env, &cwd)
            .unwrap()
            .unwrap();
        assert_eq!(key.secret(), "file-key");
        let key = resolve(None, None, env, &cwd).unwrap().unwrap();
        assert_eq!(
            (key.secret(), key.source.as_str()),
            ("env-key", "$QUIZSTATS_API_KEY")
        );
        // Found in a parent directory, as when run from inside the workspace.
        let key = resolve(None, None, no_env, &cwd).unwrap().unwrap();
        assert_eq!(key.secret(), "dev-key");
        assert!(key.source.ends_with("dev-api-key"), "{}", key.source);
        assert!(!format!("{key:?}").contains("dev-key\""), "{key:?}");
        std::fs::remove_dir_all(&directory).unwrap();
    }

    #[test]
    fn no_key_anywhere_is_none_and_an_unreadable_or_empty_key_is_a_usage_error() {
        let directory = scratch();
        assert!(resolve(None, None, no_env, &directory).unwrap().is_none());
        let missing = resolve(None, Some(&directory.join("missing")), no_env, &directory);
        assert!(matches!(missing, Err(CliError::Usage(message)) if message.contains("missing")));
        std::fs::write(directory.join("empty"), "\n").unwrap();
        let empty = resolve(None, Some(&directory.join("empty")), no_env, &directory);
        assert!(matches!(empty, Err(CliError::Usage(message)) if message.contains("is empty")));
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
