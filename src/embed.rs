//! Window embeddings: one fixed-length, L2-normalised vector per window of a
//! few seconds, for approximate nearest-neighbour search.
//!
//! Each vector has two parts, each L2-normalised and then weighted:
//!
//! * **harmony**: the 2-D Fourier-transform magnitude of a chroma patch
//!   (12 pitch classes × `embed_window` frames; Bertin-Mahieux & Ellis 2012).
//!   The magnitude is unchanged by a circular shift of pitch (transposition)
//!   and by where the patch starts; it survives timbre changes because chroma
//!   does. Pitch frequencies `p` and `12 − p` are averaged (7 values), time
//!   modulation frequencies are pooled into [`TIME_BANDS`] bands, so a tempo
//!   change of ±10 % mostly stays inside a band.
//! * **texture**: the same transform of the log band energies (bands ×
//!   frames) after removing each band's mean over the window, which cancels
//!   any fixed EQ; log-spaced bands make a pitch shift a translation, which the
//!   magnitude ignores. It separates "same recording" from "same song".
//!
//! For larger tempo changes, queries are embedded at several time scales with
//! [`time_scale`].

use std::sync::Arc;

use ndarray::{Array2, ArrayView2};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use crate::params::AnalysisParams;

/// Pooling of the time-modulation frequencies (index ranges, upper bound
/// exclusive) of a 40-frame window; scaled for other window lengths.
pub const TIME_BANDS: [(usize, usize); 6] = [(0, 1), (1, 2), (2, 3), (3, 5), (5, 9), (9, 21)];
/// Pooling of the band-axis frequencies of the texture part.
const BAND_FREQS: [(usize, usize); 5] = [(0, 1), (1, 2), (2, 3), (3, 5), (5, 13)];
/// Weight of the harmony part (the texture part gets `sqrt(1 − w²)`).
pub const HARMONY_WEIGHT: f32 = 0.8;

/// Embedding dimension.
pub fn dim() -> usize {
    7 * TIME_BANDS.len() + BAND_FREQS.len() * (TIME_BANDS.len() - 1)
}

/// Window embeddings of one track.
#[derive(Debug, Clone, PartialEq)]
pub struct Embeddings {
    /// One L2-normalised vector per row.
    pub vectors: Array2<f32>,
    /// Start of window `i` is `i * hop_s` seconds (in the scaled time if the
    /// features were time-scaled).
    pub hop_s: f64,
    /// Window length in seconds.
    pub window_s: f64,
}

/// Computes window embeddings; FFT plans and buffers are made once.
pub struct Embedder {
    window: usize,
    hop: usize,
    frame_rate: f64,
    time_fft: Arc<dyn Fft<f32>>,
    pitch_fft: Arc<dyn Fft<f32>>,
    band_fft: Arc<dyn Fft<f32>>,
    bands: usize,
    buf: Vec<Complex<f32>>,
    col: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
}

impl Embedder {
    /// Plans the transforms for `params` and `bands` spectral bands.
    pub fn new(params: &AnalysisParams) -> Self {
        let window = params.embed_window.max(8);
        let bands = params.bands.max(1);
        let mut planner = FftPlanner::<f32>::new();
        let time_fft = planner.plan_fft_forward(window);
        let pitch_fft = planner.plan_fft_forward(12);
        let band_fft = planner.plan_fft_forward(bands);
        let scratch_len = [
            time_fft.get_inplace_scratch_len(),
            pitch_fft.get_inplace_scratch_len(),
            band_fft.get_inplace_scratch_len(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Embedder {
            window,
            hop: params.embed_hop.max(1),
            frame_rate: params.chroma_rate(),
            time_fft,
            pitch_fft,
            band_fft,
            bands,
            buf: vec![Complex::default(); window * bands.max(12)],
            col: vec![Complex::default(); bands.max(12)],
            scratch: vec![Complex::default(); scratch_len],
        }
    }

    /// Number of windows for `frames` feature frames: windows start every
    /// `hop` frames while they fit; a track shorter than one window still gets
    /// one (zero-padded).
    pub fn window_count(&self, frames: usize) -> usize {
        if frames == 0 {
            0
        } else if frames <= self.window {
            1
        } else {
            (frames - self.window) / self.hop + 1
        }
    }

    /// Embeds every window of `chroma` (frames × 12) and `bands`
    /// (frames × bands, dB). Both must have the same frame rate.
    pub fn embed(&mut self, chroma: ArrayView2<f32>, bands: ArrayView2<f32>) -> Embeddings {
        let frames = chroma.nrows().min(bands.nrows());
        let count = self.window_count(frames);
        let d = dim();
        let mut vectors = Array2::<f32>::zeros((count, d));
        let mut harmony = vec![0.0f32; 7 * TIME_BANDS.len()];
        let mut texture = vec![0.0f32; d - harmony.len()];
        for w in 0..count {
            let start = w * self.hop;
            self.harmony(chroma, start, frames, &mut harmony);
            self.texture(bands, start, frames, &mut texture);
            let mut row = vectors.row_mut(w);
            let tw = (1.0 - HARMONY_WEIGHT * HARMONY_WEIGHT).sqrt();
            for (o, v) in row.iter_mut().zip(
                harmony
                    .iter()
                    .map(|x| x * HARMONY_WEIGHT)
                    .chain(texture.iter().map(|x| x * tw)),
            ) {
                *o = v;
            }
            normalize(row.as_slice_mut().expect("contiguous row"));
        }
        Embeddings {
            vectors,
            hop_s: self.hop as f64 / self.frame_rate,
            window_s: self.window as f64 / self.frame_rate,
        }
    }

    /// Time-modulation bands scaled to this window length.
    fn time_band(&self, i: usize) -> (usize, usize) {
        let s = self.window as f64 / 40.0;
        let (a, b) = TIME_BANDS[i];
        let half = self.window / 2 + 1;
        let lo = ((a as f64 * s).round() as usize).min(half - 1);
        let hi = ((b as f64 * s).round() as usize).clamp(lo + 1, half);
        (lo, hi)
    }

    /// 2-D FFT of a rows × window patch held in `buf` (row-major, time
    /// fastest): along time for every row, then along rows for every time
    /// frequency up to the Nyquist one.
    fn fft2(&mut self, rows: usize, row_fft: &Arc<dyn Fft<f32>>) {
        let w = self.window;
        for r in 0..rows {
            self.time_fft
                .process_with_scratch(&mut self.buf[r * w..(r + 1) * w], &mut self.scratch);
        }
        for m in 0..=w / 2 {
            for r in 0..rows {
                self.col[r] = self.buf[r * w + m];
            }
            row_fft.process_with_scratch(&mut self.col[..rows], &mut self.scratch);
            for r in 0..rows {
                self.buf[r * w + m] = self.col[r];
            }
        }
    }

    fn harmony(&mut self, chroma: ArrayView2<f32>, start: usize, frames: usize, out: &mut [f32]) {
        let w = self.window;
        for k in 0..12 {
            for t in 0..w {
                let f = start + t;
                let v = if f < frames { chroma[[f, k]] } else { 0.0 };
                self.buf[k * w + t] = Complex::new(v, 0.0);
            }
        }
        let pitch_fft = Arc::clone(&self.pitch_fft);
        self.fft2(12, &pitch_fft);
        out.iter_mut().for_each(|x| *x = 0.0);
        for (b, _) in TIME_BANDS.iter().enumerate() {
            let (lo, hi) = self.time_band(b);
            for p in 0..=6 {
                let mut s = 0.0;
                for m in lo..hi {
                    s += self.buf[p * w + m].norm() + self.buf[((12 - p) % 12) * w + m].norm();
                }
                out[b * 7 + p] = (1e-3 + s / (2 * (hi - lo)) as f32).ln();
            }
        }
        centre_and_normalize(out);
    }

    fn texture(&mut self, bands: ArrayView2<f32>, start: usize, frames: usize, out: &mut [f32]) {
        let w = self.window;
        let nb = self.bands.min(bands.ncols());
        let end = (start + w).min(frames);
        // floor each patch 60 dB below its loudest cell, so bands a low-pass
        // removed become flat (and vanish with the mean)
        let mut top = f32::MIN;
        for f in start..end {
            for b in 0..nb {
                top = top.max(bands[[f, b]]);
            }
        }
        let floor = top - 60.0;
        for b in 0..nb {
            let mut mean = 0.0;
            for f in start..end {
                mean += bands[[f, b]].max(floor);
            }
            mean /= (end - start).max(1) as f32;
            for t in 0..w {
                let f = start + t;
                let v = if f < end {
                    (bands[[f, b]].max(floor) - mean) / 20.0
                } else {
                    0.0
                };
                self.buf[b * w + t] = Complex::new(v, 0.0);
            }
        }
        let band_fft = Arc::clone(&self.band_fft);
        self.fft2(nb, &band_fft);
        out.iter_mut().for_each(|x| *x = 0.0);
        // time band 0 (the per-band mean) was removed: start at band 1
        for tb in 1..TIME_BANDS.len() {
            let (lo, hi) = self.time_band(tb);
            for (qi, &(qa, qb)) in BAND_FREQS.iter().enumerate() {
                let (mut s, mut n) = (0.0, 0usize);
                for q in qa..qb.min(nb / 2 + 1) {
                    for m in lo..hi {
                        s += self.buf[q * w + m].norm() + self.buf[((nb - q) % nb) * w + m].norm();
                        n += 2;
                    }
                }
                if n > 0 {
                    out[(tb - 1) * BAND_FREQS.len() + qi] = (1e-3 + s / n as f32).ln();
                }
            }
        }
        centre_and_normalize(out);
    }
}

/// Removes the mean of a vector of log magnitudes (its overall level), then
/// scales it to unit L2 norm.
fn centre_and_normalize(v: &mut [f32]) {
    let m = v.iter().sum::<f32>() / v.len().max(1) as f32;
    v.iter_mut().for_each(|x| *x -= m);
    normalize(v);
}

/// Scales to unit L2 norm (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Resamples a feature sequence (frames × columns) in time by `factor`
/// (linear interpolation): output frame `t` is input frame `t * factor`. A
/// query played 10 % faster than the original is matched with `factor`
/// `1 / 1.1`.
pub fn time_scale(x: ArrayView2<f32>, factor: f64) -> Array2<f32> {
    let n = x.nrows();
    if n == 0 || factor <= 0.0 || !factor.is_finite() {
        return Array2::zeros((0, x.ncols()));
    }
    let m = (((n - 1) as f64) / factor).floor() as usize + 1;
    let mut out = Array2::<f32>::zeros((m, x.ncols()));
    for t in 0..m {
        let pos = t as f64 * factor;
        let i = (pos.floor() as usize).min(n - 1);
        let j = (i + 1).min(n - 1);
        let a = (pos - i as f64) as f32;
        for c in 0..x.ncols() {
            out[[t, c]] = x[[i, c]] * (1.0 - a) + x[[j, c]] * a;
        }
    }
    out
}

/// Cosine similarity of two L2-normalised vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
