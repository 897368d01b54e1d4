//! Local alignment (Smith–Waterman with tempo-tolerant steps) over a
//! cell-score matrix: the re-ranking core of an audit.
//!
//! A cell `(i, j)` scores how well query frame `i` matches candidate frame
//! `j` (positive = better than chance). A path may step (1, 1), (2, 1) or
//! (1, 2), so it follows a tempo ratio anywhere between 1:2 and 2:1, and it may
//! start and end anywhere (partial overlap, excerpts, a copy inside an
//! original). The best path gives the score, the matched frame ranges in both
//! sequences, and from its slope the tempo ratio.

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
}

impl Alignment {
    /// Candidate frames per query frame along the path (> 1: the query is
    /// faster than the candidate).
    pub fn tempo_ratio(&self) -> f32 {
        let q = (self.q_end - self.q_start).max(1) as f32;
        let c = (self.c_end - self.c_start).max(1) as f32;
        c / q
    }
}

/// Reusable dynamic-programming buffers.
#[derive(Debug, Default)]
pub struct Scratch {
    h: Vec<f32>,
    start: Vec<(u32, u32)>,
    cells: Vec<u32>,
}

/// Aligns `nq` query frames with `nc` candidate frames; `cell(i, j)` gives
/// the score of a cell and `skip` the penalty of a (2, 1) or (1, 2) step.
pub fn local_align(
    nq: usize,
    nc: usize,
    mut cell: impl FnMut(usize, usize) -> f32,
    skip: f32,
    scratch: &mut Scratch,
) -> Alignment {
    let mut best = Alignment::default();
    if nq == 0 || nc == 0 {
        return best;
    }
    let n = nq * nc;
    scratch.h.clear();
    scratch.h.resize(n, 0.0);
    scratch.start.clear();
    scratch.start.resize(n, (0, 0));
    scratch.cells.clear();
    scratch.cells.resize(n, 0);
    let (h, start, cells) = (&mut scratch.h, &mut scratch.start, &mut scratch.cells);
    for i in 0..nq {
        for j in 0..nc {
            let s = cell(i, j);
            // best predecessor among the three steps (or a fresh start)
            let mut pred = 0.0f32;
            let mut from: Option<usize> = None;
            if i >= 1 && j >= 1 {
                let k = (i - 1) * nc + j - 1;
                if h[k] > pred {
                    pred = h[k];
                    from = Some(k);
                }
            }
            if i >= 2 && j >= 1 {
                let k = (i - 2) * nc + j - 1;
                if h[k] - skip > pred {
                    pred = h[k] - skip;
                    from = Some(k);
                }
            }
            if i >= 1 && j >= 2 {
                let k = (i - 1) * nc + j - 2;
                if h[k] - skip > pred {
                    pred = h[k] - skip;
                    from = Some(k);
                }
            }
            let here = i * nc + j;
            let v = pred + s;
            if v <= 0.0 {
                h[here] = 0.0;
                continue;
            }
            h[here] = v;
            let (st, len) = match from {
                Some(k) => (start[k], cells[k] + 1),
                None => ((i as u32, j as u32), 1),
            };
            start[here] = st;
            cells[here] = len;
            if v > best.score {
                best = Alignment {
                    score: v,
                    q_start: st.0 as usize,
                    q_end: i + 1,
                    c_start: st.1 as usize,
                    c_end: j + 1,
                    cells: len as usize,
                };
            }
        }
    }
    best
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
        let a = local_align(nq, nc, cell, 0.2, &mut Scratch::default());
        assert_eq!((a.q_start, a.q_end, a.c_start, a.c_end), (10, 20, 40, 50));
        assert_eq!(a.cells, 10);
        assert!((a.score - 10.0).abs() < 1e-5);
        assert!((a.tempo_ratio() - 1.0).abs() < 1e-5);
    }

    /// A path at a tempo ratio of 1.5 (the candidate advances 3 frames per
    /// 2 query frames) is followed through (1,1) and (1,2) steps.
    #[test]
    fn follows_a_tempo_change() {
        let on_path = |i: usize, j: usize| (j as f32 - 1.5 * i as f32).abs() < 0.6;
        let a = local_align(
            40,
            80,
            |i, j| if on_path(i, j) { 1.0 } else { -1.0 },
            0.1,
            &mut Scratch::default(),
        );
        assert!(a.q_end - a.q_start >= 35, "{a:?}");
        assert!((a.tempo_ratio() - 1.5).abs() < 0.1, "{a:?}");
    }

    #[test]
    fn nothing_positive_gives_an_empty_alignment() {
        let a = local_align(5, 5, |_, _| -1.0, 0.1, &mut Scratch::default());
        assert_eq!(a, Alignment::default());
        let e = local_align(0, 5, |_, _| 1.0, 0.1, &mut Scratch::default());
        assert_eq!(e.cells, 0);
    }
}
