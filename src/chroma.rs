//! Chroma: twelve pitch classes per frame (≈ 10 frames per second), with
//! global tuning estimation and log compression, plus the smoothed,
//! downsampled CENS version used for alignment.
//!
//! Spectral peaks are accumulated on a fine pitch-class grid of 10 cents
//! (120 bins per octave), summed over blocks of STFT frames, and folded into
//! twelve classes only at the end, once the tuning is known. That keeps one
//! pass over the audio while still centring the classes on the recording's
//! own tuning. Bin 0 is C, bin 9 is A.

use ndarray::Array2;

use crate::params::AnalysisParams;
use crate::stft::Peak;

/// Fine pitch-class bins per octave (10 cents each).
const FINE: usize = 120;

/// Pitch-class names, bin 0 first.
pub const PITCH_CLASSES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// MIDI cents (A4 = 440 Hz = 6900) of a frequency in Hz.
pub fn hz_to_cents(f: f32) -> f32 {
    6900.0 + 1200.0 * (f / 440.0).log2()
}

/// Result of the chroma stage.
#[derive(Debug, Clone, PartialEq)]
pub struct ChromaFeatures {
    /// Estimated deviation of the recording's tuning from A4 = 440 Hz, in
    /// cents (−50 to +50).
    pub tuning_cents: f32,
    /// Log-compressed, L2-normalised chroma, frames × 12 (silent frames are 0).
    pub chroma: Array2<f32>,
    /// CENS chroma (quantised, smoothed, downsampled, L2-normalised), frames × 12.
    pub cens: Array2<f32>,
    /// The pitch-class energies on the 10-cent grid before folding,
    /// frames × [`FINE_BINS`] (flat), so that a query can be folded again at
    /// another recording's tuning ([`fold`]).
    pub fine: Vec<f32>,
}

/// Bins per octave of the fine pitch-class grid (10 cents).
pub const FINE_BINS: usize = FINE;

/// Folds fine pitch-class energies (frames × [`FINE_BINS`], flat) into 12
/// classes centred on `tuning` cents: triangular weights, one semitone
/// half-width.
pub fn fold(fine: &[f32], tuning: f32) -> Array2<f32> {
    let n = fine.len() / FINE;
    let mut weights = [[0.0f32; FINE]; 12];
    for (k, row) in weights.iter_mut().enumerate() {
        let centre = (k as f32 * 100.0 + tuning) / 10.0;
        for (j, w) in row.iter_mut().enumerate() {
            let mut d = (j as f32 - centre).rem_euclid(FINE as f32);
            if d > FINE as f32 / 2.0 {
                d = FINE as f32 - d;
            }
            *w = (1.0 - d / 10.0).max(0.0);
        }
    }
    let mut energy = Array2::<f32>::zeros((n, 12));
    for (t, f) in fine.chunks_exact(FINE).enumerate() {
        for k in 0..12 {
            energy[[t, k]] = f.iter().zip(&weights[k]).map(|(a, b)| a * b).sum();
        }
    }
    energy
}

/// Accumulates spectral peaks frame by frame; [`ChromaAccumulator::finish`]
/// estimates the tuning and produces the chroma features.
pub struct ChromaAccumulator {
    block: usize,
    gamma: f32,
    cens_smooth: usize,
    cens_down: usize,
    in_block: usize,
    current: [f32; FINE],
    fine: Vec<f32>,
    /// Magnitude-weighted histogram of peak deviations from the tempered
    /// grid, 1 cent per bin; its circular mean is the tuning.
    deviation: [f64; 100],
}

impl ChromaAccumulator {
    /// A new accumulator for the given parameters.
    pub fn new(params: &AnalysisParams) -> Self {
        ChromaAccumulator {
            block: params.chroma_block.max(1),
            gamma: params.chroma_gamma,
            cens_smooth: params.cens_smooth.max(1),
            cens_down: params.cens_down.max(1),
            in_block: 0,
            current: [0.0; FINE],
            fine: Vec::new(),
            deviation: [0.0; 100],
        }
    }

    /// Adds one STFT frame's peaks.
    pub fn push_frame(&mut self, peaks: &[Peak]) {
        for p in peaks {
            let cents = hz_to_cents(p.freq);
            if !cents.is_finite() {
                continue;
            }
            // tuning: histogram of the deviation from the tempered grid,
            // split linearly between neighbouring cents
            let dev = cents.rem_euclid(100.0);
            let d0 = dev.floor();
            let frac = (dev - d0) as f64;
            let d0 = d0 as usize % 100;
            self.deviation[d0] += p.mag as f64 * (1.0 - frac);
            self.deviation[(d0 + 1) % 100] += p.mag as f64 * frac;
            // fine pitch class, linear interpolation between neighbouring bins
            let pos = cents.rem_euclid(1200.0) / 10.0;
            let i0 = pos.floor() as usize % FINE;
            let frac = pos - pos.floor();
            self.current[i0] += p.mag * (1.0 - frac);
            self.current[(i0 + 1) % FINE] += p.mag * frac;
        }
        self.in_block += 1;
        if self.in_block == self.block {
            self.flush();
        }
    }

    fn flush(&mut self) {
        self.fine.extend_from_slice(&self.current);
        self.current = [0.0; FINE];
        self.in_block = 0;
    }

    /// Estimated tuning in cents so far.
    pub fn tuning_cents(&self) -> f32 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (c, w) in self.deviation.iter().enumerate() {
            let ang = c as f64 * std::f64::consts::TAU / 100.0;
            re += w * ang.cos();
            im += w * ang.sin();
        }
        if re == 0.0 && im == 0.0 {
            return 0.0;
        }
        (im.atan2(re) * 100.0 / std::f64::consts::TAU) as f32
    }

    /// Folds the fine bins into 12 tuned classes and derives chroma and CENS.
    pub fn finish(mut self) -> ChromaFeatures {
        if self.in_block > 0 {
            self.flush();
        }
        let tuning = self.tuning_cents();
        let energy = fold(&self.fine, tuning);
        let chroma = log_chroma(&energy, self.gamma);
        let cens = cens(&energy, self.cens_smooth, self.cens_down);
        ChromaFeatures {
            tuning_cents: tuning,
            fine: std::mem::take(&mut self.fine),
            chroma,
            cens,
        }
    }
}

/// Frames whose energy is below this share of the track's mean frame energy
/// count as silent.
const SILENT: f32 = 1e-3;

fn frame_sums(energy: &Array2<f32>) -> (Vec<f32>, f32) {
    let sums: Vec<f32> = energy.rows().into_iter().map(|r| r.sum()).collect();
    let mean = if sums.is_empty() {
        0.0
    } else {
        sums.iter().sum::<f32>() / sums.len() as f32
    };
    (sums, mean)
}

/// Log compression relative to the track's loudest class, then per-frame L2
/// normalisation.
fn log_chroma(energy: &Array2<f32>, gamma: f32) -> Array2<f32> {
    let (sums, mean) = frame_sums(energy);
    let peak = energy.iter().copied().fold(0.0f32, f32::max);
    let mut out = Array2::<f32>::zeros(energy.dim());
    if peak <= 0.0 {
        return out;
    }
    for (t, mut row) in out.rows_mut().into_iter().enumerate() {
        if sums[t] <= SILENT * mean {
            continue;
        }
        for k in 0..12 {
            row[k] = (1.0 + gamma * energy[[t, k]] / peak).ln();
        }
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    out
}

/// CENS (Müller): per-frame L1 shares, quantised to 0..4, smoothed with a
/// Hann window of `smooth` frames, downsampled by `down`, L2-normalised.
pub fn cens(energy: &Array2<f32>, smooth: usize, down: usize) -> Array2<f32> {
    let (sums, mean) = frame_sums(energy);
    let n = energy.nrows();
    let mut q = Array2::<f32>::zeros((n, 12));
    for t in 0..n {
        if sums[t] <= SILENT * mean || sums[t] <= 0.0 {
            continue;
        }
        for k in 0..12 {
            let share = energy[[t, k]] / sums[t];
            q[[t, k]] = match share {
                s if s >= 0.4 => 4.0,
                s if s >= 0.2 => 3.0,
                s if s >= 0.1 => 2.0,
                s if s >= 0.05 => 1.0,
                _ => 0.0,
            };
        }
    }
    // Hann smoothing (window of `smooth` points, all positive weights)
    let win: Vec<f32> = (0..smooth)
        .map(|i| {
            let x = std::f32::consts::PI * (i as f32 + 1.0) / (smooth as f32 + 1.0);
            x.sin() * x.sin()
        })
        .collect();
    let half = smooth / 2;
    let m = n.div_ceil(down);
    let mut out = Array2::<f32>::zeros((m, 12));
    for (o, mut row) in out.rows_mut().into_iter().enumerate() {
        let centre = o * down;
        for (i, w) in win.iter().enumerate() {
            let t = centre as isize + i as isize - half as isize;
            if t < 0 || t as usize >= n {
                continue;
            }
            for k in 0..12 {
                row[k] += w * q[[t as usize, k]];
            }
        }
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row /= norm;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stft::{find_peaks, Stft};

    /// Runs the STFT, peak picking and chroma stage on a synthetic signal.
    fn chroma_of(signal: &[f32]) -> ChromaFeatures {
        let p = AnalysisParams::default();
        let mut stft = Stft::new(p.fft_size, p.hop);
        let bin_hz = p.sample_rate as f32 / p.fft_size as f32;
        let mut acc = ChromaAccumulator::new(&p);
        let mut peaks = Vec::new();
        stft.for_each_frame(signal, |_, mag| {
            find_peaks(mag, bin_hz, p.fmin_hz, p.fmax_hz, p.max_peaks, &mut peaks);
            acc.push_frame(&peaks);
        });
        acc.finish()
    }

    fn tones(freqs: &[f32], seconds: f32) -> Vec<f32> {
        crate::synth::tones(freqs, seconds, 11_025)
    }

    fn mean_profile(c: &Array2<f32>) -> [f32; 12] {
        let mut p = [0.0; 12];
        for row in c.rows() {
            for k in 0..12 {
                p[k] += row[k];
            }
        }
        p
    }

    fn argsort_desc(p: &[f32; 12]) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..12).collect();
        idx.sort_by(|a, b| p[*b].total_cmp(&p[*a]));
        idx
    }

    #[test]
    fn a4_sine_lands_in_bin_a() {
        let f = chroma_of(&tones(&[440.0], 2.0));
        let order = argsort_desc(&mean_profile(&f.chroma));
        assert_eq!(PITCH_CLASSES[order[0]], "A");
        assert!(f.tuning_cents.abs() < 2.0, "tuning {}", f.tuning_cents);
        let cens_order = argsort_desc(&mean_profile(&f.cens));
        assert_eq!(PITCH_CLASSES[cens_order[0]], "A");
    }

    #[test]
    fn c_major_triad_gives_c_e_g() {
        // C4, E4, G4
        let f = chroma_of(&tones(&[261.63, 329.63, 392.0], 2.0));
        let mut top: Vec<&str> = argsort_desc(&mean_profile(&f.chroma))[..3]
            .iter()
            .map(|&k| PITCH_CLASSES[k])
            .collect();
        top.sort();
        assert_eq!(top, vec!["C", "E", "G"]);
    }

    #[test]
    fn a_tuned_to_435_hz_is_about_minus_20_cents() {
        let f = chroma_of(&tones(&[435.0, 870.0], 2.0));
        assert!(
            (f.tuning_cents + 19.8).abs() < 3.0,
            "tuning {} cents",
            f.tuning_cents
        );
        // and the tuned grid still puts it in A
        let order = argsort_desc(&mean_profile(&f.chroma));
        assert_eq!(PITCH_CLASSES[order[0]], "A");
    }

    #[test]
    fn silence_gives_zero_chroma_and_no_panic() {
        let f = chroma_of(&vec![0.0; 11025]);
        assert!(f.chroma.iter().all(|&x| x == 0.0));
        assert!(f.cens.iter().all(|&x| x == 0.0));
        assert_eq!(f.tuning_cents, 0.0);
        let empty = chroma_of(&[]);
        assert_eq!(empty.chroma.nrows(), 0);
    }

    #[test]
    fn frame_rates_follow_the_parameters() {
        let p = AnalysisParams::default();
        let f = chroma_of(&tones(&[440.0], 3.0));
        let expect = (3.0 * p.chroma_rate()).ceil() as usize;
        assert!((f.chroma.nrows() as isize - expect as isize).abs() <= 1);
        assert_eq!(f.cens.nrows(), f.chroma.nrows().div_ceil(p.cens_down));
    }
}
