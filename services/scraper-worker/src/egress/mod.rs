//! SSRF defence for URL jobs: every request Chromium makes goes through a loopback proxy that
//! resolves the host once, checks every address with the policy, and connects to a checked one.
//!
//! `policy` (the pure decision), `range` (CIDR ranges for the allow list), `target` (what a
//! request asks for, resolved and checked), `log` (what a session's proxy refused), `proxy`.

pub mod log;
pub mod policy;
pub mod proxy;
pub mod range;
pub mod target;

pub use log::{Blocked, BlockedKind, EgressLog};
pub use policy::{EgressPolicy, Reason, Refusal};
pub use proxy::EgressProxy;
pub use range::IpRange;
pub use target::{Target, check_url, resolve};
