//! Evidence for a reviewer: what the HTML report draws for a flagged input,
//! recomputed from the query's and the matched item's sequences after the
//! audit has decided.
//!
//! [`evidence`] takes the two [`Sequences`] and the reported [`Candidate`]
//! and returns an [`Evidence`]: a small CENS similarity matrix of the query
//! against the item around the matched ranges (under the candidate's
//! transposition, at most [`MAX_CELLS`] × [`MAX_CELLS`] cells, 8-bit), the
//! alignment path through it, both melody contours over the same ranges and
//! the landmark hits. Only flagged reports carry it, so pass rows stay
//! small.

use serde::{Deserialize, Serialize, Serializer};

use crate::audit::{Candidate, Report, Verdict};
use crate::fingerprint::Fingerprint;
use crate::index::Index;
use crate::params::AnalysisParams;
use crate::sequences::{Sequences, MELODY_RATE, UNVOICED};

/// Largest number of matrix cells along each axis: 80 cells draw a 20 s
/// match at the CENS rate (5 frames/s) with one cell per 1.25 frames, fine
/// enough to see a tempo change as a slope, and keep a flagged row's JSON
/// within about 20 kB.
pub const MAX_CELLS: usize = 80;

/// Context shown around each matched range, as a share of its length
/// (at least [`MIN_CONTEXT_S`]): enough to see where the match begins and
/// ends against what surrounds it.
pub const CONTEXT_SHARE: f32 = 0.25;

/// Smallest context around a matched range, seconds.
pub const MIN_CONTEXT_S: f32 = 2.0;

/// Most points kept per melody contour: one every 100 ms for 30 s, and
/// thinned evenly beyond (a plot 400 pixels wide shows little more).
pub const MAX_CONTOUR_POINTS: usize = 300;

/// Most landmark hits kept (thinned evenly beyond): a diagonal of 300
/// points is unmistakable, and each costs the page about 60 bytes.
pub const MAX_HITS: usize = 300;

/// A melody contour over a stretch of a track.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Contour {
    /// Time of the first point, seconds.
    pub start_s: f32,
    /// Seconds between points.
    pub step_s: f32,
    /// Predominant pitch in MIDI cents (A4 = 6900), `None` where unvoiced.
    #[serde(serialize_with = "one_line")]
    pub cents: Vec<Option<i16>>,
}

/// What the report draws for one flagged input and its best candidate.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// Item id of the candidate.
    pub item: usize,
    /// The query stretch the matrix rows cover, seconds `[start, end)`.
    pub query_range_s: (f32, f32),
    /// The item stretch the matrix columns cover, seconds `[start, end)`.
    pub item_range_s: (f32, f32),
    /// The whole item's length, seconds (for its time line).
    pub item_duration_s: f32,
    /// Matrix rows (query time, top to bottom).
    pub rows: usize,
    /// Matrix columns (item time, left to right).
    pub cols: usize,
    /// CENS cosine similarity of the query (shifted down by the
    /// transposition) with the item, `rows × cols`, row-major, 0–255 for
    /// 0–1; each cell the largest similarity of the frames it covers.
    #[serde(serialize_with = "one_line")]
    pub similarity: Vec<u8>,
    /// The alignment path as (query s, item s) points. For now the straight
    /// line between the matched ranges' ends.
    #[serde(serialize_with = "one_line")]
    pub path: Vec<(f32, f32)>,
    /// The query's melody over `query_range_s`.
    pub query_melody: Contour,
    /// The item's melody over `item_range_s`.
    pub item_melody: Contour,
    /// Landmark anchor pairs found at the item's best offset, as
    /// (query s, item s): same-recording evidence.
    #[serde(serialize_with = "one_line")]
    pub landmark_hits: Vec<(f32, f32)>,
}

/// Serializes an array on one line even inside pretty-printed JSON (a
/// pretty printer puts each of a matrix's 6,400 numbers on a line of its
/// own, five times the bytes).
fn one_line<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::Error;
    let text = serde_json::to_string(v).map_err(S::Error::custom)?;
    serde_json::value::RawValue::from_string(text)
        .map_err(S::Error::custom)?
        .serialize(s)
}

/// The evidence for `candidate`, the match of `query` in `item` (whose
/// sequences both come from fingerprints made with `params`), with the
/// landmark hits `landmark_hits` as (query s, item s) pairs.
///
/// The matrix covers the candidate's ranges with context around them
/// ([`CONTEXT_SHARE`], [`MIN_CONTEXT_S`]) clipped to both tracks; a track
/// without CENS frames gives an empty matrix (`rows` or `cols` 0).
pub fn evidence(
    query: &Sequences,
    item: &Sequences,
    candidate: &Candidate,
    params: &AnalysisParams,
    landmark_hits: &[(f32, f32)],
) -> Evidence {
    let rate = params.cens_rate() as f32;
    let span = |start: f32, end: f32, frames: usize| -> (usize, usize) {
        let len = (end - start).max(0.0);
        let pad = (CONTEXT_SHARE * len).max(MIN_CONTEXT_S);
        let lo = ((start - pad) * rate).floor().max(0.0) as usize;
        let hi = (((end + pad) * rate).ceil().max(0.0) as usize).min(frames);
        (lo.min(hi), hi)
    };
    let (q0, q1) = span(
        candidate.query_start_s,
        candidate.query_end_s,
        query.frames(),
    );
    let (i0, i1) = span(
        candidate.match_start_s,
        candidate.match_end_s,
        item.frames(),
    );
    let rot = (candidate.transpose_semitones.round() as i32).rem_euclid(12) as usize;
    let (rows, cols) = ((q1 - q0).min(MAX_CELLS), (i1 - i0).min(MAX_CELLS));
    let mut similarity = vec![0u8; rows * cols];
    // frame f of a range [a, b) falls in cell (f - a) * cells / (b - a)
    for qf in q0..q1 {
        let r = (qf - q0) * rows / (q1 - q0);
        let qv = &query.cens[qf * 12..qf * 12 + 12];
        for cf in i0..i1 {
            let c = (cf - i0) * cols / (i1 - i0);
            let cv = &item.cens[cf * 12..cf * 12 + 12];
            let mut d = 0u32;
            for k in 0..12 {
                d += qv[k] as u32 * cv[(k + 12 - rot) % 12] as u32;
            }
            let s = (d as f32 / (255.0 * 255.0)).clamp(0.0, 1.0);
            let cell = &mut similarity[r * cols + c];
            *cell = (*cell).max((s * 255.0).round() as u8);
        }
    }
    let to_s = |f: usize| f as f32 / rate;
    let query_range_s = (to_s(q0), to_s(q1));
    let item_range_s = (to_s(i0), to_s(i1));
    let hits = thin(landmark_hits, MAX_HITS);
    Evidence {
        item: candidate.item,
        query_range_s,
        item_range_s,
        item_duration_s: to_s(item.frames()),
        rows,
        cols,
        similarity,
        path: vec![
            (candidate.query_start_s, candidate.match_start_s),
            (candidate.query_end_s, candidate.match_end_s),
        ],
        query_melody: contour(&query.melody, query_range_s),
        item_melody: contour(&item.melody, item_range_s),
        landmark_hits: hits,
    }
}

/// The evidence of a finished report: for a flagged report, of its best
/// candidate (`query` is the query's sequences, `fp` its fingerprint, for
/// the landmark hits); `None` for a passed one or one without candidates.
pub fn of_report(
    report: &Report,
    fp: &Fingerprint,
    query: &Sequences,
    index: &Index,
) -> Option<Evidence> {
    if report.verdict != Verdict::Flag {
        return None;
    }
    let best = report.best()?;
    // the item was decoded for re-ranking already; a failure cannot happen
    // here that did not fail the audit first
    let item = &index.item(best.item).ok()?;
    let params = index.params();
    let mut pairs = Vec::new();
    crate::landmarks::pairs(
        &fp.landmarks_query,
        params.landmark_query.fan_out,
        &mut pairs,
    );
    let s = params.frame_seconds() as f32;
    let hits: Vec<(f32, f32)> = index
        .landmarks()
        .hits(&pairs, best.item as u32)
        .into_iter()
        .map(|(q, c)| (q as f32 * s, c as f32 * s))
        .collect();
    Some(evidence(query, item, best, params, &hits))
}

/// The stretch `range_s` of a 10 Hz melody, thinned to at most
/// [`MAX_CONTOUR_POINTS`].
fn contour(melody: &[i16], range_s: (f32, f32)) -> Contour {
    let r = MELODY_RATE as f32;
    let a = ((range_s.0 * r).floor().max(0.0) as usize).min(melody.len());
    let b = ((range_s.1 * r).ceil().max(0.0) as usize).clamp(a, melody.len());
    let step = (b - a).div_ceil(MAX_CONTOUR_POINTS).max(1);
    Contour {
        start_s: a as f32 / r,
        step_s: step as f32 / r,
        cents: melody[a..b]
            .iter()
            .step_by(step)
            .map(|&c| (c != UNVOICED).then_some(c))
            .collect(),
    }
}

/// At most `n` of `v`, evenly spaced, first and last kept.
fn thin<T: Copy>(v: &[T], n: usize) -> Vec<T> {
    if v.len() <= n {
        return v.to_vec();
    }
    if n < 2 {
        return v[..n].to_vec();
    }
    (0..n).map(|k| v[k * (v.len() - 1) / (n - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{audio_at_analysis_rate, Analyzer};
    use crate::audit::Raw;
    use crate::synth;

    fn sequences(x: Vec<f32>) -> Sequences {
        let p = AnalysisParams::default();
        let fp = Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap();
        Sequences::from_fingerprint(&fp, &p)
    }

    fn candidate(qs: f32, qe: f32, ms: f32, me: f32, transpose: f32) -> Candidate {
        Candidate {
            item: 3,
            path: "song.wav".into(),
            audio_score: 0.9,
            melody_score: 0.9,
            query_start_s: qs,
            query_end_s: qe,
            match_start_s: ms,
            match_end_s: me,
            transpose_semitones: transpose,
            tempo_ratio: 1.0,
            raw: Raw::default(),
        }
    }

    #[test]
    fn an_excerpt_lies_on_the_diagonal_of_its_matrix_even_transposed() {
        let piece = synth::compose(5, 16);
        let item = sequences(synth::render(&piece, &synth::Render::default()));
        // seconds 8-18 of the song, up 2 semitones
        let query = sequences(synth::render(
            &piece,
            &synth::Render {
                offset_s: 8.0,
                duration_s: Some(10.0),
                transpose: 2.0,
                ..synth::Render::default()
            },
        ));
        let p = AnalysisParams::default();
        let c = candidate(0.0, 10.0, 8.0, 18.0, 2.0);
        let e = evidence(&query, &item, &c, &p, &[(1.0, 9.0), (2.0, 10.0)]);
        assert!(e.rows > 10 && e.rows <= MAX_CELLS && e.cols <= MAX_CELLS);
        assert_eq!(e.similarity.len(), e.rows * e.cols);
        assert_eq!(e.item, 3);
        assert_eq!(e.path, vec![(0.0, 8.0), (10.0, 18.0)]);
        assert_eq!(e.landmark_hits.len(), 2);
        // the query covers itself whole; the item 8-18 s plus 2.5 s each side
        assert!(e.query_range_s.0 == 0.0 && (e.query_range_s.1 - 10.0).abs() < 0.5);
        assert!((e.item_range_s.0 - 5.5).abs() < 0.3 && (e.item_range_s.1 - 20.5).abs() < 0.3);
        // the cells on the matched diagonal are more similar than the rest
        let (mut on, mut n_on, mut off, mut n_off) = (0.0, 0, 0.0, 0);
        for r in 0..e.rows {
            let t = e.query_range_s.0
                + (r as f32 + 0.5) / e.rows as f32 * (e.query_range_s.1 - e.query_range_s.0);
            let want = t + 8.0; // item time
            for col in 0..e.cols {
                let u = e.item_range_s.0
                    + (col as f32 + 0.5) / e.cols as f32 * (e.item_range_s.1 - e.item_range_s.0);
                let v = e.similarity[r * e.cols + col] as f64;
                if (u - want).abs() < 0.4 {
                    on += v;
                    n_on += 1;
                } else if (u - want).abs() > 3.0 {
                    off += v;
                    n_off += 1;
                }
            }
        }
        let (on, off) = (on / n_on as f64, off / n_off as f64);
        assert!(
            on > 230.0 && on > off + 30.0,
            "diagonal {on:.0}, elsewhere {off:.0}"
        );
        // without the transposition the diagonal is lost
        let wrong = evidence(
            &query,
            &item,
            &candidate(0.0, 10.0, 8.0, 18.0, 0.0),
            &p,
            &[],
        );
        let mean = |e: &Evidence| {
            e.similarity.iter().map(|&v| v as f64).sum::<f64>() / e.similarity.len() as f64
        };
        assert!(mean(&wrong) < mean(&e), "{} vs {}", mean(&wrong), mean(&e));
        // the melody contours cover the ranges, voiced in parts
        let voiced = |c: &Contour| c.cents.iter().filter(|x| x.is_some()).count();
        assert!(voiced(&e.query_melody) > 20 && voiced(&e.item_melody) > 20);
        assert!((e.item_melody.start_s - e.item_range_s.0).abs() <= 0.1);
    }

    #[test]
    fn a_long_match_is_downsampled_and_empty_tracks_give_empty_evidence() {
        let piece = synth::compose(2, 40);
        let x = synth::render(&piece, &synth::Render::default());
        let s = sequences(x);
        let p = AnalysisParams::default();
        let len = s.frames() as f32 / p.cens_rate() as f32;
        let e = evidence(&s, &s, &candidate(0.0, len, 0.0, len, 0.0), &p, &[]);
        assert_eq!((e.rows, e.cols), (MAX_CELLS, MAX_CELLS));
        assert!(e.query_melody.cents.len() <= MAX_CONTOUR_POINTS);
        // identical tracks: the main diagonal is (nearly) 255
        let diag: f64 = (0..MAX_CELLS)
            .map(|i| e.similarity[i * MAX_CELLS + i] as f64)
            .sum::<f64>()
            / MAX_CELLS as f64;
        assert!(diag > 250.0, "{diag}");
        let empty = Sequences::default();
        let e = evidence(&empty, &s, &candidate(0.0, 5.0, 0.0, 5.0, 0.0), &p, &[]);
        assert_eq!(e.rows, 0);
        assert!(e.similarity.is_empty() && e.query_melody.cents.is_empty());
        // thinning keeps the ends
        let v: Vec<u32> = (0..1000).collect();
        let t = thin(&v, 300);
        assert_eq!((t.len(), t[0], t[299]), (300, 0, 999));
        assert_eq!(thin(&v[..5], 300).len(), 5);
    }

    #[test]
    fn evidence_round_trips_through_pretty_json_with_its_arrays_on_one_line() {
        let s = sequences(synth::render(
            &synth::compose(3, 8),
            &synth::Render::default(),
        ));
        let p = AnalysisParams::default();
        let e = evidence(
            &s,
            &s,
            &candidate(1.0, 9.0, 1.0, 9.0, 0.0),
            &p,
            &[(1.0, 1.0), (2.5, 2.5)],
        );
        let text = serde_json::to_string_pretty(&e).unwrap();
        assert!(text.lines().count() < 30, "{text}");
        assert!(
            text.contains("\"landmark_hits\": [[1.0,1.0],[2.5,2.5]]"),
            "{text}"
        );
        let back: Evidence = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }
}
