//! Analysis parameters: every number that changes what a fingerprint contains.
//!
//! Their hash is stored in every fingerprint and index; artifacts made with
//! other parameters are refused instead of being silently compared.

use serde::{Deserialize, Serialize};

use crate::landmarks::PickerSettings;

/// Names the meaning of the analysis code: change it whenever a change of
/// code (not of a parameter) changes what a fingerprint holds, so that old
/// artifacts are refused instead of compared.
pub const ANALYSIS_REVISION: &str = "refrain-analysis-2026-12-02a\0";

/// The parameters of the analysis front end.
///
/// The defaults are the only supported configuration of this build; they are
/// a struct (not constants) so that tests can see and hash them, and so that a
/// future version can offer a second configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisParams {
    /// Analysis sample rate in Hz (every input is resampled once to this rate).
    pub sample_rate: u32,
    /// STFT size in samples (a Hann window of the same length).
    pub fft_size: usize,
    /// STFT hop in samples (≈ 10 ms).
    pub hop: usize,
    /// Lowest frequency (Hz) considered for chroma and melody peaks.
    pub fmin_hz: f32,
    /// Highest frequency (Hz) considered for chroma peaks and spectral bands.
    pub fmax_hz: f32,
    /// Most spectral peaks kept per STFT frame.
    pub max_peaks: usize,
    /// STFT frames summed into one chroma frame (≈ 100 ms).
    pub chroma_block: usize,
    /// Log compression of chroma: `log(1 + gamma * x)`.
    pub chroma_gamma: f32,
    /// Length (chroma frames) of the Hann smoothing window of the CENS chroma.
    pub cens_smooth: usize,
    /// Downsampling factor from chroma frames to CENS frames.
    pub cens_down: usize,
    /// STFT size of the melody's own spectrum (a Hann window of the same
    /// length): 1024 points (93 ms) resolve notes of 100 ms, which the main
    /// 186 ms window blurs into their neighbours, and still give 10.8 Hz
    /// bins (Melodia's resolution).
    pub melody_fft_size: usize,
    /// Hop of the melody's spectrum in samples (≈ 20 ms).
    pub melody_hop: usize,
    /// Lowest melody pitch in Hz.
    pub melody_fmin_hz: f32,
    /// Highest melody pitch in Hz.
    pub melody_fmax_hz: f32,
    /// Resolution of the melody salience grid in cents.
    pub melody_bin_cents: f32,
    /// Harmonics summed per salience candidate.
    pub melody_harmonics: usize,
    /// Weight decay per harmonic (weight of harmonic h is `alpha^(h-1)`).
    pub melody_alpha: f32,
    /// Number of log-spaced spectral bands (the "audio" view).
    pub bands: usize,
    /// Embedding window length in chroma frames.
    pub embed_window: usize,
    /// Embedding hop in chroma frames.
    pub embed_hop: usize,
    /// Landmark peaks stored for training items (sparse).
    pub landmark_index: PickerSettings,
    /// Landmark peaks picked from queries (denser, and each paired with
    /// more successors, so that a training item's pairs survive in a query
    /// where other music takes most of the loudest peaks).
    pub landmark_query: PickerSettings,
}

impl Default for AnalysisParams {
    fn default() -> Self {
        AnalysisParams {
            sample_rate: 11_025,
            fft_size: 2048,
            hop: 110,
            fmin_hz: 55.0,
            fmax_hz: 5000.0,
            max_peaks: 40,
            chroma_block: 10,
            chroma_gamma: 100.0,
            cens_smooth: 9,
            cens_down: 2,
            melody_fft_size: 1024,
            melody_hop: 220,
            melody_fmin_hz: 55.0,
            melody_fmax_hz: 1760.0,
            melody_bin_cents: 10.0,
            melody_harmonics: 12,
            melody_alpha: 0.8,
            bands: 24,
            embed_window: 40,
            embed_hop: 10,
            landmark_index: PickerSettings {
                peaks_per_frame: 1,
                decay: 0.985,
                spread_bins: 40.0,
                fan_out: 3,
            },
            landmark_query: PickerSettings {
                peaks_per_frame: 3,
                decay: 0.97,
                spread_bins: 30.0,
                fan_out: 16,
            },
        }
    }
}

impl AnalysisParams {
    /// Seconds per STFT frame (the landmark frame).
    pub fn frame_seconds(&self) -> f64 {
        self.hop as f64 / self.sample_rate as f64
    }

    /// Seconds per melody frame.
    pub fn melody_frame_seconds(&self) -> f64 {
        self.melody_hop as f64 / self.sample_rate as f64
    }

    /// Chroma (and spectral band) frames per second.
    pub fn chroma_rate(&self) -> f64 {
        self.sample_rate as f64 / (self.hop * self.chroma_block) as f64
    }

    /// CENS frames per second.
    pub fn cens_rate(&self) -> f64 {
        self.chroma_rate() / self.cens_down as f64
    }

    /// A stable 64-bit hash of every parameter and of the feature-code
    /// revision, stored in fingerprints and indexes.
    pub fn hash(&self) -> u64 {
        let json = serde_json::to_string(self).expect("parameters serialize");
        let mut h = blake3::Hasher::new();
        h.update(ANALYSIS_REVISION.as_bytes());
        h.update(json.as_bytes());
        let out = h.finalize();
        u64::from_le_bytes(out.as_bytes()[..8].try_into().expect("8 bytes"))
    }
}
