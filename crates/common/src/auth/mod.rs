//! API keys, shared by every service that authenticates callers: the gateway's REST API and the
//! stats-broadcaster's WebSocket accept the same keys with the same scopes.

pub mod key_ring;
pub mod settings;

pub use key_ring::{KeyRing, KeyRingError, Scopes};
pub use settings::{ApiKeyEntry, AuthMode, AuthSettings, Scope};
