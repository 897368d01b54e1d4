//! Similarity kernels of re-ranking: how well one query frame (or note)
//! matches one candidate frame (or note). Each is a plain function; the
//! alignment ([`crate::align`]) walks their cells and the score model
//! ([`crate::score`]) reads what it found.
//!
//! * **Harmony** ([`cens_similarity`], [`HarmonyCells`]): the dot product of
//!   two CENS frames under a transposition, averaged over three frames
//!   along the diagonal, compared with a fixed similarity ([`CELL_TAU`]).
//! * **Notes** ([`note_cell`]): the pitch-class distance of two melodic
//!   events under a transposition — a match, a step (a varied note), or a
//!   mismatch.
//! * **Band energies** ([`band_agreement`]): the correlation of the log
//!   band energies along a path, which only the same recording has.
//! * **Keys** ([`best_rotations`], [`best_transpositions`]): which
//!   transpositions to try, from chroma or note pitch-class profiles
//!   (the optimal transposition index of Serrà et al. 2008).

use crate::ngrams::Event;
use crate::sequences::Sequences;

/// CENS similarity (three-frame average) above which a harmony cell counts
/// as a match.
pub const CELL_TAU: f32 = 0.8;
/// Similarity per unit of harmony cell score.
pub const CELL_SCALE: f32 = 0.05;
/// Largest harmony cell score (a similarity of 1.0).
pub const CELL_MAX: f32 = 4.0;
/// Smallest harmony cell score.
pub const CELL_MIN: f32 = -2.0;

/// Note cell: the same pitch class (within ±50 cents after transposition).
pub const NOTE_MATCH: f32 = 1.0;
/// Note cell: a semitone or a tone away — a varied note, or a tracker's
/// slip onto a neighbour; weakly against a match.
pub const NOTE_STEP: f32 = -0.4;
/// Note cell: anything else.
pub const NOTE_MISMATCH: f32 = -1.0;
/// Half-width (cents) of a pitch-class match.
pub const NOTE_TOLERANCE: f32 = 50.0;

/// Frame similarities of quantised CENS (`nq × 12` and `nc × 12`, ×255),
/// query class `k` against candidate class `k − rot`, into `out`
/// (`nq × nc`, row-major, in [0, 1]).
///
/// `rotated` is a reusable buffer (the candidate rotated once, so that the
/// inner loop is a plain dot product).
pub fn cens_similarity(q: &[u8], c: &[u8], rot: usize, rotated: &mut Vec<u8>, out: &mut Vec<f32>) {
    let (nq, nc) = (q.len() / 12, c.len() / 12);
    out.clear();
    out.resize(nq * nc, 0.0);
    rotate_cens(c, rot, rotated);
    for (i, qi) in q.chunks_exact(12).enumerate() {
        let row = &mut out[i * nc..(i + 1) * nc];
        for (o, cj) in row.iter_mut().zip(rotated.chunks_exact(12)) {
            *o = cens_dot(qi, cj);
        }
    }
}

/// The similarity of two quantised CENS frames (12 values ×255 each): their
/// dot product, in [0, 1].
#[inline]
fn cens_dot(a: &[u8], b: &[u8]) -> f32 {
    let mut d = 0u32;
    for k in 0..12 {
        d += a[k] as u32 * b[k] as u32;
    }
    d as f32 / (255.0 * 255.0)
}

/// The candidate's quantised CENS rotated so that its class `k` lines up
/// with the query's class `k + rot` (what [`cens_similarity`] compares),
/// into `out`.
pub fn rotate_cens(c: &[u8], rot: usize, out: &mut Vec<u8>) {
    out.clear();
    out.extend(
        c.chunks_exact(12)
            .flat_map(|f| (0..12).map(move |k| f[(k + 12 - rot) % 12])),
    );
}

/// A harmony cell score from a mean frame similarity.
#[inline]
fn cell_score(mean: f32) -> f32 {
    ((mean - CELL_TAU) / CELL_SCALE).clamp(CELL_MIN, CELL_MAX)
}

/// The harmony cell at (`i`, `j`) of an `nq × nc` grid whose frame
/// similarities `sim` gives: the mean of the cell and its two diagonal
/// neighbours (those inside the grid), scored by [`cell_score`].
#[inline]
fn diagonal_cell(
    sim: impl Fn(usize, usize) -> f32,
    nq: usize,
    nc: usize,
    i: usize,
    j: usize,
) -> f32 {
    let mut sum = sim(i, j);
    let mut n = 1.0;
    if i > 0 && j > 0 {
        sum += sim(i - 1, j - 1);
        n += 1.0;
    }
    if i + 1 < nq && j + 1 < nc {
        sum += sim(i + 1, j + 1);
        n += 1.0;
    }
    cell_score(sum / n)
}

/// The harmony cell score at (`i`, `j`) computed from the CENS frames
/// themselves (`q` the query's, `rotated` the candidate's after
/// [`rotate_cens`]): the same value as [`HarmonyCells::cell`] over
/// [`cens_similarity`], without the `nq × nc` matrix, for alignments
/// that visit only a band of it (long inputs: memory stays linear).
#[inline]
pub fn harmony_cell(q: &[u8], rotated: &[u8], i: usize, j: usize) -> f32 {
    let (nq, nc) = (q.len() / 12, rotated.len() / 12);
    let sim = |i: usize, j: usize| cens_dot(&q[i * 12..i * 12 + 12], &rotated[j * 12..j * 12 + 12]);
    diagonal_cell(sim, nq, nc, i, j)
}

/// Harmony cell scores over a similarity matrix (see [`cens_similarity`]):
/// the mean of a cell and its two diagonal neighbours, then
/// `(mean − CELL_TAU) / CELL_SCALE` clipped to [`CELL_MIN`, `CELL_MAX`].
pub struct HarmonyCells<'a> {
    /// The similarity matrix, `nq × nc`.
    pub sim: &'a [f32],
    /// Query frames.
    pub nq: usize,
    /// Candidate frames.
    pub nc: usize,
}

impl HarmonyCells<'_> {
    /// The cell score at (`i`, `j`).
    #[inline]
    pub fn cell(&self, i: usize, j: usize) -> f32 {
        let (sim, nc) = (self.sim, self.nc);
        diagonal_cell(|i, j| sim[i * nc + j], self.nq, nc, i, j)
    }

    /// Every cell score, row-major into `out` (`nq × nc`): the same values
    /// as [`HarmonyCells::cell`], computed row by row so that the inner loop
    /// has no branch and vectorises.
    pub fn scores_into(&self, out: &mut Vec<f32>) {
        let (sim, nq, nc) = (self.sim, self.nq, self.nc);
        out.clear();
        out.resize(nq * nc, 0.0);
        if nq == 0 || nc == 0 {
            return;
        }
        for i in 0..nq {
            let row = &sim[i * nc..(i + 1) * nc];
            let o = &mut out[i * nc..(i + 1) * nc];
            let up = (i > 0).then(|| &sim[(i - 1) * nc..i * nc]);
            let down = (i + 1 < nq).then(|| &sim[(i + 1) * nc..(i + 2) * nc]);
            match (up, down) {
                (Some(u), Some(d)) if nc >= 2 => {
                    // interior columns 1..nc-1 have both neighbours
                    for j in 1..nc - 1 {
                        o[j] = cell_score((u[j - 1] + row[j] + d[j + 1]) / 3.0);
                    }
                    o[0] = self.cell(i, 0);
                    o[nc - 1] = self.cell(i, nc - 1);
                }
                _ => {
                    for (j, v) in o.iter_mut().enumerate() {
                        *v = self.cell(i, j);
                    }
                }
            }
        }
    }
}

/// The note cell of query pitch `q` and candidate pitch `c` (MIDI cents)
/// when the query is `transpose` cents higher: [`NOTE_MATCH`] for the same
/// pitch class, [`NOTE_STEP`] for a neighbour within a tone, else
/// [`NOTE_MISMATCH`]. Octaves are ignored (trackers slip by octaves, and
/// arrangements move lines by octaves).
#[inline]
pub fn note_cell(q: f32, c: f32, transpose: f32) -> f32 {
    note_cell_classes(pitch_class_cents(q - transpose), pitch_class_cents(c))
}

/// A pitch in cents reduced modulo the octave, in `[0, 1200)`.
#[inline]
pub fn pitch_class_cents(cents: f32) -> f32 {
    cents.rem_euclid(1200.0)
}

/// [`note_cell`] of two pitches already reduced by [`pitch_class_cents`]
/// (the query's with the transposition taken off): the note alignment's
/// innermost loop, so the reduction is done once per event, not per cell.
#[inline]
pub fn note_cell_classes(q: f32, c: f32) -> f32 {
    let d = (q - c).abs();
    let d = d.min(1200.0 - d);
    if d <= NOTE_TOLERANCE {
        NOTE_MATCH
    } else if d <= 200.0 + NOTE_TOLERANCE {
        NOTE_STEP
    } else {
        NOTE_MISMATCH
    }
}

/// The `n` rotations `r` that best match the query's chroma profile to the
/// candidate's, comparing query class `k` with candidate class `k - r`.
pub fn best_rotations(q: &[u8], c: &[u8], n: usize) -> Vec<usize> {
    let profile = |x: &[u8]| {
        let mut p = [0f32; 12];
        for f in x.chunks_exact(12) {
            for k in 0..12 {
                p[k] += f[k] as f32;
            }
        }
        p
    };
    top_rotations(&profile(q), &profile(c), n)
}

/// The `n` transpositions (semitones, 0..12, query minus candidate) whose
/// note pitch-class profiles agree best, each event weighted by the time to
/// the next one (at most 1 s).
pub fn best_transpositions(q: &[Event], c: &[Event], n: usize) -> Vec<usize> {
    let profile = |e: &[Event]| {
        let mut p = [0f32; 12];
        for (k, x) in e.iter().enumerate() {
            let w = e
                .get(k + 1)
                .map_or(0.25, |y| (y.onset_s - x.onset_s).clamp(0.05, 1.0));
            let pc = (x.cents / 100.0).round().rem_euclid(12.0) as usize % 12;
            p[pc] += w;
        }
        p
    };
    top_rotations(&profile(q), &profile(c), n)
}

/// The `n` rotations of `pc` that best match `pq` (cosine of the profiles,
/// best first; ties to the smaller rotation).
fn top_rotations(pq: &[f32; 12], pc: &[f32; 12], n: usize) -> Vec<usize> {
    let norm = |p: &[f32; 12]| p.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
    let (nq, nc) = (norm(pq), norm(pc));
    let mut scored: Vec<(usize, f32)> = (0..12)
        .map(|r| {
            let s = (0..12).map(|k| pq[k] * pc[(k + 12 - r) % 12]).sum::<f32>() / (nq * nc);
            (r, s)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    scored.into_iter().take(n).map(|(r, _)| r).collect()
}

/// Correlation of the band energies along a path (straight line from query
/// frame `q0` at candidate frame `c0` to `q1` at `c1`, CENS frames), each
/// band's mean removed on both sides, the query's bands shifted by
/// `transpose` semitones. 0 when there is too little to compare.
pub fn band_agreement(
    q: &Sequences,
    c: &Sequences,
    (q0, q1): (usize, usize),
    (c0, c1): (usize, usize),
    transpose: f32,
) -> f32 {
    if q1 < q0 + 5 || q.n_bands == 0 || q.n_bands != c.n_bands || c.frames() == 0 {
        return 0.0;
    }
    let nb = q.n_bands;
    // semitones per band: bands are log-spaced over 100 Hz..5 kHz
    let st_per_band = 12.0 * (5000f32 / 100.0).log2() / nb as f32;
    let shift = transpose / st_per_band; // query band b ~ candidate band b - shift
    let n = q1 - q0;
    let ratio = (c1.saturating_sub(c0)).max(1) as f32 / n as f32;
    let db = |x: u8| x as f32 / 2.0 - 120.0;
    let mut qm = vec![0f32; n * nb];
    let mut cm = vec![0f32; n * nb];
    for t in 0..n {
        let i = q0 + t;
        let j = (c0 + (t as f32 * ratio).round() as usize).min(c.frames() - 1);
        for b in 0..nb {
            qm[t * nb + b] = db(q.bands[i * nb + b]);
            // candidate value at band b - shift, linear interpolation
            let pos = b as f32 - shift;
            let b0 = pos.floor().clamp(0.0, (nb - 1) as f32) as usize;
            let b1 = (b0 + 1).min(nb - 1);
            let f = (pos - pos.floor()).clamp(0.0, 1.0);
            cm[t * nb + b] = db(c.bands[j * nb + b0]) * (1.0 - f) + db(c.bands[j * nb + b1]) * f;
        }
    }
    // use bands that carry energy on both sides (a low-pass kills the top)
    let top_q = qm.iter().copied().fold(f32::MIN, f32::max);
    let top_c = cm.iter().copied().fold(f32::MIN, f32::max);
    let (mut sxy, mut sxx, mut syy) = (0.0f32, 0.0f32, 0.0f32);
    for b in 0..nb {
        let mq = (0..n).map(|t| qm[t * nb + b]).sum::<f32>() / n as f32;
        let mc = (0..n).map(|t| cm[t * nb + b]).sum::<f32>() / n as f32;
        if mq < top_q - 50.0 || mc < top_c - 50.0 {
            continue;
        }
        for t in 0..n {
            let x = qm[t * nb + b] - mq;
            let y = cm[t * nb + b] - mc;
            sxy += x * y;
            sxx += x * x;
            syy += y * y;
        }
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return 0.0;
    }
    sxy / (sxx * syy).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn harmony_scores_in_one_pass_and_on_the_fly_equal_cell_by_cell() {
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32
        };
        for (nq, nc) in [(1, 1), (1, 5), (5, 1), (2, 2), (7, 13), (13, 7)] {
            let q: Vec<u8> = (0..nq * 12).map(|_| (next() * 255.0) as u8).collect();
            let c: Vec<u8> = (0..nc * 12).map(|_| (next() * 255.0) as u8).collect();
            let (mut sim, mut rotated) = (Vec::new(), Vec::new());
            cens_similarity(&q, &c, 5, &mut rotated, &mut sim);
            let cells = HarmonyCells { sim: &sim, nq, nc };
            let mut out = Vec::new();
            cells.scores_into(&mut out);
            for i in 0..nq {
                for j in 0..nc {
                    let (a, b) = (out[i * nc + j], cells.cell(i, j));
                    let on_the_fly = harmony_cell(&q, &rotated, i, j);
                    assert_eq!(a, b, "{nq}x{nc} ({i},{j})");
                    assert_eq!(on_the_fly, b, "{nq}x{nc} ({i},{j})");
                }
            }
        }
    }

    #[test]
    fn note_cells_know_classes_steps_and_octaves() {
        assert_eq!(note_cell(6200.0, 6000.0, 200.0), NOTE_MATCH);
        assert_eq!(note_cell(7400.0, 6000.0, 200.0), NOTE_MATCH);
        assert_eq!(note_cell(6230.0, 6000.0, 200.0), NOTE_MATCH);
        assert_eq!(note_cell(6300.0, 6000.0, 200.0), NOTE_STEP);
        assert_eq!(note_cell(6400.0, 6000.0, 200.0), NOTE_STEP);
        assert_eq!(note_cell(6500.0, 6000.0, 200.0), NOTE_MISMATCH);
        assert_eq!(note_cell(5900.0, 6000.0, 1000.0), NOTE_STEP);
    }

    #[test]
    fn similarity_of_identical_unit_frames_is_one_and_rotation_shifts() {
        // frame: all energy in class 0; the candidate's in class 2
        let mut q = vec![0u8; 12];
        q[0] = 255;
        let mut c = vec![0u8; 12];
        c[2] = 255;
        let mut out = Vec::new();
        cens_similarity(&q, &c, 0, &mut Vec::new(), &mut out);
        assert_eq!(out, vec![0.0]);
        // query class k against candidate class k - rot: rot = 10 brings 2 to 0
        cens_similarity(&q, &c, 10, &mut Vec::new(), &mut out);
        assert!((out[0] - 1.0).abs() < 1e-6);
        assert_eq!(best_rotations(&q, &c, 1), vec![10]);
    }

    #[test]
    fn transpositions_from_note_profiles() {
        let tune = [6000.0, 6200.0, 6400.0, 6500.0, 6700.0, 6400.0, 6000.0];
        let ev = |shift: f32| -> Vec<Event> {
            tune.iter()
                .enumerate()
                .map(|(i, &c)| Event {
                    onset_s: i as f32 * 0.3,
                    cents: c + shift,
                })
                .collect()
        };
        assert_eq!(best_transpositions(&ev(300.0), &ev(0.0), 1), vec![3]);
        assert_eq!(best_transpositions(&ev(-200.0), &ev(0.0), 1), vec![10]);
    }
}
