//! Predominant melody of polyphonic music: a simplified, fast Melodia.
//!
//! The stage works from the spectral peaks the pipeline computes once per
//! STFT frame (see [`crate::stft::find_peaks`]):
//!
//! 1. **Salience** ([`MelodyTracker::push_frame`]): harmonic summation on a
//!    log-frequency grid (`melody_bin_cents` = 10 cents, `melody_fmin_hz` 55 Hz
//!    to `melody_fmax_hz` 1760 Hz: 601 bins). Every peak `(f, a)` within 40 dB
//!    of the frame's strongest one adds `sqrt(a) * alpha^(h-1)` to the
//!    candidate f0 `f / h` for `h = 1..=melody_harmonics`, spread over ±1
//!    semitone with a `cos²` weight (Salamon & Gómez 2012). The spreading is
//!    done as one convolution per frame: each contribution is split linearly
//!    between its two nearest bins, then the grid is convolved with the `cos²`
//!    kernel. The 5 strongest salience maxima of each frame are kept (pitch
//!    refined by parabolic interpolation), with each one's *loudness*: the
//!    linear magnitudes of the peaks within ±50 cents of its harmonics,
//!    weighted `alpha^(h-1)`. That is 64 bytes per 10 ms frame (23 MB for an
//!    hour); the grid buffers are allocated once in [`MelodyTracker::new`].
//! 2. **Tracking** ([`MelodyTracker::finish`]): Viterbi over those candidates,
//!    with a frame score `ln(salience / frame's best salience)` and a cost on
//!    the pitch jump between frames (free up to 50 cents, growing linearly to
//!    1.2 at 250 cents and more, plus 0.8 for a jump of an octave ± 80 cents,
//!    the typical error). Frames without any peak restart the tracking.
//! 3. **Voicing**: the path is cut into contours where its pitch jumps by more
//!    than 80 cents. A contour is voiced if its mean ln-loudness is at least
//!    the reference minus 0.45 (≈ 3.9 dB): the reference is the 90th
//!    percentile of the path's ln-loudness over the 5 s before and the 5 s
//!    after each second of the track (the lower of the two, so that level
//!    changes are followed), never below the whole track's one minus 1.5.
//!    Accompaniment left alone in the melody's rests (chords 6 dB below it)
//!    is thus unvoiced. Voiced runs shorter than 60 ms are removed, and
//!    frames 40 dB below the track's loud frames are never voiced.
//!
//! [`Melody::relative_contour`] and [`Melody::notes`] turn the result into
//! key-invariant forms for matching.

use crate::params::AnalysisParams;
use crate::stft::Peak;

/// Salience maxima kept per frame.
const CANDIDATES: usize = 5;
/// Peaks weaker than this (relative to the frame's strongest) are ignored
/// by the salience function (40 dB).
const PEAK_RANGE: f32 = 0.01;
/// Half-width of the salience spread in cents (±1 semitone).
const SPREAD_CENTS: f32 = 100.0;
/// A peak within this relative distance of `h * f0` (≈ ±50 cents) counts
/// as harmonic `h` of `f0` for the voicing loudness.
const HARMONIC_TOLERANCE: f32 = 0.029;

/// Salience bins computed together (in registers) by the spreading convolution.
const LANES: usize = 16;

/// Jump (cents) between frames that costs nothing in tracking.
const FREE_JUMP: f32 = 50.0;
/// Jump (cents) at which the tracking cost reaches its cap.
const CAP_JUMP: f32 = 250.0;
/// Cost (in nats of salience ratio) of a large jump.
const JUMP_COST: f32 = 1.2;
/// Extra cost of a jump of about one octave (octave errors).
const OCTAVE_COST: f32 = 0.8;

/// Contours break where the chosen pitch jumps by more than this (cents).
const CONTOUR_BREAK: f32 = 80.0;
/// A contour is voiced if its mean ln-loudness is at least the reference
/// (a high percentile of the path's ln-loudness) minus this margin.
const VOICING_MARGIN: f32 = 0.45;
/// Percentile of the path's ln-loudness used as the voicing reference.
const VOICING_PERCENTILE: f32 = 0.9;
/// Length (frames) of the one-sided local voicing reference windows (≈ 5 s).
const LOCAL_SPAN: usize = 500;
/// Frames per block of the local voicing reference (≈ 1 s).
const LOCAL_BLOCK: usize = 100;
/// The local reference may not fall below the global one by more than this.
const LOCAL_FLOOR: f32 = 1.5;
/// Frames whose peak energy is this far (ratio) below the track's loud
/// frames are silent, hence unvoiced (−40 dB).
const SILENCE_RATIO: f32 = 0.01;
/// Shortest voiced run kept, in seconds.
const MIN_VOICED_S: f64 = 0.06;

/// The predominant melody of a track: one entry per STFT frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Melody {
    /// Seconds between frames (frame `i` is centred at `i * hop_s`).
    pub hop_s: f64,
    /// Pitch of each frame in MIDI cents (A4 = 440 Hz = 6900.0). Unvoiced
    /// frames still carry the tracker's best guess (or the nearest voiced
    /// pitch where there was nothing to guess from).
    pub cents: Vec<f32>,
    /// Whether the melody is sounding in each frame.
    pub voiced: Vec<bool>,
}

/// A note of a [`Melody`], as found by [`Melody::notes`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    /// Onset in seconds from the start of the track.
    pub onset_s: f64,
    /// Duration in seconds.
    pub duration_s: f64,
    /// Median pitch of the note minus the track's median voiced pitch, in cents.
    pub cents: f32,
}

#[derive(Debug, Clone, Copy, Default)]
struct Candidate {
    /// Pitch in MIDI cents (refined by parabolic interpolation).
    cents: f32,
    /// Salience (compressed harmonic sum), 0 for an empty slot.
    salience: f32,
    /// Linear magnitude of the peaks that are harmonics of this pitch
    /// (weighted `alpha^(h-1)`): the loudness used for voicing.
    loudness: f32,
}

/// Computes the melody from per-frame spectral peaks.
///
/// Feed every STFT frame's peaks in order with [`push_frame`](Self::push_frame),
/// then call [`finish`](Self::finish).
pub struct MelodyTracker {
    hop_s: f64,
    /// MIDI cents of grid bin 0.
    cents0: f32,
    bin_cents: f32,
    bins: usize,
    /// `alpha^(h-1)` for each harmonic.
    harmonic_weight: Vec<f32>,
    /// `alpha^(h-1)` indexed by `h`, with 0 at `h = 0` and `h = H + 1`.
    weight_by_h: Vec<f32>,
    /// `1200 * log2(h) / bin_cents` for each harmonic.
    harmonic_bins: Vec<f32>,
    /// `cos²` spread kernel over `2 * half + 1` bins.
    kernel: Vec<f32>,
    half: usize,
    /// Peak contributions as impulses on the grid (`half + 1` guard bins
    /// on each side), then convolved with `kernel` into `salience`.
    impulses: Vec<f32>,
    salience: Vec<f32>,
    /// Kept candidates, `CANDIDATES` per frame (salience 0 = empty slot).
    candidates: Vec<Candidate>,
    /// Sum of the peak magnitudes of each frame.
    energy: Vec<f32>,
}

impl MelodyTracker {
    /// A tracker for frames analysed with `params` (uses the melody range,
    /// grid resolution, harmonic count and decay, and the frame hop).
    pub fn new(params: &AnalysisParams) -> Self {
        let bin_cents = params.melody_bin_cents.max(1.0);
        let cents0 = hz_to_cents(params.melody_fmin_hz.max(1.0));
        let top = hz_to_cents(params.melody_fmax_hz.max(params.melody_fmin_hz.max(1.0)));
        let bins = ((top - cents0) / bin_cents).round() as usize + 1;
        let harmonics = params.melody_harmonics.max(1);
        let harmonic_weight: Vec<f32> = (0..harmonics)
            .map(|h| params.melody_alpha.powi(h as i32))
            .collect();
        let mut weight_by_h = vec![0.0];
        weight_by_h.extend_from_slice(&harmonic_weight);
        weight_by_h.push(0.0);
        let harmonic_bins = (1..=harmonics)
            .map(|h| 1200.0 * (h as f32).log2() / bin_cents)
            .collect();
        // taps at ±SPREAD_CENTS are zero: leave them out
        let half = ((SPREAD_CENTS / bin_cents).ceil() as usize)
            .saturating_sub(usize::from((SPREAD_CENTS / bin_cents).fract() == 0.0));
        let kernel = (0..=2 * half)
            .map(|k| {
                let d = (k as f32 - half as f32) * bin_cents;
                if d.abs() < SPREAD_CENTS {
                    let c = (std::f32::consts::FRAC_PI_2 * d / SPREAD_CENTS).cos();
                    c * c
                } else {
                    0.0
                }
            })
            .collect();
        MelodyTracker {
            hop_s: params.frame_seconds(),
            cents0,
            bin_cents,
            bins,
            harmonic_weight,
            weight_by_h,
            harmonic_bins,
            kernel,
            half,
            impulses: vec![0.0; (bins + 2).next_multiple_of(LANES) + 2 * half],
            salience: vec![0.0; (bins + 2).next_multiple_of(LANES)],
            candidates: Vec::new(),
            energy: Vec::new(),
        }
    }

    /// Reserves room for `frames` more frames (optional: avoids regrowing
    /// the per-frame storage when the track length is known).
    pub fn reserve(&mut self, frames: usize) {
        self.candidates.reserve(frames * CANDIDATES);
        self.energy.reserve(frames);
    }

    /// Adds the next STFT frame, given by its spectral peaks (any order).
    pub fn push_frame(&mut self, peaks: &[Peak]) {
        let top = peaks.iter().map(|p| p.mag).fold(0.0f32, f32::max);
        let mut best = [Candidate::default(); CANDIDATES];
        let mut energy = 0.0f32;
        if top > 0.0 && top.is_finite() {
            energy = self.salience_of(peaks, top * PEAK_RANGE);
            if energy > 0.0 {
                self.maxima(&mut best);
                self.loudness(peaks, top * PEAK_RANGE, &mut best);
            }
        }
        self.energy.push(energy);
        self.candidates.extend_from_slice(&best);
    }

    /// Fills `self.salience` (grid bin `b` at index `b + 1`) from the peaks
    /// at least `floor` strong; returns the sum of their magnitudes.
    fn salience_of(&mut self, peaks: &[Peak], floor: f32) -> f32 {
        self.impulses.fill(0.0);
        let offset = (self.half + 1) as f32;
        // candidate f0 range: grid bins -0.5 ..= bins - 0.5
        let f_lo = cents_to_hz(self.cents0 - 0.5 * self.bin_cents);
        let f_hi = cents_to_hz(self.cents0 + (self.bins as f32 - 0.5) * self.bin_cents);
        let harmonics = self.harmonic_bins.len();
        let imax = self.impulses.len() - 2;
        let mut energy = 0.0f32;
        for p in peaks {
            let usable = p.mag >= floor && p.freq > 0.0 && p.freq.is_finite();
            if !usable {
                continue;
            }
            energy += p.mag;
            // harmonic numbers h that put f / h on the grid
            let h_lo = ((p.freq / f_hi).ceil() as usize).max(1);
            let h_hi = ((p.freq / f_lo) as usize).min(harmonics);
            if h_lo > h_hi {
                continue;
            }
            let amp = p.mag.sqrt();
            // impulse-array position of the peak itself
            let y1 = (hz_to_cents(p.freq) - self.cents0) / self.bin_cents + offset;
            let hb = &self.harmonic_bins[h_lo - 1..h_hi];
            let hw = &self.harmonic_weight[h_lo - 1..h_hi];
            for (hb, hw) in hb.iter().zip(hw) {
                // linear split between the two nearest bins (keeps the centroid)
                let y = (y1 - hb).max(0.0);
                let i = (y as usize).min(imax);
                let frac = y - i as f32;
                let w = amp * hw;
                self.impulses[i] += w * (1.0 - frac);
                self.impulses[i + 1] += w * frac;
            }
        }
        self.spread();
        energy
    }

    /// Convolves the impulses with the spread kernel into the salience.
    fn spread(&mut self) {
        // salience[j] (bin j - 1) = sum_k kernel[k] * impulses[j + k]
        // (blocks of LANES outputs accumulated in registers)
        let taps = self.kernel.len();
        for (j, out) in self.salience.chunks_exact_mut(LANES).enumerate() {
            let src = &self.impulses[j * LANES..j * LANES + LANES + taps - 1];
            let mut acc = [0.0f32; LANES];
            for (k, &c) in self.kernel.iter().enumerate() {
                let x: &[f32; LANES] = src[k..k + LANES].try_into().expect("LANES");
                for (a, x) in acc.iter_mut().zip(x) {
                    *a += c * x;
                }
            }
            out.copy_from_slice(&acc);
        }
    }

    /// The strongest local maxima of the salience, refined by parabolic
    /// interpolation, sorted by decreasing salience.
    fn maxima(&self, best: &mut [Candidate; CANDIDATES]) {
        let grid = &self.salience;
        crate::stft::for_each_local_max(grid, 1, self.bins, 0.0, |b| {
            let s = grid[b];
            if s > best[CANDIDATES - 1].salience {
                let (l, r) = (grid[b - 1], grid[b + 1]);
                let den = l - 2.0 * s + r;
                let (off, peak) = if den < 0.0 {
                    let off = (0.5 * (l - r) / den).clamp(-0.5, 0.5);
                    (off, s - 0.25 * (l - r) * off)
                } else {
                    (0.0, s)
                };
                let cand = Candidate {
                    cents: self.cents0 + ((b - 1) as f32 + off) * self.bin_cents,
                    salience: peak,
                    loudness: 0.0,
                };
                let mut i = CANDIDATES - 1;
                while i > 0 && best[i - 1].salience < cand.salience {
                    best[i] = best[i - 1];
                    i -= 1;
                }
                best[i] = cand;
            }
        });
    }

    /// Sets the linear harmonic loudness of each candidate.
    fn loudness(&self, peaks: &[Peak], floor: f32, best: &mut [Candidate; CANDIDATES]) {
        // branch-free: weight_by_h is 0 for h = 0 and h > H
        let top = self.weight_by_h.len() - 1;
        for c in best.iter_mut().filter(|c| c.salience > 0.0) {
            let inv_f0 = 1.0 / cents_to_hz(c.cents);
            let mut sum = 0.0f32;
            for p in peaks {
                let r = p.freq * inv_f0;
                let h = ((r + 0.5) as usize).min(top);
                let hf = h as f32;
                // strong enough and within ±50 cents of harmonic h
                let hit = (p.mag >= floor) & ((r - hf).abs() <= HARMONIC_TOLERANCE * hf);
                sum += p.mag * self.weight_by_h[h] * f32::from(u8::from(hit));
            }
            c.loudness = sum;
        }
    }

    /// Tracks the melody through all pushed frames and decides voicing.
    pub fn finish(self) -> Melody {
        let n = self.energy.len();
        let cands = &self.candidates;
        let count = |t: usize| {
            cands[t * CANDIDATES..(t + 1) * CANDIDATES]
                .iter()
                .take_while(|c| c.salience > 0.0)
                .count()
        };

        // --- Viterbi over the candidates, restarted after empty frames ---
        let mut choice: Vec<Option<u8>> = vec![None; n];
        let mut back = vec![0u8; n * CANDIDATES];
        let mut score = [0.0f32; CANDIDATES];
        let mut next = [0.0f32; CANDIDATES];
        let mut t = 0;
        while t < n {
            if count(t) == 0 {
                t += 1;
                continue;
            }
            let start = t;
            let k0 = count(t);
            let top = cands[t * CANDIDATES].salience;
            for j in 0..k0 {
                score[j] = (cands[t * CANDIDATES + j].salience / top).ln();
            }
            let mut k_prev = k0;
            t += 1;
            while t < n && count(t) > 0 {
                let k = count(t);
                let top = cands[t * CANDIDATES].salience;
                for j in 0..k {
                    let c = cands[t * CANDIDATES + j];
                    let mut best = f32::NEG_INFINITY;
                    let mut arg = 0u8;
                    for (i, s) in score.iter().enumerate().take(k_prev) {
                        let prev = cands[(t - 1) * CANDIDATES + i].cents;
                        let v = s - jump_cost(c.cents - prev);
                        if v > best {
                            best = v;
                            arg = i as u8;
                        }
                    }
                    next[j] = best + (c.salience / top).ln();
                    back[t * CANDIDATES + j] = arg;
                }
                score[..k].copy_from_slice(&next[..k]);
                k_prev = k;
                t += 1;
            }
            // backtrack start..t
            let mut j = (0..k_prev)
                .max_by(|&a, &b| score[a].total_cmp(&score[b]))
                .unwrap_or(0) as u8;
            for u in (start..t).rev() {
                choice[u] = Some(j);
                if u > start {
                    j = back[u * CANDIDATES + j as usize];
                }
            }
        }

        // --- pitch and ln-loudness of the path ---
        let mut cents = vec![0.0f32; n];
        let mut lloud = vec![f32::NEG_INFINITY; n];
        for u in 0..n {
            if let Some(j) = choice[u] {
                let c = cands[u * CANDIDATES + j as usize];
                cents[u] = c.cents;
                lloud[u] = c.loudness.max(1e-30).ln();
            }
        }
        // frames without candidates hold the nearest earlier (else later) guess
        let mut last = None;
        for u in 0..n {
            if choice[u].is_some() {
                last = Some(cents[u]);
            } else if let Some(c) = last {
                cents[u] = c;
            }
        }
        if let Some(first) = choice.iter().position(Option::is_some) {
            let c = cents[first];
            cents[..first].fill(c);
        }

        let voiced = self.voicing(&choice, &cents, &lloud);
        Melody {
            hop_s: self.hop_s,
            cents,
            voiced,
        }
    }

    /// Voicing decision on the tracked path (see the module docs).
    fn voicing(&self, choice: &[Option<u8>], cents: &[f32], lloud: &[f32]) -> Vec<bool> {
        let n = choice.len();
        let mut voiced = vec![false; n];
        // silent frames: far below the track's loud frames
        let mut loud: Vec<f32> = self.energy.iter().copied().filter(|&e| e > 0.0).collect();
        let Some(eref) = percentile(&mut loud, 0.95) else {
            return voiced;
        };
        let sounding: Vec<bool> = (0..n)
            .map(|u| choice[u].is_some() && self.energy[u] >= eref * SILENCE_RATIO)
            .collect();
        let mut vals: Vec<f32> = (0..n).filter(|&u| sounding[u]).map(|u| lloud[u]).collect();
        let Some(global) = percentile(&mut vals, VOICING_PERCENTILE) else {
            return voiced;
        };

        // local reference, per block of LOCAL_BLOCK frames: the same
        // percentile over the LOCAL_SPAN frames before the block's end and
        // over the LOCAL_SPAN frames after its start, the lower of the two
        // (so that a level change is followed on both sides of it); windows
        // cut short by the track's ends are not used
        let nblocks = n.div_ceil(LOCAL_BLOCK);
        let mut block_ref = vec![global; nblocks];
        let window_ref = |lo: usize, hi: usize, vals: &mut Vec<f32>| {
            vals.clear();
            vals.extend((lo..hi).filter(|&u| sounding[u]).map(|u| lloud[u]));
            percentile(vals, VOICING_PERCENTILE)
        };
        for (b, r) in block_ref.iter_mut().enumerate() {
            let (start, end) = (b * LOCAL_BLOCK, ((b + 1) * LOCAL_BLOCK).min(n));
            let left = (end >= LOCAL_SPAN)
                .then(|| window_ref(end - LOCAL_SPAN, end, &mut vals))
                .flatten();
            let right = (start + LOCAL_SPAN <= n)
                .then(|| window_ref(start, start + LOCAL_SPAN, &mut vals))
                .flatten();
            let local = match (left, right) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => global,
            };
            *r = local.max(global - LOCAL_FLOOR);
        }
        let local_ref = |u: usize| block_ref[u / LOCAL_BLOCK];

        // contours: runs of sounding frames with continuous pitch
        let mut u = 0;
        while u < n {
            if !sounding[u] {
                u += 1;
                continue;
            }
            let start = u;
            u += 1;
            while u < n && sounding[u] && (cents[u] - cents[u - 1]).abs() <= CONTOUR_BREAK {
                u += 1;
            }
            let mean = lloud[start..u].iter().sum::<f32>() / (u - start) as f32;
            let reference = local_ref((start + u) / 2);
            if mean >= reference - VOICING_MARGIN {
                voiced[start..u].fill(true);
            }
        }

        // remove short voiced blips
        let min_len = (MIN_VOICED_S / self.hop_s).round().max(1.0) as usize;
        let mut u = 0;
        while u < n {
            if !voiced[u] {
                u += 1;
                continue;
            }
            let start = u;
            while u < n && voiced[u] {
                u += 1;
            }
            if u - start < min_len {
                voiced[start..u].fill(false);
            }
        }
        voiced
    }
}

/// Cost of a pitch jump of `d` cents between consecutive frames.
fn jump_cost(d: f32) -> f32 {
    let a = d.abs();
    let mut c = JUMP_COST * ((a - FREE_JUMP) / (CAP_JUMP - FREE_JUMP)).clamp(0.0, 1.0);
    if (a - 1200.0).abs() < 80.0 {
        c += OCTAVE_COST;
    }
    c
}

/// MIDI cents of a frequency (A4 = 440 Hz = 6900).
pub fn hz_to_cents(hz: f32) -> f32 {
    6900.0 + 1200.0 * (hz / 440.0).log2()
}

/// Frequency in Hz of a pitch in MIDI cents.
pub fn cents_to_hz(cents: f32) -> f32 {
    440.0 * ((cents - 6900.0) / 1200.0).exp2()
}

/// The `q`-quantile (0..=1, nearest rank) of `v`, reordering `v`; `None` if empty.
fn percentile(v: &mut [f32], q: f32) -> Option<f32> {
    if v.is_empty() {
        return None;
    }
    let k = ((v.len() - 1) as f32 * q.clamp(0.0, 1.0)).round() as usize;
    let (_, x, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    Some(*x)
}

impl Melody {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.cents.len()
    }

    /// Whether there are no frames at all.
    pub fn is_empty(&self) -> bool {
        self.cents.is_empty()
    }

    /// Median pitch (MIDI cents) of the voiced frames, `None` if none is voiced.
    pub fn median_cents(&self) -> Option<f32> {
        let mut v = self.voiced_cents();
        percentile(&mut v, 0.5)
    }

    fn voiced_cents(&self) -> Vec<f32> {
        self.cents
            .iter()
            .zip(&self.voiced)
            .filter(|(_, &v)| v)
            .map(|(&c, _)| c)
            .collect()
    }

    /// Key-invariant contour for matching: the voiced pitch minus the track's
    /// median voiced pitch (cents), resampled to `rate_hz` samples per second.
    ///
    /// Sample `k` covers the frames in `[k / rate_hz, (k + 1) / rate_hz)`; it
    /// is the median of their voiced pitches if at least half of them are
    /// voiced, else `None`. Above the frame rate, the nearest frame is used.
    pub fn relative_contour(&self, rate_hz: f64) -> Vec<Option<f32>> {
        let n = self.len();
        let valid_rate = rate_hz > 0.0 && rate_hz.is_finite();
        if n == 0 || !valid_rate {
            return Vec::new();
        }
        let Some(median) = self.median_cents() else {
            let len = ((n as f64 * self.hop_s * rate_hz).round() as usize).max(1);
            return vec![None; len];
        };
        let duration = n as f64 * self.hop_s;
        let len = ((duration * rate_hz).round() as usize).max(1);
        let mut out = Vec::with_capacity(len);
        let mut buf = Vec::new();
        for k in 0..len {
            let lo = ((k as f64 / rate_hz) / self.hop_s).ceil() as usize;
            let hi = (((k + 1) as f64 / rate_hz) / self.hop_s).ceil() as usize;
            let (lo, hi) = (lo.min(n), hi.min(n));
            if lo >= hi {
                // finer than the frame rate: nearest frame
                let u = ((k as f64 / rate_hz / self.hop_s).round() as usize).min(n - 1);
                out.push(self.voiced[u].then(|| self.cents[u] - median));
                continue;
            }
            buf.clear();
            buf.extend((lo..hi).filter(|&u| self.voiced[u]).map(|u| self.cents[u]));
            if 2 * buf.len() >= hi - lo {
                out.push(percentile(&mut buf, 0.5).map(|c| c - median));
            } else {
                out.push(None);
            }
        }
        out
    }

    /// Share of frames that are voiced (0 for an empty melody).
    pub fn voiced_share(&self) -> f32 {
        if self.voiced.is_empty() {
            0.0
        } else {
            self.voiced.iter().filter(|&&v| v).count() as f32 / self.voiced.len() as f32
        }
    }

    /// The 5th and 95th percentiles of the voiced pitch (MIDI cents), `None`
    /// if nothing is voiced.
    pub fn range_cents(&self) -> Option<(f32, f32)> {
        let mut v = self.voiced_cents();
        let lo = percentile(&mut v, 0.05)?;
        let hi = percentile(&mut v, 0.95)?;
        Some((lo, hi))
    }

    /// Segments the voiced frames into notes: a note ends at an unvoiced frame
    /// or where the pitch leaves the note's running mean by more than 60 cents
    /// for at least 3 frames. Notes shorter than 50 ms are dropped; pitches are
    /// relative to the track's median voiced pitch.
    pub fn notes(&self) -> Vec<Note> {
        const LEAVE: f32 = 60.0;
        const CONFIRM: usize = 3;
        let Some(median) = self.median_cents() else {
            return Vec::new();
        };
        let min_len = (0.05 / self.hop_s).round().max(1.0) as usize;
        let n = self.len();
        let mut notes = Vec::new();
        let mut buf = Vec::new();
        let mut push = |start: usize, end: usize, buf: &mut Vec<f32>| {
            if end - start >= min_len {
                if let Some(c) = percentile(&mut buf[..], 0.5) {
                    notes.push(Note {
                        onset_s: start as f64 * self.hop_s,
                        duration_s: (end - start) as f64 * self.hop_s,
                        cents: c - median,
                    });
                }
            }
            buf.clear();
        };
        let mut u = 0;
        while u < n {
            if !self.voiced[u] {
                u += 1;
                continue;
            }
            let mut start = u;
            let mut sum = 0.0f32;
            while u < n && self.voiced[u] {
                let mean = if buf.is_empty() {
                    self.cents[u]
                } else {
                    sum / buf.len() as f32
                };
                let leaves =
                    |v: usize| v < n && self.voiced[v] && (self.cents[v] - mean).abs() > LEAVE;
                if !buf.is_empty() && (u..u + CONFIRM).all(leaves) {
                    push(start, u, &mut buf);
                    start = u;
                    sum = 0.0;
                }
                buf.push(self.cents[u]);
                sum += self.cents[u];
                u += 1;
            }
            push(start, u, &mut buf);
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stft::{find_peaks, Stft};
    use std::time::{Duration, Instant};

    const SR: f32 = 11025.0;

    struct XorShift(u64);
    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        /// Uniform in [0, 1).
        fn unit(&mut self) -> f32 {
            (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
        }
        fn range(&mut self, lo: f32, hi: f32) -> f32 {
            lo + (hi - lo) * self.unit()
        }
    }

    /// Runs the pipeline's front end (STFT, peaks) and the tracker; returns
    /// the melody and the CPU time of the melody stage alone (the fastest
    /// of 3 runs over the same peaks, as the machine is shared).
    fn track(signal: &[f32]) -> (Melody, Duration) {
        let params = AnalysisParams::default();
        let mut stft = Stft::new(params.fft_size, params.hop);
        let bin_hz = params.sample_rate as f32 / params.fft_size as f32;
        let mut peaks = Vec::with_capacity(64);
        let mut frames = Vec::new();
        stft.for_each_frame(signal, |_, mag| {
            find_peaks(
                mag,
                bin_hz,
                params.fmin_hz,
                params.fmax_hz,
                params.max_peaks,
                &mut peaks,
            );
            frames.push(peaks.clone());
        });
        let mut best = Duration::MAX;
        let mut melody = None;
        for _ in 0..3 {
            let t0 = Instant::now();
            let mut tracker = MelodyTracker::new(&params);
            tracker.reserve(frames.len());
            for f in &frames {
                tracker.push_frame(f);
            }
            melody = Some(tracker.finish());
            best = best.min(t0.elapsed());
        }
        (melody.expect("ran"), best)
    }

    /// Adds a harmonic tone with per-sample pitch `cents(t)` (seconds from
    /// the tone's start) to `out[start..end]`, with 10 ms attack / 30 ms release.
    fn add_tone(
        out: &mut [f32],
        start: usize,
        end: usize,
        amp: f32,
        harmonics: &[f32],
        cents: impl Fn(f32) -> f32,
    ) {
        let mut phase = 0.0f64;
        let attack = 0.01 * SR;
        let release = 0.03 * SR;
        for (i, x) in out[start..end].iter_mut().enumerate() {
            let t = i as f32 / SR;
            let f = cents_to_hz(cents(t));
            phase += f as f64 / SR as f64;
            phase -= phase.floor();
            let left = (end - start - i) as f32;
            let env = (i as f32 / attack).min(1.0) * (left / release).min(1.0);
            let mut s = 0.0f32;
            for (h, a) in harmonics.iter().enumerate() {
                let fh = f * (h + 1) as f32;
                if fh < 0.45 * SR {
                    s += a * (std::f64::consts::TAU * phase * (h + 1) as f64).sin() as f32;
                }
            }
            *x += amp * env * s;
        }
    }

    /// ~20 s of melody (harmonic tones with vibrato, ~20% rests) over chords
    /// of three quieter tones in a lower register, plus white noise at 10 dB
    /// SNR. Returns the signal, the true pitch per sample (`None` in rests)
    /// and the note boundaries (samples).
    fn synth(seed: u64) -> (Vec<f32>, Vec<Option<f32>>, Vec<usize>) {
        let mut rng = XorShift(seed);
        let len = (20.0 * SR) as usize;
        let mut music = vec![0.0f32; len];
        let mut truth = vec![None; len];
        let mut bounds = Vec::new();
        let melody_harm: Vec<f32> = (1..=8).map(|h| 1.0 / h as f32).collect();
        let chord_harm: Vec<f32> = (1..=6).map(|h| 1.0 / h as f32).collect();
        // melody
        let mut pos = 0usize;
        while pos < len {
            let dur = ((rng.range(0.2, 0.8) * SR) as usize).min(len - pos);
            let end = pos + dur;
            bounds.push(pos);
            if rng.unit() >= 0.2 {
                // semitone pitches between 196 Hz (G3) and 880 Hz (A5)
                let base = 100.0 * (55.0 + (rng.unit() * 27.0).floor());
                let depth = rng.range(0.0, 25.0);
                let rate = rng.range(4.5, 6.5);
                let vib = move |t: f32| base + depth * (std::f32::consts::TAU * rate * t).sin();
                add_tone(&mut music, pos, end, 1.0, &melody_harm, vib);
                for (i, tr) in truth[pos..end].iter_mut().enumerate() {
                    *tr = Some(vib(i as f32 / SR));
                }
            }
            pos = end;
        }
        bounds.push(len);
        // chords: major or minor triads rooted between 98 and 156 Hz (tones
        // up to 233 Hz), each tone -6 dB below the melody, 1-2.5 s each
        let mut pos = 0usize;
        while pos < len {
            let dur = ((rng.range(1.0, 2.5) * SR) as usize).min(len - pos);
            let root = 100.0 * (43.0 + (rng.unit() * 9.0).floor());
            let third = if rng.unit() < 0.5 { 300.0 } else { 400.0 };
            for iv in [0.0, third, 700.0] {
                add_tone(&mut music, pos, pos + dur, 0.5, &chord_harm, |_| root + iv);
            }
            pos += dur;
        }
        // white noise at 10 dB SNR
        let power = music.iter().map(|x| x * x).sum::<f32>() / len as f32;
        let noise_rms = (power / 10.0).sqrt();
        let scale = noise_rms * 3f32.sqrt(); // uniform [-1, 1) has variance 1/3
        let signal = music
            .iter()
            .map(|x| x + scale * (2.0 * rng.unit() - 1.0))
            .collect();
        (signal, truth, bounds)
    }

    /// Frame counts against the ground truth of [`synth`].
    #[derive(Default)]
    struct Score {
        /// Truly voiced frames, those with the pitch within 50 cents, and
        /// those estimated voiced.
        voiced: usize,
        correct: usize,
        recalled: usize,
        /// Truly unvoiced frames and those estimated voiced.
        unvoiced: usize,
        false_alarms: usize,
    }

    impl Score {
        fn add(&mut self, melody: &Melody, truth: &[Option<f32>], bounds: &[usize]) {
            let hop = AnalysisParams::default().hop;
            let guard = (0.05 * SR) as usize;
            for (i, (&est, &voiced)) in melody.cents.iter().zip(&melody.voiced).enumerate() {
                let centre = i * hop;
                // Scoring excludes frames centred within ±50 ms of a note or
                // rest boundary (the 186 ms window straddles both sides there).
                if bounds.iter().any(|&b| centre.abs_diff(b) <= guard) {
                    continue;
                }
                match truth[centre] {
                    Some(t) => {
                        self.voiced += 1;
                        self.correct += usize::from((est - t).abs() <= 50.0);
                        self.recalled += usize::from(voiced);
                    }
                    None => {
                        self.unvoiced += 1;
                        self.false_alarms += usize::from(voiced);
                    }
                }
            }
        }

        /// (raw pitch accuracy, voicing recall, voicing false alarm)
        fn rates(&self) -> (f64, f64, f64) {
            let v = self.voiced.max(1) as f64;
            (
                self.correct as f64 / v,
                self.recalled as f64 / v,
                self.false_alarms as f64 / self.unvoiced.max(1) as f64,
            )
        }
    }

    #[test]
    fn melody_over_chords_and_noise() {
        let hop = AnalysisParams::default().hop;
        let mut total = Score::default();
        let mut audio_s = 0.0f64;
        let mut spent = Duration::ZERO;
        for seed in [
            0x9E3779B97F4A7C15u64,
            0xD1B54A32D192ED03,
            0x243F6A8885A308D3,
        ] {
            let (signal, truth, bounds) = synth(seed);
            let (melody, dt) = track(&signal);
            audio_s += signal.len() as f64 / SR as f64;
            spent += dt;
            assert_eq!(melody.len(), signal.len().div_ceil(hop));
            let mut score = Score::default();
            score.add(&melody, &truth, &bounds);
            let (rpa, recall, fa) = score.rates();
            eprintln!(
                "seed {seed:#x}: RPA {rpa:.3}, recall {recall:.3}, false alarm {fa:.3} ({} voiced, {} unvoiced frames scored)",
                score.voiced, score.unvoiced
            );
            total.add(&melody, &truth, &bounds);
        }
        let (rpa, recall, fa) = total.rates();
        eprintln!(
            "melody: raw pitch accuracy {rpa:.3}, voicing recall {recall:.3}, voicing false alarm {fa:.3}"
        );
        eprintln!(
            "melody stage: {:.3} ms CPU per second of audio ({} build)",
            spent.as_secs_f64() * 1e3 / audio_s,
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
        );
        assert!(rpa >= 0.90, "raw pitch accuracy {rpa}");
        assert!(recall >= 0.90, "voicing recall {recall}");
        assert!(fa <= 0.15, "voicing false alarm {fa}");
    }

    #[test]
    fn follows_a_loudness_change() {
        // the same kind of mix, its second half 12 dB quieter: the local
        // voicing reference must follow (false alarms: 0.14 without the
        // step, the rest are rests of the loud half in the last ~1 s before
        // the step, where the reference already follows the quiet half)
        let (mut signal, truth, bounds) = synth(0x5DEECE66D);
        let half = signal.len() / 2;
        for x in &mut signal[half..] {
            *x *= 0.25;
        }
        let (melody, _) = track(&signal);
        let mut score = Score::default();
        score.add(&melody, &truth, &bounds);
        let (rpa, recall, fa) = score.rates();
        eprintln!("-12 dB second half: RPA {rpa:.3}, recall {recall:.3}, false alarm {fa:.3}");
        assert!(rpa >= 0.9 && recall >= 0.9 && fa <= 0.35);
    }

    #[test]
    fn pure_tone_and_silence() {
        // 2 s of silence, 3 s of a 440 Hz harmonic tone, 2 s of silence
        let len = (7.0 * SR) as usize;
        let mut signal = vec![0.0f32; len];
        let harm: Vec<f32> = (1..=6).map(|h| 0.7f32.powi(h - 1)).collect();
        let (a, b) = ((2.0 * SR) as usize, (5.0 * SR) as usize);
        add_tone(&mut signal, a, b, 0.3, &harm, |_| 6900.0);
        let (melody, _) = track(&signal);
        let hop = AnalysisParams::default().hop;
        let frame = |s: f32| (s * SR) as usize / hop;
        let inside = frame(2.2)..frame(4.8);
        for u in inside.clone() {
            assert!(melody.voiced[u], "frame {u} unvoiced");
            assert!(
                (melody.cents[u] - 6900.0).abs() < 5.0,
                "frame {u}: {}",
                melody.cents[u]
            );
        }
        for u in (0..frame(1.8)).chain(frame(5.2)..melody.len()) {
            assert!(!melody.voiced[u], "silent frame {u} voiced");
        }
        let share = melody.voiced_share();
        assert!((share - 3.0 / 7.0).abs() < 0.03, "voiced share {share}");
        let (lo, hi) = melody.range_cents().expect("voiced");
        assert!((lo - 6900.0).abs() < 5.0 && (hi - 6900.0).abs() < 5.0);
        // relative contour: 0 where voiced, None in the silences
        let contour = melody.relative_contour(10.0);
        assert_eq!(contour.len(), 70);
        assert!(contour[..18].iter().all(Option::is_none));
        assert!(contour[22..48]
            .iter()
            .all(|c| c.is_some_and(|c| c.abs() < 5.0)));
        assert!(contour[52..].iter().all(Option::is_none));
        let notes = melody.notes();
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!((notes[0].duration_s - 3.0).abs() < 0.2, "{notes:?}");

        // digital silence: nothing voiced, nothing panics
        let (silent, _) = track(&vec![0.0f32; 22050]);
        assert_eq!(silent.voiced_share(), 0.0);
        assert!(silent.range_cents().is_none());
        assert!(silent.relative_contour(10.0).iter().all(Option::is_none));
        assert!(silent.notes().is_empty());
        let (empty, _) = track(&[]);
        assert!(empty.is_empty() && empty.relative_contour(10.0).is_empty());
    }
}
