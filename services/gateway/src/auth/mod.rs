//! Who is calling: the `Caller<S>` extractor authenticates the API key, charges the caller's
//! rate-limit budgets and checks that the key holds the scope `S` the handler names.
//!
//! Order: no or unknown key → 401, general budget spent → 429, scope missing → 403, submission
//! budget spent → 429. With `auth.mode = "disabled"` every caller is an admin and budgets are
//! kept per client address.

pub use common::auth::{key_ring, settings};

use std::future::{Ready, ready};
use std::marker::PhantomData;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};

pub use key_ring::{KeyRing, Scopes};
pub use settings::{AuthMode, Scope};

use crate::error::{ApiError, MissingCredentials};
use crate::rate_limit::{Budget, RateLimitStatus};
use crate::state::AppState;

pub use common::auth::{API_KEY_HEADER, Rejection, presented_key};

/// The key id callers get when auth is disabled.
pub const ANONYMOUS: &str = "anonymous";

/// The scope a handler needs and the budget its calls draw from.
pub trait Requirement {
    const SCOPE: Scope;
    const BUDGET: Budget;
}

/// Submitting quizzes: the `submit` scope and the submission budget.
pub struct Submit;

impl Requirement for Submit {
    const SCOPE: Scope = Scope::Submit;
    const BUDGET: Budget = Budget::Submission;
}

/// Reading quizzes: the `read` scope and the general budget.
pub struct Read;

impl Requirement for Read {
    const SCOPE: Scope = Scope::Read;
    const BUDGET: Budget = Budget::General;
}

/// An authenticated caller allowed to do what `R` requires.
pub struct Caller<R> {
    /// The configured id of the key (never the key); owns the quizzes it creates.
    pub key_id: String,
    pub scopes: Scopes,
    requirement: PhantomData<R>,
}

impl<R> Caller<R> {
    /// Whether this caller may see every key's quizzes.
    pub fn is_admin(&self) -> bool {
        self.scopes.is_admin()
    }
}

impl<R: Requirement> FromRequest for Caller<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        ready(authorize::<R>(request))
    }
}

#[tracing::instrument(skip_all, fields(key_id = tracing::field::Empty))]
fn authorize<R: Requirement>(request: &HttpRequest) -> Result<Caller<R>, ApiError> {
    let state = request
        .app_data::<web::Data<AppState>>()
        .ok_or(ApiError::StateMissing)?;
    let (key_id, scopes, budget_key) = match state.key_ring.mode() {
        AuthMode::Disabled => {
            let address = request
                .peer_addr()
                .map_or_else(|| "unknown".to_owned(), |peer| peer.ip().to_string());
            (ANONYMOUS.to_owned(), Scopes::admin(), format!("ip:{address}"))
        }
        AuthMode::ApiKeys => {
            let presented = presented_key(request.headers())
                .ok_or(ApiError::Unauthenticated(MissingCredentials::NoKey))?;
            let found = state.key_ring.authenticate(presented).map_err(|rejection| {
                tracing::info!(%rejection, "request with an invalid credential refused");
                ApiError::Unauthenticated(match rejection {
                    Rejection::UnknownKey => MissingCredentials::UnknownKey,
                    Rejection::Token(reason) => MissingCredentials::InvalidToken(reason),
                })
            })?;
            let budget_key = format!("key:{}", found.key_id);
            (found.key_id, found.scopes, budget_key)
        }
    };
    tracing::Span::current().record("key_id", key_id.as_str());
    let mut status = RateLimitStatus::default();
    let outcome = charge::<R>(state, &budget_key, scopes, &mut status);
    request.extensions_mut().insert(status);
    outcome?;
    Ok(Caller {
        key_id,
        scopes,
        requirement: PhantomData,
    })
}

fn charge<R: Requirement>(
    state: &AppState,
    budget_key: &str,
    scopes: Scopes,
    status: &mut RateLimitStatus,
) -> Result<(), ApiError> {
    state
        .rate_limits
        .check(budget_key, Budget::General, status)
        .map_err(ApiError::RateLimited)?;
    if !scopes.allows(R::SCOPE) {
        tracing::info!(needed = R::SCOPE.as_str(), "api key lacks the scope");
        return Err(ApiError::Forbidden { needed: R::SCOPE });
    }
    if R::BUDGET == Budget::Submission {
        state
            .rate_limits
            .check(budget_key, Budget::Submission, status)
            .map_err(ApiError::RateLimited)?;
    }
    Ok(())
}
