//! `AppState`: everything a handler needs, behind one `web::Data`.

use common::bus::Bus;
use common::store::QuizStore;

use crate::auth::KeyRing;
use crate::completion::Completions;
use crate::extraction::Extractions;
use crate::finished::FinishedQuizzes;
use crate::idempotency::Idempotency;
use crate::owners::QuizOwners;
use crate::rate_limit::RateLimits;
use crate::settings::Settings;

pub struct AppState {
    pub settings: Settings,
    pub store: QuizStore,
    pub owners: QuizOwners,
    pub bus: Bus,
    pub completions: Completions,
    pub extractions: Extractions,
    pub key_ring: KeyRing,
    pub rate_limits: RateLimits,
    pub idempotency: Idempotency,
    pub finished: FinishedQuizzes,
}
