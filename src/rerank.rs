//! Re-ranking: each candidate item aligned with the query, three ways, into
//! the raw evidence the score model reads ([`crate::score`]).
//!
//! 1. **Harmony** ([`harmony`]): CENS chroma (5 frames/s) of the query
//!    against the item — the whole item when it is short or the matrix
//!    small, else the region the votes point at — under the two
//!    transpositions whose chroma profiles agree best (and once more with
//!    the query folded at the item's tuning, when the two differ). The best
//!    local path gives the matched ranges, the tempo ratio (its slope), its
//!    mean cell score (how close: the same recording re-timed or
//!    transposed) and its significance.
//! 2. **Notes** ([`notes`]): the melodic events of both, aligned under the
//!    transpositions the n-gram hits and the note pitch-class profiles
//!    suggest, with skips for inserted and dropped notes. Tempo drops out:
//!    the alignment steps through notes, not seconds.
//! 3. **Band energies** along the harmony path ([`crate::similarity::band_agreement`]).
//!
//! Long inputs are aligned inside a diagonal band around where the votes
//! point ([`crate::align::Band`]), so their cost grows with their length,
//! not with its square.

use crate::align::{local_align, Alignment, Band, Scratch};
use crate::candidates::Vote;
use crate::ngrams::Event;
use crate::params::AnalysisParams;
use crate::sequences::Sequences;
use crate::similarity::{
    best_rotations, best_transpositions, cens_similarity, harmony_cell, note_cell_classes,
    pitch_class_cents, rotate_cens, HarmonyCells,
};

/// Penalty of a (2, 1) or (1, 2) step of the harmony alignment.
pub const HARMONY_SKIP: f32 = 0.3;
/// Penalty of a skipped (inserted or dropped) note.
pub const NOTE_SKIP: f32 = 1.0;
/// Frames below which a harmony path is scored as if it had this length (5 s).
pub const FLOOR_S: f32 = 5.0;
/// Up to this many cells, the query is aligned with the whole candidate.
pub const WHOLE_ITEM_CELLS: usize = 35_000;
/// Items up to this many CENS frames (70 s) are aligned whole, whatever
/// the query's length: the voted region (± 8 s) covers most of such an
/// item anyway, and a vote for a repeat of the copied part then cannot
/// hide the match. (On the development set a melodic copy of a 60 s
/// chorale scored 0.30 when its votes pointed at the chorale's repeat,
/// 0.87 otherwise.)
pub const WHOLE_ITEM_FRAMES: usize = 350;
/// Seconds around the voted region of a long item.
pub const REGION_MARGIN_S: f32 = 8.0;
/// Query frames above which the harmony alignment keeps to a band around
/// the voted diagonal (60 s).
pub const HARMONY_BAND_ABOVE: usize = 300;
/// Half-width of that band, seconds (tempo drift of ±8 % over a minute,
/// and the 2 s vote bins).
pub const HARMONY_BAND_S: f32 = 20.0;
/// Note cells above which the note alignment keeps to a band around the
/// n-gram offset.
pub const NOTE_WHOLE_CELLS: usize = 120_000;
/// Half-width of that band, in events.
pub const NOTE_BAND: usize = 60;
/// The null alignments play the item backwards within blocks of this many
/// seconds (harmony) and ...
pub const NULL_BLOCK_S: f32 = 10.0;
/// ... this many events (notes; 10–20 s of a tune). Within a block the
/// order is reversed, so no phrase of the item survives, while the blocks
/// stay in place: the null meets the same pitch vocabulary, the same
/// repetitiveness (a drone reversed is the same drone) at the same place
/// in the item, so a band around the voted diagonal covers the same music
/// in both.
pub const NULL_BLOCK_EVENTS: usize = 32;
/// Tuning difference (cents) beyond which the query is also folded at the
/// candidate's tuning.
pub const REFOLD_CENTS: f32 = 15.0;

/// The best harmony alignment of the query with a candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct HarmonyMatch {
    /// The path, in frames of the query and of the item region.
    pub alignment: Alignment,
    /// First item frame of the region aligned.
    pub region_start: usize,
    /// Query pitch minus item pitch, semitones, in (−6, 6].
    pub transpose: f32,
    /// Mean cell score along the path (floor [`FLOOR_S`]).
    pub mean: f32,
    /// The same alignment against the region played backwards within
    /// blocks of [`NULL_BLOCK_S`]: what the query finds by chance in music
    /// of the item's harmonic vocabulary and repetitiveness, over the same
    /// cells.
    pub null: Alignment,
}

/// The best note alignment of the query with a candidate.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoteMatch {
    /// The path, in query and item events.
    pub alignment: Alignment,
    /// Query pitch minus item pitch, whole semitones modulo 12.
    pub transpose: usize,
    /// The best alignment under the same transpositions against the item's
    /// events in reverse order within blocks of [`NULL_BLOCK_EVENTS`]: the
    /// same pitch vocabulary, the same repetitiveness, no shared melody —
    /// the null the query meets.
    pub null: Alignment,
}

/// Reusable buffers of re-ranking.
#[derive(Default)]
pub struct Buffers {
    sim: Vec<f32>,
    /// The similarity matrix of the best harmony alignment so far (short
    /// queries), from which the null's is permuted.
    best_sim: Vec<f32>,
    cells: Vec<f32>,
    rotated: Vec<u8>,
    reversed: Vec<u8>,
    /// Pitch classes (cents in `[0, 1200)`) of the candidate's events, of
    /// the same reversed within blocks, and of the transposed query's.
    classes: [Vec<f32>; 3],
    /// The alignment's rows.
    pub scratch: Scratch,
}

/// The query's CENS folded again at other tunings, made when first needed.
pub struct Refolds<'a> {
    /// The query's unfolded chroma (empty: no re-folding).
    pub fine: &'a [f32],
    /// The analysis parameters.
    pub params: &'a AnalysisParams,
    /// (tuning in 5-cent steps, quantised CENS)
    pub cache: Vec<(i32, Vec<u8>)>,
}

impl Refolds<'_> {
    /// The query's CENS folded at `tuning` cents, if the query has unfolded
    /// chroma.
    fn at(&mut self, tuning: f32) -> Option<&[u8]> {
        if self.fine.is_empty() {
            return None;
        }
        let key = (tuning / 5.0).round() as i32;
        let i = match self.cache.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                let energy = crate::chroma::fold(self.fine, key as f32 * 5.0);
                let cens =
                    crate::chroma::cens(&energy, self.params.cens_smooth, self.params.cens_down);
                self.cache
                    .push((key, crate::sequences::quantize_cens(&cens)));
                self.cache.len() - 1
            }
        };
        Some(&self.cache[i].1)
    }
}

/// Harmony alignment of the query with candidate `c` around the vote `v`;
/// `rate` is the CENS frame rate.
pub fn harmony(
    q: &Sequences,
    c: &Sequences,
    v: &Vote,
    rate: f32,
    refolds: &mut Refolds,
    buf: &mut Buffers,
) -> HarmonyMatch {
    let (nq, nc) = (q.frames(), c.frames());
    if nq == 0 || nc == 0 {
        return HarmonyMatch::default();
    }
    let offset_s = if v.offset_s.is_finite() {
        Some(v.offset_s)
    } else {
        melodic_offset_s(q, c, v)
    };
    // region of the candidate around the voted offset (ratio = 1 / scale)
    let q_dur = nq as f32 / rate;
    let (lo, hi) = match offset_s {
        Some(off) if nq * nc > WHOLE_ITEM_CELLS && nc > WHOLE_ITEM_FRAMES => {
            let lo = ((off - REGION_MARGIN_S) * rate).floor().max(0.0) as usize;
            let hi =
                (((off + q_dur / v.scale as f32 + REGION_MARGIN_S) * rate).ceil() as usize).min(nc);
            if lo >= hi {
                (0, nc)
            } else {
                (lo, hi)
            }
        }
        _ => (0, nc),
    };
    let region = &c.cens[lo * 12..hi * 12];
    // a long query keeps to a band around the voted diagonal
    let band = match offset_s {
        Some(off) if nq > HARMONY_BAND_ABOVE => Some(Band {
            c0: off * rate - lo as f32,
            slope: 1.0 / v.scale as f32,
            half: (HARMONY_BAND_S * rate) as usize,
        }),
        _ => None,
    };

    // a short query's similarity matrix under the best alignment's query
    // and rotation is kept (in `best_sim`): the null's is a permutation of
    // its columns
    let mut kept = false;
    let mut best = (Alignment::default(), 0usize, false);
    for rot in best_rotations(&q.cens, region, 2) {
        let a = align_cens(&q.cens, region, rot, band, buf);
        if a.score > best.0.score || best.0.cells == 0 {
            best = (a, rot, false);
            if band.is_none() {
                std::mem::swap(&mut buf.sim, &mut buf.best_sim);
                kept = true;
            }
        }
    }
    // the query folded at the candidate's tuning, when the two differ:
    // a copied part (spliced in, or mixed under other music) keeps its
    // own tuning, which the rest of the query may outvote
    let dt = (q.tuning_cents - c.tuning_cents + 50.0).rem_euclid(100.0) - 50.0;
    if dt.abs() > REFOLD_CENTS {
        if let Some(qc) = refolds.at(c.tuning_cents) {
            for rot in best_rotations(qc, region, 2) {
                let a = align_cens(qc, region, rot, band, buf);
                if a.score > best.0.score {
                    best = (a, rot, true);
                    if band.is_none() {
                        std::mem::swap(&mut buf.sim, &mut buf.best_sim);
                        kept = true;
                    }
                }
            }
        }
    }
    let (alignment, rot, refolded) = best;
    let fraction = if refolded {
        0.0
    } else {
        (q.tuning_cents - c.tuning_cents) / 100.0
    };
    let floor = FLOOR_S * rate;
    // the null: the region backwards within blocks, under the same
    // transposition
    let block = ((NULL_BLOCK_S * rate) as usize).max(1);
    let null = if kept {
        null_from_kept(nq, hi - lo, block, buf)
    } else {
        let mut reversed = std::mem::take(&mut buf.reversed);
        reversed.clear();
        for b in region.chunks(block * 12) {
            reversed.extend(b.chunks_exact(12).rev().flatten());
        }
        let qc: &[u8] = if refolded {
            refolds.at(c.tuning_cents).unwrap_or(&q.cens)
        } else {
            &q.cens
        };
        let null = align_cens(qc, &reversed, rot, band, buf);
        buf.reversed = reversed;
        null
    };
    HarmonyMatch {
        alignment,
        region_start: lo,
        transpose: to_signed_semitones(rot as f32 + fraction),
        mean: alignment.score / (alignment.cells as f32).max(floor),
        null,
    }
}

/// The null alignment of a short query from the similarity matrix kept in
/// `buf.best_sim` (`nq × m`, the best alignment's): the region backwards
/// within blocks of `block` frames is the same frames in another column
/// order, so its matrix is the kept one with each block's columns
/// reversed — the values [`cens_similarity`] gives for the reversed region,
/// without computing a frame product again.
fn null_from_kept(nq: usize, m: usize, block: usize, buf: &mut Buffers) -> Alignment {
    let kept = &buf.best_sim;
    buf.sim.clear();
    for row in kept.chunks_exact(m).take(nq) {
        for b in row.chunks(block) {
            buf.sim.extend(b.iter().rev());
        }
    }
    align_sim(nq, m, buf)
}

/// The harmony alignment over the whole `nq × m` similarity matrix in
/// `buf.sim`: its cell scores in vectorised passes, then the path.
fn align_sim(nq: usize, m: usize, buf: &mut Buffers) -> Alignment {
    HarmonyCells {
        sim: &buf.sim,
        nq,
        nc: m,
    }
    .scores_into(&mut buf.cells);
    let cells = &buf.cells;
    local_align(
        nq,
        m,
        None,
        |i, j| cells[i * m + j],
        HARMONY_SKIP,
        &mut buf.scratch,
    )
}

fn align_cens(
    q: &[u8],
    region: &[u8],
    rot: usize,
    band: Option<Band>,
    buf: &mut Buffers,
) -> Alignment {
    let (nq, m) = (q.len() / 12, region.len() / 12);
    if band.is_some() {
        // a long input: only the band's cells are visited, so they are
        // computed where they are needed, never as an nq × m matrix
        rotate_cens(region, rot, &mut buf.rotated);
        let rotated = &buf.rotated;
        return local_align(
            nq,
            m,
            band,
            |i, j| harmony_cell(q, rotated, i, j),
            HARMONY_SKIP,
            &mut buf.scratch,
        );
    }
    // a short one (at most HARMONY_BAND_ABOVE frames against a bounded
    // region): the whole matrix, computed in vectorised passes
    cens_similarity(q, region, rot, &mut buf.rotated, &mut buf.sim);
    align_sim(nq, m, buf)
}

/// Item time minus query time (seconds) that the melodic match points at.
fn melodic_offset_s(q: &Sequences, c: &Sequences, v: &Vote) -> Option<f32> {
    let m = v.melodic?;
    let a = q.events.get(m.query_events.0 as usize)?;
    let b = c
        .events
        .get((m.query_events.0 as i64 + m.offset_events).max(0) as usize)?;
    Some(b.onset_s - a.onset_s)
}

/// Note alignment of the query's events with the candidate's, under the
/// transposition the n-gram hits voted for and the two best of the note
/// pitch-class profiles.
pub fn notes(q: &[Event], c: &[Event], v: &Vote, buf: &mut Buffers) -> NoteMatch {
    let (nq, nc) = (q.len(), c.len());
    let mut best = NoteMatch::default();
    if nq < 2 || nc < 2 {
        return best;
    }
    let mut transposes = Vec::with_capacity(3);
    if let Some(m) = v.melodic {
        transposes.push(m.transpose as usize);
    }
    for t in best_transpositions(q, c, 2) {
        if !transposes.contains(&t) {
            transposes.push(t);
        }
    }
    let band = match v.melodic {
        Some(m) if nq * nc > NOTE_WHOLE_CELLS => Some(Band {
            c0: m.offset_events as f32,
            slope: 1.0,
            half: NOTE_BAND.max(nq / 8),
        }),
        _ => None,
    };
    let [mut item, mut reversed, mut query] = std::mem::take(&mut buf.classes);
    item.clear();
    item.extend(c.iter().map(|e| pitch_class_cents(e.cents)));
    reversed.clear();
    for b in item.chunks(NULL_BLOCK_EVENTS) {
        reversed.extend(b.iter().rev());
    }
    for t in transposes {
        let shift = t as f32 * 100.0;
        query.clear();
        query.extend(q.iter().map(|e| pitch_class_cents(e.cents - shift)));
        let a = local_align(
            nq,
            nc,
            band,
            |i, j| note_cell_classes(query[i], item[j]),
            NOTE_SKIP,
            &mut buf.scratch,
        );
        let null = local_align(
            nq,
            nc,
            band,
            |i, j| note_cell_classes(query[i], reversed[j]),
            NOTE_SKIP,
            &mut buf.scratch,
        );
        if best.alignment.cells == 0 || a.bits() > best.alignment.bits() {
            best.alignment = a;
            best.transpose = t;
        }
        if null.bits() > best.null.bits() {
            best.null = null;
        }
    }
    buf.classes = [item, reversed, query];
    best
}

/// `t` semitones as a value in (−6, 6].
pub fn to_signed_semitones(t: f32) -> f32 {
    let t = t.rem_euclid(12.0);
    if t > 6.0 {
        t - 12.0
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantised CENS-like frames (12 values of unit norm, ×255) from a
    /// fixed seed, each energy in a few classes as chords have it.
    fn frames(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::with_capacity(n * 12);
        for _ in 0..n {
            let mut v = [0f32; 12];
            for _ in 0..3 {
                v[(next() % 12) as usize] += 1.0 + (next() % 100) as f32 / 100.0;
            }
            let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
            out.extend(v.iter().map(|a| (a / norm * 255.0) as u8));
        }
        out
    }

    /// The null permuted from the kept matrix is the null computed from the
    /// reversed region itself, cell for cell, for regions whose length is
    /// and is not a multiple of the block.
    #[test]
    fn the_null_from_the_kept_matrix_equals_the_null_of_the_reversed_region() {
        let q = frames(40, 1);
        for (m, block, rot) in [(150, 30, 3), (97, 20, 0), (25, 40, 11)] {
            // the region: the query's frames inside unrelated ones, so the
            // alignment has something to find
            let mut region = frames(m, 2 + m as u64);
            // (transposed: its class k − rot holds the query's class k)
            for (t, f) in region[12 * 5..12 * 25].chunks_exact_mut(12).enumerate() {
                for (k, v) in f.iter_mut().enumerate() {
                    *v = q[12 * (10 + t) + (k + rot) % 12];
                }
            }
            let mut buf = Buffers::default();
            let mut reversed = Vec::new();
            for b in region.chunks(block * 12) {
                reversed.extend(b.chunks_exact(12).rev().flatten());
            }
            let direct = align_cens(&q, &reversed, rot, None, &mut buf);
            let _ = align_cens(&q, &region, rot, None, &mut buf);
            std::mem::swap(&mut buf.sim, &mut buf.best_sim);
            let permuted = null_from_kept(40, m, block, &mut buf);
            assert_eq!(permuted, direct, "m {m}, block {block}");
            // the forward region holds the copy, which its null does not
            let forward = align_cens(&q, &region, rot, None, &mut buf);
            assert!(forward.cells >= 15 && forward.score > direct.score + 10.0);
        }
    }
}
