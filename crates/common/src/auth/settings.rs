//! The `[auth]` settings: the mode and the API keys, each stored only as its SHA-256.

use std::path::PathBuf;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer, Serialize};

/// Whether requests must carry an API key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// Every API call needs a configured key (the default).
    #[default]
    ApiKeys,
    /// No keys: every caller may do everything. An explicit operator choice, warned about at start.
    Disabled,
}

/// What a key may do; `admin` implies the others and reads every quiz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/quizzes` and `POST /api/analyze`.
    Submit,
    /// `GET /v1/quizzes/{id}` of the key's own quizzes.
    Read,
    /// Everything, including other keys' quizzes.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submit => "submit",
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

/// One API key: a name for logs and ownership, the hex SHA-256 of the key, its scopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiKeyEntry {
    /// Names the key in logs and owns the quizzes it creates; not secret.
    pub id: String,
    /// Lower- or upper-case hex of SHA-256 over the key's bytes (`printf %s "$KEY" | sha256sum`).
    #[serde(skip_serializing)]
    pub sha256: SecretString,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// `api_keys` (default) or `disabled`.
    pub mode: AuthMode,
    /// The accepted keys, as `[[auth.keys]]` tables; env `QUIZSTATS_AUTH__KEYS` takes a JSON list.
    #[serde(deserialize_with = "keys_from_list_or_text")]
    pub keys: Vec<ApiKeyEntry>,
    /// A TOML (`[[keys]]`) or JSON (a list, or `{"keys": [...]}`) file with more keys, e.g. a
    /// mounted Kubernetes secret; env `QUIZSTATS_AUTH__KEYS_FILE`. Read once at start.
    pub keys_file: Option<PathBuf>,
    /// Optional JSON Web Tokens accepted next to the keys (`[auth.jwt]`); absent: keys only.
    pub jwt: Option<JwtSettings>,
}

/// How the identity provider signs its tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with a secret shared with the issuer.
    #[default]
    Hs256,
    /// RSA-SHA256, verified with the issuer's public key.
    Rs256,
}

/// `[auth.jwt]`: which tokens are accepted. Secrets come from the environment
/// (`QUIZSTATS_AUTH__JWT__SECRET`) or a mounted file (`secret_file`), never a committed file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct JwtSettings {
    pub algorithm: JwtAlgorithm,
    /// The exact `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must include.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// The claim holding the scopes: a space-separated string (OAuth `scope`) or a list.
    pub scope_claim: String,
    /// HS256: the shared secret, at least 32 bytes.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    /// HS256: a file holding the secret (e.g. a Kubernetes secret), used when `secret` is unset.
    pub secret_file: Option<PathBuf>,
    /// RS256: the issuer's public key, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_key_pem: Option<String>,
    /// RS256: a file holding that PEM, used when `public_key_pem` is unset.
    pub public_key_file: Option<PathBuf>,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            algorithm: JwtAlgorithm::Hs256,
            issuer: String::new(),
            audience: "quizstats".to_owned(),
            leeway_secs: 30,
            scope_claim: "scope".to_owned(),
            secret: None,
            secret_file: None,
            public_key_pem: None,
            public_key_file: None,
        }
    }
}

/// Accepts a list of key tables, or a string holding one as JSON (what an env variable gives).
fn keys_from_list_or_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ApiKeyEntry>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrText {
        List(Vec<ApiKeyEntry>),
        Text(String),
    }
    match ListOrText::deserialize(deserializer)? {
        ListOrText::List(keys) => Ok(keys),
        ListOrText::Text(text) => parse_keys_text(&text).map_err(serde::de::Error::custom),
    }
}

/// Parses keys written as JSON (a list or `{"keys": [...]}`) or as TOML (`[[keys]]` tables).
/// Error messages never quote the input: it holds key hashes.
pub fn parse_keys_text(text: &str) -> Result<Vec<ApiKeyEntry>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Document {
        List(Vec<ApiKeyEntry>),
        Table { keys: Vec<ApiKeyEntry> },
    }
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') && !trimmed.starts_with("[[") || trimmed.starts_with('{') {
        return match serde_json::from_str::<Document>(text) {
            Ok(Document::List(keys) | Document::Table { keys }) => Ok(keys),
            Err(error) => Err(format!(
                "api keys are not a JSON list of {{id, sha256, scopes}} (line {}, column {})",
                error.line(),
                error.column()
            )),
        };
    }
    match toml::from_str::<Document>(text) {
        Ok(Document::List(keys) | Document::Table { keys }) => Ok(keys),
        Err(_) => {
            Err("api keys are neither JSON nor TOML `[[keys]]` tables of {id, sha256, scopes}".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::result_large_err,
        reason = "tests; figment's Jail API fixes the error type"
    )]

    use secrecy::ExposeSecret;
    use serde::{Deserialize, Serialize};

    use super::AuthSettings;
    use crate::settings::Sources;

    /// A service's settings as far as auth goes (the gateway's and the broadcaster's embed it).
    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Settings {
        auth: AuthSettings,
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn load(jail: &figment::Jail) -> Settings {
        crate::settings::load(&Sources {
            config_dir: jail.directory().to_path_buf(),
            profile: "dev".into(),
            service: "gateway".into(),
        })
        .unwrap()
    }

    #[test]
    fn keys_come_from_toml_tables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "base.toml",
                &format!(
                    "[[auth.keys]]\nid = \"ci\"\nsha256 = \"{HASH}\"\nscopes = [\"submit\", \"read\"]\n"
                ),
            )?;
            let settings = load(jail);
            assert_eq!(settings.auth.keys.len(), 1);
            assert_eq!(settings.auth.keys[0].id, "ci");
            assert_eq!(settings.auth.keys[0].sha256.expose_secret(), HASH);
            Ok(())
        });
    }

    #[test]
    fn keys_come_from_json_in_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env(
                "QUIZSTATS_AUTH__KEYS",
                format!(r#"[{{"id": "dev", "sha256": "{HASH}", "scopes": ["admin"]}}]"#),
            );
            jail.set_env("QUIZSTATS_AUTH__KEYS_FILE", "/run/secrets/keys.toml");
            jail.set_env("QUIZSTATS_AUTH__MODE", "api_keys");
            let settings = load(jail);
            assert_eq!(settings.auth.keys.len(), 1);
            assert_eq!(settings.auth.keys[0].id, "dev");
            assert_eq!(settings.auth.keys[0].scopes, vec![super::Scope::Admin]);
            assert_eq!(
                settings.auth.keys_file.as_deref(),
                Some(std::path::Path::new("/run/secrets/keys.toml"))
            );
            Ok(())
        });
    }

    #[test]
    fn jwt_settings_and_their_secret_come_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "base.toml",
                "[auth.jwt]\nalgorithm = \"hs256\"\nissuer = \"https://idp.example\"\n",
            )?;
            jail.set_env("QUIZSTATS_AUTH__JWT__SECRET", "from-the-environment");
            jail.set_env("QUIZSTATS_AUTH__JWT__AUDIENCE", "quizstats-prod");
            let jwt = load(jail).auth.jwt.unwrap();
            assert_eq!(jwt.algorithm, super::JwtAlgorithm::Hs256);
            assert_eq!(jwt.issuer, "https://idp.example");
            assert_eq!(jwt.audience, "quizstats-prod");
            assert_eq!(jwt.leeway_secs, 30);
            assert_eq!(jwt.secret.unwrap().expose_secret(), "from-the-environment");

            jail.set_env("QUIZSTATS_AUTH__JWT__SECRET", "");
            jail.set_env("QUIZSTATS_AUTH__JWT__SECRET_FILE", "/run/secrets/jwt");
            let jwt = load(jail).auth.jwt.unwrap();
            assert_eq!(
                jwt.secret_file.as_deref(),
                Some(std::path::Path::new("/run/secrets/jwt"))
            );
            Ok(())
        });
    }

    #[test]
    fn auth_can_be_disabled_explicitly() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("QUIZSTATS_AUTH__MODE", "disabled");
            assert_eq!(load(jail).auth.mode, super::AuthMode::Disabled);
            Ok(())
        });
    }
}
