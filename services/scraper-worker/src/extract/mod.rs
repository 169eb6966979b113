//! Extraction: the in-page JavaScript engine and the Rust post-processing of what it returns.

mod model;
mod postprocess;

pub use model::{ExtractedQuestion, ExtractedQuiz, RawExtraction};
pub use postprocess::postprocess;

/// The DOM walker that finds answer groups, stems, kinds and revealed keys inside the page.
pub const EXTRACTOR_JS: &str = include_str!("extractor.js");
