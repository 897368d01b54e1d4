//! Auditing a query against an index: candidates → alignment → scores →
//! verdict with evidence.
//!
//! 1. **Candidates.** Every query window (at time scales 0.85, 1.0 and 1.2,
//!    for tempo changes, and at each once more with its harmony part alone,
//!    for other timbres) is searched among the indexed windows. Each hit
//!    votes for its item and for the time offset it implies; the items with
//!    the strongest consistent votes are kept.
//! 2. **Harmony alignment.** CENS chroma of the query against a region of the
//!    candidate around the voted offset, under the best two of twelve
//!    transpositions (chroma profiles decide which), each cell comparing three
//!    frames along the diagonal and normalised against the row's background
//!    (how far it stands above the query frame's mean similarity to the
//!    region). A local alignment with (1,1), (2,1) and (1,2) steps gives the
//!    matched ranges and the tempo ratio.
//! 3. **Melody alignment.** The 10 Hz melody contours, shifted by the
//!    transposition found, compared modulo the octave, aligned the same way.
//! 4. **Audio agreement.** Along the harmony path, the correlation of the
//!    band energies (each band's mean removed, so EQ cancels; shifted by the
//!    transposition), which is high only for the same recording.
//! 5. **Scores** in [0, 1]: `audio_score` (same recording) from the mean
//!    cell score of the harmony alignment and the audio agreement;
//!    `melody_score` (same music, any rendition) from the harmony
//!    alignment's total score over the square root of its length, which
//!    rewards long matches. The verdict flags when either crosses its
//!    threshold.

use std::cell::RefCell;
use std::collections::HashMap;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::align::{local_align, Alignment, Scratch};
use crate::analysis::Analyzer;
use crate::decode;
use crate::embed::{time_scale, Embedder};
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::Fingerprint;
use crate::index::{Index, Thresholds};
use crate::landmarks::{Landmark, LandmarkMatch, SearchScratch};
use crate::params::AnalysisParams;
use crate::sequences::{Sequences, MELODY_RATE, UNVOICED};

/// Tunable knobs of an audit.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// Neighbours fetched per query window.
    pub neighbors: usize,
    /// Items re-ranked by alignment.
    pub candidates: usize,
    /// Candidates listed in a report (best first).
    pub top_k: usize,
    /// Time scales at which the query is embedded.
    pub scales: Vec<f64>,
    /// Thresholds to use instead of the index's.
    pub thresholds: Option<Thresholds>,
    /// Leave this item out (self-calibration, leave-one-out).
    pub exclude_item: Option<usize>,
    /// Longest and largest input accepted by `check_file` and
    /// `check_samples` (the longest duration also by `check_fingerprint`).
    pub limits: decode::DecodeLimits,
    /// Attach [`Report::evidence`] to flagged reports (for the HTML report;
    /// costs one small similarity matrix per flagged input).
    pub evidence: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            neighbors: 20,
            candidates: 12,
            top_k: 5,
            scales: vec![1.0, 0.85, 1.2],
            thresholds: None,
            exclude_item: None,
            limits: decode::DecodeLimits::default(),
            evidence: false,
        }
    }
}

/// The verdict on one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No score crossed its threshold.
    Pass,
    /// A score crossed its threshold: see the evidence.
    Flag,
}

impl Verdict {
    /// `pass` or `flag`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Flag => "flag",
        }
    }
}

/// The raw numbers behind a candidate's scores, for reviewers.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Raw {
    /// Candidate-search votes of the item.
    pub votes: f32,
    /// Harmony alignment: mean cell score along the path (floor 5 s).
    pub harmony: f32,
    /// Harmony path length in CENS frames.
    pub harmony_frames: usize,
    /// Harmony alignment score over the square root of the path length
    /// (floor 5 s): what `melody_score` is made from.
    #[serde(default)]
    pub harmony_evidence: f32,
    /// Melody alignment: mean cell score along the path (floor 5 s).
    pub melody: f32,
    /// Melody path length in melody frames.
    pub melody_frames: usize,
    /// Correlation of band energies along the harmony path.
    pub audio_corr: f32,
    /// Landmark pairs of the query found in the item at one time offset.
    #[serde(default)]
    pub landmarks: u32,
    /// That count over the query's background (the count of the best
    /// other item that is not the same recording): what the landmark part
    /// of `audio_score` is made from.
    #[serde(default)]
    pub landmark_ratio: f32,
}

/// One candidate training item with scores and evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Item id in the index.
    pub item: usize,
    /// The item's path as given at index time.
    pub path: String,
    /// Same recording, transformed: 0–1.
    pub audio_score: f32,
    /// Same melody or harmony, any timbre, key or tempo: 0–1.
    pub melody_score: f32,
    /// Matched range in the query, seconds.
    pub query_start_s: f32,
    /// End of the matched range in the query, seconds.
    pub query_end_s: f32,
    /// Matched range in the training item, seconds.
    pub match_start_s: f32,
    /// End of the matched range in the training item, seconds.
    pub match_end_s: f32,
    /// Query pitch minus match pitch, semitones.
    pub transpose_semitones: f32,
    /// Query tempo / match tempo.
    pub tempo_ratio: f32,
    /// The numbers behind the scores.
    pub raw: Raw,
}

impl Candidate {
    /// The larger of the two scores.
    pub fn best_score(&self) -> f32 {
        self.audio_score.max(self.melody_score)
    }

    /// How far the candidate's better score stands above its threshold, in
    /// log-odds (negative: below); ≥ 0 exactly when `t` flags it.
    pub fn margin(&self, t: &Thresholds) -> f32 {
        let logit = |p: f32| {
            let p = p.clamp(1e-6, 1.0 - 1e-6) as f64;
            (p / (1.0 - p)).ln()
        };
        let m = |s: f32, thr: f32| {
            if s >= thr {
                // crossing always counts, even where clamping ties the logits
                (logit(s) - logit(thr)).max(0.0)
            } else {
                (logit(s) - logit(thr)).min(-1e-9)
            }
        };
        m(self.audio_score, t.audio).max(m(self.melody_score, t.melody)) as f32
    }
}

/// The result of auditing one query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Pass or flag.
    pub verdict: Verdict,
    /// Duration of the query, seconds.
    pub duration_s: f64,
    /// The thresholds applied.
    pub thresholds: Thresholds,
    /// Candidates, best first (the first is the reported match).
    pub candidates: Vec<Candidate>,
    /// What a reader must know to take the verdict at its word (the input
    /// is shorter than the audit can judge, its channels cancel, it lies
    /// outside what calibration covered, ...); empty when there is nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// What the HTML report draws for a flagged input (the best candidate's
    /// similarity matrix, path, melody contours, landmark hits), when
    /// [`AuditConfig::evidence`] asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::evidence::Evidence>,
}

impl Report {
    /// The best candidate, if any.
    pub fn best(&self) -> Option<&Candidate> {
        self.candidates.first()
    }
}

/// The shortest query the audit judges: exact copies of 5 s and more are
/// flagged against the songs they were cut from (63 of 64 in
/// `tests/formats.rs`, `measure_short_copies`), of 4 s only half of them,
/// of 2 s one in six. A shorter query's report carries a note, so that a
/// plain pass means "judged and not a copy".
pub const MIN_JUDGED_S: f64 = 5.0;

/// Finishes a report where it is made: clamps every candidate's times to
/// the durations of the query (`query_*`) and of its item (`match_*`), and
/// adds the notes a reader must know (a query too short to judge, channels
/// that cancel).
fn finish_report(report: &mut Report, source: &decode::SourceInfo, index: &Index) {
    let q = source.duration_s.max(0.0) as f32;
    for c in &mut report.candidates {
        let m = index
            .manifest
            .items
            .get(c.item)
            .map_or(f32::INFINITY, |i| i.duration_s.max(0.0) as f32);
        c.query_start_s = c.query_start_s.clamp(0.0, q);
        c.query_end_s = c.query_end_s.clamp(c.query_start_s, q);
        c.match_start_s = c.match_start_s.clamp(0.0, m);
        c.match_end_s = c.match_end_s.clamp(c.match_start_s, m);
    }
    if source.duration_s < MIN_JUDGED_S {
        report.notes.push(format!(
            "too short to judge: {:.1} s (copies shorter than {MIN_JUDGED_S:.0} s are not \
             reliably found, so a pass says little)",
            source.duration_s
        ));
    }
    if let Some(n) = decode::cancelled_note(source) {
        report.notes.push(n);
    }
}

/// Reusable similarity and cell-score matrices of the harmony alignment.
#[derive(Default)]
struct Matrices {
    sim: Vec<f32>,
    cell: Vec<f32>,
}

/// Per-thread reusable state.
struct Work {
    hash: u64,
    analyzer: Analyzer,
    embedder: Embedder,
    scratch: Scratch,
    matrices: Matrices,
    harmony_query: Vec<f32>,
    landmarks: Vec<Landmark>,
    landmark_scratch: SearchScratch,
}

thread_local! {
    static WORK: RefCell<Option<Work>> = const { RefCell::new(None) };
}

/// Audits queries against one index. `check*` take `&self` and may be
/// called from many threads at once; each thread reuses its own buffers.
pub struct Auditor<'a> {
    index: &'a Index,
    params: AnalysisParams,
    config: AuditConfig,
}

impl<'a> Auditor<'a> {
    /// An auditor over `index` with default settings.
    pub fn new(index: &'a Index) -> Self {
        Self::with_config(index, AuditConfig::default())
    }

    /// An auditor with explicit settings.
    pub fn with_config(index: &'a Index, config: AuditConfig) -> Self {
        Auditor {
            index,
            params: index.manifest.params.clone(),
            config,
        }
    }

    /// The thresholds in force.
    pub fn thresholds(&self) -> &Thresholds {
        self.config
            .thresholds
            .as_ref()
            .unwrap_or(&self.index.manifest.thresholds)
    }

    fn with_work<T>(&self, f: impl FnOnce(&mut Work) -> T) -> T {
        WORK.with(|cell| {
            let mut slot = cell.borrow_mut();
            let hash = self.params.hash();
            if slot.as_ref().map(|w| w.hash) != Some(hash) {
                *slot = Some(Work {
                    hash,
                    analyzer: Analyzer::for_queries(&self.params),
                    embedder: Embedder::new(&self.params),
                    scratch: Scratch::default(),
                    matrices: Matrices::default(),
                    harmony_query: Vec::new(),
                    landmarks: Vec::new(),
                    landmark_scratch: SearchScratch::default(),
                });
            }
            f(slot.as_mut().expect("just set"))
        })
    }

    /// Audits an audio file.
    ///
    /// # Errors
    ///
    /// Those of [`decode::decode_file_with_limits`] (under
    /// [`AuditConfig::limits`]) and of [`Auditor::check_audio`], naming the file.
    pub fn check_file(&self, path: &std::path::Path) -> Result<Report> {
        let audio =
            decode::decode_file_with_limits(path, self.params.sample_rate, &self.config.limits)?;
        self.check_audio(&audio).map_err(|e| e.with_path(path))
    }

    /// Audits a decoded signal at the analysis rate (as [`decode`] delivers it).
    ///
    /// # Errors
    ///
    /// Those of [`Analyzer::analyze`] and of [`Auditor::check_fingerprint`].
    pub fn check_audio(&self, audio: &decode::Audio) -> Result<Report> {
        let (fp, fine) = self.with_work(|w| {
            w.analyzer
                .analyze(audio)
                .map(|fp| (fp, w.analyzer.take_fine_chroma()))
        })?;
        self.check(&fp, &fine)
    }

    /// Audits interleaved samples at any rate and channel count.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Limit`] beyond [`AuditConfig::limits`], the errors of
    /// [`decode::from_interleaved`] (bad rate, channels, NaN samples) and of
    /// [`Auditor::check_audio`].
    pub fn check_samples(
        &self,
        samples: &[f32],
        sample_rate: u32,
        channels: u16,
    ) -> Result<Report> {
        decode::check_interleaved_limits(samples, sample_rate, channels, &self.config.limits)?;
        let audio =
            decode::from_interleaved(samples, sample_rate, channels, self.params.sample_rate)?;
        self.check_audio(&audio)
    }

    /// Audits a fingerprint made with the index's parameters. (Audio given
    /// as audio is audited a little better: a copied part whose tuning the
    /// rest of the query outvotes can then be re-folded at its own tuning.)
    ///
    /// # Errors
    ///
    /// At [`Stage::Audit`]: [`ErrorKind::Params`] for a fingerprint made with
    /// other analysis parameters, [`ErrorKind::Limit`] for one longer than
    /// [`AuditConfig::limits`] allows, [`ErrorKind::InvalidInput`] when an
    /// external candidate search returns a window id the index does not hold.
    pub fn check_fingerprint(&self, fp: &Fingerprint) -> Result<Report> {
        self.check(fp, &[])
    }

    /// Audits `fp`, with the query's unfolded chroma `fine` if there is one.
    fn check(&self, fp: &Fingerprint, fine: &[f32]) -> Result<Report> {
        if fp.params_hash != self.params.hash() {
            return Err(Error::new(
                Stage::Audit,
                ErrorKind::Params {
                    found: fp.params_hash,
                    expected: self.params.hash(),
                },
            ));
        }
        let d = fp.source.duration_s;
        if d.is_nan() || d > self.config.limits.max_duration_s {
            return Err(Error::new(
                Stage::Audit,
                ErrorKind::Limit(format!(
                    "the query is {:.1} s long, more than the limit of {} s",
                    d, self.config.limits.max_duration_s
                )),
            ));
        }
        let query = Sequences::from_fingerprint(fp, &self.params);
        let mut refolds = Refolds {
            fine,
            params: &self.params,
            cache: Vec::new(),
        };
        let mut candidates = self.with_work(|w| {
            w.landmarks.clear();
            let fan_out = self.params.landmark_query.fan_out;
            crate::landmarks::pairs(&fp.landmarks_query, fan_out, &mut w.landmarks);
            let mut lm = self.index.landmarks().search(
                &w.landmarks,
                self.config.exclude_item,
                &mut w.landmark_scratch,
            );
            let sequences = &self.index.sequences;
            lm.resolve_background(|i| sequences[i as usize].peaks.as_slice());
            let mut votes = self.vote(fp, w)?;
            // the items the landmarks single out are candidates too: a copy
            // under or inside other music may get no embedding votes
            let frame_s = self.params.frame_seconds() as f32;
            for m in lm.items.iter().take(LANDMARK_CANDIDATES) {
                if lm.ratio(m) >= LANDMARK_CANDIDATE_RATIO
                    && !votes.iter().any(|v| v.item == m.item as usize)
                {
                    votes.push(Vote {
                        item: m.item as usize,
                        votes: 0.0,
                        offset_s: m.offset_frames as f32 * frame_s,
                        scale: 1.0,
                        scale_index: 0,
                    });
                }
            }
            Ok(votes
                .into_iter()
                .map(|v| {
                    let mut c =
                        self.rerank(&query, v, &mut refolds, &mut w.matrices, &mut w.scratch);
                    if let Some(m) = lm.of(c.item) {
                        self.add_landmarks(&mut c, m, lm.ratio(m));
                    }
                    c
                })
                .collect::<Vec<_>>())
        })?;
        // the two scores have their own thresholds: rank by how far a
        // candidate's better score stands above (or below) its threshold,
        // in log-odds, so the first candidate flags if any does
        let t = self.thresholds().clone();
        candidates.sort_by(|a, b| {
            b.margin(&t)
                .total_cmp(&a.margin(&t))
                .then(a.item.cmp(&b.item))
        });
        candidates.truncate(self.config.top_k.max(1));
        let verdict = match candidates.first() {
            Some(c) if c.audio_score >= t.audio || c.melody_score >= t.melody => Verdict::Flag,
            _ => Verdict::Pass,
        };
        let mut report = Report {
            verdict,
            duration_s: fp.source.duration_s,
            thresholds: t,
            candidates,
            notes: Vec::new(),
            evidence: None,
        };
        finish_report(&mut report, &fp.source, self.index);
        report.notes.extend(crate::calibrate::coverage_note(
            &report.thresholds,
            report.duration_s,
        ));
        if self.config.evidence {
            report.evidence = crate::evidence::of_report(&report, fp, &query, self.index);
        }
        Ok(report)
    }

    /// Candidate items with their best offset (seconds) and time scale.
    fn vote(&self, fp: &Fingerprint, w: &mut Work) -> Result<Vec<Vote>> {
        let index = self.index;
        let search = index.search();
        let bin_s = 2.0f32;
        // (item, scale index, offset bin) -> votes
        let mut bins: HashMap<(u32, u8, i32), f32> = HashMap::new();
        let mut best_hit: HashMap<(u32, u8, i32), f32> = HashMap::new();
        for (si, &scale) in self.config.scales.iter().enumerate() {
            let emb = if (scale - 1.0).abs() < 1e-9 {
                w.embedder.embed(fp.chroma.view(), fp.bands.view())
            } else {
                let c = time_scale(fp.chroma.view(), scale);
                let b = time_scale(fp.bands.view(), scale);
                w.embedder.embed(c.view(), b.view())
            };
            // the plain pass, then a pass on the harmony part alone:
            // re-played melodies keep their harmony, not their texture
            let n = self.config.scales.len();
            let passes: &[(usize, bool)] = &[(si, false), (n + si, true)];
            for &(pass, harmony_only) in passes {
                for (qw, v) in emb.vectors.rows().into_iter().enumerate() {
                    let t_q = (qw as f64 * emb.hop_s) as f32; // in scaled query time
                    best_hit.clear();
                    let v = v.as_slice().expect("contiguous");
                    let (query, gain) = if harmony_only {
                        w.harmony_query.clear();
                        w.harmony_query.extend_from_slice(v);
                        w.harmony_query[HARMONY_DIMS..].fill(0.0);
                        crate::embed::normalize(&mut w.harmony_query);
                        (&w.harmony_query[..], 1.0 / crate::embed::HARMONY_WEIGHT)
                    } else {
                        (v, 1.0)
                    };
                    let hits = search.search(query, self.config.neighbors);
                    for (id, dist) in hits {
                        let (Some(&item), Some(&start)) = (
                            index.window_item.get(id as usize),
                            index.window_start_s.get(id as usize),
                        ) else {
                            return Err(bad_window_id(id, index.window_item.len()));
                        };
                        if Some(item as usize) == self.config.exclude_item {
                            continue;
                        }
                        let offset = start - t_q;
                        let key = (item, pass as u8, (offset / bin_s).round() as i32);
                        let sim = ((1.0 - dist) * gain).clamp(0.0, 1.0);
                        let e = best_hit.entry(key).or_insert(0.0);
                        *e = e.max(sim);
                    }
                    for (k, s) in best_hit.iter() {
                        *bins.entry(*k).or_insert(0.0) += s;
                    }
                }
            }
        }
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
            });
            // ties go to the smaller offset and scale index, so the result
            // does not depend on the hash map's (per-process) order
            let key = (b as f32 * bin_s, si as usize % self.config.scales.len());
            let current = (e.offset_s, e.scale_index);
            if v > e.votes || (v == e.votes && (key.0, key.1) < current) {
                e.votes = v;
                e.scale_index = key.1;
                e.offset_s = b as f32 * bin_s;
                e.scale = self.config.scales[si as usize % self.config.scales.len()];
            }
        }
        let mut votes: Vec<Vote> = per_item.into_values().collect();
        votes.sort_by(|a, b| b.votes.total_cmp(&a.votes).then(a.item.cmp(&b.item)));
        votes.truncate(self.config.candidates.max(1));
        Ok(votes)
    }

    /// Adds an item's landmark evidence: `audio_score` becomes the larger
    /// of the alignment's and the landmarks' own. When that is at least 0.5,
    /// the ranges become the landmarks' (same recording: no transposition,
    /// tempo 1) unless the alignment found the match itself
    /// (`melody_score` ≥ 0.5): a re-played
    /// part can carry identical audio (a drum track) while the alignment
    /// measures the transposition and tempo of the rest.
    fn add_landmarks(&self, c: &mut Candidate, m: &LandmarkMatch, ratio: f32) {
        c.raw.landmarks = m.count;
        c.raw.landmark_ratio = ratio;
        let score = landmark_score(ratio);
        if score <= c.audio_score {
            return;
        }
        c.audio_score = score;
        if score >= 0.5 && c.melody_score < 0.5 {
            let s = self.params.frame_seconds() as f32;
            let (q0, q1) = m.query_frames;
            let offset = m.offset_frames as f32 * s;
            c.query_start_s = q0 as f32 * s;
            c.query_end_s = q1 as f32 * s;
            c.match_start_s = c.query_start_s + offset;
            c.match_end_s = c.query_end_s + offset;
            c.transpose_semitones = 0.0;
            c.tempo_ratio = 1.0;
        }
    }

    fn rerank(
        &self,
        q: &Sequences,
        v: Vote,
        refolds: &mut Refolds,
        matrices: &mut Matrices,
        scratch: &mut Scratch,
    ) -> Candidate {
        let index = self.index;
        let c = &index.sequences[v.item];
        let rate = self.params.cens_rate() as f32;
        let (nq, nc) = (q.frames(), c.frames());
        // region of the candidate around the voted offset (ratio = 1 / scale)
        let q_dur = nq as f32 / rate;
        let margin = 8.0;
        let lo = ((v.offset_s - margin) * rate).floor().max(0.0) as usize;
        let hi = (((v.offset_s + q_dur / v.scale as f32 + margin) * rate).ceil() as usize).min(nc);
        // a short query is aligned with the whole item: its few windows
        // give few votes, and the voted offset may be a repeat of the part
        let (lo, hi) = if lo >= hi || nq * nc <= WHOLE_ITEM_CELLS || nc <= WHOLE_ITEM_FRAMES {
            (0, nc)
        } else {
            (lo, hi)
        };
        let region = &c.cens[lo * 12..hi * 12];
        let m = hi - lo;

        let mut best = (Alignment::default(), 0usize, 0.0f32);
        for rot in best_rotations(&q.cens, region, 2) {
            let (a, norm) = harmony_alignment(&q.cens, region, nq, m, rot, matrices, scratch);
            if a.score > best.0.score || best.0.cells == 0 {
                best = (a, rot, norm);
            }
        }
        // the query folded at the candidate's tuning, when the two differ:
        // a copied part (spliced in, or mixed under other music) keeps its
        // own tuning, which the rest of the query may outvote
        let mut refolded = false;
        let dt = (q.tuning_cents - c.tuning_cents + 50.0).rem_euclid(100.0) - 50.0;
        if dt.abs() > REFOLD_CENTS {
            if let Some(qc) = refolds.at(c.tuning_cents) {
                for rot in best_rotations(qc, region, 2) {
                    let (a, norm) = harmony_alignment(qc, region, nq, m, rot, matrices, scratch);
                    if a.score > best.0.score {
                        best = (a, rot, norm);
                        refolded = true;
                    }
                }
            }
        }
        let (ha, rot, harmony) = best;
        let transpose = {
            let fraction = if refolded {
                0.0
            } else {
                (q.tuning_cents - c.tuning_cents) / 100.0
            };
            let t = rot as f32 + fraction;
            // to (-6, 6]
            let t = t.rem_euclid(12.0);
            if t > 6.0 {
                t - 12.0
            } else {
                t
            }
        };
        // the melody is aligned around the harmony match (± 5 s) when there
        // is one: the same evidence for a fraction of the cells
        let (mlo, mhi) = if ha.cells > 0 {
            let pad = (5.0 * rate) as usize;
            (
                (lo + ha.c_start).saturating_sub(pad),
                (lo + ha.c_end + pad).min(hi),
            )
        } else {
            (lo, hi)
        };
        let (ma, melody) = melody_alignment(q, c, mlo, mhi, transpose, scratch);
        let audio_corr = band_agreement(q, c, &ha, lo, transpose);

        // same recording: a close harmony match (mean cell score, so a 5 s
        // excerpt counts fully) whose band energies agree as well
        let close = sigmoid((harmony - HARMONY_MID) / HARMONY_SCALE);
        let audio_score = close.min(sigmoid((audio_corr - AUDIO_MID) / AUDIO_SCALE));
        // same music in any timbre, key or tempo: the total alignment score
        // over the square root of its length, so that a long, moderately
        // similar match (a melody re-played on other instruments) counts as
        // much as the short, very similar stretches that unrelated music in
        // the same style also has. The melody alignment is reported
        // (raw.melody) but does not drive a score: on the development set it
        // separated copies from negatives worse than the harmony alignment.
        let evidence = harmony * (ha.cells as f32).max(FLOOR_S * rate).sqrt();
        let melody_score = sigmoid((evidence - EVIDENCE_MID) / EVIDENCE_SCALE);

        let (qs, qe, cs, ce, ratio) = if ha.cells > 0 {
            (
                ha.q_start as f32 / rate,
                ha.q_end as f32 / rate,
                (lo + ha.c_start) as f32 / rate,
                (lo + ha.c_end) as f32 / rate,
                ha.tempo_ratio(),
            )
        } else if ma.cells > 0 {
            let r = MELODY_RATE as f32;
            let mlo = mlo as f32 / rate;
            (
                ma.q_start as f32 / r,
                ma.q_end as f32 / r,
                mlo + ma.c_start as f32 / r,
                mlo + ma.c_end as f32 / r,
                ma.tempo_ratio(),
            )
        } else {
            (0.0, 0.0, 0.0, 0.0, 1.0)
        };
        Candidate {
            item: v.item,
            path: index.manifest.items[v.item].path.clone(),
            audio_score,
            melody_score,
            query_start_s: qs,
            query_end_s: qe,
            match_start_s: cs,
            match_end_s: ce,
            transpose_semitones: transpose,
            tempo_ratio: ratio,
            raw: Raw {
                votes: v.votes,
                harmony,
                harmony_frames: ha.cells,
                harmony_evidence: evidence,
                melody,
                melody_frames: ma.cells,
                audio_corr,
                landmarks: 0,
                landmark_ratio: 0.0,
            },
        }
    }
}

/// The query's CENS folded again at other tunings, made when first needed.
struct Refolds<'a> {
    /// The query's unfolded chroma (empty: no re-folding).
    fine: &'a [f32],
    params: &'a AnalysisParams,
    /// (tuning in 5-cent steps, quantised CENS)
    cache: Vec<(i32, Vec<u8>)>,
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

#[derive(Debug, Clone, Copy)]
struct Vote {
    item: usize,
    votes: f32,
    offset_s: f32,
    scale: f64,
    scale_index: usize,
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

/// The landmark part of `audio_score`: 0.5 where an item's matched pairs
/// are 2.7 times the background (see `raw.landmark_ratio`).
pub fn landmark_score(ratio: f32) -> f32 {
    sigmoid((ratio - LANDMARK_RATIO_MID) / LANDMARK_RATIO_SCALE)
}

/// The logistic function every score is made with, at most 0.9999: in
/// `f32` it rounds to exactly 1 from x ≈ 17 (a landmark ratio of about 7,
/// or a long perfect melodic match), and a threshold of 1 must still mean
/// "never flag".
fn sigmoid(x: f32) -> f32 {
    (1.0 / (1.0 + (-x).exp())).min(MAX_SCORE)
}

/// The largest score.
const MAX_SCORE: f32 = 0.9999;

/// The `n` rotations `r` that best match the query's chroma profile to the
/// candidate's, comparing query class `k` with candidate class `k - r`.
fn best_rotations(q: &[u8], c: &[u8], n: usize) -> Vec<usize> {
    let profile = |x: &[u8]| {
        let mut p = [0f32; 12];
        for f in x.chunks_exact(12) {
            for k in 0..12 {
                p[k] += f[k] as f32;
            }
        }
        let norm = p.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
        p.map(|v| v / norm)
    };
    let (pq, pc) = (profile(q), profile(c));
    let mut scored: Vec<(usize, f32)> = (0..12)
        .map(|r| {
            let s = (0..12).map(|k| pq[k] * pc[(k + 12 - r) % 12]).sum();
            (r, s)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.into_iter().take(n).map(|(r, _)| r).collect()
}

/// CENS similarity (three-frame average) above which a cell counts as a match.
const CELL_TAU: f32 = 0.8;
/// Similarity per unit of cell score.
const CELL_SCALE: f32 = 0.05;
/// Largest cell score (a similarity of 1.0).
const CELL_MAX: f32 = 4.0;
/// Harmony score (mean cell score, floor 5 s) at which the alignment part
/// of `audio_score` reaches 0.5. Since landmarks find untransformed copies,
/// this part only has to speak for transposed or re-timed copies of a
/// recording, and is strict: on the development set's negatives the
/// harmony reaches 2.9 with band agreement 0.9 (a 10 s excerpt of
/// electronic music against a chorale), which a looser mapping flagged;
/// no negative's harmony reaches 3.0.
const HARMONY_MID: f32 = 3.35;
/// Harmony score per unit of logit of that part.
const HARMONY_SCALE: f32 = 0.15;
/// Landmark ratio at which the landmark part of `audio_score` is 0.5: on
/// the development set, the weakest copy mixed 6 dB under other music that
/// can be heard at all has 3.6, the highest of 141 negatives 2.05 (a
/// chorale rendered with the same instrument samples as the training
/// chorales, on the same beat grid); this is about their geometric mean.
const LANDMARK_RATIO_MID: f32 = 2.7;
/// Landmark ratio per unit of logit.
const LANDMARK_RATIO_SCALE: f32 = 0.25;
/// Items the landmarks add to the candidates (when not there already).
const LANDMARK_CANDIDATES: usize = 2;
/// ... if their ratio is at least this.
const LANDMARK_CANDIDATE_RATIO: f32 = 2.0;
/// Harmony evidence (alignment score over the square root of its length)
/// at which `melody_score` reaches 0.5: just above the largest value of the
/// development set's negatives but one (27.2; the one above, 45.7, is a Bach
/// chorale whose harmonisation nearly repeats a training chorale's).
const EVIDENCE_MID: f32 = 28.0;
/// Evidence per unit of logit of `melody_score`.
const EVIDENCE_SCALE: f32 = 3.0;
/// Band correlation at which the audio agreement maps to 0.5 (a +2
/// semitone re-rendering in the example generation loop has 0.66 with
/// harmony 3.8; the strict harmony part is what keeps negatives out).
const AUDIO_MID: f32 = 0.6;
/// Band correlation per unit of logit.
const AUDIO_SCALE: f32 = 0.05;

/// Leading embedding dimensions that hold the harmony part.
const HARMONY_DIMS: usize = 7 * crate::embed::TIME_BANDS.len();

/// Tuning difference (cents) beyond which the query is also folded at the
/// candidate's tuning.
const REFOLD_CENTS: f32 = 15.0;

/// Up to this many cells, the query is aligned with the whole candidate.
const WHOLE_ITEM_CELLS: usize = 35_000;
/// Items up to this many CENS frames (70 s) are aligned whole, whatever
/// the query's length: the voted region (± 8 s) covers most of such an
/// item anyway, and a vote for a repeat of the copied part then cannot
/// hide the match. (On the development set a melodic copy of a 60 s
/// chorale scored 0.30 when its votes pointed at the chorale's repeat,
/// 0.87 otherwise.)
const WHOLE_ITEM_FRAMES: usize = 350;

/// Frames below which a path is scored as if it had this length (5 s).
const FLOOR_S: f32 = 5.0;

/// Harmony alignment under rotation `rot`; returns the alignment and its
/// normalised score (mean cell score along the path, floor [`FLOOR_S`]).
fn harmony_alignment(
    q: &[u8],
    c: &[u8],
    nq: usize,
    nc: usize,
    rot: usize,
    matrices: &mut Matrices,
    scratch: &mut Scratch,
) -> (Alignment, f32) {
    if nq == 0 || nc == 0 {
        return (Alignment::default(), 0.0);
    }
    let Matrices { sim, cell } = matrices;
    sim.clear();
    sim.resize(nq * nc, 0.0);
    cell.clear();
    cell.resize(nq * nc, 0.0);
    // frame similarities (CENS are non-negative unit vectors ×255)
    for i in 0..nq {
        let qi = &q[i * 12..i * 12 + 12];
        for j in 0..nc {
            let cj = &c[j * 12..j * 12 + 12];
            let mut d = 0u32;
            for k in 0..12 {
                d += qi[k] as u32 * cj[(k + 12 - rot) % 12] as u32;
            }
            sim[i * nc + j] = d as f32 / (255.0 * 255.0);
        }
    }
    // three frames along the diagonal, then a fixed similarity threshold:
    // on the development set it beat a per-row contrast (z-score), which
    // repetitive songs defeat because the true diagonal does not stand out
    // from the song's own repeats
    for i in 0..nq {
        for j in 0..nc {
            let mut sum = sim[i * nc + j];
            let mut n = 1.0;
            if i > 0 && j > 0 {
                sum += sim[(i - 1) * nc + j - 1];
                n += 1.0;
            }
            if i + 1 < nq && j + 1 < nc {
                sum += sim[(i + 1) * nc + j + 1];
                n += 1.0;
            }
            cell[i * nc + j] = ((sum / n - CELL_TAU) / CELL_SCALE).clamp(-2.0, CELL_MAX);
        }
    }
    let a = local_align(nq, nc, |i, j| cell[i * nc + j], 0.3, scratch);
    let floor = FLOOR_S * 5.0;
    let norm = a.score / (a.cells as f32).max(floor);
    (a, norm)
}

/// Melody alignment of the query contour against the candidate's region
/// `[lo, hi)` (CENS frames), the query shifted down by `transpose`.
fn melody_alignment(
    q: &Sequences,
    c: &Sequences,
    lo: usize,
    hi: usize,
    transpose: f32,
    scratch: &mut Scratch,
) -> (Alignment, f32) {
    let per = (MELODY_RATE / 5.0).round() as usize; // melody frames per CENS frame
    let mlo = (lo * per).min(c.melody.len());
    let mhi = (hi * per).min(c.melody.len());
    let region = &c.melody[mlo..mhi];
    let (nq, nc) = (q.melody.len(), region.len());
    if nq == 0 || nc == 0 {
        return (Alignment::default(), 0.0);
    }
    let shift = (transpose * 100.0).round() as i32;
    let a = local_align(
        nq,
        nc,
        |i, j| {
            let (a, b) = (q.melody[i], region[j]);
            if a == UNVOICED || b == UNVOICED {
                return if a == UNVOICED && b == UNVOICED {
                    -0.05
                } else {
                    -0.3
                };
            }
            let d = (a as i32 - shift - b as i32).rem_euclid(1200);
            let d = d.min(1200 - d);
            if d <= 50 {
                1.0
            } else if d <= 100 {
                0.0
            } else {
                -1.0
            }
        },
        0.3,
        scratch,
    );
    let floor = FLOOR_S * MELODY_RATE as f32;
    (a, a.score / (a.cells as f32).max(floor))
}

/// Correlation of the band energies along the harmony path (straight line
/// between its ends), each band's mean removed on both sides, the query's
/// bands shifted by the transposition.
fn band_agreement(q: &Sequences, c: &Sequences, a: &Alignment, lo: usize, transpose: f32) -> f32 {
    if a.cells < 5 || q.n_bands == 0 || q.n_bands != c.n_bands {
        return 0.0;
    }
    let nb = q.n_bands;
    // semitones per band: 24 bands over 100 Hz..5 kHz
    let st_per_band = 12.0 * (5000f32 / 100.0).log2() / nb as f32;
    let shift = transpose / st_per_band; // query band b ~ candidate band b - shift
    let n = a.q_end - a.q_start;
    let ratio = a.tempo_ratio();
    let mut qm = Array2::<f32>::zeros((n, nb));
    let mut cm = Array2::<f32>::zeros((n, nb));
    let db = |x: u8| x as f32 / 2.0 - 120.0;
    for (t, i) in (a.q_start..a.q_end).enumerate() {
        let j = lo + a.c_start + ((i - a.q_start) as f32 * ratio).round() as usize;
        let j = j.min(c.frames().saturating_sub(1));
        for b in 0..nb {
            qm[[t, b]] = db(q.bands[i * nb + b]);
            // candidate value at band b - shift, linear interpolation
            let pos = b as f32 - shift;
            let b0 = pos.floor().clamp(0.0, (nb - 1) as f32) as usize;
            let b1 = (b0 + 1).min(nb - 1);
            let f = (pos - pos.floor()).clamp(0.0, 1.0);
            cm[[t, b]] = db(c.bands[j * nb + b0]) * (1.0 - f) + db(c.bands[j * nb + b1]) * f;
        }
    }
    // use bands that carry energy on both sides (a low-pass kills the top)
    let top_q = qm.iter().copied().fold(f32::MIN, f32::max);
    let top_c = cm.iter().copied().fold(f32::MIN, f32::max);
    let (mut sxy, mut sxx, mut syy) = (0.0f32, 0.0f32, 0.0f32);
    for b in 0..nb {
        let mq = qm.column(b).mean().unwrap_or(0.0);
        let mc = cm.column(b).mean().unwrap_or(0.0);
        if mq < top_q - 50.0 || mc < top_c - 50.0 {
            continue;
        }
        for t in 0..n {
            let x = qm[[t, b]] - mq;
            let y = cm[[t, b]] - mc;
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
    use crate::analysis::audio_at_analysis_rate;
    use crate::index::IndexBuilder;
    use crate::synth::{self, Render, Timbre};

    fn fp(x: Vec<f32>) -> Fingerprint {
        let p = AnalysisParams::default();
        Analyzer::new(&p)
            .analyze(&audio_at_analysis_rate(x, &p))
            .unwrap()
    }

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

    /// Eight songs of 24 bars and one long one (seed 9, ≈ 3 minutes).
    fn build() -> (Index, Vec<Vec<f32>>) {
        let p = AnalysisParams::default();
        let mut b = IndexBuilder::new(&p);
        let mut songs = Vec::new();
        for seed in 1..=8u64 {
            songs.push(song(seed, 24));
        }
        songs.push(song(9, 90));
        for (i, x) in songs.iter().enumerate() {
            b.add(
                &format!("song{}.wav", i + 1),
                &format!("hash{i}"),
                &fp(x.clone()),
            )
            .unwrap();
        }
        (b.build(), songs)
    }

    #[test]
    fn items_find_themselves_copies_are_flagged_originals_pass() {
        let (index, songs) = build();
        let auditor = Auditor::new(&index);
        // every item is its own top match
        for (i, x) in songs.iter().enumerate() {
            let r = auditor.check_fingerprint(&fp(x.clone())).unwrap();
            assert_eq!(r.best().unwrap().item, i, "item {i}");
            assert_eq!(r.verdict, Verdict::Flag);
        }
        // a transformed copy: 20 s of song 4, +2 semitones, 6 % faster, noisy
        let mut x = synth::render(
            &synth::compose(4, 24),
            &Render {
                transpose: 2.0,
                tempo: 1.06,
                offset_s: 10.0,
                duration_s: Some(20.0),
                // the timbres song 4 was indexed with
                melody: Timbre::Piano,
                accompaniment: Timbre::Pluck,
                ..Render::default()
            },
        );
        synth::add_noise(&mut x, 20.0, 7);
        let r = auditor.check_fingerprint(&fp(x)).unwrap();
        let c = r.best().unwrap();
        assert_eq!(r.verdict, Verdict::Flag, "{c:?}");
        assert_eq!(c.item, 3, "{c:?}");
        assert!((c.transpose_semitones - 2.0).abs() <= 0.5, "{c:?}");
        assert!((c.tempo_ratio - 1.06).abs() <= 0.03 * 1.06, "{c:?}");
        // originals pass: the first three from seed 201 on that differ from
        // every indexed song in key and by more than 5 % in tempo. (The
        // synthesizer's melodies and progressions come from small sets and
        // it plays every note of a timbre with one waveform: a piece in a
        // song's key at its tempo can replay stretches of it sample for
        // sample, which landmarks rightly count as copied audio.)
        let key = |seed: u64| {
            let mut pcs = [false; 12];
            for n in &synth::compose(seed, 24).notes {
                pcs[(n.midi.round() as i32).rem_euclid(12) as usize] = true;
            }
            pcs
        };
        let bpm = |seed: u64| synth::compose(seed, 24).bpm;
        let distinct = |seed: u64| {
            (1..=9u64).all(|s| key(s) != key(seed) && (bpm(s) / bpm(seed) - 1.0).abs() > 0.05)
        };
        let originals: Vec<u64> = (201..).filter(|&s| distinct(s)).take(3).collect();
        for seed in originals {
            let r = auditor.check_fingerprint(&fp(song(seed, 12))).unwrap();
            assert_eq!(r.verdict, Verdict::Pass, "seed {seed}: {:?}", r.best());
        }
    }

    #[test]
    fn a_5_s_excerpt_of_a_3_minute_item_is_located_within_1_s() {
        let (index, songs) = build();
        let long = &songs[8];
        let rate = AnalysisParams::default().sample_rate as usize;
        assert!(long.len() / rate >= 170, "{} s", long.len() / rate);
        let auditor = Auditor::new(&index);
        for start_s in [37usize, 101, 150] {
            let x = long[start_s * rate..(start_s + 5) * rate].to_vec();
            let r = auditor.check_fingerprint(&fp(x)).unwrap();
            let c = r.best().unwrap();
            assert_eq!(c.item, 8, "{c:?}");
            // where the query's matched part starts in the item
            let located = c.match_start_s - c.query_start_s;
            assert!((located - start_s as f32).abs() <= 1.0, "{start_s}: {c:?}");
        }
    }

    #[test]
    fn index_round_trip_gives_the_same_answers_and_mismatches_are_refused() {
        let (mut index, songs) = build();
        let dir = tempfile::tempdir().unwrap();
        index.save(dir.path()).unwrap();
        let back = Index::open(dir.path()).unwrap();
        assert_eq!(back.manifest, index.manifest);
        let q = fp(songs[2][50_000..300_000].to_vec());
        let a = Auditor::new(&index).check_fingerprint(&q).unwrap();
        let b = Auditor::new(&back).check_fingerprint(&q).unwrap();
        assert_eq!(a, b);
        // a second save keeps one generation, and the old one is gone
        index.save(dir.path()).unwrap();
        let gens: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("gen-"))
            .collect();
        assert_eq!(gens.len(), 1);
        let gen = dir
            .path()
            .join(crate::index::current_generation(dir.path()).unwrap());
        // other parameters are refused with a message
        let mpath = gen.join("manifest.json");
        let good = std::fs::read_to_string(&mpath).unwrap();
        std::fs::write(&mpath, good.replace("\"hop\": 110", "\"hop\": 111")).unwrap();
        let e = Index::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("analysis parameters differ"), "{e}");
        // another version too
        std::fs::write(
            &mpath,
            good.replace(
                &format!("\"format_version\": {}", crate::index::INDEX_VERSION),
                "\"format_version\": 7",
            ),
        )
        .unwrap();
        let e = Index::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("version 7"), "{e}");
        // and a damaged data file
        std::fs::write(&mpath, &good).unwrap();
        let items = gen.join("items.bin");
        let mut bytes = std::fs::read(&items).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&items, bytes).unwrap();
        let e = Index::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("checksum"), "{e}");
        // a fingerprint with other parameters is refused by the auditor
        let mut other = q.clone();
        other.params_hash ^= 1;
        assert!(Auditor::new(&index).check_fingerprint(&other).is_err());
    }

    #[test]
    fn many_threads_get_the_answers_of_one() {
        let (index, songs) = build();
        let auditor = Auditor::new(&index);
        let queries: Vec<Fingerprint> = songs
            .iter()
            .take(4)
            .map(|x| fp(x[20_000..200_000].to_vec()))
            .collect();
        let one: Vec<Report> = queries
            .iter()
            .map(|q| auditor.check_fingerprint(q).unwrap())
            .collect();
        std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        queries
                            .iter()
                            .map(|q| auditor.check_fingerprint(q).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), one);
            }
        });
    }
}
