//! Cross-origin calls from browsers: the origins in `[cors]` may call the API, any origin only
//! when the operator says so (`cors.allow_any_origin`, set by config/dev.toml). Credentials
//! (cookies) are never allowed: API keys travel in headers a page must set itself.
//!
//! Requests from other origins are not refused (servers and curl send no `Origin`, and a
//! same-origin POST sends one): they only get no `Access-Control-Allow-Origin`, so browsers keep
//! the answer from the page. A preflight from another origin is answered 400 problem+json.

use actix_cors::Cors;
use actix_web::http::{Method, header};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsSettings {
    /// Origins whose pages may call the API, as `scheme://host[:port]`
    /// (e.g. `https://quiz.example.com`); empty (the default) allows none.
    pub allowed_origins: Vec<String>,
    /// Any origin may call (`Access-Control-Allow-Origin: *`). For development only.
    pub allow_any_origin: bool,
    /// How long browsers may cache a preflight answer, in seconds.
    pub max_age_secs: usize,
}

impl Default for CorsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            allow_any_origin: false,
            max_age_secs: 3_600,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cors.allowed_origins: {origin:?} is not an origin: {reason}")]
pub struct CorsSettingsError {
    origin: String,
    reason: &'static str,
}

/// The validated policy; builds one middleware per actix worker.
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    /// `None`: any origin.
    origins: Option<Vec<String>>,
    max_age_secs: usize,
}

/// Request headers a page may send: the two key headers, the body type, `Idempotency-Key`.
const ALLOWED_HEADERS: [header::HeaderName; 4] = [
    header::AUTHORIZATION,
    header::CONTENT_TYPE,
    header::HeaderName::from_static("x-api-key"),
    header::HeaderName::from_static("idempotency-key"),
];

/// Response headers a page may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: [header::HeaderName; 5] = [
    header::LOCATION,
    header::RETRY_AFTER,
    header::HeaderName::from_static("ratelimit"),
    header::HeaderName::from_static("ratelimit-policy"),
    header::HeaderName::from_static("idempotent-replayed"),
];

impl CorsPolicy {
    /// Checks every configured origin; each is kept in the form browsers send
    /// (lower-case scheme and host, no default port, no trailing slash).
    pub fn new(settings: &CorsSettings) -> Result<Self, CorsSettingsError> {
        if settings.allow_any_origin {
            return Ok(Self {
                origins: None,
                max_age_secs: settings.max_age_secs,
            });
        }
        let origins = settings
            .allowed_origins
            .iter()
            .map(|origin| normalise(origin))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origins: Some(origins),
            max_age_secs: settings.max_age_secs,
        })
    }

    pub fn allows_any_origin(&self) -> bool {
        self.origins.is_none()
    }

    pub fn middleware(&self) -> Cors {
        let mut cors = Cors::default()
            .allowed_methods([Method::GET, Method::POST, Method::DELETE])
            .allowed_headers(ALLOWED_HEADERS)
            .expose_headers(EXPOSED_HEADERS)
            .max_age(self.max_age_secs);
        match &self.origins {
            None => cors = cors.allow_any_origin().send_wildcard(),
            Some(origins) => {
                for origin in origins {
                    cors = cors.allowed_origin(origin);
                }
            }
        }
        cors
    }
}

fn normalise(origin: &str) -> Result<String, CorsSettingsError> {
    let refuse = |reason| CorsSettingsError {
        origin: origin.to_owned(),
        reason,
    };
    if origin.trim() == "*" {
        return Err(refuse("use cors.allow_any_origin = true to allow every origin"));
    }
    let url = url::Url::parse(origin.trim()).map_err(|_| refuse("not a url"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refuse("give an http or https origin with a host"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(refuse(
            "an origin is scheme://host[:port], without path, query or user",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(
            normalise("HTTPS://Quiz.Example.com:443/").unwrap(),
            "https://quiz.example.com"
        );
        assert_eq!(
            normalise("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        assert!(normalise("*").is_err());
        assert!(normalise("quiz.example.com").is_err());
        assert!(normalise("https://quiz.example.com/app").is_err());
        assert!(normalise("ftp://quiz.example.com").is_err());
    }
}
