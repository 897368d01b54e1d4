//! Notes from the predominant melody: the representation a re-played tune
//! keeps.
//!
//! A frame contour ([`Melody`], 20 ms) also carries what a rendition
//! changes: vibrato, glides, the instrument's attack and decay, the length
//! of each note as played. A note sequence — onset, pitch, length — is what
//! a re-rendition keeps (query-by-humming systems match on it; see
//! `shared/design/matching.md`). [`segment`] cuts the voiced frames into
//! notes:
//!
//! 1. the voiced pitch is smoothed by a running median over [`SMOOTH_S`]
//!    (octave blips and attack transients);
//! 2. a note ends at an unvoiced gap longer than [`BRIDGE_S`], where the
//!    pitch leaves the note's median by more than [`BREAK_CENTS`] for
//!    [`CONFIRM_S`], or at a re-attack: the f0's loudness rising
//!    [`ONSET_RISE_DB`] above its minimum of the last [`ONSET_SPAN_S`]
//!    (a repeated note);
//! 3. notes shorter than [`MIN_NOTE_S`] are dropped, and a note's pitch is
//!    the median of its frames.
//!
//! A note longer than [`MAX_NOTE_S`] is a drone or a pedal, not a melody
//! note: it is kept (its onset still times the next note) but marked, and
//! the melodic n-grams and alignment skip it.

use crate::melody::Melody;

/// Span of the running median that smooths the voiced pitch, seconds.
pub const SMOOTH_S: f32 = 0.06;
/// Unvoiced runs up to this long inside a note are bridged, seconds
/// (voicing flickers in a note's decay).
pub const BRIDGE_S: f32 = 0.04;
/// A note ends where the pitch leaves its median by more than this (cents):
/// above a wide vibrato (±50 cents), below a semitone step.
pub const BREAK_CENTS: f32 = 70.0;
/// How long the pitch must stay away before the note is cut, seconds.
pub const CONFIRM_S: f32 = 0.04;
/// A rise of the f0's loudness by this much (dB) over its minimum of the
/// last [`ONSET_SPAN_S`] starts a new note at the same pitch.
pub const ONSET_RISE_DB: f32 = 6.0;
/// How far back a re-attack's rise is measured, seconds.
pub const ONSET_SPAN_S: f32 = 0.08;
/// Shortest note kept, in seconds (a sixteenth note at 200 bpm is 75 ms).
pub const MIN_NOTE_S: f32 = 0.06;
/// Longest melody note, in seconds: longer ones are drones or pedals.
pub const MAX_NOTE_S: f32 = 4.0;

/// A note of the predominant melody.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    /// Onset, seconds from the start of the track.
    pub onset_s: f32,
    /// Duration, seconds.
    pub duration_s: f32,
    /// Pitch, MIDI cents (A4 = 440 Hz = 6900): the median of its frames.
    pub cents: f32,
}

impl Note {
    /// Whether the note is longer than [`MAX_NOTE_S`] (a drone or pedal).
    pub fn is_drone(&self) -> bool {
        self.duration_s > MAX_NOTE_S
    }
}

/// Segments the voiced frames of `melody` into notes, in time order (see
/// the module docs).
pub fn segment(melody: &Melody) -> Vec<Note> {
    let n = melody.cents.len().min(melody.voiced.len());
    let hop = melody.hop_s as f32;
    if n == 0 || hop <= 0.0 {
        return Vec::new();
    }
    let frames = |secs: f32| ((secs / hop).round() as usize).max(1);
    let (bridge, confirm, onset_span) = (frames(BRIDGE_S), frames(CONFIRM_S), frames(ONSET_SPAN_S));
    let smooth = smoothed_pitch(melody, n, frames(SMOOTH_S) | 1);
    let loud = &melody.loudness_db;
    let min_frames = (MIN_NOTE_S / hop).round().max(1.0) as usize;
    let mut notes = Vec::new();
    let mut frames: Vec<f32> = Vec::new();
    let mut sorted: Vec<f32> = Vec::new();

    let mut u = 0;
    while u < n {
        if !melody.voiced[u] {
            u += 1;
            continue;
        }
        // a note from u on
        let start = u;
        let mut median = smooth[u];
        let mut last_voiced = u;
        let mut end = u;
        let mut v = u;
        while v < n {
            if !melody.voiced[v] {
                if v - last_voiced > bridge {
                    break;
                }
                v += 1;
                continue;
            }
            if v > start {
                // pitch leaves the note for CONFIRM_FRAMES voiced frames
                let leaves = (v..(v + confirm).min(n))
                    .all(|w| melody.voiced[w] && (smooth[w] - median).abs() > BREAK_CENTS)
                    && v + confirm <= n;
                if leaves || reattack(loud, start, v, onset_span) {
                    break;
                }
            }
            frames.push(smooth[v]);
            // the running median, refreshed as the note grows
            if frames.len() <= 8 || frames.len().is_multiple_of(8) {
                median = median_of(&frames, &mut sorted);
            }
            last_voiced = v;
            end = v + 1;
            v += 1;
        }
        if end - start >= min_frames && !frames.is_empty() {
            notes.push(Note {
                onset_s: start as f32 * hop,
                duration_s: (end - start) as f32 * hop,
                cents: median_of(&frames, &mut sorted),
            });
        }
        frames.clear();
        u = end.max(start + 1);
    }
    notes
}

/// The median of `x` (upper median for an even count), using `buf`.
fn median_of(x: &[f32], buf: &mut Vec<f32>) -> f32 {
    buf.clear();
    buf.extend_from_slice(x);
    let k = buf.len() / 2;
    *buf.select_nth_unstable_by(k, f32::total_cmp).1
}

/// Whether frame `v` of a note that started at `start` is a re-attack.
fn reattack(loud: &[f32], start: usize, v: usize, span: usize) -> bool {
    if loud.len() <= v || v < start + span {
        return false;
    }
    let low = loud[v - span..v]
        .iter()
        .copied()
        .fold(f32::INFINITY, f32::min);
    // the rise must be new: frame v - 1 had not risen as far yet
    loud[v] - low >= ONSET_RISE_DB && loud[v - 1] - low < ONSET_RISE_DB
}

/// The voiced pitch smoothed by a running median of `width` voiced frames
/// (unvoiced frames keep their value and are not used).
fn smoothed_pitch(melody: &Melody, n: usize, width: usize) -> Vec<f32> {
    let half = width / 2;
    let mut out = melody.cents[..n].to_vec();
    let mut buf = Vec::with_capacity(width);
    for (u, o) in out.iter_mut().enumerate() {
        if !melody.voiced[u] {
            continue;
        }
        buf.clear();
        let lo = u.saturating_sub(half);
        let hi = (u + half + 1).min(n);
        buf.extend(
            (lo..hi)
                .filter(|&w| melody.voiced[w])
                .map(|w| melody.cents[w]),
        );
        let k = buf.len() / 2;
        *o = *buf.select_nth_unstable_by(k, f32::total_cmp).1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A melody of `(pitch cents, frames, voiced)` runs, at 10 ms, with a
    /// flat loudness.
    fn melody(runs: &[(f32, usize, bool)]) -> Melody {
        let mut m = Melody {
            hop_s: 0.01,
            cents: Vec::new(),
            voiced: Vec::new(),
            loudness_db: Vec::new(),
        };
        for &(c, k, v) in runs {
            m.cents.extend(std::iter::repeat_n(c, k));
            m.voiced.extend(std::iter::repeat_n(v, k));
            m.loudness_db.extend(std::iter::repeat_n(-20.0, k));
        }
        m
    }

    #[test]
    fn steps_rests_and_blips() {
        // C4 300 ms, D4 200 ms, rest 100 ms, E4 250 ms with a 2-frame octave
        // blip and a 2-frame voicing gap, then a 30 ms note (dropped)
        let m = melody(&[
            (6000.0, 30, true),
            (6200.0, 20, true),
            (0.0, 10, false),
            (6400.0, 10, true),
            (7600.0, 2, true),
            (6400.0, 5, true),
            (6400.0, 2, false),
            (6400.0, 6, true),
            (0.0, 10, false),
            (6700.0, 3, true),
        ]);
        let notes = segment(&m);
        let got: Vec<(i32, i32, i32)> = notes
            .iter()
            .map(|n| {
                (
                    (n.onset_s * 100.0).round() as i32,
                    (n.duration_s * 100.0).round() as i32,
                    n.cents.round() as i32,
                )
            })
            .collect();
        assert_eq!(got, vec![(0, 30, 6000), (30, 20, 6200), (60, 25, 6400)]);
    }

    #[test]
    fn a_repeated_note_is_split_at_its_attack_and_vibrato_is_not() {
        let mut m = melody(&[(6900.0, 60, true)]);
        // vibrato ±40 cents
        for (u, c) in m.cents.iter_mut().enumerate() {
            *c += 40.0 * (u as f32 * 0.6).sin();
        }
        // a decay, then a re-attack at frame 30
        for (u, l) in m.loudness_db.iter_mut().enumerate() {
            *l = -10.0 - 0.4 * (u % 30) as f32;
        }
        let notes = segment(&m);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!((notes[1].onset_s - 0.30).abs() < 0.015, "{notes:?}");
        assert!(notes.iter().all(|n| (n.cents - 6900.0).abs() < 20.0));
    }

    #[test]
    fn drones_are_marked_and_nothing_voiced_gives_no_notes() {
        let m = melody(&[(4500.0, 600, true)]);
        let notes = segment(&m);
        assert_eq!(notes.len(), 1);
        assert!(notes[0].is_drone());
        assert!(segment(&melody(&[(6000.0, 100, false)])).is_empty());
        assert!(segment(&melody(&[])).is_empty());
    }
}
