//! Candidate search: the nearest stored window embeddings to a query embedding.
//!
//! Auditing a clip looks up each of its window embeddings among the training
//! set's windows. That look-up sits behind the small [`CandidateSearch`] trait
//! so that another engine (an external vector database) can take its place.
//! Two engines are built in:
//!
//! - [`ExactSearch`]: brute force, exact; for small indexes and as the
//!   reference in tests;
//! - [`HnswSearch`]: an approximate HNSW graph, for the training-set index.
//!
//! Vectors are L2-normalised, so the distance is the cosine distance
//! `1 − dot`, clamped to `[0, 2]` (a `NaN` counts as 2); both engines compute
//! it the same way. Ids are the vectors' positions, `0..len`, in insertion
//! order.
//!
//! # How [`HnswSearch`] works
//!
//! The graph is built by the `hnsw_rs` crate (parallel insertion), then
//! copied into flat arrays (the vectors in one buffer, the neighbour lists as
//! `u32` ids) and searched by the HNSW search of this module, which touches
//! the vectors of a whole neighbour list before computing its distances so
//! that their cache misses overlap. `hnsw_rs`'s own structure
//! (reference-counted points behind locks, three dependent cache misses per
//! visited node) searched 6–7× slower at 180,000 vectors, and its file
//! format took 2.5× the space and 30× the time to load (4.6 s), through a
//! reader (`HnswIo`) that borrows the loaded graph and panics, or in places
//! exits the process, on damaged files.
//!
//! After the copy, a repair pass searches for every stored vector; the few
//! that the search does not find (points that parallel insertion and
//! neighbour pruning leave with no usable in-link) get links from their
//! nearest neighbours. Any point still not found after a few rounds is kept
//! in a short list that every search checks exactly. So every stored vector
//! finds itself at the default search breadth.
//!
//! # Index file
//!
//! [`HnswSearch::save`] writes one file, `<basename>.hnsw`, little-endian:
//!
//! | field | type |
//! |---|---|
//! | magic `RFRNHNSW` | 8 bytes |
//! | format version | `u32` |
//! | dim, len, M, ef_construction, ef_search, entry point, upper layers, exact-list length | `u32` each |
//! | vectors | `len × dim` `f32` |
//! | base layer: offsets, links | `len + 1` `u32`, then `offsets[len]` `u32` |
//! | each upper layer: count, node ids (ascending), offsets, links | `u32`, `count` `u32`, `count + 1` `u32`, `offsets[count]` `u32` |
//! | exact list | ids, `u32` each |
//! | CRC-32 of all bytes before it | `u32` |
//!
//! It is written under a temporary name and renamed into place.
//! [`HnswSearch::load`] checks the CRC and every offset and id before use, so
//! a damaged or truncated file gives an error, never a panic.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use hnsw_rs::anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use rayon::prelude::*;

use crate::error::{Error, ErrorKind, Result, Stage};

/// A nearest-neighbour search over window embeddings (ids are `0..len`, in
/// insertion order).
pub trait CandidateSearch: Send + Sync {
    /// The `k` nearest stored vectors to `query` as (id, cosine distance =
    /// 1 − dot), nearest first.
    ///
    /// Returns fewer than `k` results when fewer vectors are stored, and none
    /// when `query` does not have [`dim`](Self::dim) values.
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)>;
    /// The number of stored vectors.
    fn len(&self) -> usize;
    /// Whether no vectors are stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The dimension of the stored vectors.
    fn dim(&self) -> usize;
}

/// The dot product of two equally long slices, in 8 independent lanes so
/// that the compiler vectorises it.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut lanes = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let mut sum = ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]));
    for (x, y) in ra.iter().zip(rb) {
        sum += x * y;
    }
    sum
}

/// The cosine distance of two unit vectors, `1 − dot`, clamped to `[0, 2]`;
/// `NaN` (from non-finite input) counts as the largest distance, 2.
#[inline]
fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let d = 1.0 - dot(a, b);
    if d.is_nan() {
        2.0
    } else {
        d.clamp(0.0, 2.0)
    }
}

/// Checks the shape of a flat vector buffer; returns the vector count.
fn vector_count(len: usize, dim: usize) -> usize {
    assert!(dim > 0, "the vector dimension must be positive");
    assert!(
        len.is_multiple_of(dim),
        "the buffer length {len} is not a multiple of the dimension {dim}"
    );
    let n = len / dim;
    assert!(
        u32::try_from(n).is_ok(),
        "{n} vectors do not fit 32-bit ids"
    );
    n
}

/// A search hit, ordered by distance, then id.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hit {
    d: f32,
    id: u32,
}

impl Eq for Hit {}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Exact search (brute force), for small indexes and as the reference in
/// tests.
#[derive(Debug, Clone)]
pub struct ExactSearch {
    vectors: Vec<f32>,
    dim: usize,
}

impl ExactSearch {
    /// Stores `vectors`, a flat buffer of `len × dim` values (vector `i` is
    /// `vectors[i * dim..(i + 1) * dim]`).
    ///
    /// # Panics
    ///
    /// If `dim` is 0, if `vectors.len()` is not a multiple of `dim`, or if
    /// there are more than `u32::MAX` vectors.
    pub fn new(vectors: Vec<f32>, dim: usize) -> Self {
        vector_count(vectors.len(), dim);
        ExactSearch { vectors, dim }
    }
}

impl CandidateSearch for ExactSearch {
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let mut all: Vec<Hit> = self
            .vectors
            .chunks_exact(self.dim)
            .zip(0u32..)
            .map(|(v, id)| Hit {
                d: cosine_distance(query, v),
                id,
            })
            .collect();
        if all.len() > k {
            all.select_nth_unstable(k - 1);
            all.truncate(k);
        }
        all.sort_unstable();
        all.into_iter().map(|h| (h.id, h.d)).collect()
    }

    fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

/// The distance `hnsw_rs` builds the graph with: [`cosine_distance`].
///
/// Not `hnsw_rs`'s own `DistDot`: that one asserts `dot ≤ 1` (to within
/// 2·10⁻⁶, or exactly without its SIMD feature), so a vector slightly off
/// unit length, or holding a `NaN`, would panic inside the build.
#[derive(Debug, Default, Clone, Copy)]
struct UnitDot;

impl Distance<f32> for UnitDot {
    fn eval(&self, va: &[f32], vb: &[f32]) -> f32 {
        cosine_distance(va, vb)
    }
}

/// Maximum number of links per node in the upper layers of the HNSW graph
/// (`hnsw_rs`'s `max_nb_connection`); the base layer keeps twice as many.
pub const HNSW_M: usize = 16;
/// Breadth of the candidate list while building the graph.
pub const HNSW_EF_CONSTRUCTION: usize = 100;
/// Default breadth of the candidate list while searching (at least `k` is
/// used); see [`HnswSearch::set_ef`].
pub const HNSW_EF_SEARCH: usize = 32;
/// Maximum number of layers `hnsw_rs` may use (its own maximum).
const HNSW_MAX_LAYER: usize = 16;
/// Rounds of the repair pass before the remaining unreachable points go to
/// the exact list.
const REPAIR_ROUNDS: usize = 4;
/// Number of nearest neighbours that get a link to an unreachable point.
const REPAIR_LINKS: usize = 4;

/// Format version of the index file.
const INDEX_VERSION: u32 = 1;
/// First bytes of the index file.
const INDEX_MAGIC: &[u8; 8] = b"RFRNHNSW";

/// Neighbour lists of some nodes: node `ids[i]` links to
/// `links[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layer {
    /// The nodes of the layer, ascending; empty for the base layer, whose
    /// nodes are all ids `0..len` (node `i` at position `i`).
    ids: Vec<u32>,
    offsets: Vec<u32>,
    links: Vec<u32>,
}

impl Layer {
    /// A layer from (node, neighbours) lists; `ids` ascending.
    fn from_lists(ids: Vec<u32>, lists: &[Vec<u32>]) -> Self {
        let mut offsets = Vec::with_capacity(lists.len() + 1);
        let mut links = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        offsets.push(0);
        for list in lists {
            links.extend_from_slice(list);
            offsets.push(links.len() as u32);
        }
        Layer {
            ids,
            offsets,
            links,
        }
    }

    /// The neighbours of the node at position `pos`.
    #[inline]
    fn at(&self, pos: usize) -> &[u32] {
        match (self.offsets.get(pos), self.offsets.get(pos + 1)) {
            (Some(&a), Some(&b)) => self.links.get(a as usize..b as usize).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The neighbours of node `id` in an upper layer (none if `id` is not in
    /// it).
    #[inline]
    fn of(&self, id: u32) -> &[u32] {
        match self.ids.binary_search(&id) {
            Ok(pos) => self.at(pos),
            Err(_) => &[],
        }
    }

    /// Every list as a `Vec`.
    fn lists(&self) -> Vec<Vec<u32>> {
        (0..self.offsets.len().saturating_sub(1))
            .map(|i| self.at(i).to_vec())
            .collect()
    }
}

/// HNSW over the vectors: approximate search, well under a millisecond per
/// query at 180,000 vectors (about 70 µs for k = 20 at the default breadth,
/// recall@20 ≈ 0.999 on clustered test data).
///
/// Every stored vector finds itself at the default breadth
/// [`HNSW_EF_SEARCH`] (the build checks it); a smaller [`set_ef`](Self::set_ef)
/// trades that guarantee for speed.
///
/// Build it with [`build`](Self::build), or reload a saved one with
/// [`load`](Self::load); see the [module docs](self) for how it works and
/// for the file.
#[derive(Clone, PartialEq)]
pub struct HnswSearch {
    dim: usize,
    /// `len × dim` values, vector `i` at `i * dim`.
    vectors: Vec<f32>,
    /// The base layer: every node.
    base: Layer,
    /// Layers 1, 2, … (sparser upwards).
    upper: Vec<Layer>,
    /// Where every search starts: a node of the top layer.
    entry: u32,
    /// Points the graph search may miss: every search checks them exactly.
    exact: Vec<u32>,
    ef_search: usize,
    m: usize,
    ef_construction: usize,
}

impl std::fmt::Debug for HnswSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HnswSearch")
            .field("dim", &self.dim)
            .field("len", &self.len())
            .field("layers", &(self.upper.len() + 1))
            .field("exact", &self.exact.len())
            .field("ef_search", &self.ef_search)
            .finish_non_exhaustive()
    }
}

impl HnswSearch {
    /// Builds the graph over `vectors`, a flat buffer of `len × dim` values
    /// (vector `i`, id `i`, is `vectors[i * dim..(i + 1) * dim]`), inserting
    /// in parallel on the current rayon pool.
    ///
    /// Parameters: [`HNSW_M`] links per node, [`HNSW_EF_CONSTRUCTION`],
    /// search breadth [`HNSW_EF_SEARCH`] (see [`set_ef`](Self::set_ef)).
    ///
    /// # Panics
    ///
    /// If `dim` is 0, if `vectors.len()` is not a multiple of `dim`, or if
    /// there are more than `u32::MAX` vectors.
    pub fn build(vectors: &[f32], dim: usize) -> Self {
        Self::build_with(vectors, dim, HNSW_M, HNSW_EF_CONSTRUCTION)
    }

    fn build_with(vectors: &[f32], dim: usize, m: usize, ef_construction: usize) -> Self {
        let mut search = Self::build_unrepaired(vectors, dim, m, ef_construction);
        search.repair();
        search
    }

    /// The graph as `hnsw_rs` builds it, before the repair pass.
    fn build_unrepaired(vectors: &[f32], dim: usize, m: usize, ef_construction: usize) -> Self {
        let n = vector_count(vectors.len(), dim);
        let mut search = HnswSearch {
            dim,
            vectors: vectors.to_vec(),
            base: Layer::from_lists(Vec::new(), &vec![Vec::new(); n]),
            upper: Vec::new(),
            entry: 0,
            exact: Vec::new(),
            ef_search: HNSW_EF_SEARCH,
            m,
            ef_construction,
        };
        if n == 0 {
            return search;
        }
        let hnsw = Hnsw::<f32, UnitDot>::new(m, n, HNSW_MAX_LAYER, ef_construction, UnitDot);
        let items: Vec<(&[f32], usize)> = vectors.chunks_exact(dim).zip(0..).collect();
        hnsw.parallel_insert_slice(&items);
        search.copy_graph(&hnsw, n);
        search
    }

    /// Copies the graph out of `hnsw_rs` into the flat layers.
    fn copy_graph(&mut self, hnsw: &Hnsw<f32, UnitDot>, n: usize) {
        // level and neighbour lists (per level) of every point
        let mut level = vec![0usize; n];
        let mut lists: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
        for point in hnsw.get_point_indexation() {
            let id = point.get_origin_id();
            if id >= n {
                continue;
            }
            let l = point.get_point_id().0 as usize;
            level[id] = l;
            lists[id] = point
                .get_neighborhood_id()
                .into_iter()
                .take(l + 1)
                .map(|ns| {
                    ns.into_iter()
                        .map(|nb| nb.d_id)
                        .filter(|&d| d < n && d != id)
                        .map(|d| d as u32)
                        .collect()
                })
                .collect();
            lists[id].resize(l + 1, Vec::new());
        }
        let top = level.iter().copied().max().unwrap_or(0);
        let base: Vec<Vec<u32>> = lists
            .iter()
            .map(|ls| ls.first().cloned().unwrap_or_default())
            .collect();
        self.base = Layer::from_lists(Vec::new(), &base);
        self.upper = (1..=top)
            .map(|l| {
                let ids: Vec<u32> = (0..n as u32).filter(|&i| level[i as usize] >= l).collect();
                let ls: Vec<Vec<u32>> = ids
                    .iter()
                    .map(|&i| {
                        let list = lists[i as usize].get(l).map_or(&[][..], Vec::as_slice);
                        list.iter()
                            .copied()
                            .filter(|&d| level[d as usize] >= l)
                            .collect()
                    })
                    .collect();
                Layer::from_lists(ids, &ls)
            })
            .collect();
        self.entry = (0..n).find(|&i| level[i] == top).unwrap_or(0) as u32;
    }

    /// Ids of stored vectors that a search at the default breadth does not
    /// return first (an identical duplicate counts as found).
    fn unfound(&self) -> Vec<u32> {
        (0..self.len() as u32)
            .into_par_iter()
            .filter(|&id| {
                let v = self.vector(id);
                let hits = self.search_hits(v, 1, HNSW_EF_SEARCH);
                !matches!(hits.first(), Some(h) if h.id == id || h.d <= cosine_distance(v, v))
            })
            .collect()
    }

    /// Links every point the search does not find from its nearest
    /// neighbours; what is still not found after a few rounds goes to the
    /// exact list.
    ///
    /// Returns the number of points not found after each round (the first
    /// before any repair).
    fn repair(&mut self) -> Vec<usize> {
        let mut missing = self.unfound();
        let mut counts = vec![missing.len()];
        for _ in 0..REPAIR_ROUNDS {
            if missing.is_empty() {
                break;
            }
            let new_links: Vec<(u32, u32)> = missing
                .par_iter()
                .flat_map_iter(|&id| {
                    let hits = self.search_hits(self.vector(id), REPAIR_LINKS + 1, HNSW_EF_SEARCH);
                    hits.into_iter()
                        .filter(move |h| h.id != id)
                        .take(REPAIR_LINKS)
                        .map(move |h| (h.id, id))
                })
                .collect();
            let mut lists = self.base.lists();
            for (from, to) in new_links {
                let list = &mut lists[from as usize];
                if !list.contains(&to) {
                    list.push(to);
                }
            }
            self.base = Layer::from_lists(Vec::new(), &lists);
            missing = self.unfound();
            counts.push(missing.len());
        }
        self.exact = missing;
        counts
    }

    /// Stored vector `id`.
    #[inline]
    fn vector(&self, id: u32) -> &[f32] {
        let start = id as usize * self.dim;
        &self.vectors[start..start + self.dim]
    }

    /// Reads one value from every cache line of the vectors `ids`: a
    /// prefetch in safe code, so that the misses of a whole neighbour list
    /// are in flight together instead of one after another (about 1.7×
    /// faster searches at 180,000 vectors).
    #[inline]
    fn touch(&self, ids: &[u32]) {
        let mut sum = 0.0f32;
        for &id in ids {
            let row = self.vector(id);
            sum += row.iter().step_by(16).sum::<f32>() + row[row.len() - 1];
        }
        std::hint::black_box(sum);
    }

    /// The HNSW search: greedy descent through the upper layers, then a
    /// best-first search of breadth `max(ef, k)` in the base layer, plus the
    /// exact list. Nearest first.
    fn search_hits(&self, query: &[f32], k: usize, ef: usize) -> Vec<Hit> {
        let n = self.len();
        if n == 0 || k == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let dist = |id: u32| cosine_distance(query, self.vector(id));
        let mut ep = Hit {
            d: dist(self.entry),
            id: self.entry,
        };
        for layer in self.upper.iter().rev() {
            loop {
                let mut moved = false;
                for &nb in layer.of(ep.id) {
                    let d = dist(nb);
                    if d < ep.d {
                        ep = Hit { d, id: nb };
                        moved = true;
                    }
                }
                if !moved {
                    break;
                }
            }
        }

        // never more than every node: a huge `k` or a breadth read from a
        // hostile file must not size the heaps below
        let ef = ef.max(k).min(n);
        let mut visited = vec![0u64; n.div_ceil(64)];
        let mut first_visit = |id: u32| {
            let (word, bit) = (id as usize / 64, 1u64 << (id % 64));
            let fresh = visited[word] & bit == 0;
            visited[word] |= bit;
            fresh
        };
        let mut candidates = BinaryHeap::with_capacity(ef.saturating_mul(4).min(n));
        let mut results = BinaryHeap::with_capacity(ef + 1);
        first_visit(ep.id);
        candidates.push(Reverse(ep));
        results.push(ep);
        while let Some(Reverse(c)) = candidates.pop() {
            if results.len() >= ef && results.peek().is_some_and(|w| c > *w) {
                break;
            }
            for chunk in self.base.at(c.id as usize).chunks(32) {
                // the unvisited neighbours; touch every cache line of their
                // vectors first, so that the memory loads overlap
                let mut batch = [0u32; 32];
                let mut nbatch = 0;
                for &nb in chunk {
                    if first_visit(nb) {
                        batch[nbatch] = nb;
                        nbatch += 1;
                    }
                }
                let batch = &batch[..nbatch];
                self.touch(batch);
                for &nb in batch {
                    let h = Hit {
                        d: dist(nb),
                        id: nb,
                    };
                    if results.len() < ef || results.peek().is_some_and(|w| h < *w) {
                        candidates.push(Reverse(h));
                        results.push(h);
                        if results.len() > ef {
                            results.pop();
                        }
                    }
                }
            }
        }
        for &id in &self.exact {
            if first_visit(id) {
                let h = Hit { d: dist(id), id };
                if results.len() < ef || results.peek().is_some_and(|w| h < *w) {
                    results.push(h);
                    if results.len() > ef {
                        results.pop();
                    }
                }
            }
        }
        let mut hits = results.into_sorted_vec();
        hits.truncate(k);
        hits
    }

    /// Sets the breadth of the candidate list while searching (at least `k`
    /// is used). Larger is slower and finds more of the true neighbours.
    pub fn set_ef(&mut self, ef: usize) {
        self.ef_search = ef.max(1);
    }

    /// The breadth of the candidate list while searching.
    pub fn ef(&self) -> usize {
        self.ef_search
    }

    /// The path of the index file `<basename>.hnsw` in `dir`.
    pub fn file_path(dir: &Path, basename: &str) -> PathBuf {
        dir.join(format!("{basename}.hnsw"))
    }

    /// Saves the index as `<basename>.hnsw` in `dir` (see the
    /// [module docs](self)), replacing any earlier file of that name.
    ///
    /// `basename` must be a plain file name (no path separators); `dir` must
    /// exist.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Io`] at [`Stage::WriteIndex`], naming the file.
    pub fn save(&self, dir: &Path, basename: &str) -> Result<()> {
        let path = Self::file_path(dir, basename);
        let err = |kind: ErrorKind| Error::at(&path, Stage::WriteIndex, kind);
        check_basename(basename).map_err(err)?;
        let tmp = dir.join(format!("{basename}.hnsw.tmp"));
        let write = || -> io::Result<()> {
            let mut w = CrcWriter::new(BufWriter::with_capacity(1 << 20, File::create(&tmp)?));
            w.bytes(INDEX_MAGIC)?;
            w.u32(INDEX_VERSION)?;
            for v in [
                self.dim,
                self.len(),
                self.m,
                self.ef_construction,
                self.ef_search,
                self.entry as usize,
                self.upper.len(),
                self.exact.len(),
            ] {
                w.u32(to_u32(v)?)?;
            }
            w.f32s(&self.vectors)?;
            w.u32s(&self.base.offsets)?;
            w.u32s(&self.base.links)?;
            for layer in &self.upper {
                w.u32(to_u32(layer.ids.len())?)?;
                w.u32s(&layer.ids)?;
                w.u32s(&layer.offsets)?;
                w.u32s(&layer.links)?;
            }
            w.u32s(&self.exact)?;
            let crc = w.crc.clone().finalize();
            w.u32(crc)?;
            let file = w.inner.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(ErrorKind::Io(e))
        })
    }

    /// Reloads an index saved by [`save`](Self::save) from
    /// `<basename>.hnsw` in `dir`.
    ///
    /// Refuses (with an error, never a panic) a file that is missing,
    /// damaged, of another format version, or that holds another dimension
    /// than `dim` or another vector count than `expected_len`.
    ///
    /// # Errors
    ///
    /// At [`Stage::ReadIndex`], naming the file: [`ErrorKind::Io`] when it
    /// cannot be read, else those of [`HnswSearch::from_bytes`].
    pub fn load(dir: &Path, basename: &str, dim: usize, expected_len: usize) -> Result<Self> {
        let path = Self::file_path(dir, basename);
        let err = |kind: ErrorKind| Error::at(&path, Stage::ReadIndex, kind);
        check_basename(basename).map_err(err)?;
        let bytes = fs::read(&path).map_err(|e| err(ErrorKind::Io(e)))?;
        Self::from_bytes(&bytes, dim, expected_len).map_err(err)
    }

    /// Parses the bytes of an index file written by [`save`](Self::save).
    ///
    /// Checks the magic, the version and the CRC-32 first, then every count,
    /// offset and id against the data (nothing is allocated from an unchecked
    /// size), so a damaged or hostile file is an error, never a panic.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Version`] for another format version,
    /// [`ErrorKind::Corrupt`] for anything else that does not match.
    pub fn from_bytes(
        bytes: &[u8],
        dim: usize,
        expected_len: usize,
    ) -> std::result::Result<Self, ErrorKind> {
        let corrupt = |msg: &str| ErrorKind::Corrupt(msg.to_string());
        let mut r = Reader { bytes };
        if r.take(INDEX_MAGIC.len()) != Some(&INDEX_MAGIC[..]) {
            return Err(corrupt("not a Refrain HNSW index"));
        }
        let version = r.u32().ok_or_else(|| corrupt("the file is cut short"))?;
        if version != INDEX_VERSION {
            return Err(ErrorKind::Version {
                found: version,
                expected: INDEX_VERSION,
            });
        }
        let body = bytes.len().saturating_sub(4);
        let stored_crc = bytes
            .get(body..)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes);
        if bytes.len() < INDEX_MAGIC.len() + 8
            || stored_crc != Some(crc32fast::hash(&bytes[..body]))
        {
            return Err(corrupt("the file is damaged (CRC-32 mismatch)"));
        }
        let mut r = Reader {
            bytes: &bytes[INDEX_MAGIC.len() + 4..body],
        };
        let cut = || corrupt("the file is cut short or inconsistent");
        let mut header = [0usize; 8];
        for h in &mut header {
            *h = r.u32().ok_or_else(cut)? as usize;
        }
        let [file_dim, len, m, ef_construction, ef_search, entry, n_upper, n_exact] = header;
        if file_dim != dim {
            return Err(corrupt(&format!(
                "the index holds vectors of dimension {file_dim}, expected {dim}"
            )));
        }
        if len != expected_len {
            return Err(corrupt(&format!(
                "the index holds {len} vectors, expected {expected_len}"
            )));
        }
        if dim == 0 {
            return Err(corrupt("dimension 0"));
        }
        let vectors = r
            .f32s(len.checked_mul(dim).ok_or_else(cut)?)
            .ok_or_else(cut)?;
        let base = r.layer(None, len).ok_or_else(cut)?;
        let mut upper = Vec::new();
        for _ in 0..n_upper {
            let count = r.u32().ok_or_else(cut)? as usize;
            upper.push(r.layer(Some(count), len).ok_or_else(cut)?);
        }
        let exact = r.u32s(n_exact).ok_or_else(cut)?;
        if !r.bytes.is_empty()
            || exact.iter().any(|&id| id as usize >= len)
            || (len > 0 && entry >= len)
            || upper
                .last()
                .is_some_and(|l| l.ids.binary_search(&(entry as u32)).is_err())
        {
            return Err(cut());
        }
        Ok(HnswSearch {
            dim,
            vectors,
            base,
            upper,
            entry: entry as u32,
            exact,
            ef_search: ef_search.max(1),
            m,
            ef_construction,
        })
    }
}

impl CandidateSearch for HnswSearch {
    fn search(&self, query: &[f32], k: usize) -> Vec<(u32, f32)> {
        self.search_hits(query, k, self.ef_search)
            .into_iter()
            .map(|h| (h.id, h.d))
            .collect()
    }

    fn len(&self) -> usize {
        self.vectors.len() / self.dim
    }

    fn dim(&self) -> usize {
        self.dim
    }
}

/// A basename must be a plain, non-empty file name.
fn check_basename(basename: &str) -> std::result::Result<(), ErrorKind> {
    let plain = !basename.is_empty()
        && !basename.contains(['/', '\\'])
        && basename != "."
        && basename != "..";
    if plain {
        Ok(())
    } else {
        Err(ErrorKind::InvalidInput(format!(
            "index basename {basename:?} must be a plain file name"
        )))
    }
}

fn to_u32(v: usize) -> io::Result<u32> {
    u32::try_from(v).map_err(|_| io::Error::other(format!("{v} does not fit the index format")))
}

/// A writer that keeps the CRC-32 of what it wrote.
struct CrcWriter<W: Write> {
    inner: W,
    crc: crc32fast::Hasher,
}

impl<W: Write> CrcWriter<W> {
    fn new(inner: W) -> Self {
        CrcWriter {
            inner,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn bytes(&mut self, b: &[u8]) -> io::Result<()> {
        self.crc.update(b);
        self.inner.write_all(b)
    }

    fn u32(&mut self, v: u32) -> io::Result<()> {
        self.bytes(&v.to_le_bytes())
    }

    fn u32s(&mut self, vs: &[u32]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        for chunk in vs.chunks(1024) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.bytes(&buf)?;
        }
        Ok(())
    }

    fn f32s(&mut self, vs: &[f32]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(4096);
        for chunk in vs.chunks(1024) {
            buf.clear();
            buf.extend(chunk.iter().flat_map(|v| v.to_le_bytes()));
            self.bytes(&buf)?;
        }
        Ok(())
    }
}

/// Reads the index file, checking every length against what is left.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }

    fn u32s(&mut self, n: usize) -> Option<Vec<u32>> {
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    fn f32s(&mut self, n: usize) -> Option<Vec<f32>> {
        let b = self.take(n.checked_mul(4)?)?;
        Some(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        )
    }

    /// A layer: the base layer (`count` None: every node of `0..len`) or an
    /// upper layer of `count` nodes; every offset and id checked.
    fn layer(&mut self, count: Option<usize>, len: usize) -> Option<Layer> {
        let ids = match count {
            None => Vec::new(),
            Some(c) => {
                let ids = self.u32s(c)?;
                let ascending = ids.windows(2).all(|w| w[0] < w[1]);
                if !ascending || ids.last().is_some_and(|&id| id as usize >= len) {
                    return None;
                }
                ids
            }
        };
        let nodes = count.unwrap_or(len);
        let offsets = self.u32s(nodes.checked_add(1)?)?;
        let total = *offsets.last()? as usize;
        if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
            return None;
        }
        let links = self.u32s(total)?;
        if links.iter().any(|&id| id as usize >= len) {
            return None;
        }
        Some(Layer {
            ids,
            offsets,
            links,
        })
    }
}

/// A test suite that any [`CandidateSearch`] implementation can run: an
/// external engine passes it when it answers as the index expects (ids in
/// range, nearest first, cosine distances, every stored vector found, the
/// same answers from many threads).
///
/// ```
/// use refrain::search::{conformance, ExactSearch};
/// let dim = 16;
/// let vectors = conformance::vectors(500, dim, 7);
/// let engine = ExactSearch::new(vectors.clone(), dim);
/// let report = conformance::run(&engine, &vectors, dim).unwrap();
/// assert_eq!(report.recall_at_10, 1.0);
/// ```
///
/// To fill an external engine with an index's own windows, see
/// [`crate::index::Index::window_vectors`].
pub mod conformance {
    use super::{cosine_distance, CandidateSearch};

    /// `n` unit vectors of `dim` values, flat (vector `i` is
    /// `[i * dim..(i + 1) * dim]`), in loose clusters as window embeddings
    /// are, from `seed`: load them into the engine under test, in order.
    pub fn vectors(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        };
        let centres: Vec<f32> = (0..dim * n.div_ceil(20).max(1)).map(|_| next()).collect();
        let mut v = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[(i % (centres.len() / dim)) * dim..][..dim];
            let start = v.len();
            v.extend(c.iter().map(|&c| c + 0.35 * next()));
            crate::embed::normalize(&mut v[start..]);
        }
        v
    }

    /// How well an engine that passed found the nearest vectors.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub struct Conformance {
        /// Stored vectors used as queries.
        pub queries: usize,
        /// Share of the exact 10 nearest (ties included) that the engine
        /// returned, over those queries: 1 for an exact engine.
        pub recall_at_10: f64,
    }

    /// The least recall [`run`] accepts: an engine under it does not find
    /// what the audit needs (the built-in HNSW graph gives 0.84 on an index
    /// of 2,233 windows, over 0.9 on [`vectors`]).
    pub const MIN_RECALL: f64 = 0.7;

    /// What an engine did wrong: one line per failed check.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Failures(pub Vec<String>);

    impl std::fmt::Display for Failures {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{} conformance check(s) failed:", self.0.len())?;
            for m in &self.0 {
                write!(f, "\n  - {m}")?;
            }
            Ok(())
        }
    }

    impl std::error::Error for Failures {}

    /// Checks `engine`, which must hold exactly `vectors` (`dim` values
    /// each, ids in order): its length and dimension; for stored vectors
    /// used as queries, at most `k` hits, ids in `0..len` without
    /// duplicates, finite distances in `[0, 2]` that are `1 − dot`
    /// (±1e-3), nearest first, the vector itself first, and a recall of
    /// the exact 10 nearest of at least [`MIN_RECALL`]; `k = 0`, `k > len`, a query of
    /// another dimension (no hits) and a NaN query (no panic, valid ids);
    /// and the same answers from four threads at once.
    ///
    /// # Errors
    ///
    /// [`Failures`], listing every check that failed (at most a few per
    /// kind).
    pub fn run(
        engine: &dyn CandidateSearch,
        vectors: &[f32],
        dim: usize,
    ) -> Result<Conformance, Failures> {
        let mut fails: Vec<String> = Vec::new();
        let mut fail = |m: String| {
            if fails.len() < 20 {
                fails.push(m);
            }
        };
        if dim == 0 || !vectors.len().is_multiple_of(dim) {
            return Err(Failures(vec![format!(
                "the suite was given {} values, not a whole number of {dim}-value vectors",
                vectors.len()
            )]));
        }
        let n = vectors.len() / dim;
        if engine.len() != n {
            fail(format!(
                "len() is {}, but {n} vectors were loaded",
                engine.len()
            ));
        }
        if engine.is_empty() != (n == 0) {
            fail(format!(
                "is_empty() is {} with {n} vectors",
                engine.is_empty()
            ));
        }
        if engine.dim() != dim {
            fail(format!("dim() is {}, not {dim}", engine.dim()));
        }
        let v = |i: usize| &vectors[i * dim..(i + 1) * dim];
        let step = (n / 200).max(1);
        let queries: Vec<usize> = (0..n).step_by(step).collect();
        let k = 10usize;
        let mut recall = (0usize, 0usize);
        let mut answers = Vec::with_capacity(queries.len());
        for &q in &queries {
            let hits = engine.search(v(q), k);
            check_hits(&hits, k.min(n), n, &mut fail, &format!("query {q}"));
            for &(id, d) in &hits {
                if (id as usize) < n {
                    let want = cosine_distance(v(q), v(id as usize));
                    if (d - want).abs() > 1e-3 {
                        fail(format!(
                            "query {q}: id {id} at distance {d}, but 1 - dot is {want}"
                        ));
                    }
                }
            }
            match hits.first() {
                Some(&(id, d)) if id as usize == q || d <= 1e-4 => {}
                other => fail(format!(
                    "query {q}: a stored vector is not its own nearest hit ({other:?})"
                )),
            }
            let mut exact: Vec<(f32, usize)> =
                (0..n).map(|i| (cosine_distance(v(q), v(i)), i)).collect();
            exact.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let cut = exact.get(k.min(n).saturating_sub(1)).map_or(0.0, |e| e.0) + 1e-6;
            let true_near: Vec<usize> = exact
                .iter()
                .take_while(|e| e.0 <= cut)
                .map(|e| e.1)
                .collect();
            recall.1 += k.min(n);
            recall.0 += hits
                .iter()
                .filter(|(id, _)| true_near.contains(&(*id as usize)))
                .count();
            answers.push(hits);
        }
        let recall_at_10 = if recall.1 == 0 {
            1.0
        } else {
            recall.0 as f64 / recall.1 as f64
        };
        if recall_at_10 < MIN_RECALL {
            fail(format!(
                "recall of the exact {k} nearest is {}/{}, under {MIN_RECALL}",
                recall.0, recall.1
            ));
        }
        if n > 0 {
            if !engine.search(v(0), 0).is_empty() {
                fail("k = 0 gave hits".into());
            }
            let all = engine.search(v(0), n + 5);
            check_hits(&all, n, n, &mut fail, "k > len");
            let long: Vec<f32> = v(0).iter().chain([0.0f32].iter()).copied().collect();
            if !engine.search(&long, k).is_empty() {
                fail(format!(
                    "a query of {} values (not {dim}) gave hits",
                    dim + 1
                ));
            }
            if !engine.search(&v(0)[..dim - 1], k).is_empty() {
                fail(format!(
                    "a query of {} values (not {dim}) gave hits",
                    dim - 1
                ));
            }
            let nan = vec![f32::NAN; dim];
            for (id, _) in engine.search(&nan, k) {
                if id as usize >= n {
                    fail(format!("a NaN query gave id {id}, beyond {n}"));
                }
            }
        }
        // many threads at once: the same answers
        let again: Vec<Vec<Vec<(u32, f32)>>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        queries
                            .iter()
                            .map(|&q| engine.search(v(q), k))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (t, a) in again.iter().enumerate() {
            if a != &answers {
                fail(format!("thread {t} got other answers than a single thread"));
            }
        }
        if fails.is_empty() {
            Ok(Conformance {
                queries: queries.len(),
                recall_at_10,
            })
        } else {
            Err(Failures(fails))
        }
    }

    /// Checks one answer: at most `want` hits (exactly `want` when that is
    /// fewer than the `n` stored), valid, distinct, nearest first.
    fn check_hits(
        hits: &[(u32, f32)],
        want: usize,
        n: usize,
        fail: &mut impl FnMut(String),
        what: &str,
    ) {
        if hits.len() > want {
            fail(format!("{what}: {} hits, more than {want}", hits.len()));
        }
        if hits.len() < want && want < n {
            fail(format!(
                "{what}: {} hits, fewer than {want} with {n} stored",
                hits.len()
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, &(id, d)) in hits.iter().enumerate() {
            if id as usize >= n {
                fail(format!("{what}: id {id} is beyond the {n} stored vectors"));
            }
            if !seen.insert(id) {
                fail(format!("{what}: id {id} twice"));
            }
            if !(d.is_finite() && (0.0..=2.0).contains(&d)) {
                fail(format!("{what}: distance {d} of id {id} is outside [0, 2]"));
            }
            if i > 0 && hits[i - 1].1 > d {
                fail(format!(
                    "{what}: hits are not nearest first ({} before {d})",
                    hits[i - 1].1
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A tiny deterministic PRNG (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn new(seed: u64) -> Self {
            Rng(seed.max(1))
        }
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        /// Uniform in (0, 1].
        fn uniform(&mut self) -> f32 {
            ((self.next_u64() >> 40) as f32 + 1.0) / (1u64 << 24) as f32
        }
        /// Standard normal (Box–Muller).
        fn normal(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        }
    }

    fn normalize(v: &mut [f32]) {
        let n = dot(v, v).sqrt();
        if n > 0.0 {
            v.iter_mut().for_each(|x| *x /= n);
        }
    }

    /// `n` unit vectors uniformly on the sphere.
    fn random_unit(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let mut v: Vec<f32> = (0..dim).map(|_| rng.normal()).collect();
            normalize(&mut v);
            out.extend_from_slice(&v);
        }
        out
    }

    /// `n` unit vectors in `clusters` clusters (centre + noise of relative
    /// size `spread`).
    fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
        let centres = random_unit(clusters, dim, seed ^ 0x9E37_79B9);
        let mut rng = Rng::new(seed);
        let mut out = Vec::with_capacity(n * dim);
        let scale = spread / (dim as f32).sqrt();
        for _ in 0..n {
            let c = (rng.next_u64() % clusters as u64) as usize;
            let mut v: Vec<f32> = centres[c * dim..(c + 1) * dim]
                .iter()
                .map(|x| x + scale * rng.normal())
                .collect();
            normalize(&mut v);
            out.extend_from_slice(&v);
        }
        out
    }

    /// `count` stored vectors (picked at random) plus noise of relative size
    /// `noise`, normalised.
    fn noisy_queries(
        vectors: &[f32],
        dim: usize,
        count: usize,
        noise: f32,
        seed: u64,
    ) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        let n = vectors.len() / dim;
        let scale = noise / (dim as f32).sqrt();
        (0..count)
            .map(|_| {
                let i = (rng.next_u64() % n as u64) as usize;
                let mut q: Vec<f32> = vectors[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|x| x + scale * rng.normal())
                    .collect();
                normalize(&mut q);
                q
            })
            .collect()
    }

    /// Ids of stored vectors that do not find themselves first (or an
    /// identical duplicate at distance ≈ 0).
    fn self_misses(search: &dyn CandidateSearch, vectors: &[f32], dim: usize) -> Vec<usize> {
        vectors
            .par_chunks_exact(dim)
            .enumerate()
            .filter(|(i, v)| {
                let hits = search.search(v, 1);
                !matches!(hits.first(), Some(&(id, d)) if id as usize == *i || d <= 1e-6)
            })
            .map(|(i, _)| i)
            .collect()
    }

    fn recall_at(
        approx: &dyn CandidateSearch,
        exact: &dyn CandidateSearch,
        queries: &[Vec<f32>],
        k: usize,
    ) -> f64 {
        let found: usize = queries
            .par_iter()
            .map(|q| {
                let truth: Vec<u32> = exact.search(q, k).iter().map(|h| h.0).collect();
                let got = approx.search(q, k);
                got.iter().filter(|h| truth.contains(&h.0)).count()
            })
            .sum();
        found as f64 / (queries.len() * k) as f64
    }

    const DIM: usize = 67;

    #[test]
    fn exact_search_orders_by_distance() {
        let v = random_unit(500, DIM, 7);
        let exact = ExactSearch::new(v.clone(), DIM);
        assert_eq!(exact.len(), 500);
        assert_eq!(exact.dim(), DIM);
        let q = &v[3 * DIM..4 * DIM];
        let hits = exact.search(q, 10);
        assert_eq!(hits.len(), 10);
        assert_eq!(hits[0].0, 3);
        assert!(hits[0].1 < 1e-6);
        assert!(hits.windows(2).all(|w| w[0].1 <= w[1].1));
        for &(id, d) in &hits {
            let s = &v[id as usize * DIM..(id as usize + 1) * DIM];
            let want = 1.0 - q.iter().zip(s).map(|(a, b)| a * b).sum::<f32>();
            assert!((d - want.max(0.0)).abs() < 1e-5);
        }
        assert_eq!(exact.search(q, 1000).len(), 500);
        assert!(exact.search(q, 0).is_empty());
        assert!(exact.search(&q[1..], 5).is_empty());
        assert!(ExactSearch::new(Vec::new(), DIM).is_empty());
    }

    #[test]
    fn small_and_odd_inputs() {
        // an empty index, a single vector, duplicates, bad queries
        let empty = HnswSearch::build(&[], DIM);
        assert!(empty.is_empty());
        assert!(empty.search(&[0.0; DIM], 5).is_empty());

        let one = random_unit(1, DIM, 3);
        let single = HnswSearch::build(&one, DIM);
        assert_eq!(single.search(&one, 5), vec![(0, 0.0)]);

        let mut v = random_unit(300, DIM, 11);
        let dup = v[5 * DIM..6 * DIM].to_vec();
        v.extend_from_slice(&dup); // id 300 = id 5
        let hnsw = HnswSearch::build(&v, DIM);
        let exact = ExactSearch::new(v.clone(), DIM);
        assert_eq!(hnsw.len(), 301);
        assert!(self_misses(&hnsw, &v, DIM).is_empty());
        let hits = hnsw.search(&dup, 2);
        let mut ids: Vec<u32> = hits.iter().map(|h| h.0).collect();
        ids.sort();
        assert_eq!(ids, vec![5, 300]);

        let mut far = vec![0.0f32; DIM];
        far[0] = 3.0; // not unit length: dot > 1
        let mut nan = vec![0.1f32; DIM];
        nan[5] = f32::NAN;
        for s in [&hnsw as &dyn CandidateSearch, &exact] {
            let hits = s.search(&far, 5);
            assert_eq!(hits.len(), 5);
            assert!(hits.iter().all(|h| (0.0..=2.0).contains(&h.1)));
            assert!(s.search(&nan, 5).iter().all(|h| h.1 == 2.0));
            assert!(s.search(&[1.0; 3], 5).is_empty());
            assert!(s.search(&far, 0).is_empty());
            assert_eq!(s.search(&dup, 1000).len(), 301);
        }
    }

    #[test]
    fn every_vector_finds_itself_after_build_and_reload() {
        let n = 20_000;
        let v = random_unit(n, DIM, 42);
        let hnsw = HnswSearch::build(&v, DIM);
        assert_eq!(hnsw.len(), n);
        let misses = self_misses(&hnsw, &v, DIM);
        assert!(
            misses.is_empty(),
            "{} of {n} vectors do not find themselves after build: {:?}",
            misses.len(),
            &misses[..misses.len().min(20)]
        );

        let dir = tempfile::tempdir().unwrap();
        hnsw.save(dir.path(), "idx").unwrap();
        let loaded = HnswSearch::load(dir.path(), "idx", DIM, n).unwrap();
        assert!(loaded == hnsw);
        let misses = self_misses(&loaded, &v, DIM);
        assert!(
            misses.is_empty(),
            "{} of {n} vectors do not find themselves after reload",
            misses.len()
        );
    }

    #[test]
    fn recall_at_10_of_clustered_vectors() {
        let n = 20_000;
        let v = clustered(n, DIM, 200, 0.5, 5);
        let hnsw = HnswSearch::build(&v, DIM);
        assert!(self_misses(&hnsw, &v, DIM).is_empty());
        let exact = ExactSearch::new(v.clone(), DIM);
        let queries = noisy_queries(&v, DIM, 1_000, 0.1, 9);
        let recall = recall_at(&hnsw, &exact, &queries, 10);
        assert!(recall >= 0.95, "recall@10 = {recall:.4}");
    }

    #[test]
    fn save_load_round_trip_and_refusals() {
        let n = 3_000;
        let v = clustered(n, DIM, 30, 0.5, 77);
        let mut hnsw = HnswSearch::build(&v, DIM);
        hnsw.set_ef(100);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        hnsw.save(d, "tracks").unwrap();
        hnsw.save(d, "tracks").unwrap(); // replaces
        let loaded = HnswSearch::load(d, "tracks", DIM, n).unwrap();
        assert!(loaded == hnsw);
        assert_eq!(loaded.ef(), 100);
        for q in noisy_queries(&v, DIM, 50, 0.1, 3) {
            assert_eq!(hnsw.search(&q, 10), loaded.search(&q, 10));
        }
        let names: Vec<String> = fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["tracks.hnsw".to_string()]);

        let refused = |r: Result<HnswSearch>| match r {
            Err(e) => {
                assert_eq!(e.stage, Stage::ReadIndex);
                assert!(e.path.is_some());
                e.kind
            }
            Ok(_) => panic!("loaded a bad index"),
        };
        let load = |dim, len| HnswSearch::load(d, "tracks", dim, len);
        assert!(matches!(refused(load(DIM, n + 1)), ErrorKind::Corrupt(_)));
        assert!(matches!(refused(load(DIM + 1, n)), ErrorKind::Corrupt(_)));
        assert!(matches!(
            refused(HnswSearch::load(d, "nothing", DIM, n)),
            ErrorKind::Io(_)
        ));
        assert!(matches!(
            refused(HnswSearch::load(d, "../x", DIM, n)),
            ErrorKind::InvalidInput(_)
        ));

        // damaged copies
        let path = HnswSearch::file_path(d, "tracks");
        let good = fs::read(&path).unwrap();
        let mut damaged: Vec<Vec<u8>> = vec![Vec::new(), good[..good.len() / 2].to_vec()];
        for at in [0, 9, 20, good.len() / 3, good.len() / 2, good.len() - 1] {
            let mut b = good.clone();
            b[at] ^= 0x5a;
            damaged.push(b);
        }
        for cut in [1, 4, 12, 50, 1000] {
            damaged.push(good[..good.len() - cut].to_vec());
        }
        for bad in &damaged {
            fs::write(&path, bad).unwrap();
            refused(load(DIM, n));
        }
        // a structurally bad file with a valid CRC: a link out of range
        let mut bad = good.clone();
        let links_at = 8 + 4 + 8 * 4 + n * DIM * 4 + (n + 1) * 4;
        bad[links_at..links_at + 4].copy_from_slice(&(n as u32 + 7).to_le_bytes());
        let body = bad.len() - 4;
        let crc = crc32fast::hash(&bad[..body]);
        bad[body..].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &bad).unwrap();
        assert!(matches!(refused(load(DIM, n)), ErrorKind::Corrupt(_)));
        // another version
        let mut other = good.clone();
        other[8..12].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&path, &other).unwrap();
        assert!(matches!(
            refused(load(DIM, n)),
            ErrorKind::Version {
                found: 99,
                expected: 1
            }
        ));
        fs::write(&path, &good).unwrap();
        assert!(load(DIM, n).is_ok());

        // saving into a missing directory is an error, not a panic
        let e = hnsw.save(&d.join("missing"), "x").unwrap_err();
        assert_eq!(e.stage, Stage::WriteIndex);
        assert!(hnsw.save(d, "a/b").is_err());
    }

    #[test]
    fn a_huge_breadth_or_k_is_not_an_allocation() {
        let v = random_unit(300, DIM, 4);
        let hnsw = HnswSearch::build(&v, DIM);
        let want = hnsw.search(&v[..DIM], 300);
        assert_eq!(hnsw.search(&v[..DIM], usize::MAX), want);
        // a file whose header claims a breadth of 2^32 - 1, checksum fixed
        let dir = tempfile::tempdir().unwrap();
        hnsw.save(dir.path(), "h").unwrap();
        let mut b = std::fs::read(HnswSearch::file_path(dir.path(), "h")).unwrap();
        let body = b.len() - 4;
        // magic, version, then dim, len, m, ef_construction, ef_search
        b[8 + 4 + 16..8 + 4 + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = crc32fast::hash(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
        let wide = HnswSearch::from_bytes(&b, DIM, 300).unwrap();
        assert_eq!(wide.ef(), u32::MAX as usize);
        assert_eq!(wide.search(&v[..DIM], 300), want);
        assert_eq!(
            ExactSearch::new(v.clone(), DIM)
                .search(&v[..DIM], usize::MAX)
                .len(),
            300
        );
    }

    #[test]
    fn empty_index_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let empty = HnswSearch::build(&[], DIM);
        empty.save(dir.path(), "e").unwrap();
        let loaded = HnswSearch::load(dir.path(), "e", DIM, 0).unwrap();
        assert!(loaded.is_empty());
        assert!(loaded.search(&[0.0; DIM], 3).is_empty());
        assert!(HnswSearch::load(dir.path(), "e", DIM, 1).is_err());
    }

    /// Build / search / save / load figures at the size of a 50-hour index,
    /// on one thread. `cargo test --release --lib search -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timings_180k() {
        let n = 180_000;
        let v = clustered(n, DIM, 2_000, 0.5, 123);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        pool.install(|| {
            let t = Instant::now();
            let mut hnsw =
                HnswSearch::build_unrepaired(&v, DIM, HNSW_M, HNSW_EF_CONSTRUCTION);
            let graph = t.elapsed().as_secs_f64();
            let misses = hnsw.repair();
            println!(
                "build {n} x {DIM} (1 thread): {:.1} s (hnsw_rs + copy {graph:.1} s, repair {:.1} s); \
                 not found after each repair round: {misses:?}; {hnsw:?}",
                t.elapsed().as_secs_f64(),
                t.elapsed().as_secs_f64() - graph,
            );
            let exact = ExactSearch::new(v.clone(), DIM);
            let queries = noisy_queries(&v, DIM, 5_000, 0.1, 9);
            for ef in [20, 32, 48, 64, 128] {
                hnsw.set_ef(ef);
                let t = Instant::now();
                for q in &queries {
                    std::hint::black_box(hnsw.search(q, 20));
                }
                let per = t.elapsed().as_secs_f64() / queries.len() as f64;
                let r10 = recall_at(&hnsw, &exact, &queries[..500], 10);
                let r20 = recall_at(&hnsw, &exact, &queries[..500], 20);
                println!(
                    "ef {ef:3}: k=20 {:.1} µs/query; recall@10 {r10:.4}, recall@20 {r20:.4}",
                    per * 1e6
                );
            }
            hnsw.set_ef(HNSW_EF_SEARCH);
            let t = Instant::now();
            for q in &queries[..100] {
                std::hint::black_box(exact.search(q, 20));
            }
            println!(
                "exact k=20: {:.0} µs/query",
                t.elapsed().as_secs_f64() / 100.0 * 1e6
            );

            let dir = tempfile::tempdir().unwrap();
            let t = Instant::now();
            hnsw.save(dir.path(), "big").unwrap();
            let bytes = fs::metadata(HnswSearch::file_path(dir.path(), "big"))
                .unwrap()
                .len();
            println!(
                "save: {:.2} s; {:.1} B/vector ({:.1} MB)",
                t.elapsed().as_secs_f64(),
                bytes as f64 / n as f64,
                bytes as f64 / 1e6
            );
            let t = Instant::now();
            let loaded = HnswSearch::load(dir.path(), "big", DIM, n).unwrap();
            println!("load: {:.3} s", t.elapsed().as_secs_f64());
            assert!(loaded == hnsw);
            let t = Instant::now();
            let misses = self_misses(&loaded, &v, DIM);
            println!(
                "self-find after load: {} misses of {n} ({:.1} µs/query, k=1)",
                misses.len(),
                t.elapsed().as_secs_f64() / n as f64 * 1e6
            );
        });
    }

    #[test]
    fn both_engines_pass_the_conformance_suite_and_broken_ones_do_not() {
        let dim = 24;
        let v = conformance::vectors(3_000, dim, 11);
        let exact = conformance::run(&ExactSearch::new(v.clone(), dim), &v, dim).unwrap();
        assert_eq!(exact.recall_at_10, 1.0);
        let hnsw = conformance::run(&HnswSearch::build(&v, dim), &v, dim).unwrap();
        assert!(hnsw.recall_at_10 > 0.9, "{hnsw:?}");
        let small = conformance::vectors(7, dim, 3);
        conformance::run(&ExactSearch::new(small.clone(), dim), &small, dim).unwrap();
        conformance::run(&HnswSearch::build(&small, dim), &small, dim).unwrap();

        /// An engine that answers farthest first and one id too far.
        struct Broken(ExactSearch);
        impl CandidateSearch for Broken {
            fn search(&self, q: &[f32], k: usize) -> Vec<(u32, f32)> {
                let mut h = self.0.search(q, k);
                h.reverse();
                if let Some(x) = h.last_mut() {
                    x.0 = self.0.len() as u32;
                }
                h
            }
            fn len(&self) -> usize {
                self.0.len()
            }
            fn dim(&self) -> usize {
                self.0.dim()
            }
        }
        let e = conformance::run(&Broken(ExactSearch::new(v.clone(), dim)), &v, dim).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("nearest first"), "{text}");
        assert!(text.contains("beyond the 3000 stored"), "{text}");
        // an engine loaded with other vectors
        let other = conformance::vectors(3_000, dim, 12);
        let e = conformance::run(&ExactSearch::new(other, dim), &v, dim).unwrap_err();
        assert!(e.to_string().contains("1 - dot"), "{e}");
    }
}
