//! Deterministic synthetic music for tests, benchmarks and the demo: a seed
//! composes a piece (key, chords, bass, melody, rhythm), and a [`Render`]
//! plays it at any tempo, transposition and timbre. Nothing here is needed
//! to audit real music; it exists so that every test and the built-in demo
//! run on audio whose content is known exactly.

use std::collections::HashMap;

/// A small, fast, seedable PRNG (SplitMix64), so tests need no extra crate
/// and give the same audio on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// Approximately standard normal (sum of uniforms).
    pub fn normal(&mut self) -> f32 {
        (0..4).map(|_| self.uniform()).sum::<f32>() * 1.732 - 3.464
    }
}

/// Which part of the arrangement a note belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Voice {
    /// The lead line.
    Melody,
    /// Sustained chord tones.
    Chord,
    /// The bass line.
    Bass,
}

/// One note of a piece, in beats and MIDI pitch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    /// Onset in beats.
    pub start: f32,
    /// Duration in beats.
    pub dur: f32,
    /// MIDI pitch (60 = C4).
    pub midi: f32,
    /// Linear amplitude.
    pub vel: f32,
    /// The part it belongs to.
    pub voice: Voice,
}

/// A composed piece.
#[derive(Debug, Clone, PartialEq)]
pub struct Piece {
    /// All notes, any order.
    pub notes: Vec<Note>,
    /// Length in beats.
    pub beats: f32,
    /// The tempo it was composed for.
    pub bpm: f32,
}

/// Instrument colours: different harmonic spectra and envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timbre {
    /// Decaying, bright attack.
    Piano,
    /// Slow attack, sustained, rich.
    Strings,
    /// Steady, with strong odd harmonics.
    Organ,
    /// Short and percussive.
    Pluck,
}

impl Timbre {
    fn harmonics(self) -> &'static [f32] {
        match self {
            Timbre::Piano => &[1.0, 0.55, 0.35, 0.25, 0.15, 0.1, 0.07, 0.05],
            Timbre::Strings => &[1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.12, 0.1],
            Timbre::Organ => &[1.0, 0.2, 0.6, 0.1, 0.4, 0.05, 0.25],
            Timbre::Pluck => &[1.0, 0.8, 0.3, 0.4, 0.1, 0.15],
        }
    }

    fn envelope(self, t: f32, dur: f32) -> f32 {
        let (attack, release) = match self {
            Timbre::Piano => (0.005, 0.08),
            Timbre::Strings => (0.08, 0.12),
            Timbre::Organ => (0.01, 0.05),
            Timbre::Pluck => (0.002, 0.05),
        };
        let a = (t / attack).min(1.0);
        let body = match self {
            Timbre::Piano => (-2.5 * t).exp(),
            Timbre::Pluck => (-6.0 * t).exp(),
            _ => 1.0,
        };
        let r = if t > dur {
            (1.0 - (t - dur) / release).max(0.0)
        } else {
            1.0
        };
        a * body * r
    }

    fn release(self) -> f32 {
        match self {
            Timbre::Strings => 0.12,
            Timbre::Piano => 0.08,
            _ => 0.05,
        }
    }
}

/// How to play a piece.
#[derive(Debug, Clone, PartialEq)]
pub struct Render {
    /// Output sample rate in Hz.
    pub sample_rate: u32,
    /// Tempo multiplier (1.1 = 10 % faster).
    pub tempo: f32,
    /// Transposition in semitones.
    pub transpose: f32,
    /// Instrument of the melody.
    pub melody: Timbre,
    /// Instrument of chords and bass.
    pub accompaniment: Timbre,
    /// Add soft noise-burst percussion on the beats.
    pub drums: bool,
    /// Seconds of the piece to skip.
    pub offset_s: f32,
    /// Seconds to render (`None`: to the end).
    pub duration_s: Option<f32>,
}

impl Default for Render {
    fn default() -> Self {
        Render {
            sample_rate: 11_025,
            tempo: 1.0,
            transpose: 0.0,
            melody: Timbre::Piano,
            accompaniment: Timbre::Piano,
            drums: true,
            offset_s: 0.0,
            duration_s: None,
        }
    }
}

const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
const PROGRESSIONS: [[usize; 4]; 6] = [
    [0, 4, 5, 3],
    [0, 5, 3, 4],
    [0, 3, 4, 0],
    [5, 3, 0, 4],
    [0, 2, 3, 4],
    [1, 4, 0, 5],
];

/// Composes a piece of `bars` 4/4 bars from `seed`: a key, a chord
/// progression, a bass line, and a melody that moves mostly by step with
/// varied rhythms and some rests.
pub fn compose(seed: u64, bars: usize) -> Piece {
    let mut rng = Rng::new(seed);
    let tonic = 48 + rng.below(12) as i32; // C3..B3
    let scale = if rng.below(2) == 0 { MAJOR } else { MINOR };
    let bpm = 80.0 + rng.below(60) as f32;
    // a progression per 4-bar phrase, so long pieces do not repeat exactly
    let progs: Vec<[usize; 4]> = (0..bars.div_ceil(4))
        .map(|_| PROGRESSIONS[rng.below(PROGRESSIONS.len())])
        .collect();
    let degree = |d: i32| -> i32 {
        let o = d.div_euclid(7);
        tonic + 12 * o + scale[d.rem_euclid(7) as usize]
    };
    let mut notes = Vec::new();
    let mut mel_deg = 7 + rng.below(5) as i32; // an octave above the tonic
    let rhythms: [&[f32]; 6] = [
        &[1.0, 1.0, 1.0, 1.0],
        &[0.5, 0.5, 1.0, 1.0, 1.0],
        &[1.5, 0.5, 1.0, 1.0],
        &[2.0, 1.0, 1.0],
        &[0.5, 0.5, 0.5, 0.5, 2.0],
        &[1.0, 0.5, 0.5, 2.0],
    ];
    // a motif per section, repeated with variation, like real songs
    let motif_len = 4;
    let mut motifs: Vec<(Vec<f32>, Vec<i32>)> = Vec::new();
    for _ in 0..3 {
        let mut durs = Vec::new();
        let mut steps = Vec::new();
        for _ in 0..motif_len {
            let r = rhythms[rng.below(rhythms.len())];
            for &d in r {
                durs.push(d);
                steps.push(rng.below(5) as i32 - 2);
            }
        }
        motifs.push((durs, steps));
    }
    for bar in 0..bars {
        let prog = progs[bar / 4];
        let root = prog[bar % 4] as i32;
        let t0 = bar as f32 * 4.0;
        for (i, d) in [0, 2, 4].iter().enumerate() {
            notes.push(Note {
                start: t0,
                dur: 4.0,
                midi: degree(root + d) as f32,
                vel: 0.16 - 0.02 * i as f32,
                voice: Voice::Chord,
            });
        }
        for beat in 0..4 {
            let p = if beat == 2 { root + 4 } else { root };
            notes.push(Note {
                start: t0 + beat as f32,
                dur: 0.9,
                midi: (degree(p) - 12) as f32,
                vel: 0.22,
                voice: Voice::Bass,
            });
        }
    }
    // melody over the whole piece, phrase by phrase
    let mut t = 0.0f32;
    let mut phrase = 0usize;
    let end = bars as f32 * 4.0;
    while t < end {
        let (durs, steps) = &motifs[(phrase / 2 + phrase % 2) % motifs.len()];
        for (d, s) in durs.iter().zip(steps) {
            if t >= end {
                break;
            }
            let rest = rng.below(10) == 0;
            if !rest {
                mel_deg = (mel_deg + s).clamp(4, 16);
                notes.push(Note {
                    start: t,
                    dur: d * 0.92,
                    midi: degree(mel_deg) as f32,
                    vel: 0.45,
                    voice: Voice::Melody,
                });
            }
            t += d;
        }
        phrase += 1;
    }
    Piece {
        notes,
        beats: end,
        bpm,
    }
}

/// Plays `piece` as mono audio in [-1, 1].
pub fn render(piece: &Piece, r: &Render) -> Vec<f32> {
    let sr = r.sample_rate as f32;
    let spb = 60.0 / (piece.bpm * r.tempo.max(0.01)); // seconds per beat
    let total_s = piece.beats * spb + 0.5;
    let start_s = r.offset_s.max(0.0);
    let end_s = match r.duration_s {
        Some(d) => (start_s + d).min(total_s),
        None => total_s,
    };
    let n = ((end_s - start_s).max(0.0) * sr) as usize;
    let mut out = vec![0.0f32; n];
    let mut tables: HashMap<(Timbre, i32), Vec<f32>> = HashMap::new();
    for note in &piece.notes {
        let timbre = match note.voice {
            Voice::Melody => r.melody,
            _ => r.accompaniment,
        };
        let midi = note.midi + r.transpose;
        let on = note.start * spb;
        let dur = note.dur * spb;
        let off = on + dur + timbre.release();
        if off < start_s || on > end_s {
            continue;
        }
        let key = (timbre, (midi * 8.0).round() as i32);
        let freq = 440.0 * 2f32.powf((midi - 69.0) / 12.0);
        let table = tables
            .entry(key)
            .or_insert_with(|| wavetable(timbre, freq, sr));
        let first = ((on - start_s) * sr).max(0.0) as usize;
        let last = (((off - start_s) * sr) as usize).min(n);
        let step = freq / sr * TABLE as f32;
        let mut phase = ((first as f32 / sr + start_s - on) * freq).fract() * TABLE as f32;
        for (i, o) in out[first.min(last)..last].iter_mut().enumerate() {
            let t = (first + i) as f32 / sr + start_s - on;
            let idx = phase as usize % TABLE;
            *o += note.vel * timbre.envelope(t, dur) * table[idx];
            phase += step;
            if phase >= TABLE as f32 {
                phase -= TABLE as f32;
            }
        }
    }
    if r.drums {
        // the drum noise is the piece's own, seeded by its notes relative
        // to its lowest one (which a transposed or re-timed rendering
        // keeps): two pieces never share a bit-identical drum track, which
        // would be an audio copy
        let low = piece.notes.iter().map(|n| n.midi).fold(f32::MAX, f32::min);
        let rhythm = piece.notes.iter().fold(piece.notes.len() as u64, |h, n| {
            h.wrapping_mul(0x100_0000_01b3)
                ^ ((n.start * 64.0) as u64)
                ^ (((n.dur * 64.0) as u64) << 20)
                ^ ((((n.midi - low) * 8.0) as u64) << 40)
        });
        let mut rng = Rng::new(rhythm);
        let beats = piece.beats as usize;
        for b in 0..beats {
            let on = b as f32 * spb - start_s;
            if on < -0.2 || on > end_s - start_s {
                continue;
            }
            let level = if b % 2 == 0 { 0.12 } else { 0.07 };
            let first = (on.max(0.0) * sr) as usize;
            let len = (0.08 * sr) as usize;
            for i in 0..len {
                let j = first + i;
                if j >= n {
                    break;
                }
                let t = i as f32 / sr;
                out[j] += level * (-40.0 * t).exp() * (rng.uniform() * 2.0 - 1.0);
            }
        }
    }
    let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if peak > 0.95 {
        out.iter_mut().for_each(|x| *x *= 0.95 / peak);
    }
    out
}

const TABLE: usize = 2048;

/// One period of the timbre at `freq`, band-limited to below Nyquist.
fn wavetable(timbre: Timbre, freq: f32, sr: f32) -> Vec<f32> {
    let h = timbre.harmonics();
    let mut t = vec![0.0f32; TABLE];
    for (k, a) in h.iter().enumerate() {
        let m = (k + 1) as f32;
        if m * freq >= sr * 0.45 {
            break;
        }
        for (i, v) in t.iter_mut().enumerate() {
            *v += a * (std::f32::consts::TAU * m * i as f32 / TABLE as f32).sin();
        }
    }
    t
}

/// A sum of sines at `freqs` (Hz), each of amplitude 0.3, lasting `seconds`.
pub fn tones(freqs: &[f32], seconds: f32, sample_rate: u32) -> Vec<f32> {
    let sr = sample_rate as f32;
    (0..(seconds * sr) as usize)
        .map(|t| {
            freqs
                .iter()
                .map(|f| (std::f32::consts::TAU * f * t as f32 / sr).sin())
                .sum::<f32>()
                * 0.3
        })
        .collect()
}

/// Mono samples as the bytes of a 16-bit PCM WAV file.
pub fn wav_bytes(samples: &[f32], sample_rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&sample_rate.to_le_bytes());
    b.extend_from_slice(&(sample_rate * 2).to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    b
}

/// Interleaved samples as the bytes of a 32-bit float WAV file (format 3),
/// written as they are: no clamping, so tests can store any value.
pub fn float_wav_bytes(samples: &[f32], sample_rate: u32, channels: u16) -> Vec<u8> {
    let data_len = (samples.len() * 4) as u32;
    let mut w = Vec::with_capacity(44 + samples.len() * 4);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(4 + 8 + 16 + 8 + data_len).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    w.extend_from_slice(&channels.to_le_bytes());
    w.extend_from_slice(&sample_rate.to_le_bytes());
    w.extend_from_slice(&(sample_rate * 4 * u32::from(channels)).to_le_bytes());
    w.extend_from_slice(&(4 * channels).to_le_bytes());
    w.extend_from_slice(&32u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        w.extend_from_slice(&s.to_le_bytes());
    }
    w
}

/// A fingerprint with random contents and `windows` embedding windows,
/// made without analysing audio: filler that makes an index large enough
/// for the HNSW engine in tests, cheaply. It is valid (it writes, reads
/// back and indexes) but matches nothing musical.
pub fn random_fingerprint(seed: u64, windows: usize) -> crate::fingerprint::Fingerprint {
    use ndarray::Array2;
    let p = crate::AnalysisParams::default();
    let mut rng = Rng::new(seed);
    let frames = windows + 40;
    let mut a = |rows: usize, cols: usize| Array2::from_shape_fn((rows, cols), |_| rng.uniform());
    let chroma = a(frames, 12);
    let cens = a(frames / 2, 12);
    let bands = a(frames, p.bands).mapv(|x| x * 60.0 - 80.0);
    let mut embeddings = a(windows, crate::embed::dim()).mapv(|x| x - 0.5);
    for mut row in embeddings.rows_mut() {
        crate::embed::normalize(row.as_slice_mut().expect("contiguous"));
    }
    let n = frames * 10;
    let landmarks_index = (0..n as u32)
        .step_by(7)
        .map(|frame| crate::landmarks::LandmarkPeak {
            frame,
            bin: 6 + (rng.uniform() * 700.0) as u16,
        })
        .collect();
    crate::fingerprint::Fingerprint {
        params_hash: p.hash(),
        source: crate::decode::SourceInfo {
            sample_rate: 44_100,
            channels: 2,
            duration_s: frames as f64 / p.chroma_rate(),
            cancelled_s: 0.0,
        },
        tuning_cents: 3.0,
        chroma,
        cens,
        bands,
        melody: crate::melody::Melody {
            hop_s: p.melody_frame_seconds(),
            cents: (0..n).map(|i| 6000.0 + (i % 700) as f32).collect(),
            voiced: (0..n).map(|i| i % 3 != 0).collect(),
            loudness_db: (0..n).map(|i| -30.0 + (i % 25) as f32).collect(),
        },
        embeddings,
        landmarks_index,
        landmarks_query: Vec::new(),
    }
}

/// Adds white noise at `snr_db` relative to the signal's power.
pub fn add_noise(x: &mut [f32], snr_db: f32, seed: u64) {
    let p = x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32;
    let sigma = (p / 10f32.powf(snr_db / 10.0)).sqrt();
    let mut rng = Rng::new(seed);
    for v in x.iter_mut() {
        *v += sigma * rng.normal();
    }
}

/// A simple two-pole low-pass (biquad, Butterworth Q) at `cutoff` Hz.
pub fn low_pass(x: &mut [f32], cutoff: f32, sample_rate: u32) {
    let w = std::f32::consts::TAU * cutoff / sample_rate as f32;
    let (s, c) = w.sin_cos();
    let alpha = s / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
    let a0 = 1.0 + alpha;
    let b0 = (1.0 - c) / 2.0 / a0;
    let b1 = (1.0 - c) / a0;
    let a1 = -2.0 * c / a0;
    let a2 = (1.0 - alpha) / a0;
    let (mut x1, mut x2, mut y1, mut y2) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for v in x.iter_mut() {
        let y = b0 * *v + b1 * x1 + b0 * x2 - a1 * y1 - a2 * y2;
        x2 = x1;
        x1 = *v;
        y2 = y1;
        y1 = y;
        *v = y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_audio_and_tempo_scales_length() {
        let p = compose(7, 8);
        let a = render(&p, &Render::default());
        assert_eq!(a, render(&p, &Render::default()));
        let fast = render(
            &p,
            &Render {
                tempo: 1.25,
                ..Render::default()
            },
        );
        let ratio = a.len() as f32 / fast.len() as f32;
        assert!((ratio - 1.25).abs() < 0.05, "{ratio}");
        assert!(a.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        assert_ne!(compose(8, 8), p);
    }
}
