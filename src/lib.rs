//! Refrain audits music for copying: does a generated track copy something a
//! model was trained on?
//!
//! The library goes from audio to fingerprints in plain stages, one module
//! each (see `ARCHITECTURE.md`):
//!
//! [`decode`] → [`stft`] → [`chroma`] / [`melody`] / [`embed`] → [`fingerprint`]
//!
//! [`analysis::Analyzer`] runs the whole front end on a decoded signal. The
//! library never prints and never exits; every failure is an [`Error`] that
//! names the file and the stage.

#![warn(missing_docs)]
#![warn(clippy::missing_errors_doc)]

pub mod align;
pub mod analysis;
pub mod audit;
pub mod bands;
pub mod calibrate;
pub mod candidates;
pub mod chroma;
pub mod decode;
pub mod embed;
pub mod eval;
pub mod evidence;
pub mod excerpt;
pub mod fingerprint;
#[cfg(feature = "html")]
pub mod html;
pub mod index;
pub mod inputs;
pub mod landmarks;
pub mod mapped;

pub mod error;

pub mod melody;
pub mod ngrams;
pub mod notes;
pub mod params;
pub mod postings;
pub mod report;
pub mod rerank;
pub mod score;
pub mod search;
pub mod sequences;
pub mod shard;
pub mod similarity;
pub mod stft;
pub mod stream;
pub mod synth;

pub use error::{Error, ErrorKind, Result, Stage};
pub use params::AnalysisParams;
