//! API keys, shared by every service that authenticates callers: the gateway's REST API and the
//! stats-broadcaster's WebSocket accept the same keys (and, optionally, the same JWTs) with the
//! same scopes.

pub mod jwt;
pub mod key_ring;
pub mod settings;

pub use jwt::{JwtVerifier, TokenRejection};
pub use key_ring::{KeyMatch, KeyRing, KeyRingError, Rejection, Scopes};
pub use settings::{ApiKeyEntry, AuthMode, AuthSettings, JwtAlgorithm, JwtSettings, Scope};

use actix_web::http::header::{AUTHORIZATION, HeaderMap};

/// The original system's key header, still accepted next to `Authorization: Bearer`.
pub const API_KEY_HEADER: &str = "x-api-key";

/// The key from `Authorization: Bearer <key>` (scheme case-insensitive, RFC 9110 §11.1) or,
/// failing that, from `X-API-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, key)| key.trim());
    bearer
        .or_else(|| {
            headers
                .get(API_KEY_HEADER)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
        })
        .filter(|key| !key.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn reads_bearer_then_x_api_key() {
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(presented_key(&headers(&[("x-api-key", "xyz")])), Some("xyz"));
        assert_eq!(
            presented_key(&headers(&[("authorization", "Bearer abc"), ("x-api-key", "xyz")])),
            Some("abc")
        );
        assert_eq!(
            presented_key(&headers(&[("authorization", "Basic dXNlcg==")])),
            None
        );
        assert_eq!(presented_key(&headers(&[("x-api-key", " ")])), None);
        assert_eq!(presented_key(&HeaderMap::new()), None);
    }
}
