//! Who may watch what: the gateway's API keys (`[auth]`, shared through `common::auth`) with
//! the same rule as `GET /v1/quizzes/{id}`: the `read` scope, and only the key's own quizzes
//! unless it is an admin key.
//!
//! Browsers cannot set headers on a WebSocket, so besides `Authorization: Bearer` and
//! `X-API-Key` a key may come in the query string (`?token=`, which ends up in access logs)
//! or, preferably, as `token` in the first (subscribe) message.

use actix_web::http::header::HeaderMap;
use common::auth::{AuthMode, AuthSettings, KeyRing, KeyRingError, Rejection, Scope, TokenRejection};

/// An authenticated watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// `auth.mode = "disabled"` or an admin key: every quiz.
    Everything,
    /// A key with the `read` scope: the quizzes it created.
    Owner(String),
}

impl Viewer {
    /// Whether this viewer may see a quiz created by `owner` (`None`: not known).
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Self::Everything => true,
            Self::Owner(key_id) => owner == Some(key_id.as_str()),
        }
    }
}

/// Why a watcher is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("an API key is required (Authorization: Bearer, ?token= or \"token\" in the subscribe message)")]
    NoKey,
    #[error("unknown API key")]
    UnknownKey,
    #[error("invalid token: {0}")]
    InvalidToken(TokenRejection),
    #[error("the API key lacks the read scope")]
    NoReadScope,
}

impl Denied {
    /// The WebSocket close code (the HTTP status plus 4000, as the protocol documents).
    pub fn close_code(self) -> u16 {
        match self {
            Self::NoKey | Self::UnknownKey | Self::InvalidToken(_) => 4401,
            Self::NoReadScope => 4403,
        }
    }
}

pub struct Access {
    ring: KeyRing,
}

impl Access {
    /// Refuses to start with `auth.mode = "api_keys"` and no keys, like the gateway.
    pub fn from_settings(settings: &AuthSettings) -> Result<Self, KeyRingError> {
        let ring = KeyRing::from_settings(settings)?;
        if ring.mode() == AuthMode::Disabled {
            tracing::warn!("auth.mode is disabled: anyone may watch every quiz");
        }
        Ok(Self { ring })
    }

    /// Whether a key is needed at all.
    pub fn required(&self) -> bool {
        self.ring.mode() == AuthMode::ApiKeys
    }

    /// Checks a presented key (`None`: none was presented).
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Viewer, Denied> {
        if !self.required() {
            return Ok(Viewer::Everything);
        }
        let presented = presented
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or(Denied::NoKey)?;
        let found = self
            .ring
            .authenticate(presented)
            .map_err(|rejection| match rejection {
                Rejection::UnknownKey => Denied::UnknownKey,
                Rejection::Token(reason) => Denied::InvalidToken(reason),
            })?;
        if found.scopes.is_admin() {
            Ok(Viewer::Everything)
        } else if found.scopes.allows(Scope::Read) {
            Ok(Viewer::Owner(found.key_id))
        } else {
            Err(Denied::NoReadScope)
        }
    }
}

/// The key from `Authorization: Bearer <key>` or `X-API-Key`, as the gateway reads them.
pub fn key_from_headers(headers: &HeaderMap) -> Option<&str> {
    common::auth::presented_key(headers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use common::auth::ApiKeyEntry;
    use common::auth::key_ring::sha256_hex;

    use super::*;

    fn access(mode: AuthMode) -> Access {
        let entry = |id: &str, key: &str, scopes: Vec<Scope>| ApiKeyEntry {
            id: id.into(),
            sha256: sha256_hex(key).into(),
            scopes,
        };
        Access::from_settings(&AuthSettings {
            mode,
            keys: vec![
                entry("admin", "admin-key", vec![Scope::Admin]),
                entry("reader", "reader-key", vec![Scope::Read]),
                entry("submitter", "submit-key", vec![Scope::Submit]),
            ],
            keys_file: None,
            jwt: None,
        })
        .unwrap()
    }

    #[test]
    fn keys_map_to_viewers_by_scope() {
        let access = access(AuthMode::ApiKeys);
        assert_eq!(access.authenticate(Some("admin-key")), Ok(Viewer::Everything));
        assert_eq!(
            access.authenticate(Some(" reader-key ")),
            Ok(Viewer::Owner("reader".into()))
        );
        assert_eq!(access.authenticate(Some("submit-key")), Err(Denied::NoReadScope));
        assert_eq!(access.authenticate(Some("guess")), Err(Denied::UnknownKey));
        assert_eq!(access.authenticate(Some("")), Err(Denied::NoKey));
        assert_eq!(access.authenticate(None), Err(Denied::NoKey));
        assert_eq!(Denied::NoReadScope.close_code(), 4403);
    }

    #[test]
    fn tokens_map_to_viewers_like_keys() {
        const SECRET: &str = "a-test-only-secret-of-more-than-32-bytes";
        let access = Access::from_settings(&AuthSettings {
            jwt: Some(common::auth::JwtSettings {
                issuer: "https://idp.test".into(),
                audience: "quizstats".into(),
                secret: Some(SECRET.to_owned().into()),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let token = |scope: &str, expires_in: i64| {
            let now = i64::try_from(jsonwebtoken::get_current_timestamp()).unwrap();
            let claims = serde_json::json!({
                "sub": "alice", "iss": "https://idp.test", "aud": "quizstats",
                "exp": now + expires_in, "scope": scope,
            });
            jsonwebtoken::encode(
                &jsonwebtoken::Header::default(),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        assert_eq!(
            access.authenticate(Some(&token("read", 600))),
            Ok(Viewer::Owner("jwt:alice".into()))
        );
        assert_eq!(
            access.authenticate(Some(&token("admin", 600))),
            Ok(Viewer::Everything)
        );
        assert_eq!(
            access.authenticate(Some(&token("submit", 600))),
            Err(Denied::NoReadScope)
        );
        let expired = access.authenticate(Some(&token("read", -120))).unwrap_err();
        assert_eq!(expired, Denied::InvalidToken(TokenRejection::Expired));
        assert_eq!(expired.close_code(), 4401);
    }

    #[test]
    fn disabled_auth_lets_everyone_see_everything() {
        let access = access(AuthMode::Disabled);
        assert_eq!(access.authenticate(None), Ok(Viewer::Everything));
    }

    #[test]
    fn owners_see_only_their_quizzes() {
        let reader = Viewer::Owner("reader".into());
        assert!(reader.sees(Some("reader")));
        assert!(!reader.sees(Some("other")));
        assert!(!reader.sees(None));
        assert!(Viewer::Everything.sees(None));
    }
}
