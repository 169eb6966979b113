//! Optional JSON Web Tokens next to the API keys, for teams whose identity provider already
//! issues them. A token is accepted when its signature verifies (HS256 with a shared secret or
//! RS256 with the provider's public key, never the algorithm the token itself names), its
//! `iss` and `aud` are the configured ones and `exp` has not passed (`nbf`, when present, has).
//! The caller is `jwt:<sub>`, so a token can never stand in for an API key id, and its scopes
//! come from a claim (`scope` by default: an OAuth space-separated string, or a list).

use std::path::{Path, PathBuf};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::key_ring::{KeyMatch, Scopes};
use super::settings::{JwtAlgorithm, JwtSettings, Scope};

/// Owner ids of token callers start with this, apart from every API key id.
pub const SUBJECT_PREFIX: &str = "jwt:";

/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output.
const MIN_SECRET_BYTES: usize = 32;

/// Why `[auth.jwt]` cannot be used. Never quotes a secret.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error(
        "auth.jwt: hs256 needs a secret (auth.jwt.secret, QUIZSTATS_AUTH__JWT__SECRET or auth.jwt.secret_file)"
    )]
    NoSecret,
    #[error("auth.jwt: the hs256 secret must be at least {MIN_SECRET_BYTES} bytes")]
    ShortSecret,
    #[error("auth.jwt: rs256 needs the issuer's public key (auth.jwt.public_key_file or public_key_pem)")]
    NoPublicKey,
    #[error("auth.jwt: the rs256 public key is not an RSA public key in PEM")]
    BadPublicKey,
    #[error("auth.jwt: issuer and audience must not be empty")]
    NoIssuerOrAudience,
    #[error("auth.jwt: cannot read {path}")]
    Unreadable {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Why a presented token is refused; the text is safe to show the caller (RFC 6750 §3.1
/// `error_description`): it names the failed check, never the expected values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    #[error("the token is meant for another audience")]
    WrongAudience,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token is signed with another algorithm")]
    WrongAlgorithm,
    #[error("the token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("the token is malformed")]
    Malformed,
}

/// Checks tokens against one issuer's key and claims.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    scope_claim: String,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JwtVerifier")
            .field("algorithms", &self.validation.algorithms)
            .field("scope_claim", &self.scope_claim)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    pub fn from_settings(settings: &JwtSettings) -> Result<Self, JwtConfigError> {
        if settings.issuer.trim().is_empty() || settings.audience.trim().is_empty() {
            return Err(JwtConfigError::NoIssuerOrAudience);
        }
        let (algorithm, key) = match settings.algorithm {
            JwtAlgorithm::Hs256 => (Algorithm::HS256, hmac_key(settings)?),
            JwtAlgorithm::Rs256 => (Algorithm::RS256, rsa_key(settings)?),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = settings.leeway_secs;
        Ok(Self {
            key,
            validation,
            scope_claim: settings.scope_claim.clone(),
        })
    }

    /// The caller a valid token names, with the scopes it grants (possibly none: the caller is
    /// then known but may do nothing, a 403 rather than a 401).
    pub fn verify(&self, token: &str) -> Result<KeyMatch, TokenRejection> {
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|error| rejection(error.kind()))?;
        let subject = data
            .claims
            .get("sub")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|subject| !subject.is_empty())
            .ok_or(TokenRejection::MissingClaim("sub"))?;
        let scopes = scopes_from(data.claims.get(&self.scope_claim));
        Ok(KeyMatch {
            key_id: format!("{SUBJECT_PREFIX}{subject}"),
            scopes,
        })
    }
}

/// Whether a presented credential has a JWT's shape (three base64url parts); API keys never
/// contain dots, so the two kinds cannot be confused.
pub fn looks_like_jwt(credential: &str) -> bool {
    credential.split('.').count() == 3
        && credential
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'='))
}

fn hmac_key(settings: &JwtSettings) -> Result<DecodingKey, JwtConfigError> {
    // An empty variable counts as unset, so `…__SECRET=""` next to `…__SECRET_FILE` works.
    let inline = settings
        .secret
        .as_ref()
        .map(|secret| secret.expose_secret().trim().to_owned())
        .filter(|secret| !secret.is_empty());
    let secret = match (inline, &settings.secret_file) {
        (Some(secret), _) => secret,
        (None, Some(path)) => read(path)?.trim().to_owned(),
        (None, None) => return Err(JwtConfigError::NoSecret),
    };
    if secret.len() < MIN_SECRET_BYTES {
        return Err(JwtConfigError::ShortSecret);
    }
    Ok(DecodingKey::from_secret(secret.as_bytes()))
}

fn rsa_key(settings: &JwtSettings) -> Result<DecodingKey, JwtConfigError> {
    let pem = match (&settings.public_key_pem, &settings.public_key_file) {
        (Some(pem), _) => pem.clone(),
        (None, Some(path)) => read(path)?,
        (None, None) => return Err(JwtConfigError::NoPublicKey),
    };
    DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| JwtConfigError::BadPublicKey)
}

fn read(path: &Path) -> Result<String, JwtConfigError> {
    std::fs::read_to_string(path).map_err(|source| JwtConfigError::Unreadable {
        path: PathBuf::from(path).display().to_string(),
        source,
    })
}

/// `"submit read"` or `["submit", "read"]`; names QuizStats does not know are ignored.
fn scopes_from(claim: Option<&Value>) -> Scopes {
    let names: Vec<&str> = match claim {
        Some(Value::String(text)) => text.split_whitespace().collect(),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let known: Vec<Scope> = names
        .into_iter()
        .filter_map(|name| match name {
            "submit" => Some(Scope::Submit),
            "read" => Some(Scope::Read),
            "admin" => Some(Scope::Admin),
            _ => None,
        })
        .collect();
    Scopes::from_list(&known)
}

fn rejection(kind: &ErrorKind) -> TokenRejection {
    match kind {
        ErrorKind::ExpiredSignature => TokenRejection::Expired,
        ErrorKind::ImmatureSignature => TokenRejection::NotYetValid,
        ErrorKind::InvalidIssuer => TokenRejection::WrongIssuer,
        ErrorKind::InvalidAudience => TokenRejection::WrongAudience,
        ErrorKind::InvalidSignature => TokenRejection::BadSignature,
        ErrorKind::InvalidAlgorithm => TokenRejection::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => TokenRejection::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            "sub" => "sub",
            _ => "a required",
        }),
        _ => TokenRejection::Malformed,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]

    use jsonwebtoken::{EncodingKey, Header, encode, get_current_timestamp};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "a-test-only-secret-of-more-than-32-bytes";

    fn settings() -> JwtSettings {
        JwtSettings {
            algorithm: JwtAlgorithm::Hs256,
            issuer: "https://idp.example".into(),
            audience: "quizstats".into(),
            secret: Some(SECRET.to_owned().into()),
            ..JwtSettings::default()
        }
    }

    fn claims() -> Value {
        json!({
            "sub": "alice",
            "iss": "https://idp.example",
            "aud": "quizstats",
            "exp": get_current_timestamp() + 600,
            "scope": "submit read profile",
        })
    }

    fn hs256(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn with(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn without(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn a_valid_token_names_its_subject_and_scopes() {
        let verifier = JwtVerifier::from_settings(&settings()).unwrap();
        let caller = verifier.verify(&hs256(&claims(), SECRET)).unwrap();
        assert_eq!(caller.key_id, "jwt:alice");
        assert!(caller.scopes.allows(Scope::Submit) && caller.scopes.allows(Scope::Read));
        assert!(!caller.scopes.is_admin());

        let listed = with(claims(), "scope", json!(["admin"]));
        assert!(
            verifier
                .verify(&hs256(&listed, SECRET))
                .unwrap()
                .scopes
                .is_admin()
        );
        let none = without(claims(), "scope");
        let caller = verifier.verify(&hs256(&none, SECRET)).unwrap();
        assert!(
            !caller.scopes.allows(Scope::Read),
            "no scope claim grants nothing"
        );
    }

    #[test]
    fn each_failed_check_has_its_reason() {
        let verifier = JwtVerifier::from_settings(&settings()).unwrap();
        let now = get_current_timestamp();
        let cases = [
            (
                hs256(&with(claims(), "exp", json!(now - 120)), SECRET),
                TokenRejection::Expired,
            ),
            (
                hs256(&with(claims(), "nbf", json!(now + 600)), SECRET),
                TokenRejection::NotYetValid,
            ),
            (
                hs256(&with(claims(), "iss", json!("https://evil.example")), SECRET),
                TokenRejection::WrongIssuer,
            ),
            (
                hs256(&with(claims(), "aud", json!("other-api")), SECRET),
                TokenRejection::WrongAudience,
            ),
            (
                hs256(&claims(), "another-secret-that-is-also-long-enough"),
                TokenRejection::BadSignature,
            ),
            (
                hs256(&without(claims(), "exp"), SECRET),
                TokenRejection::MissingClaim("exp"),
            ),
            (
                hs256(&without(claims(), "sub"), SECRET),
                TokenRejection::MissingClaim("sub"),
            ),
            ("not.a.token".to_owned(), TokenRejection::Malformed),
        ];
        for (token, expected) in cases {
            assert_eq!(verifier.verify(&token).unwrap_err(), expected);
        }
    }

    #[test]
    fn the_configured_algorithm_wins_over_the_tokens_header() {
        let verifier = JwtVerifier::from_settings(&settings()).unwrap();
        // The same secret with HS384: an attacker may not pick the algorithm.
        let token = encode(
            &Header::new(Algorithm::HS384),
            &claims(),
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&token).unwrap_err(),
            TokenRejection::WrongAlgorithm
        );
        // `alg: none` with no signature at all.
        let unsigned = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&claims().to_string())
        );
        assert!(verifier.verify(&unsigned).is_err());
    }

    #[test]
    fn rs256_tokens_verify_with_the_issuers_public_key() {
        let folder = tempfile::tempdir().unwrap();
        let private = folder.path().join("private.pem");
        let public = folder.path().join("public.pem");
        openssl(
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ],
            &private,
        );
        openssl(
            &["pkey", "-pubout", "-in", private.to_str().unwrap(), "-out"],
            &public,
        );
        let verifier = JwtVerifier::from_settings(&JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            secret: None,
            public_key_file: Some(public.clone()),
            ..settings()
        })
        .unwrap();
        let signing = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        let token = encode(&Header::new(Algorithm::RS256), &claims(), &signing).unwrap();
        assert_eq!(verifier.verify(&token).unwrap().key_id, "jwt:alice");
        // An HS256 token "signed" with the public key (the classic key-confusion attack).
        let public_pem = std::fs::read(&public).unwrap();
        let confused = encode(
            &Header::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(&public_pem),
        )
        .unwrap();
        assert_eq!(
            verifier.verify(&confused).unwrap_err(),
            TokenRejection::WrongAlgorithm
        );
    }

    #[test]
    fn unusable_settings_are_refused() {
        let short = JwtSettings {
            secret: Some("short".to_owned().into()),
            ..settings()
        };
        assert!(matches!(
            JwtVerifier::from_settings(&short),
            Err(JwtConfigError::ShortSecret)
        ));
        let none = JwtSettings {
            secret: None,
            ..settings()
        };
        assert!(matches!(
            JwtVerifier::from_settings(&none),
            Err(JwtConfigError::NoSecret)
        ));
        let folder = tempfile::tempdir().unwrap();
        let file = folder.path().join("secret");
        std::fs::write(&file, format!("{SECRET}\n")).unwrap();
        let from_file = JwtSettings {
            secret: Some(String::new().into()),
            secret_file: Some(file),
            ..settings()
        };
        let verifier = JwtVerifier::from_settings(&from_file).unwrap();
        assert_eq!(
            verifier.verify(&hs256(&claims(), SECRET)).unwrap().key_id,
            "jwt:alice"
        );
        let no_issuer = JwtSettings {
            issuer: String::new(),
            ..settings()
        };
        assert!(matches!(
            JwtVerifier::from_settings(&no_issuer),
            Err(JwtConfigError::NoIssuerOrAudience)
        ));
        let rs256 = JwtSettings {
            algorithm: JwtAlgorithm::Rs256,
            public_key_pem: Some("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into()),
            ..settings()
        };
        assert!(matches!(
            JwtVerifier::from_settings(&rs256),
            Err(JwtConfigError::BadPublicKey)
        ));
    }

    #[test]
    fn only_jwt_shaped_credentials_are_tokens() {
        assert!(looks_like_jwt("eyJhbGciOi.eyJzdWIiOi.c2lnbmF0dXJl"));
        assert!(!looks_like_jwt("9f86d081884c7d659a2feaa0c55ad015"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c d"));
    }

    fn base64_url(text: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// Keys made at test time with the openssl CLI, as an operator would: no key in the repo.
    fn openssl(args: &[&str], output: &Path) {
        let status = std::process::Command::new("openssl")
            .args(args)
            .arg(output)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) runs");
        assert!(status.success(), "openssl {args:?} failed");
    }
}
