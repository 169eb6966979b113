//! `AppState`: everything a handler needs, behind one `web::Data`.

use common::bus::Bus;
use common::store::QuizStore;

use crate::completion::Completions;
use crate::settings::Settings;

pub struct AppState {
    pub settings: Settings,
    pub store: QuizStore,
    pub bus: Bus,
    pub completions: Completions,
}
