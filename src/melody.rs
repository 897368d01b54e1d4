//! Predominant melody of polyphonic music: a simplified, fast Melodia
//! (Salamon & Gómez 2012).
//!
//! The stage works from the spectral peaks of its own STFT
//! (`melody_fft_size` = 1024 points, 93 ms, every `melody_hop` = 20 ms; see
//! [`crate::stft::find_peaks`]), short enough to resolve notes of 100 ms:
//!
//! 1. **Salience** ([`MelodyTracker::push_frame`]): harmonic summation on a
//!    log-frequency grid (`melody_bin_cents` = 10 cents, `melody_fmin_hz` 55 Hz
//!    to `melody_fmax_hz` 1760 Hz: 601 bins). Every peak `(f, a)` within 40 dB
//!    of the frame's strongest one adds `sqrt(a w) * alpha^(h-1)` to the
//!    candidate f0 `f / h` for `h = 1..=melody_harmonics`, spread over ±1
//!    semitone with a `cos²` weight. The weight `w` is the product of two:
//!    the peak's *tonality* (how far it stands above the spectrum around it,
//!    [`crate::stft::Peak::tonality`]: 0 up to [`TONAL_LO_DB`], 1 from
//!    [`TONAL_HI_DB`]), so noise, breath and cymbals add nothing; and an
//!    *equal-loudness* weight (A-weighting), as Melodia filters its input,
//!    so a bass line's many strong harmonics do not outvote the lead line.
//!    The spreading is done as one convolution per frame. The 5 strongest
//!    salience maxima of each frame whose f0 itself sounds (a tonal peak
//!    within ±50 cents: no virtual roots of chords, no sub-octaves) are kept,
//!    with each one's *loudness*: the weighted magnitudes of the peaks within
//!    ±50 cents of its harmonics. The grid buffers are allocated once in
//!    [`MelodyTracker::new`].
//! 2. **Tracking** ([`MelodyTracker::finish`]): Viterbi over those candidates,
//!    with a frame score `ln(salience / frame's best salience)` and a cost on
//!    the pitch jump between frames (free up to 50 cents, growing linearly to
//!    1.2 at 250 cents and more, plus 0.8 for a jump of an octave ± 80 cents,
//!    the typical error). Frames without any candidate restart the tracking.
//! 3. **Voicing**: the path is cut into contours where its pitch jumps by more
//!    than 80 cents. A contour is voiced when two tests hold. The *absolute*
//!    one: the f0's tonal harmonics carry at least [`MIN_HARMONIC_SHARE`] of
//!    the contour's spectral-peak magnitude (harmonicity: white noise,
//!    dithered silence and room tone never pass it, whatever their level).
//!    The *relative* one: the contour's peak ln-loudness is at least the
//!    reference minus 0.7 (6 dB); the reference is the 90th percentile of the
//!    path's ln-loudness over the 5 s before and the 5 s after each second of
//!    the track (the lower of the two, so that level changes are followed),
//!    never below the whole track's one minus 1.5. Accompaniment left alone
//!    in the melody's rests (chords 6 dB and more below it) is thus unvoiced.
//!    Voiced runs shorter than 60 ms are removed, and frames 40 dB below the
//!    track's loud frames are never voiced.
//!
//! [`crate::notes::segment`] cuts the result into notes for matching.

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

/// Tonality (dB above the local spectral floor, [`Peak::tonality`]) below
/// which a peak adds nothing to the salience: a maximum of white noise
/// stands 5–13 dB above its floor (10th–90th percentile), one in a
/// thousand 20 dB.
pub const TONAL_LO_DB: f32 = 10.0;
/// Tonality at and above which a peak counts fully: half the partials of a
/// decaying piano note and 80–90 % of a sustained wind note's stand higher.
/// Between the two the weight rises linearly.
pub const TONAL_HI_DB: f32 = 20.0;
/// A contour is voiced only if its f0's tonal harmonics carry at least this
/// share of its frames' spectral-peak magnitude, on average. This is the
/// absolute test (harmonicity) beside the relative one below: in white
/// noise, dithered silence or a cymbal the tonal share stays under 0.05,
/// whatever the level; a melody over chords or drums holds 0.2 and more.
pub const MIN_HARMONIC_SHARE: f32 = 0.12;

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
/// A contour is voiced if its peak ln-loudness is at least the reference
/// (a high percentile of the path's ln-loudness) minus this margin (6 dB:
/// the peak, not the mean, so that a decaying piano note is voiced whole).
const VOICING_MARGIN: f32 = 0.7;
/// Percentile of the path's ln-loudness used as the voicing reference.
const VOICING_PERCENTILE: f32 = 0.9;
/// Length (seconds) of the one-sided local voicing reference windows.
const LOCAL_SPAN_S: f64 = 5.0;
/// Seconds per block of the local voicing reference.
const LOCAL_BLOCK_S: f64 = 1.0;
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
    /// Loudness of the tracked f0 in each frame: its tonal harmonics'
    /// magnitude in dB ([`SILENT_DB`] where there was nothing to track).
    /// Note segmentation reads attacks from it.
    pub loudness_db: Vec<f32>,
}

/// [`Melody::loudness_db`] of a frame with no f0 candidate.
pub const SILENT_DB: f32 = -200.0;

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
    /// [`tonal_weight`] × [`equal_loudness`] of each peak of the current frame.
    weights: Vec<f32>,
    /// [`equal_loudness`] of each peak of the current frame.
    loudness_weights: Vec<f32>,
}

/// The equal-loudness weight of a partial at `hz` (linear magnitude
/// factor): the IEC 61672 A-weighting, an approximation of the inverse
/// 40-phon equal-loudness contour, −19 dB at 100 Hz, −3 dB at 500 Hz, 0 at
/// 1 kHz. Melodia filters its input by an equal-loudness curve for the same
/// reason (Salamon & Gómez 2012): a bass line is loud in the spectrum, and
/// its many harmonics make a large harmonic sum, but listeners hear the lead
/// line above it.
#[inline]
fn equal_loudness(hz: f32) -> f32 {
    let f2 = hz * hz;
    let num = 12_194.0f32.powi(2) * f2 * f2;
    let den = (f2 + 20.6f32.powi(2))
        * ((f2 + 107.7f32.powi(2)) * (f2 + 737.9f32.powi(2))).sqrt()
        * (f2 + 12_194.0f32.powi(2));
    // +2.0 dB normalises the curve to 1 at 1 kHz
    1.2589 * num / den
}

/// The weight of a peak of tonality `t` (linear ratio) in the salience:
/// 0 up to [`TONAL_LO_DB`], 1 from [`TONAL_HI_DB`], linear in dB between.
#[inline]
fn tonal_weight(t: f32) -> f32 {
    // 20 log10(t) = (20 / ln 10) ln(t)
    let db = 8.685_89 * crate::stft::fast_ln(t.max(1e-12));
    ((db - TONAL_LO_DB) / (TONAL_HI_DB - TONAL_LO_DB)).clamp(0.0, 1.0)
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
            hop_s: params.melody_frame_seconds(),
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
            weights: Vec::with_capacity(64),
            loudness_weights: Vec::with_capacity(64),
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
            self.loudness_weights.clear();
            self.loudness_weights
                .extend(peaks.iter().map(|p| equal_loudness(p.freq)));
            self.weights.clear();
            self.weights.extend(
                peaks
                    .iter()
                    .zip(&self.loudness_weights)
                    .map(|(p, &l)| tonal_weight(p.tonality) * l),
            );
            energy = self.salience_of(peaks, top * PEAK_RANGE);
            if energy > 0.0 {
                self.maxima(peaks, top * PEAK_RANGE, &mut best);
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
        for ((p, &tw), &l) in peaks.iter().zip(&self.weights).zip(&self.loudness_weights) {
            let usable = p.mag >= floor && p.freq > 0.0 && p.freq.is_finite();
            if !usable {
                continue;
            }
            energy += p.mag * l;
            if tw == 0.0 {
                continue;
            }
            // harmonic numbers h that put f / h on the grid
            let h_lo = ((p.freq / f_hi).ceil() as usize).max(1);
            let h_hi = ((p.freq / f_lo) as usize).min(harmonics);
            if h_lo > h_hi {
                continue;
            }
            let amp = (p.mag * tw).sqrt();
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
    fn maxima(&self, peaks: &[Peak], floor: f32, best: &mut [Candidate; CANDIDATES]) {
        let grid = &self.salience;
        // the f0 must sound itself: a tonal peak within ±50 cents of it.
        // A chord's virtual root (C3 under C4-E4-G4, which collects their
        // harmonics) and the sub-octaves of a tone have none.
        let sounds = |cents: f32| {
            let f0 = cents_to_hz(cents);
            let tol = HARMONIC_TOLERANCE * f0;
            peaks
                .iter()
                .zip(&self.weights)
                .any(|(p, &w)| w > 0.0 && p.mag >= floor && (p.freq - f0).abs() <= tol)
        };
        crate::stft::for_each_local_max(grid, 1, self.bins, 0.0, |b| {
            let s = grid[b];
            if s > best[CANDIDATES - 1].salience
                && sounds(self.cents0 + (b - 1) as f32 * self.bin_cents)
            {
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

    /// Sets the linear harmonic loudness of each candidate (tonal peaks
    /// only, each weighted by [`tonal_weight`]).
    fn loudness(&self, peaks: &[Peak], floor: f32, best: &mut [Candidate; CANDIDATES]) {
        // branch-free: weight_by_h is 0 for h = 0 and h > H
        let top = self.weight_by_h.len() - 1;
        for c in best.iter_mut().filter(|c| c.salience > 0.0) {
            let inv_f0 = 1.0 / cents_to_hz(c.cents);
            let mut sum = 0.0f32;
            for (p, &tw) in peaks.iter().zip(&self.weights) {
                let r = p.freq * inv_f0;
                let h = ((r + 0.5) as usize).min(top);
                let hf = h as f32;
                // strong enough and within ±50 cents of harmonic h
                let hit = (p.mag >= floor) & ((r - hf).abs() <= HARMONIC_TOLERANCE * hf);
                sum += p.mag * tw * self.weight_by_h[h] * f32::from(u8::from(hit));
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
        // ln -> dB
        let loudness_db = lloud
            .iter()
            .map(|&l| {
                if l.is_finite() {
                    (l * 8.685_89).max(SILENT_DB)
                } else {
                    SILENT_DB
                }
            })
            .collect();
        Melody {
            hop_s: self.hop_s,
            cents,
            voiced,
            loudness_db,
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

        // local reference, per block of local_block frames: the same
        // percentile over the local_span frames before the block's end and
        // over the local_span frames after its start, the lower of the two
        // (so that a level change is followed on both sides of it); windows
        // cut short by the track's ends are not used
        let frames = |secs: f64| ((secs / self.hop_s).round() as usize).max(1);
        let (local_span, local_block) = (frames(LOCAL_SPAN_S), frames(LOCAL_BLOCK_S));
        let nblocks = n.div_ceil(local_block);
        let mut block_ref = vec![global; nblocks];
        let window_ref = |lo: usize, hi: usize, vals: &mut Vec<f32>| {
            vals.clear();
            vals.extend((lo..hi).filter(|&u| sounding[u]).map(|u| lloud[u]));
            percentile(vals, VOICING_PERCENTILE)
        };
        for (b, r) in block_ref.iter_mut().enumerate() {
            let (start, end) = (b * local_block, ((b + 1) * local_block).min(n));
            let left = (end >= local_span)
                .then(|| window_ref(end - local_span, end, &mut vals))
                .flatten();
            let right = (start + local_span <= n)
                .then(|| window_ref(start, start + local_span, &mut vals))
                .flatten();
            let local = match (left, right) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => global,
            };
            *r = local.max(global - LOCAL_FLOOR);
        }
        let local_ref = |u: usize| block_ref[u / local_block];

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
            let peak = lloud[start..u]
                .iter()
                .copied()
                .fold(f32::NEG_INFINITY, f32::max);
            let reference = local_ref((start + u) / 2);
            // the absolute test: the f0's tonal harmonics explain a real
            // share of what sounds
            let share = (start..u)
                .map(|v| (lloud[v].exp() / self.energy[v].max(1e-30)).min(1.0))
                .sum::<f32>()
                / (u - start) as f32;
            if peak >= reference - VOICING_MARGIN && share >= MIN_HARMONIC_SHARE {
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
        let mut stft = Stft::new(params.melody_fft_size, params.melody_hop);
        let bin_hz = params.sample_rate as f32 / params.melody_fft_size as f32;
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
            let hop = AnalysisParams::default().melody_hop;
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
        let hop = AnalysisParams::default().melody_hop;
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
        let hop = AnalysisParams::default().melody_hop;
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
        let notes = crate::notes::segment(&melody);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!((notes[0].duration_s - 3.0).abs() < 0.2, "{notes:?}");
        assert!((notes[0].cents - 6900.0).abs() < 5.0, "{notes:?}");

        // digital silence: nothing voiced, nothing panics
        let (silent, _) = track(&vec![0.0f32; 22050]);
        assert_eq!(silent.voiced_share(), 0.0);
        assert!(silent.range_cents().is_none());
        assert!(crate::notes::segment(&silent).is_empty());
        let (empty, _) = track(&[]);
        assert!(empty.is_empty());
    }
}
