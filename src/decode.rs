//! Decoding: any supported file (or in-memory samples) to mono audio at the
//! analysis rate. (Being written: see the helper's brief.)

use serde::{Deserialize, Serialize};

/// Facts about the source recording, kept in every fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// Sample rate of the source in Hz.
    pub sample_rate: u32,
    /// Channel count of the source.
    pub channels: u16,
    /// Duration of the source in seconds.
    pub duration_s: f64,
}

/// Mono audio at the analysis rate, with facts about its source.
#[derive(Debug, Clone)]
pub struct Audio {
    /// Mono samples at `sample_rate`.
    pub samples: Vec<f32>,
    /// The analysis sample rate of `samples`.
    pub sample_rate: u32,
    /// The source's rate, channels and duration.
    pub source: SourceInfo,
}
