//! Local alignment (Smith–Waterman with tempo-tolerant steps) over a
//! cell-score matrix, and the significance of its best path: the re-ranking
//! core of an audit.
//!
//! A cell `(i, j)` scores how well query frame (or note) `i` matches
//! candidate frame `j` (positive = better than chance). A path may step
//! (1, 1), (2, 1) or (1, 2), so it follows a tempo ratio anywhere between
//! 1:2 and 2:1 (or, over notes, skips an inserted or a dropped note), and it
//! may start and end anywhere (partial overlap, excerpts, a copy inside an
//! original). The best path gives the score, the matched ranges in both
//! sequences, and from its slope the tempo ratio.
//!
//! **Significance.** The best local score of two *unrelated* sequences
//! grows with the logarithm of the number of cells it was chosen from
//! (Karlin & Altschul 1990): `P(S ≥ x) ≈ 1 − exp(−K m n e^{−λ x})`, where
//! λ is the positive root of `E[e^{λ s}] = 1` over the cell scores. So
//! [`Alignment::bits`] `= λ S − ln(cells)` has the same null distribution
//! for a 5 s clip and a 5-minute track, while a real match's score grows
//! with its length. λ is solved from the histogram of the very cells the
//! alignment saw ([`CellHistogram`]), so it adapts to the pair: two tracks
//! that are alike everywhere (drones in one key, noise) get a small λ, or
//! none when the mean cell is not negative, and their long paths earn no
//! evidence.
//!
//! **Memory.** The dynamic programme keeps three rows, so a long query
//! costs `O(candidate length)` memory; a [`Band`] limits the cells to a
//! diagonal strip around an expected path, for long queries.

/// The best local path.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Alignment {
    /// Sum of the cell scores along the path, minus step penalties.
    pub score: f32,
    /// First query frame on the path.
    pub q_start: usize,
    /// One past the last query frame on the path.
    pub q_end: usize,
    /// First candidate frame on the path.
    pub c_start: usize,
    /// One past the last candidate frame on the path.
    pub c_end: usize,
    /// Cells on the path.
    pub cells: usize,
    /// Cells scored (the search space the path was chosen from).
    pub area: usize,
    /// The Karlin–Altschul λ of the scored cells (0 when the mean cell is
    /// not negative or no cell is positive: no evidence can be read).
    pub lambda: f32,
}

impl Alignment {
    /// Candidate frames per query frame along the path (> 1: the query is
    /// faster than the candidate).
    pub fn tempo_ratio(&self) -> f32 {
        let q = (self.q_end - self.q_start).max(1) as f32;
        let c = (self.c_end - self.c_start).max(1) as f32;
        c / q
    }

    /// The path's significance in nats: `λ S − ln(area)`. Under the null
    /// (unrelated sequences) it is about standard Gumbel-distributed plus a
    /// constant, whatever the lengths; 0 for an empty alignment.
    pub fn bits(&self) -> f32 {
        if self.cells == 0 || self.lambda <= 0.0 {
            return 0.0;
        }
        self.lambda * self.score - (self.area.max(1) as f32).ln()
    }
}

/// A diagonal strip of the matrix: for query frame `i`, the candidate
/// frames within `half` of `c0 + i * slope`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    /// Candidate frame expected at query frame 0.
    pub c0: f32,
    /// Candidate frames per query frame.
    pub slope: f32,
    /// Half-width in candidate frames.
    pub half: usize,
}

/// Histogram of cell scores, for λ ([`CellHistogram::lambda`]).
#[derive(Debug, Clone)]
pub struct CellHistogram {
    counts: Vec<u32>,
}

/// Lowest cell score the histogram resolves (lower ones fall in its first bin).
const HIST_LO: f32 = -4.0;
/// Bin width of the cell-score histogram.
const HIST_STEP: f32 = 0.05;
/// Bins of the cell-score histogram: −4 to 4.
const HIST_BINS: usize = 161;

impl Default for CellHistogram {
    fn default() -> Self {
        CellHistogram {
            counts: vec![0; HIST_BINS],
        }
    }
}

impl CellHistogram {
    fn clear(&mut self) {
        self.counts.fill(0);
    }

    #[inline]
    fn add(&mut self, s: f32) {
        // nearest bin; `as` saturates (and maps NaN to 0), so no clamp of
        // the float and no call to `roundf` in the innermost loop
        let b = ((s - HIST_LO) * (1.0 / HIST_STEP) + 0.5) as usize;
        self.counts[b.min(HIST_BINS - 1)] += 1;
    }

    /// The positive root λ of `mean(e^{λ s}) = 1` over the counted scores,
    /// or 0 when there is none (mean not negative, or no positive score).
    pub fn lambda(&self) -> f32 {
        let total: f64 = self.counts.iter().map(|&c| c as f64).sum();
        if total == 0.0 {
            return 0.0;
        }
        let mut bins = [(0f64, 0f64); HIST_BINS];
        let mut n = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                bins[n] = ((HIST_LO + b as f32 * HIST_STEP) as f64, c as f64 / total);
                n += 1;
            }
        }
        let bins = &bins[..n];
        let mean: f64 = bins.iter().map(|(s, p)| s * p).sum();
        let has_positive = bins.iter().any(|(s, _)| *s > 0.0);
        if mean >= 0.0 || !has_positive {
            return 0.0;
        }
        // f(λ) = Σ p e^{λ s} − 1 is convex, f(0) = 0, f'(0) = mean < 0 and
        // f → ∞: bracket the positive root from above, then Newton's
        // method, which from above a convex function's root descends to it
        // monotonically (quadratically near it)
        let f_df = |l: f64| {
            bins.iter().fold((-1.0, 0.0), |(f, df), (s, p)| {
                let e = p * (l * s).exp();
                (f + e, df + s * e)
            })
        };
        let mut l = 0.5f64;
        while f_df(l).0 < 0.0 && l < 1e3 {
            l *= 2.0;
        }
        for _ in 0..60 {
            let (f, df) = f_df(l);
            if df <= 0.0 {
                break;
            }
            let step = f / df;
            l -= step;
            if step.abs() <= 1e-7 * l.abs() {
                break;
            }
        }
        l as f32
    }
}

/// Reusable dynamic-programming buffers (three rows).
#[derive(Debug, Default)]
pub struct Scratch {
    h: Vec<f32>,
    start: Vec<(u32, u32)>,
    cells: Vec<u32>,
    hist: CellHistogram,
}

/// Aligns `nq` query frames with `nc` candidate frames; `cell(i, j)` gives
/// the score of a cell and `skip` the penalty of a (2, 1) or (1, 2) step.
/// With a `band`, only the cells inside it are scored.
pub fn local_align(
    nq: usize,
    nc: usize,
    band: Option<Band>,
    mut cell: impl FnMut(usize, usize) -> f32,
    skip: f32,
    scratch: &mut Scratch,
) -> Alignment {
    let mut best = Alignment::default();
    if nq == 0 || nc == 0 {
        return best;
    }
    let Scratch {
        h,
        start,
        cells,
        hist,
    } = scratch;
    h.clear();
    h.resize(3 * nc, 0.0);
    start.clear();
    start.resize(3 * nc, (0, 0));
    cells.clear();
    cells.resize(3 * nc, 0);
    hist.clear();
    let mut area = 0usize;
    // the columns each row slot last wrote: a slot is zero outside them
    let mut written = [(0usize, 0usize); 3];
    for i in 0..nq {
        let (s0, s1, s2) = (i % 3, (i + 2) % 3, (i + 1) % 3); // rows i, i-1, i-2
        let (lo, hi) = match band {
            Some(b) => {
                let c = b.c0 + i as f32 * b.slope;
                let lo = (c - b.half as f32).floor().max(0.0) as usize;
                let hi = ((c + b.half as f32).ceil().max(0.0) as usize + 1).min(nc);
                (lo.min(nc), hi)
            }
            None => (0, nc),
        };
        // cells of row i outside the band hold nothing
        let (wlo, whi) = written[s0];
        h[s0 * nc + wlo..s0 * nc + whi].fill(0.0);
        written[s0] = (lo, hi.max(lo));
        // the three rows as their own slices, each `nc` long, so that the
        // inner loop indexes them without a bounds check per step
        let (h0, h1, h2) = rows(h, nc, s0, s1, s2);
        let (st0, st1, st2) = rows(start, nc, s0, s1, s2);
        let (c0, c1, c2) = rows(cells, nc, s0, s1, s2);
        for j in lo..hi {
            let s = cell(i, j);
            hist.add(s);
            area += 1;
            // best predecessor among the three steps (or a fresh start):
            // 1 = (1, 1), 2 = (2, 1), 3 = (1, 2)
            let mut pred = 0.0f32;
            let mut from = 0u8;
            if i >= 1 && j >= 1 && h1[j - 1] > pred {
                pred = h1[j - 1];
                from = 1;
            }
            if i >= 2 && j >= 1 && h2[j - 1] - skip > pred {
                pred = h2[j - 1] - skip;
                from = 2;
            }
            if i >= 1 && j >= 2 && h1[j - 2] - skip > pred {
                pred = h1[j - 2] - skip;
                from = 3;
            }
            let v = pred + s;
            if v <= 0.0 {
                h0[j] = 0.0;
                continue;
            }
            h0[j] = v;
            let (st, len) = match from {
                1 => (st1[j - 1], c1[j - 1] + 1),
                2 => (st2[j - 1], c2[j - 1] + 1),
                3 => (st1[j - 2], c1[j - 2] + 1),
                _ => ((i as u32, j as u32), 1),
            };
            st0[j] = st;
            c0[j] = len;
            if v > best.score {
                best = Alignment {
                    score: v,
                    q_start: st.0 as usize,
                    q_end: i + 1,
                    c_start: st.1 as usize,
                    c_end: j + 1,
                    cells: len as usize,
                    area: 0,
                    lambda: 0.0,
                };
            }
        }
    }
    best.area = area;
    best.lambda = hist.lambda();
    best
}

/// Row slots `a` (written), `b` and `c` (read) of a buffer of three rows
/// of `n`, as separate slices (the three slots are distinct).
fn rows<T>(buf: &mut [T], n: usize, a: usize, b: usize, c: usize) -> (&mut [T], &[T], &[T]) {
    let [r0, r1, r2] = buf
        .get_disjoint_mut([0..n, n..2 * n, 2 * n..3 * n])
        .expect("three rows of n");
    let mut slots = [Some(r0), Some(r1), Some(r2)];
    let w = slots[a].take().expect("distinct slots");
    let x = slots[b].take().expect("distinct slots");
    let y = slots[c].take().expect("distinct slots");
    (w, x, y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagonal of matches embedded in noise is found with its ranges.
    #[test]
    fn finds_an_embedded_diagonal() {
        let (nq, nc) = (30, 80);
        // query frames 10..20 match candidate frames 40..50
        let cell = |i: usize, j: usize| {
            if (10..20).contains(&i) && j == i + 30 {
                1.0
            } else {
                -0.5
            }
        };
        let a = local_align(nq, nc, None, cell, 0.2, &mut Scratch::default());
        assert_eq!((a.q_start, a.q_end, a.c_start, a.c_end), (10, 20, 40, 50));
        assert_eq!(a.cells, 10);
        assert_eq!(a.area, nq * nc);
        assert!((a.score - 10.0).abs() < 1e-5);
        assert!((a.tempo_ratio() - 1.0).abs() < 1e-5);
        // the same inside a band around the diagonal
        let band = Band {
            c0: 30.0,
            slope: 1.0,
            half: 5,
        };
        let b = local_align(nq, nc, Some(band), cell, 0.2, &mut Scratch::default());
        assert_eq!((b.q_start, b.q_end, b.c_start, b.c_end), (10, 20, 40, 50));
        assert!(b.area <= nq * 11 && b.area >= nq * 10, "{}", b.area);
        assert!((b.score - a.score).abs() < 1e-5);
    }

    /// A path at a tempo ratio of 1.5 (the candidate advances 3 frames per
    /// 2 query frames) is followed through (1,1) and (1,2) steps.
    #[test]
    fn follows_a_tempo_change() {
        let on_path = |i: usize, j: usize| (j as f32 - 1.5 * i as f32).abs() < 0.6;
        let a = local_align(
            40,
            80,
            None,
            |i, j| if on_path(i, j) { 1.0 } else { -1.0 },
            0.1,
            &mut Scratch::default(),
        );
        assert!(a.q_end - a.q_start >= 35, "{a:?}");
        assert!((a.tempo_ratio() - 1.5).abs() < 0.1, "{a:?}");
    }

    #[test]
    fn nothing_positive_gives_an_empty_alignment() {
        let a = local_align(5, 5, None, |_, _| -1.0, 0.1, &mut Scratch::default());
        assert_eq!(a.cells, 0);
        assert_eq!(a.bits(), 0.0);
        let e = local_align(0, 5, None, |_, _| 1.0, 0.1, &mut Scratch::default());
        assert_eq!(e.cells, 0);
    }

    /// λ of a known score distribution: scores +1 with probability 1/4 and
    /// −1 otherwise have e^λ = 3 (so λ = ln 3).
    #[test]
    fn lambda_matches_the_closed_form() {
        let mut h = CellHistogram::default();
        for k in 0..400 {
            h.add(if k % 4 == 0 { 1.0 } else { -1.0 });
        }
        assert!((h.lambda() - 3f32.ln()).abs() < 1e-3, "{}", h.lambda());
        // a non-negative mean has no root
        let mut h = CellHistogram::default();
        for k in 0..10 {
            h.add(if k % 2 == 0 { 1.0 } else { -0.5 });
        }
        assert_eq!(h.lambda(), 0.0);
    }

    /// The best score of random sequences grows with the log of the area,
    /// and `bits` takes that growth out: the mean bits of unrelated random
    /// sequences of 50 and 800 frames differ by far less than their mean
    /// scores. This holds for diagonal paths (here the skip steps cost more
    /// than any path could gain); tempo steps make the best score grow
    /// faster than the ungapped λ predicts (gapped alignment has a smaller
    /// effective λ), which is why the re-ranker measures its null on the
    /// pair itself instead of trusting `bits` alone.
    #[test]
    fn bits_do_not_grow_with_the_length_of_unrelated_sequences() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut stats = Vec::new();
        for n in [50usize, 800] {
            let (mut score, mut bits) = (0.0f32, 0.0f32);
            let trials = 12;
            for _ in 0..trials {
                let q: Vec<u8> = (0..n).map(|_| (next() % 4) as u8).collect();
                let c: Vec<u8> = (0..n).map(|_| (next() % 4) as u8).collect();
                let a = local_align(
                    n,
                    n,
                    None,
                    |i, j| if q[i] == c[j] { 1.0 } else { -1.0 },
                    1e6,
                    &mut Scratch::default(),
                );
                score += a.score / trials as f32;
                bits += a.bits() / trials as f32;
            }
            stats.push((score, bits));
        }
        let (s0, b0) = stats[0];
        let (s1, b1) = stats[1];
        assert!(s1 - s0 > 4.0, "scores {s0} -> {s1}");
        assert!(
            (b1 - b0).abs() < 0.5 * (s1 - s0),
            "bits {b0} -> {b1}, scores {s0} -> {s1}"
        );
    }
}
