//! Candidates: the few training items a query is re-ranked against, found
//! by three independent searches so that no kind of copy depends on one.
//!
//! 1. **Window embeddings** ([`embedding_votes`]): every query window, at
//!    several time scales and at each once more with its harmony part
//!    alone, is searched among the indexed windows. A hit votes for its
//!    item and for the offset it implies (2 s bins); an item's vote is its
//!    best bin plus half of each neighbour bin. Finds re-renderings and
//!    transformed copies that keep the harmony.
//! 2. **Landmarks** ([`crate::landmarks`]): the items whose peak pairs the
//!    query shares at one offset — copies under or inside other music.
//! 3. **Melodic n-grams** ([`crate::ngrams`]): the items whose interval
//!    n-grams the query shares at one offset in notes — a melody re-played
//!    in another key, tempo, timbre or arrangement, whatever its harmony.
//!
//! [`gather`] merges them: the embedding candidates, then each search's
//! strongest items that are not among them yet.

use std::collections::HashMap;

use crate::embed::{time_scale, Embedder};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::Fingerprint;
use crate::index::Index;
use crate::landmarks::LandmarkMatches;
use crate::ngrams::MelodicMatch;

/// Items the embedding votes keep. A melody re-played on other instruments
/// keeps its harmony but not its texture, so its windows are only moderately
/// near the original's, and other items' windows crowd in: on the
/// development set a chorale re-played on organ or strings ranks its
/// original 13th to 24th in 9 of 44 cases (12 kept found 35 of 44, 24
/// kept 43).
pub const EMBEDDING_CANDIDATES: usize = 24;
/// Items the landmarks add to the candidates (when not there already)...
pub const LANDMARK_CANDIDATES: usize = 2;
/// ... if their ratio is at least this.
pub const LANDMARK_CANDIDATE_RATIO: f32 = 2.0;
/// Items the melodic n-grams add to the candidates (when not there already)...
pub const MELODIC_CANDIDATES: usize = 6;
/// ... if at least this many query positions hit them in one window.
pub const MELODIC_CANDIDATE_COUNT: u32 = 3;
/// Width of an embedding offset bin, seconds.
const BIN_S: f32 = 2.0;

/// A candidate item and where its evidence points.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Vote {
    /// Item id.
    pub item: usize,
    /// Embedding votes (0 when another search proposed it).
    pub votes: f32,
    /// Item time minus query time (seconds) of the best offset bin.
    pub offset_s: f32,
    /// Time scale of the query windows that voted (query time × scale =
    /// item time).
    pub scale: f64,
    /// Index of that scale in the configuration.
    pub scale_index: usize,
    /// The melodic n-gram match, when the n-grams hit the item.
    pub melodic: Option<MelodicMatch>,
}

/// Settings of [`embedding_votes`].
#[derive(Debug, Clone, Copy)]
pub struct VoteSettings<'a> {
    /// Time scales the query is embedded at.
    pub scales: &'a [f64],
    /// Neighbours fetched per window.
    pub neighbors: usize,
    /// Items kept.
    pub candidates: usize,
    /// An item left out (leave-one-out calibration).
    pub exclude: Option<usize>,
}

/// Leading embedding dimensions that hold the harmony part.
const HARMONY_DIMS: usize = 7 * crate::embed::TIME_BANDS.len();

/// One query window vector of the embedding search, in the order the
/// votes are counted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryWindow {
    /// Pass: `scale index` (plain) or `scales + scale index` (harmony part
    /// alone).
    pub pass: u8,
    /// Start of the window in scaled query time, seconds.
    pub t_q: f32,
    /// Factor on the similarity of its hits.
    pub gain: f32,
}

/// Calls `visit` with every query window vector of the embedding search
/// (every scale, the plain pass then the harmony part alone), in the order
/// [`VoteCounter`] must count their hits. `harmony_query` is a reused
/// buffer.
///
/// # Errors
///
/// Those of `visit`.
pub fn for_each_window(
    fp: &Fingerprint,
    scales: &[f64],
    embedder: &mut Embedder,
    harmony_query: &mut Vec<f32>,
    mut visit: impl FnMut(QueryWindow, &[f32]) -> Result<()>,
) -> Result<()> {
    let n = scales.len();
    for (si, &scale) in scales.iter().enumerate() {
        let emb = if (scale - 1.0).abs() < 1e-9 {
            embedder.embed(fp.chroma.view(), fp.bands.view())
        } else {
            let c = time_scale(fp.chroma.view(), scale);
            let b = time_scale(fp.bands.view(), scale);
            embedder.embed(c.view(), b.view())
        };
        // the plain pass, then a pass on the harmony part alone:
        // re-played melodies keep their harmony, not their texture
        let passes: &[(usize, bool)] = &[(si, false), (n + si, true)];
        for &(pass, harmony_only) in passes {
            for (qw, v) in emb.vectors.rows().into_iter().enumerate() {
                let t_q = (qw as f64 * emb.hop_s) as f32; // in scaled query time
                let v = v.as_slice().expect("contiguous");
                let (query, gain) = if harmony_only {
                    harmony_query.clear();
                    harmony_query.extend_from_slice(v);
                    harmony_query[HARMONY_DIMS..].fill(0.0);
                    crate::embed::normalize(harmony_query);
                    (&harmony_query[..], 1.0 / crate::embed::HARMONY_WEIGHT)
                } else {
                    (v, 1.0)
                };
                visit(
                    QueryWindow {
                        pass: pass as u8,
                        t_q,
                        gain,
                    },
                    query,
                )?;
            }
        }
    }
    Ok(())
}

/// Counts the embedding votes of query windows' hits (see
/// [`embedding_votes`]); windows must be added in the order
/// [`for_each_window`] gives them.
#[derive(Debug, Default)]
pub struct VoteCounter {
    /// (item, pass, offset bin) -> votes
    bins: HashMap<(u32, u8, i32), f32>,
    best_hit: HashMap<(u32, u8, i32), f32>,
}

impl VoteCounter {
    /// Adds one query window's nearest stored windows, `(item, start in
    /// the item in seconds, distance)`, leaving out item `exclude`.
    pub fn add(
        &mut self,
        w: QueryWindow,
        hits: impl IntoIterator<Item = (u32, f32, f32)>,
        exclude: Option<usize>,
    ) {
        self.best_hit.clear();
        for (item, start, dist) in hits {
            if Some(item as usize) == exclude {
                continue;
            }
            let offset = start - w.t_q;
            let key = (item, w.pass, (offset / BIN_S).round() as i32);
            let sim = ((1.0 - dist) * w.gain).clamp(0.0, 1.0);
            let e = self.best_hit.entry(key).or_insert(0.0);
            *e = e.max(sim);
        }
        for (k, v) in self.best_hit.iter() {
            *self.bins.entry(*k).or_insert(0.0) += v;
        }
    }

    /// The `candidates` items with the most votes, best first (`scales` as
    /// the windows were made with).
    pub fn votes(&self, scales: &[f64], candidates: usize) -> Vec<Vote> {
        let n = scales.len();
        let bins = &self.bins;
        // an item's vote: its best bin plus its neighbours
        let mut per_item: HashMap<u32, Vote> = HashMap::new();
        for (&(item, si, b), _) in bins.iter() {
            let v = bins.get(&(item, si, b)).copied().unwrap_or(0.0)
                + 0.5 * bins.get(&(item, si, b - 1)).copied().unwrap_or(0.0)
                + 0.5 * bins.get(&(item, si, b + 1)).copied().unwrap_or(0.0);
            let e = per_item.entry(item).or_insert(Vote {
                item: item as usize,
                votes: 0.0,
                offset_s: f32::INFINITY,
                scale: 1.0,
                scale_index: usize::MAX,
                melodic: None,
            });
            // ties go to the smaller offset and scale index, so the result
            // does not depend on the hash map's (per-process) order
            let key = (b as f32 * BIN_S, si as usize % n);
            let current = (e.offset_s, e.scale_index);
            if v > e.votes || (v == e.votes && key < current) {
                e.votes = v;
                e.scale_index = key.1;
                e.offset_s = key.0;
                e.scale = scales[key.1];
            }
        }
        let mut votes: Vec<Vote> = per_item.into_values().collect();
        votes.sort_by(|a, b| b.votes.total_cmp(&a.votes).then(a.item.cmp(&b.item)));
        votes.truncate(candidates.max(1));
        votes
    }
}

/// Candidate items of the window embeddings, with their best offset
/// (seconds) and time scale, best first. `harmony_query` is a reused
/// buffer.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (stage `audit`) when the index's candidate
/// search returns a window id the index does not hold (an external engine
/// out of step with it).
pub fn embedding_votes(
    index: &Index,
    fp: &Fingerprint,
    s: VoteSettings,
    embedder: &mut Embedder,
    harmony_query: &mut Vec<f32>,
) -> Result<Vec<Vote>> {
    let search = index.search();
    let mut counter = VoteCounter::default();
    let mut hits: Vec<(u32, f32, f32)> = Vec::new();
    for_each_window(fp, s.scales, embedder, harmony_query, |w, query| {
        hits.clear();
        for (id, dist) in search.search(query, s.neighbors) {
            let (Some(&item), Some(&start)) = (
                index.window_item.get(id as usize),
                index.window_start_s.get(id as usize),
            ) else {
                return Err(bad_window_id(id, index.window_item.len()));
            };
            hits.push((item, start, dist));
        }
        counter.add(w, hits.iter().copied(), s.exclude);
        Ok(())
    })?;
    Ok(counter.votes(s.scales, s.candidates))
}

/// The error for a candidate-search hit that names no stored window (an
/// external [`crate::search::CandidateSearch`] out of step with the index).
fn bad_window_id(id: u32, windows: usize) -> Error {
    Error::new(
        Stage::Audit,
        ErrorKind::InvalidInput(format!(
            "the candidate search returned window id {id}, but the index holds {windows} \
             windows (ids 0..{windows}): the search engine does not hold this index's windows \
             in its order (see `Index::window_vectors`)"
        )),
    )
}

/// Merges the three searches: the embedding `votes`, then up to
/// [`LANDMARK_CANDIDATES`] landmark items with a ratio of at least
/// [`LANDMARK_CANDIDATE_RATIO`], then up to [`MELODIC_CANDIDATES`] melodic
/// items with at least [`MELODIC_CANDIDATE_COUNT`] hits; each melodic
/// match is attached to its item's vote. `frame_s` is the STFT hop.
pub fn gather(
    mut votes: Vec<Vote>,
    landmarks: &LandmarkMatches,
    melodic: &[MelodicMatch],
    frame_s: f32,
) -> Vec<Vote> {
    for m in landmarks.items.iter().take(LANDMARK_CANDIDATES) {
        if landmarks.ratio(m) >= LANDMARK_CANDIDATE_RATIO
            && !votes.iter().any(|v| v.item == m.item as usize)
        {
            votes.push(Vote {
                item: m.item as usize,
                votes: 0.0,
                offset_s: m.offset_frames as f32 * frame_s,
                scale: 1.0,
                scale_index: 0,
                melodic: None,
            });
        }
    }
    let mut added = 0;
    for m in melodic {
        if let Some(v) = votes.iter_mut().find(|v| v.item == m.item as usize) {
            v.melodic = Some(*m);
        } else if added < MELODIC_CANDIDATES && m.count >= MELODIC_CANDIDATE_COUNT {
            added += 1;
            votes.push(Vote {
                item: m.item as usize,
                votes: 0.0,
                offset_s: f32::NAN,
                scale: 1.0,
                scale_index: 0,
                melodic: Some(*m),
            });
        }
    }
    votes
}
