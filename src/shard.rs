//! Sharded audits: one index split into shards (each an ordinary index
//! holding a contiguous run of the items), audited so that every report
//! equals the report of one index holding all items.
//!
//! A score depends on items other than the candidate in four places, and
//! each needs information from every shard:
//!
//! 1. **Which landmark hashes are looked up** ([`crate::landmarks::select`]):
//!    hashes with more than [`crate::landmarks::MAX_LIST`] stored pairs are
//!    skipped, and the rest are visited rarest first within a budget of
//!    pairs per query frame. Both depend on the list lengths of the whole
//!    index, so each shard reports its lengths and the driver sums them.
//! 2. **Which melodic n-grams are looked up**: the same, with
//!    [`crate::ngrams::MAX_LIST`].
//! 3. **The embedding neighbours** of each query window: the `neighbors`
//!    nearest stored windows of the whole index. Each shard returns its
//!    own nearest; the driver keeps the nearest of their union (by distance,
//!    then global window id, as [`crate::search::ExactSearch`] orders) and
//!    counts the votes from them.
//! 4. **The landmark background** (the count of the best other item that
//!    is not the same recording as the best one) and the candidate lists
//!    (the top landmark and melodic items, the top embedding votes): the
//!    driver merges each shard's best items with their stored peaks and
//!    resolves the background once, globally.
//!
//! Re-ranking and scoring a candidate depend only on the query and the
//! candidate, so the shard that holds it does them, with the global
//! background; the driver ranks all candidates and writes the report.
//!
//! The protocol, per query: [`Query`] (analysed once, by the driver) →
//! [`Shard::probe`] on every shard → [`plan`] → [`Shard::search`] on every
//! shard → [`gather`] → [`Shard::score`] on every shard → [`finish`]. Every
//! step is a function of its inputs (the shards keep no per-query state),
//! so a step can be retried on a restarted shard.
//!
//! Item ids in messages are global: shard `k` holds the items
//! `item_offset..item_offset + len` and the windows `window_offset..`.
//! With the exact window search (indexes under 2,000 windows) the reports
//! equal those of one index bit for bit; with HNSW each shard's neighbour
//! search is approximate, as one index's is, and the two may differ
//! where an approximate search misses a neighbour.
//!
//! Messages are CBOR ([`to_bytes`], [`from_bytes`]), which keeps every
//! `f32` exactly.

use std::collections::HashMap;
use std::path::Path;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::analysis::Analyzer;
use crate::audit::{AuditConfig, Auditor, Candidate, Report};
use crate::candidates::{self, QueryWindow, Vote, VoteCounter};
use crate::decode;
use crate::embed::Embedder;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::Fingerprint;
use crate::index::{Index, Thresholds};
use crate::landmarks::{self, Landmark, LandmarkMatch, LandmarkMatches, LandmarkPeak};
use crate::ngrams::{self, MelodicMatch, MelodicScratch};
use crate::params::AnalysisParams;
use crate::rerank::{Buffers, Refolds};
use crate::sequences::Sequences;

fn bad(msg: String) -> Error {
    Error::new(Stage::Audit, ErrorKind::InvalidInput(msg))
}

/// Serialises a message (CBOR).
pub fn to_bytes<T: Serialize>(msg: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(msg, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// Reads a message written by [`to_bytes`].
///
/// # Errors
///
/// [`ErrorKind::Corrupt`] (stage `audit`) for bytes that are not such a
/// message (another version of refrain on the other side, or damage).
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(bytes).map_err(|e| {
        Error::new(
            Stage::Audit,
            ErrorKind::Corrupt(format!(
                "a sharded-audit message ({what}) could not be read: {e}; the driver and \
                 the shards must run the same version of refrain"
            )),
        )
    })
}

/// A query analysed once for all shards: its fingerprint and its unfolded
/// chroma (as [`Auditor::check_audio`] uses it).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The fingerprint (made by [`Analyzer::for_queries`]).
    pub fp: Fingerprint,
    /// The unfolded chroma (for re-folding at a candidate's tuning).
    pub fine: Vec<f32>,
}

impl Query {
    /// Analyses decoded audio at the analysis rate, as
    /// [`Auditor::check_audio`] does.
    ///
    /// # Errors
    ///
    /// Those of [`Analyzer::analyze`].
    pub fn from_audio(params: &AnalysisParams, audio: &decode::Audio) -> Result<Self> {
        let mut a = Analyzer::for_queries(params);
        let fp = a.analyze(audio)?;
        Ok(Query {
            fp,
            fine: a.take_fine_chroma(),
        })
    }

    /// Analyses interleaved samples at any rate, as
    /// [`Auditor::check_samples`] does (with `limits`).
    ///
    /// # Errors
    ///
    /// Those of [`Auditor::check_samples`] before the audit.
    pub fn from_samples(
        params: &AnalysisParams,
        limits: &decode::DecodeLimits,
        samples: &[f32],
        sample_rate: u32,
        channels: u16,
    ) -> Result<Self> {
        decode::check_interleaved_limits(samples, sample_rate, channels, limits)?;
        let audio = decode::from_interleaved(samples, sample_rate, channels, params.sample_rate)?;
        Self::from_audio(params, &audio)
    }

    /// Decodes and analyses a file, as [`Auditor::check_file`] does.
    ///
    /// # Errors
    ///
    /// Those of [`decode::decode_file_with_limits`] and of the analysis,
    /// naming the file.
    pub fn from_file(
        params: &AnalysisParams,
        limits: &decode::DecodeLimits,
        path: &Path,
    ) -> Result<Self> {
        let audio = decode::decode_file_with_limits(path, params.sample_rate, limits)?;
        Self::from_audio(params, &audio).map_err(|e| e.with_path(path))
    }

    /// The query as bytes: the fingerprint's own format, then the
    /// unfolded chroma.
    pub fn to_bytes(&self) -> Vec<u8> {
        let fp = self.fp.to_bytes();
        let mut out = Vec::with_capacity(8 + fp.len() + 4 * self.fine.len());
        out.extend_from_slice(&(fp.len() as u64).to_le_bytes());
        out.extend_from_slice(&fp);
        for x in &self.fine {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Reads [`Query::to_bytes`], checking the parameters against `params`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Params`] for a query analysed with other parameters,
    /// [`ErrorKind::Corrupt`] for damaged bytes (stage `audit`).
    pub fn from_bytes(bytes: &[u8], params: &AnalysisParams) -> Result<Self> {
        let cut = || {
            Error::new(
                Stage::Audit,
                ErrorKind::Corrupt("a sharded-audit query is cut short".into()),
            )
        };
        let n = bytes
            .get(..8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or_else(cut)?;
        let fp_bytes = bytes.get(8..8usize.saturating_add(n)).ok_or_else(cut)?;
        let rest = &bytes[8 + n..];
        if !rest.len().is_multiple_of(4) {
            return Err(cut());
        }
        let fp =
            Fingerprint::from_bytes(fp_bytes, params).map_err(|k| Error::new(Stage::Audit, k))?;
        let fine = rest
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect();
        Ok(Query { fp, fine })
    }

    fn landmarks(&self, params: &AnalysisParams) -> Vec<Landmark> {
        let mut lm = Vec::new();
        landmarks::pairs(
            &self.fp.landmarks_query,
            params.landmark_query.fan_out,
            &mut lm,
        );
        lm
    }
}

/// A stored window near a query window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Neighbor {
    /// Cosine distance.
    pub dist: f32,
    /// Global window id.
    pub window: u32,
    /// Global item id.
    pub item: u32,
    /// Start of the window in its item, seconds.
    pub start_s: f32,
}

/// A query window and a shard's nearest stored windows to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeWindow {
    /// Pass of the window ([`QueryWindow::pass`]).
    pub pass: u8,
    /// Start in scaled query time ([`QueryWindow::t_q`]).
    pub t_q: f32,
    /// Similarity factor ([`QueryWindow::gain`]).
    pub gain: f32,
    /// The shard's nearest stored windows, nearest first.
    pub hits: Vec<Neighbor>,
}

/// Step 1, from every shard: what the global look-ups depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probe {
    /// Stored pairs of each query landmark's hash, in query order.
    pub landmark_lists: Vec<u32>,
    /// Stored n-grams of each query n-gram's hash, in query order.
    pub gram_lists: Vec<u32>,
    /// Each query window's nearest stored windows.
    pub windows: Vec<ProbeWindow>,
}

/// Step 2, to every shard: what to look up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Global item left out (leave-one-out).
    pub exclude: Option<u32>,
    /// Query landmarks to look up (positions, [`landmarks::select`]).
    pub landmarks: Vec<u32>,
    /// Whether each query n-gram is looked up.
    pub grams: Vec<bool>,
    /// The items of the embedding votes (global ids).
    pub vote_items: Vec<u32>,
}

/// A landmark match with its item's stored peaks (for the background).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakedMatch {
    /// The match (global item id).
    pub m: LandmarkMatch,
    /// The item's stored landmark peaks.
    pub peaks: Vec<LandmarkPeak>,
}

/// Step 2, from every shard: its best landmark and melodic items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matches {
    /// Its best landmark matches (as many as the background examines).
    pub landmarks: Vec<PeakedMatch>,
    /// Its melodic matches of vote items, and its best others that could
    /// become candidates.
    pub melodic: Vec<MelodicMatch>,
}

/// Step 3, to every shard: the candidates to score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreRequest {
    /// Global item left out (leave-one-out).
    pub exclude: Option<u32>,
    /// Query landmarks to look up (as in [`SearchRequest`]).
    pub landmarks: Vec<u32>,
    /// The global landmark background.
    pub background: f32,
    /// Every candidate (global ids; each shard scores its own).
    pub votes: Vec<Vote>,
}

/// The scored candidates of one shard (global item ids).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Candidates, in request order.
    pub candidates: Vec<Candidate>,
}

/// The audit settings a sharded audit uses: those of [`AuditConfig`]'s
/// defaults for the searches, with the caller's `top_k` and thresholds.
fn settings() -> AuditConfig {
    AuditConfig::default()
}

/// One shard: an index holding the items from `item_offset` and the
/// windows from `window_offset` of the whole.
pub struct Shard<'a> {
    index: &'a Index,
    item_offset: u32,
    window_offset: u32,
}

impl<'a> Shard<'a> {
    /// A shard over `index`.
    pub fn new(index: &'a Index, item_offset: u32, window_offset: u32) -> Self {
        Shard {
            index,
            item_offset,
            window_offset,
        }
    }

    fn local(&self, item: u32) -> Option<usize> {
        let i = item.checked_sub(self.item_offset)? as usize;
        (i < self.index.len()).then_some(i)
    }

    fn global(&self, item: u32) -> u32 {
        item + self.item_offset
    }

    fn check_query(&self, q: &Query) -> Result<()> {
        let want = self.index.params().hash();
        if q.fp.params_hash != want {
            return Err(Error::new(
                Stage::Audit,
                ErrorKind::Params {
                    found: q.fp.params_hash,
                    expected: want,
                },
            ));
        }
        Ok(())
    }

    /// Step 1: this shard's list lengths of the query's hashes, and its
    /// nearest windows to each query window.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Params`] for a query of other parameters,
    /// [`ErrorKind::InvalidInput`] when the window search returns an id
    /// the index does not hold.
    pub fn probe(&self, q: &Query) -> Result<Probe> {
        self.check_query(q)?;
        let params = self.index.params();
        let config = settings();
        let lms = q.landmarks(params);
        let landmark_lists = lms
            .iter()
            .map(|l| self.index.landmarks().list_len(l.hash) as u32)
            .collect();
        let seq = Sequences::from_fingerprint(&q.fp, params);
        let mut grams = Vec::new();
        ngrams::grams(&seq.events, &mut grams);
        let gram_lists = grams
            .iter()
            .map(|g| self.index.melodic().list_len(g.hash) as u32)
            .collect();
        let search = self.index.search();
        let mut windows = Vec::new();
        let mut embedder = Embedder::new(params);
        let mut hq = Vec::new();
        candidates::for_each_window(
            &q.fp,
            &config.scales,
            &mut embedder,
            &mut hq,
            |w, vector| {
                let mut hits = Vec::new();
                for (id, dist) in search.search(vector, config.neighbors) {
                    let (Some(&item), Some(&start_s)) = (
                        self.index.window_item.get(id as usize),
                        self.index.window_start_s.get(id as usize),
                    ) else {
                        return Err(bad(format!(
                            "the shard's window search returned window id {id}, but it holds {} \
                             windows",
                            self.index.window_item.len()
                        )));
                    };
                    hits.push(Neighbor {
                        dist,
                        window: id + self.window_offset,
                        item: self.global(item),
                        start_s,
                    });
                }
                windows.push(ProbeWindow {
                    pass: w.pass,
                    t_q: w.t_q,
                    gain: w.gain,
                    hits,
                });
                Ok(())
            },
        )?;
        Ok(Probe {
            landmark_lists,
            gram_lists,
            windows,
        })
    }

    fn landmark_matches(
        &self,
        q: &Query,
        selected: &[u32],
        exclude: Option<u32>,
    ) -> LandmarkMatches {
        let lms = q.landmarks(self.index.params());
        let mut scratch = landmarks::SearchScratch::default();
        let exclude = exclude.and_then(|e| self.local(e));
        self.index
            .landmarks()
            .search_selected(&lms, selected, exclude, &mut scratch)
    }

    /// Step 2: this shard's best landmark items (with their peaks) and its
    /// melodic matches that can matter.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Params`] for a query of other parameters.
    pub fn search(&self, q: &Query, req: &SearchRequest) -> Result<Matches> {
        self.check_query(q)?;
        let params = self.index.params();
        let lm = self.landmark_matches(q, &req.landmarks, req.exclude);
        let landmarks: Vec<PeakedMatch> = lm
            .items
            .iter()
            .take(1 + landmarks::BACKGROUND_CANDIDATES)
            .map(|m| {
                Ok(PeakedMatch {
                    m: LandmarkMatch {
                        item: self.global(m.item),
                        ..*m
                    },
                    peaks: self.index.item_peaks(m.item as usize)?,
                })
            })
            .collect::<Result<_>>()?;
        let seq = Sequences::from_fingerprint(&q.fp, params);
        let lookups = crate::index::Lookups::new(self.index);
        let mut scratch = MelodicScratch::default();
        let found = self.index.melodic().search_with(
            &seq.events,
            req.exclude.and_then(|e| self.local(e)),
            |i| lookups.events(i),
            &mut scratch,
            |gi, _| req.grams.get(gi).copied().unwrap_or(false),
        );
        lookups.finish()?;
        // the melodic matches gather can attach to a candidate: those of the
        // vote items and of this shard's best landmark items (the landmark
        // candidates are among them); and the best others it can add
        let attachable = |item: u32| {
            req.vote_items.contains(&item)
                || landmarks.iter().any(|p: &PeakedMatch| p.m.item == item)
        };
        let mut others = 0;
        let mut melodic = Vec::new();
        for m in found {
            let m = MelodicMatch {
                item: self.global(m.item),
                ..m
            };
            if attachable(m.item) {
                melodic.push(m);
            } else if others < candidates::MELODIC_CANDIDATES
                && m.count >= candidates::MELODIC_CANDIDATE_COUNT
            {
                others += 1;
                melodic.push(m);
            }
        }
        Ok(Matches { landmarks, melodic })
    }

    /// Step 3: re-ranks and scores the candidates this shard holds, with
    /// the global background.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Params`] for a query of other parameters.
    pub fn score(&self, q: &Query, req: &ScoreRequest) -> Result<Scored> {
        self.check_query(q)?;
        let params = self.index.params();
        let mut lm = self.landmark_matches(q, &req.landmarks, req.exclude);
        lm.background = req.background;
        let seq = Sequences::from_fingerprint(&q.fp, params);
        let auditor = Auditor::with_config(self.index, settings());
        let mut refolds = Refolds {
            fine: &q.fine,
            params,
            cache: Vec::new(),
        };
        let mut buffers = Buffers::default();
        let mut out = Vec::new();
        for v in &req.votes {
            let Some(local) = self.local(v.item as u32) else {
                continue;
            };
            let lv = Vote { item: local, ..*v };
            let m = lm.of(local).map(|m| (*m, lm.ratio(m)));
            let mut c = auditor.candidate(&seq, &lv, m, &mut refolds, &mut buffers)?;
            c.item = v.item;
            let item_s = self.index.manifest.items[local].duration_s;
            crate::audit::clamp_times(&mut c, q.fp.source.duration_s, item_s);
            out.push(c);
        }
        Ok(Scored { candidates: out })
    }
}

/// What the driver carries from [`plan`] to [`gather`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The request every shard gets in step 2.
    pub request: SearchRequest,
    /// The embedding votes of the whole index.
    pub votes: Vec<Vote>,
}

/// The driver after step 1: the global look-ups and the embedding votes
/// from every shard's probe. `exclude` is a global item to leave out.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (stage `audit`) when there is no probe or
/// the probes disagree about the query (shards of other parameters).
pub fn plan(
    params: &AnalysisParams,
    q: &Query,
    probes: &[Probe],
    exclude: Option<u32>,
) -> Result<Plan> {
    let first = probes
        .first()
        .ok_or_else(|| bad("a sharded audit needs at least one shard".into()))?;
    let agree = probes.iter().all(|p| {
        p.landmark_lists.len() == first.landmark_lists.len()
            && p.gram_lists.len() == first.gram_lists.len()
            && p.windows.len() == first.windows.len()
            && p.windows
                .iter()
                .zip(&first.windows)
                .all(|(a, b)| (a.pass, a.t_q, a.gain) == (b.pass, b.t_q, b.gain))
    });
    if !agree {
        return Err(bad(
            "the shards analysed the query differently: every shard must be built with the \
             same analysis parameters and version of refrain"
                .into(),
        ));
    }
    let sum = |f: fn(&Probe) -> &Vec<u32>, i: usize| -> usize {
        probes.iter().map(|p| f(p)[i] as usize).sum()
    };
    let lms = q.landmarks(params);
    if lms.len() != first.landmark_lists.len() {
        return Err(bad(
            "the shards' landmark lists do not match the query's landmarks".into(),
        ));
    }
    let landmarks = landmarks::select(&lms, |i| sum(|p| &p.landmark_lists, i));
    let grams = (0..first.gram_lists.len())
        .map(|i| sum(|p| &p.gram_lists, i) <= ngrams::MAX_LIST)
        .collect();
    let config = settings();
    let mut counter = VoteCounter::default();
    let mut hits: Vec<Neighbor> = Vec::new();
    for (w, pw) in first.windows.iter().enumerate() {
        hits.clear();
        for p in probes {
            hits.extend_from_slice(&p.windows[w].hits);
        }
        hits.sort_by(|a, b| a.dist.total_cmp(&b.dist).then(a.window.cmp(&b.window)));
        hits.truncate(config.neighbors);
        counter.add(
            QueryWindow {
                pass: pw.pass,
                t_q: pw.t_q,
                gain: pw.gain,
            },
            hits.iter().map(|h| (h.item, h.start_s, h.dist)),
            exclude.map(|e| e as usize),
        );
    }
    let votes = counter.votes(&config.scales, config.candidates);
    Ok(Plan {
        request: SearchRequest {
            exclude,
            landmarks,
            grams,
            vote_items: votes.iter().map(|v| v.item as u32).collect(),
        },
        votes,
    })
}

/// The driver after step 2: the global landmark background and the
/// candidates (the request of step 3).
pub fn gather(params: &AnalysisParams, plan: &Plan, matches: &[Matches]) -> ScoreRequest {
    let mut items: Vec<&PeakedMatch> = matches.iter().flat_map(|m| &m.landmarks).collect();
    items.sort_by(|a, b| b.m.count.cmp(&a.m.count).then(a.m.item.cmp(&b.m.item)));
    items.truncate(1 + landmarks::BACKGROUND_CANDIDATES);
    let peaks: HashMap<u32, &[LandmarkPeak]> = items
        .iter()
        .map(|p| (p.m.item, p.peaks.as_slice()))
        .collect();
    let mut lm = LandmarkMatches {
        items: items.iter().map(|p| p.m).collect(),
        background: landmarks::BACKGROUND_FLOOR,
    };
    lm.resolve_background(|i| peaks.get(&i).copied().unwrap_or(&[]).into());
    let mut melodic: Vec<MelodicMatch> = matches.iter().flat_map(|m| m.melodic.clone()).collect();
    melodic.sort_by(|a, b| b.count.cmp(&a.count).then(a.item.cmp(&b.item)));
    let frame_s = params.frame_seconds() as f32;
    let votes = candidates::gather(plan.votes.clone(), &lm, &melodic, frame_s);
    ScoreRequest {
        exclude: plan.request.exclude,
        landmarks: plan.request.landmarks.clone(),
        background: lm.background,
        votes,
    }
}

/// The driver after step 3: the report from every shard's scored
/// candidates, under thresholds `t`, with the best `top_k`.
pub fn finish(q: &Query, scored: Vec<Scored>, t: Thresholds, top_k: usize) -> Report {
    let candidates = scored.into_iter().flat_map(|s| s.candidates).collect();
    crate::audit::report_of(candidates, t, top_k, &q.fp.source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::audio_at_analysis_rate;
    use crate::index::IndexBuilder;
    use crate::synth::{self, Render, Timbre};

    fn song(seed: u64, bars: usize) -> Vec<f32> {
        let t = [Timbre::Piano, Timbre::Pluck, Timbre::Organ, Timbre::Strings];
        synth::render(
            &synth::compose(seed, bars),
            &Render {
                melody: t[seed as usize % 4],
                accompaniment: t[(seed as usize + 1) % 4],
                ..Render::default()
            },
        )
    }

    fn build(songs: &[(usize, Vec<f32>)]) -> Index {
        let p = AnalysisParams::default();
        let mut b = IndexBuilder::new(&p);
        let mut a = Analyzer::new(&p);
        for (i, x) in songs {
            let fp = a.analyze(&audio_at_analysis_rate(x.clone(), &p)).unwrap();
            b.add(&format!("song{i}.wav"), &format!("hash{i}"), &fp)
                .unwrap();
        }
        b.build()
    }

    /// The protocol in one process: every report equals one index's.
    #[test]
    fn three_shards_give_the_reports_of_one_index() {
        let p = AnalysisParams::default();
        let songs: Vec<(usize, Vec<f32>)> = (0..6).map(|i| (i, song(i as u64 + 1, 16))).collect();
        let whole = build(&songs);
        let parts: Vec<Index> = songs.chunks(2).map(build).collect();
        let mut shards = Vec::new();
        let (mut items, mut windows) = (0u32, 0u32);
        for ix in &parts {
            shards.push(Shard::new(ix, items, windows));
            items += ix.len() as u32;
            windows += ix.window_item.len() as u32;
        }
        let rate = p.sample_rate as usize;
        let mut queries: Vec<Vec<f32>> = songs
            .iter()
            .map(|(_, x)| x[3 * rate..15 * rate].to_vec())
            .collect();
        queries.push(song(77, 8));
        for (k, x) in queries.iter().enumerate() {
            let audio = audio_at_analysis_rate(x.clone(), &p);
            for exclude in [None, Some(k as u32)] {
                let one = Auditor::with_config(
                    &whole,
                    AuditConfig {
                        exclude_item: exclude.map(|e| e as usize),
                        ..AuditConfig::default()
                    },
                )
                .check_audio(&audio)
                .unwrap();
                // through bytes, as the shards get them
                let q = Query::from_audio(&p, &audio).unwrap();
                let q = Query::from_bytes(&q.to_bytes(), &p).unwrap();
                let probes: Vec<Probe> = shards
                    .iter()
                    .map(|s| from_bytes(&to_bytes(&s.probe(&q).unwrap()), "probe").unwrap())
                    .collect();
                let plan = plan(&p, &q, &probes, exclude).unwrap();
                let matches: Vec<Matches> = shards
                    .iter()
                    .map(|s| s.search(&q, &plan.request).unwrap())
                    .collect();
                let req = gather(&p, &plan, &matches);
                let req: ScoreRequest = from_bytes(&to_bytes(&req), "score").unwrap();
                let scored: Vec<Scored> =
                    shards.iter().map(|s| s.score(&q, &req).unwrap()).collect();
                let sharded = finish(&q, scored, whole.manifest.thresholds.clone(), 5);
                assert_eq!(sharded, one, "query {k}, exclude {exclude:?}");
            }
        }
    }
}
