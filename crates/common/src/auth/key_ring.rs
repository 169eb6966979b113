//! The configured API keys as SHA-256 digests, the constant-time lookup of a presented key, and
//! the optional JWT verifier: everything that turns a presented credential into a caller.

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::jwt::{JwtConfigError, JwtVerifier, TokenRejection, looks_like_jwt};
use super::settings::{ApiKeyEntry, AuthMode, AuthSettings, Scope};

/// Why the key settings cannot be used; names the key by id, never by its hash.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("api key {id:?}: sha256 must be 64 hex characters")]
    BadHash { id: String },
    #[error("api key {id:?} has no scopes")]
    NoScopes { id: String },
    #[error("api key id {id:?} is configured twice")]
    DuplicateId { id: String },
    #[error("api key id must not be empty")]
    EmptyId,
    #[error("cannot read auth.keys_file {path}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("auth.keys_file {path}: {reason}")]
    Unparsable { path: String, reason: String },
    #[error(
        "auth.mode is api_keys but no key is configured; add [[auth.keys]] or [auth.jwt], or set auth.mode = \"disabled\""
    )]
    NoKeys,
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
}

/// Why a presented credential gets no access.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("unknown API key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    Token(TokenRejection),
}

/// The scopes a key holds, as a tiny set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scopes {
    submit: bool,
    read: bool,
    admin: bool,
}

impl Scopes {
    pub fn admin() -> Self {
        Self {
            submit: true,
            read: true,
            admin: true,
        }
    }

    pub fn from_list(scopes: &[Scope]) -> Self {
        let mut set = Self::default();
        for scope in scopes {
            match scope {
                Scope::Submit => set.submit = true,
                Scope::Read => set.read = true,
                Scope::Admin => set = Self::admin(),
            }
        }
        set
    }

    /// Whether `scope` is granted; `admin` implies every scope.
    pub fn allows(self, scope: Scope) -> bool {
        self.admin
            || match scope {
                Scope::Submit => self.submit,
                Scope::Read => self.read,
                Scope::Admin => false,
            }
    }

    pub fn is_admin(self) -> bool {
        self.admin
    }
}

struct StoredKey {
    id: String,
    digest: [u8; 32],
    scopes: Scopes,
}

/// Every accepted key, hashed; cheap to share behind the app state.
pub struct KeyRing {
    mode: AuthMode,
    keys: Vec<StoredKey>,
    jwt: Option<JwtVerifier>,
}

/// Who a valid key belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    pub key_id: String,
    pub scopes: Scopes,
}

impl KeyRing {
    /// Builds the ring from `[auth]`: the inline keys plus those in `keys_file`.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, KeyRingError> {
        let mut entries = settings.keys.clone();
        if let Some(path) = &settings.keys_file {
            let shown = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| KeyRingError::Unreadable {
                path: shown.clone(),
                source,
            })?;
            let from_file = super::settings::parse_keys_text(&text)
                .map_err(|reason| KeyRingError::Unparsable { path: shown, reason })?;
            entries.extend(from_file);
        }
        let keys = entries.iter().map(stored).collect::<Result<Vec<_>, _>>()?;
        for (position, key) in keys.iter().enumerate() {
            if keys[..position].iter().any(|earlier| earlier.id == key.id) {
                return Err(KeyRingError::DuplicateId { id: key.id.clone() });
            }
        }
        let jwt = settings
            .jwt
            .as_ref()
            .map(JwtVerifier::from_settings)
            .transpose()?;
        if settings.mode == AuthMode::ApiKeys && keys.is_empty() && jwt.is_none() {
            return Err(KeyRingError::NoKeys);
        }
        Ok(Self {
            mode: settings.mode,
            keys,
            jwt,
        })
    }

    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether JSON Web Tokens are accepted.
    pub fn accepts_tokens(&self) -> bool {
        self.jwt.is_some()
    }

    /// The caller a presented credential names: a JWT when tokens are configured and it has a
    /// token's shape, otherwise an API key.
    pub fn authenticate(&self, presented: &str) -> Result<KeyMatch, Rejection> {
        if let Some(verifier) = &self.jwt
            && looks_like_jwt(presented)
        {
            return verifier.verify(presented).map_err(Rejection::Token);
        }
        self.lookup(presented).ok_or(Rejection::UnknownKey)
    }

    /// The key matching `presented`, if any. Hashes it, then compares the digest with every
    /// configured digest in constant time, without stopping at a match, so the time taken
    /// says nothing about which key (or how much of one) matched.
    pub fn lookup(&self, presented: &str) -> Option<KeyMatch> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = u32::MAX;
        for (index, key) in (0u32..).zip(&self.keys) {
            found.conditional_assign(&index, digest.ct_eq(&key.digest));
        }
        let key = self.keys.get(usize::try_from(found).ok()?)?;
        Some(KeyMatch {
            key_id: key.id.clone(),
            scopes: key.scopes,
        })
    }
}

/// The lower-case hex SHA-256 of a key: what `sha256` in `[[auth.keys]]` holds.
pub fn sha256_hex(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn stored(entry: &ApiKeyEntry) -> Result<StoredKey, KeyRingError> {
    if entry.id.trim().is_empty() {
        return Err(KeyRingError::EmptyId);
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(entry.sha256.expose_secret().trim(), &mut digest)
        .map_err(|_| KeyRingError::BadHash { id: entry.id.clone() })?;
    if entry.scopes.is_empty() {
        return Err(KeyRingError::NoScopes { id: entry.id.clone() });
    }
    Ok(StoredKey {
        id: entry.id.clone(),
        digest,
        scopes: Scopes::from_list(&entry.scopes),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use super::*;

    fn entry(id: &str, key: &str, scopes: &[Scope]) -> ApiKeyEntry {
        ApiKeyEntry {
            id: id.to_owned(),
            sha256: sha256_hex(key).into(),
            scopes: scopes.to_vec(),
        }
    }

    fn ring(keys: Vec<ApiKeyEntry>) -> Result<KeyRing, KeyRingError> {
        KeyRing::from_settings(&AuthSettings {
            keys,
            ..Default::default()
        })
    }

    #[test]
    fn finds_the_key_whose_hash_matches() {
        let ring = ring(vec![
            entry("alice", "alice-secret", &[Scope::Submit, Scope::Read]),
            entry("bob", "bob-secret", &[Scope::Read]),
        ])
        .unwrap();
        let bob = ring.lookup("bob-secret").unwrap();
        assert_eq!(bob.key_id, "bob");
        assert!(bob.scopes.allows(Scope::Read));
        assert!(!bob.scopes.allows(Scope::Submit));
        assert_eq!(ring.lookup("alice-secret").unwrap().key_id, "alice");
        assert!(ring.lookup("mallory").is_none());
        assert!(ring.lookup("").is_none());
    }

    #[test]
    fn admin_implies_every_scope() {
        let admin = Scopes::from_list(&[Scope::Admin]);
        assert!(admin.allows(Scope::Submit) && admin.allows(Scope::Read) && admin.is_admin());
        assert!(!Scopes::from_list(&[Scope::Submit, Scope::Read]).allows(Scope::Admin));
    }

    #[test]
    fn refuses_bad_configurations_without_quoting_hashes() {
        let mut bad = entry("alice", "k", &[Scope::Read]);
        bad.sha256 = "not-hex-and-secret".to_owned().into();
        let error = ring(vec![bad]).err().unwrap().to_string();
        assert!(error.contains("alice") && !error.contains("not-hex"));
        assert!(matches!(
            ring(vec![entry("a", "k", &[])]),
            Err(KeyRingError::NoScopes { .. })
        ));
        assert!(matches!(
            ring(vec![
                entry("a", "k", &[Scope::Read]),
                entry("a", "j", &[Scope::Read])
            ]),
            Err(KeyRingError::DuplicateId { .. })
        ));
        assert!(matches!(ring(Vec::new()), Err(KeyRingError::NoKeys)));
        let disabled = KeyRing::from_settings(&AuthSettings {
            mode: AuthMode::Disabled,
            ..Default::default()
        });
        assert!(disabled.is_ok());
    }

    #[test]
    fn reads_keys_from_a_toml_or_json_file() {
        let hash = sha256_hex("file-key");
        let folder = tempfile::tempdir().unwrap();
        let toml_path = folder.path().join("keys.toml");
        std::fs::write(
            &toml_path,
            format!("[[keys]]\nid = \"ci\"\nsha256 = \"{hash}\"\nscopes = [\"submit\"]\n"),
        )
        .unwrap();
        let json_path = folder.path().join("keys.json");
        std::fs::write(
            &json_path,
            format!(r#"[{{"id": "ops", "sha256": "{hash}", "scopes": ["admin"]}}]"#),
        )
        .unwrap();
        for (path, id) in [(toml_path, "ci"), (json_path, "ops")] {
            let ring = KeyRing::from_settings(&AuthSettings {
                keys_file: Some(path),
                ..Default::default()
            })
            .unwrap();
            assert_eq!(ring.lookup("file-key").unwrap().key_id, id);
        }
    }
}
