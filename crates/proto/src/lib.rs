//! The messages that cross the QuizStats bus, generated from `proto/quizstats/v1`.

/// Version 1 of the bus schema.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    include!(concat!(env!("OUT_DIR"), "/quizstats.v1.rs"));

    /// The `schema_version` this build writes into every `Meta`.
    pub const SCHEMA_VERSION: u32 = 1;
}

pub use prost::{Message, Name};
