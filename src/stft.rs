//! The one short-time Fourier transform every feature is computed from, and
//! the spectral peaks that chroma, tuning and melody salience share.
//!
//! The FFT is planned once per [`Stft`]; the frame, spectrum and magnitude
//! buffers are allocated once and reused for every frame.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

/// A reusable STFT: Hann window, centred frames, magnitude spectra.
pub struct Stft {
    fft: Arc<dyn RealToComplex<f32>>,
    window: Vec<f32>,
    hop: usize,
    frame: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    magnitude: Vec<f32>,
}

impl Stft {
    /// Plans an STFT of `size` points (any size; even sizes are fastest) and
    /// the given hop.
    pub fn new(size: usize, hop: usize) -> Self {
        assert!(size >= 2 && hop >= 1, "STFT size >= 2 and hop >= 1");
        let mut planner = RealFftPlanner::<f32>::new();
        let fft = planner.plan_fft_forward(size);
        let window = hann(size);
        let spectrum = fft.make_output_vec();
        let scratch = fft.make_scratch_vec();
        let magnitude = vec![0.0; spectrum.len()];
        Stft {
            frame: fft.make_input_vec(),
            fft,
            window,
            hop,
            spectrum,
            scratch,
            magnitude,
        }
    }

    /// FFT size.
    pub fn size(&self) -> usize {
        self.window.len()
    }

    /// Number of frames for a signal of `len` samples: frame `i` is centred
    /// on sample `i * hop`, and the signal is zero-padded at both ends.
    pub fn frame_count(&self, len: usize) -> usize {
        if len == 0 {
            0
        } else {
            (len - 1) / self.hop + 1
        }
    }

    /// Sum of the window: a full-scale sine of amplitude `a` exactly on a bin
    /// has magnitude `a * window_sum / 2` there.
    pub fn window_sum(&self) -> f32 {
        self.window.iter().sum()
    }

    /// Calls `f(frame_index, magnitudes)` for every frame of `signal`.
    /// `magnitudes` has `size / 2 + 1` bins and is only valid during the call.
    pub fn for_each_frame(&mut self, signal: &[f32], mut f: impl FnMut(usize, &[f32])) {
        let n = self.size();
        let half = n / 2;
        for i in 0..self.frame_count(signal.len()) {
            let centre = i * self.hop;
            // frame covers signal[centre - half .. centre - half + n], zero
            // outside the signal
            let start = centre as isize - half as isize;
            let lo = (-start).clamp(0, n as isize) as usize;
            let hi = (signal.len() as isize - start).clamp(0, n as isize) as usize;
            self.frame[..lo].iter_mut().for_each(|x| *x = 0.0);
            if hi > lo {
                let src = &signal[(start + lo as isize) as usize..(start + hi as isize) as usize];
                for ((x, s), w) in self.frame[lo..hi]
                    .iter_mut()
                    .zip(src)
                    .zip(&self.window[lo..hi])
                {
                    *x = s * w;
                }
            }
            self.frame[hi.max(lo)..].iter_mut().for_each(|x| *x = 0.0);
            self.transform();
            f(i, &self.magnitude);
        }
    }

    /// Magnitude spectrum of one frame already windowed by the caller's
    /// choice (used by tests and by callers with their own framing).
    pub fn magnitudes_of(&mut self, frame: &[f32]) -> &[f32] {
        assert_eq!(frame.len(), self.size(), "frame length equals FFT size");
        for ((x, s), w) in self.frame.iter_mut().zip(frame).zip(&self.window) {
            *x = s * w;
        }
        self.transform();
        &self.magnitude
    }

    fn transform(&mut self) {
        // realfft only fails on wrong buffer lengths, which are ours and fixed
        self.fft
            .process_with_scratch(&mut self.frame, &mut self.spectrum, &mut self.scratch)
            .expect("FFT buffers have the planned sizes");
        for (m, c) in self.magnitude.iter_mut().zip(&self.spectrum) {
            // plain sqrt (not hypot): vectorises, and the range is safe here
            *m = (c.re * c.re + c.im * c.im).sqrt();
        }
    }
}

/// A periodic Hann window of `n` points.
pub fn hann(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = std::f64::consts::PI * i as f64 / n as f64;
            (x.sin() * x.sin()) as f32
        })
        .collect()
}

/// A spectral peak: interpolated frequency and magnitude, and how far it
/// stands above the spectrum around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    /// Frequency in Hz.
    pub freq: f32,
    /// Linear magnitude (interpolated).
    pub mag: f32,
    /// Tonality: the magnitude over the local floor, the smaller mean of
    /// the magnitudes [`TONAL_NEAR`] to [`TONAL_FAR`] bins away on either
    /// side (outside a Hann window's main lobe). A stable partial stands
    /// 20–40 dB above it; a maximum of noise, whose neighbours are as
    /// strong, a few dB.
    pub tonality: f32,
}

/// Bin distances at which [`Peak::tonality`] reads the floor: beyond the
/// Hann main lobe (±2 bins), near enough that a neighbouring partial rarely
/// sits there on both sides at once.
pub const TONAL_NEAR: usize = 4;
/// See [`TONAL_NEAR`].
pub const TONAL_FAR: usize = 7;

/// The largest value of `x` (0 for an empty slice; NaN is ignored), in
/// eight independent lanes so that it vectorises.
fn max_of(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    for &v in rest {
        acc[0] = if v > acc[0] { v } else { acc[0] };
    }
    acc.iter()
        .copied()
        .fold(0.0, |a, v| if v > a { v } else { a })
}

/// Calls `f(k)`, in increasing order, for every `k` in `lo..=hi` where
/// `x[k] > floor`, `x[k] > x[k - 1]` and `x[k] >= x[k + 1]` (needs
/// `lo >= 1` and `hi + 1 < x.len()`). Blocks of 64 are marked by a loop the
/// compiler vectorises; the marks are then read eight at a time, so the cost
/// of the sparse maxima is not paid on every element.
pub fn for_each_local_max(x: &[f32], lo: usize, hi: usize, floor: f32, mut f: impl FnMut(usize)) {
    assert!(
        lo >= 1 && hi + 1 < x.len(),
        "neighbours of {lo}..={hi} exist"
    );
    let mut marks = [0u8; 64];
    let mut k0 = lo;
    while k0 <= hi {
        let n = (hi + 1 - k0).min(64);
        let (left, mid, right) = (
            &x[k0 - 1..k0 - 1 + n],
            &x[k0..k0 + n],
            &x[k0 + 1..k0 + 1 + n],
        );
        for (((m, &l), &c), &r) in marks[..n].iter_mut().zip(left).zip(mid).zip(right) {
            *m = u8::from(c > floor) & u8::from(c > l) & u8::from(c >= r);
        }
        marks[n..].fill(0);
        for (g, eight) in marks.chunks_exact(8).enumerate() {
            let mut w = u64::from_le_bytes(eight.try_into().expect("8 bytes"));
            while w != 0 {
                let byte = (w.trailing_zeros() / 8) as usize;
                f(k0 + g * 8 + byte);
                w &= !(0xffu64 << (byte * 8));
            }
        }
        k0 += n;
    }
}

/// Finds the local maxima of `mag` between `fmin` and `fmax` Hz that are
/// within 60 dB of the frame's strongest one, refines them by parabolic
/// interpolation of the log magnitude, and keeps the `max_peaks` strongest
/// in `out` (sorted by frequency). `bin_hz` is the bin spacing.
pub fn find_peaks(
    mag: &[f32],
    bin_hz: f32,
    fmin: f32,
    fmax: f32,
    max_peaks: usize,
    out: &mut Vec<Peak>,
) {
    out.clear();
    if mag.len() < 3 || max_peaks == 0 {
        return;
    }
    let lo = ((fmin / bin_hz).floor() as usize).max(1);
    let hi = ((fmax / bin_hz).ceil() as usize).min(mag.len() - 2);
    if lo > hi {
        return;
    }
    let top = max_of(&mag[lo..=hi]);
    if top <= 1e-9 || !top.is_finite() {
        return;
    }
    let floor = top * 1e-3;
    for_each_local_max(mag, lo, hi, floor, |k| {
        out.push(Peak {
            freq: k as f32,
            mag: mag[k],
            tonality: 0.0,
        })
    });
    if out.len() > max_peaks {
        out.select_nth_unstable_by(max_peaks - 1, |x, y| y.mag.total_cmp(&x.mag));
        out.truncate(max_peaks);
        out.sort_unstable_by(|x, y| x.freq.total_cmp(&y.freq));
    }
    for p in out.iter_mut() {
        let k = p.freq as usize;
        let m = mag[k];
        // parabola through the log magnitudes: only two logarithms needed
        let a_minus_c = fast_ln((mag[k - 1] + 1e-12) / (mag[k + 1] + 1e-12));
        let den = fast_ln((mag[k - 1] + 1e-12) * (mag[k + 1] + 1e-12) / (m * m + 1e-24));
        let d = if den < 0.0 {
            (0.5 * a_minus_c / den).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        p.tonality = m / local_floor(mag, k);
        p.freq = (k as f32 + d) * bin_hz;
        // the peak's log height is b - (a - c) d / 4 (|x| < 0.5: a cubic is plenty)
        let x = -0.25 * a_minus_c * d;
        p.mag = m * (1.0 + x * (1.0 + x * (0.5 + x / 6.0)));
    }
}

/// The floor [`Peak::tonality`] measures a peak at bin `k` against (never 0):
/// the smaller of the mean magnitudes at `k - TONAL_FAR ..= k - TONAL_NEAR`
/// and `k + TONAL_NEAR ..= k + TONAL_FAR`.
fn local_floor(mag: &[f32], k: usize) -> f32 {
    let n = (TONAL_FAR - TONAL_NEAR + 1) as f32;
    let left =
        (k >= TONAL_FAR).then(|| mag[k - TONAL_FAR..=k - TONAL_NEAR].iter().sum::<f32>() / n);
    let right = mag
        .get(k + TONAL_NEAR..=k + TONAL_FAR)
        .map(|x| x.iter().sum::<f32>() / n);
    let floor = match (left, right) {
        (Some(a), Some(b)) => a.min(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) => 0.0,
    };
    floor.max(1e-12)
}

/// Natural logarithm of a positive, finite `x`, accurate to about 1e-4
/// (exponent from the bits, a short series for the mantissa).
#[inline]
pub fn fast_ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    // mantissa in [1, 2), then recentred to [sqrt(1/2), sqrt(2)) for accuracy
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    let mut e = e as f32;
    if m > std::f32::consts::SQRT_2 {
        m *= 0.5;
        e += 1.0;
    }
    // ln(m) = 2 atanh(u), u = (m - 1) / (m + 1), |u| < 0.172
    let u = (m - 1.0) / (m + 1.0);
    let u2 = u * u;
    let ln_m = 2.0 * u * (1.0 + u2 * (1.0 / 3.0 + u2 * (0.2 + u2 / 7.0)));
    ln_m + e * std::f32::consts::LN_2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_dft_mag(x: &[f32]) -> Vec<f32> {
        let n = x.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (t, &v) in x.iter().enumerate() {
                    let ph = -2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    re += v as f64 * ph.cos();
                    im += v as f64 * ph.sin();
                }
                (re * re + im * im).sqrt() as f32
            })
            .collect()
    }

    #[test]
    fn stft_matches_naive_dft() {
        // fixed-seed pseudo-random frame (xorshift), windowed like the STFT does
        let n = 512;
        let mut s = 0x2545F491u32;
        let x: Vec<f32> = (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s as f32 / u32::MAX as f32) * 2.0 - 1.0
            })
            .collect();
        let w = hann(n);
        let windowed: Vec<f32> = x.iter().zip(&w).map(|(a, b)| a * b).collect();
        let want = naive_dft_mag(&windowed);
        let mut stft = Stft::new(n, 128);
        let got = stft.magnitudes_of(&x).to_vec();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            approx::assert_abs_diff_eq!(*g, *w, epsilon = 1e-3 * (1.0 + w.abs()));
        }
    }

    #[test]
    fn frames_are_centred_and_counted() {
        let mut stft = Stft::new(64, 16);
        assert_eq!(stft.frame_count(0), 0);
        assert_eq!(stft.frame_count(1), 1);
        assert_eq!(stft.frame_count(16), 1);
        assert_eq!(stft.frame_count(17), 2);
        // an impulse at sample 32 is centred in frame 2 (centre 32): flat spectrum
        let mut x = vec![0.0f32; 100];
        x[32] = 1.0;
        let mut seen = Vec::new();
        stft.for_each_frame(&x, |i, m| seen.push((i, m[0], m[5])));
        assert_eq!(seen.len(), 7);
        let (_, dc, b5) = seen[2];
        approx::assert_abs_diff_eq!(dc, 1.0, epsilon = 1e-5);
        approx::assert_abs_diff_eq!(b5, 1.0, epsilon = 1e-5);
    }

    #[test]
    fn fast_ln_is_accurate() {
        for &x in &[1e-20f32, 1e-6, 0.3, 0.70, 1.0, 1.42, 2.0, 3.7, 1e6, 1e20] {
            assert!((fast_ln(x) - x.ln()).abs() < 2e-4, "{x}");
        }
    }

    #[test]
    fn peak_interpolation_finds_sine_frequency() {
        let sr = 11025.0f32;
        let n = 2048;
        let f = 440.0f32;
        let x: Vec<f32> = (0..n)
            .map(|t| (2.0 * std::f32::consts::PI * f * t as f32 / sr).sin())
            .collect();
        let mut stft = Stft::new(n, 110);
        let mag = stft.magnitudes_of(&x).to_vec();
        let mut peaks = Vec::new();
        find_peaks(&mag, sr / n as f32, 50.0, 5000.0, 10, &mut peaks);
        let best = peaks.iter().max_by(|a, b| a.mag.total_cmp(&b.mag)).unwrap();
        assert!((best.freq - f).abs() < 0.5, "peak at {}", best.freq);
        // amplitude 1 sine: magnitude ≈ window_sum / 2
        let expect = stft.window_sum() / 2.0;
        assert!(
            (best.mag / expect - 1.0).abs() < 0.05,
            "{} vs {}",
            best.mag,
            expect
        );
    }
}
