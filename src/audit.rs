//! Auditing a query against an index: the stages in order, and the types
//! of the verdict with its evidence.
//!
//! 1. **Candidates** ([`crate::candidates`]): window embeddings, landmarks
//!    and melodic n-grams each propose training items.
//! 2. **Re-ranking** ([`crate::rerank`]): each candidate aligned with the
//!    query by harmony (CENS chroma), by notes (the melodic events) and by
//!    band energies, with the similarity kernels of [`crate::similarity`].
//! 3. **Scores** ([`crate::score`]): `audio_score` (same recording) and
//!    `melody_score` (same music, any rendition) from that evidence; the
//!    candidates ordered by how far they stand above their thresholds. The
//!    verdict flags when the first crosses either threshold.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::analysis::Analyzer;
use crate::candidates::{self, Vote, VoteSettings};
use crate::decode;
use crate::embed::Embedder;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::fingerprint::Fingerprint;
use crate::index::{Index, Thresholds};
use crate::landmarks::{Landmark, LandmarkMatch, SearchScratch};
use crate::ngrams::MelodicScratch;
use crate::params::AnalysisParams;
use crate::rerank::{self, Buffers, Refolds};
use crate::score;
use crate::sequences::Sequences;

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
            candidates: candidates::EMBEDDING_CANDIDATES,
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

/// The raw numbers behind a candidate's scores, for reviewers (see
/// `reports/README.md` and [`crate::score`]).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Raw {
    /// Duration of the query, seconds (the melodic evidence is corrected
    /// for it: [`score::NULL_REF_S`]).
    pub query_s: f32,
    /// Candidate-search votes of the window embeddings.
    pub votes: f32,
    /// Distinct query events whose melodic n-grams hit the item at one
    /// offset.
    pub melodic_votes: u32,
    /// Harmony alignment: mean cell score along the path (floor 5 s).
    pub harmony: f32,
    /// Harmony path length in CENS frames.
    pub harmony_frames: usize,
    /// The harmony alignment's score against the item played backwards
    /// (the null of this query and item).
    pub harmony_null: f32,
    /// The harmony path's score.
    pub harmony_score: f32,
    /// The null harmony path's length in CENS frames.
    pub harmony_null_frames: usize,
    /// Note alignment: the path's score.
    pub notes: f32,
    /// Note path length in events.
    pub note_events: usize,
    /// Significance of the note path, nats.
    pub notes_bits: f32,
    /// Significance of the best note path against the item's events in
    /// reverse order (the null of this query and item), nats.
    pub notes_null_bits: f32,
    /// Correlation of band energies along the harmony path.
    pub audio_corr: f32,
    /// Landmark pairs of the query found in the item at one time offset.
    pub landmarks: u32,
    /// That count over the query's background (the count of the best
    /// other item that is not the same recording).
    pub landmark_ratio: f32,
    /// Seconds of the query those pairs span.
    pub landmark_span_s: f32,
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

    /// How far the candidate's stronger evidence stands above its
    /// threshold, in log-odds (negative: below); ≥ 0 exactly when `t`
    /// flags it (see [`score::margin`]).
    pub fn margin(&self, t: &Thresholds) -> f32 {
        score::margin(self, t)
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

/// Clamps a candidate's times to the durations of the query (`query_*`,
/// `query_s`) and of its item (`match_*`, `item_s`).
pub(crate) fn clamp_times(c: &mut Candidate, query_s: f64, item_s: f64) {
    let q = query_s.max(0.0) as f32;
    let m = item_s.max(0.0) as f32;
    c.query_start_s = c.query_start_s.clamp(0.0, q);
    c.query_end_s = c.query_end_s.clamp(c.query_start_s, q);
    c.match_start_s = c.match_start_s.clamp(0.0, m);
    c.match_end_s = c.match_end_s.clamp(c.match_start_s, m);
}

/// The report of ranked `candidates`: the first `top_k` under `t`, the
/// verdict, and the notes a reader must know (a query too short to judge,
/// channels that cancel, a length calibration did not cover).
pub(crate) fn report_of(
    mut candidates: Vec<Candidate>,
    t: Thresholds,
    top_k: usize,
    source: &decode::SourceInfo,
) -> Report {
    score::rank(&mut candidates, &t);
    candidates.truncate(top_k.max(1));
    let verdict = match candidates.first() {
        Some(c) if c.audio_score >= t.audio || c.melody_score >= t.melody => Verdict::Flag,
        _ => Verdict::Pass,
    };
    let mut report = Report {
        verdict,
        duration_s: source.duration_s,
        thresholds: t,
        candidates,
        notes: Vec::new(),
        evidence: None,
    };
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
    report.notes.extend(crate::calibrate::coverage_note(
        &report.thresholds,
        report.duration_s,
    ));
    report
}

/// Per-thread reusable state.
struct Work {
    hash: u64,
    analyzer: Analyzer,
    embedder: Embedder,
    buffers: Buffers,
    harmony_query: Vec<f32>,
    landmarks: Vec<Landmark>,
    landmark_scratch: SearchScratch,
    melodic_scratch: MelodicScratch,
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
                    buffers: Buffers::default(),
                    harmony_query: Vec::new(),
                    landmarks: Vec::new(),
                    landmark_scratch: SearchScratch::default(),
                    melodic_scratch: MelodicScratch::default(),
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
        let index = self.index;
        let mut candidates = self.with_work(|w| {
            // 1. candidates from the three searches
            w.landmarks.clear();
            let fan_out = self.params.landmark_query.fan_out;
            crate::landmarks::pairs(&fp.landmarks_query, fan_out, &mut w.landmarks);
            let mut lm = index.landmarks().search(
                &w.landmarks,
                self.config.exclude_item,
                &mut w.landmark_scratch,
            );
            // items are decoded on demand: only those the searches reach
            let lookups = crate::index::Lookups::new(index);
            lm.resolve_background(|i| lookups.peaks(i));
            let melodic = index.melodic().search(
                &query.events,
                self.config.exclude_item,
                |i| lookups.events(i),
                &mut w.melodic_scratch,
            );
            lookups.finish()?;
            let votes = candidates::embedding_votes(
                index,
                fp,
                VoteSettings {
                    scales: &self.config.scales,
                    neighbors: self.config.neighbors,
                    candidates: self.config.candidates,
                    exclude: self.config.exclude_item,
                },
                &mut w.embedder,
                &mut w.harmony_query,
            )?;
            let frame_s = self.params.frame_seconds() as f32;
            let votes = candidates::gather(votes, &lm, &melodic, frame_s);
            // 2. re-ranking, 3. scores
            votes
                .into_iter()
                .filter(|v| v.item < index.len())
                .map(|v| {
                    let m = lm.of(v.item).map(|m| (*m, lm.ratio(m)));
                    self.candidate(&query, &v, m, &mut refolds, &mut w.buffers)
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for c in &mut candidates {
            let m = index
                .manifest
                .items
                .get(c.item)
                .map_or(f64::INFINITY, |i| i.duration_s);
            clamp_times(c, fp.source.duration_s, m);
        }
        let t = self.thresholds().clone();
        let mut report = report_of(candidates, t, self.config.top_k, &fp.source);
        if self.config.evidence {
            report.evidence = crate::evidence::of_report(&report, fp, &query, self.index);
        }
        Ok(report)
    }

    /// Re-ranks one candidate and scores it (decoding the item's
    /// sequences from the index).
    ///
    /// # Errors
    ///
    /// Those of [`Index::item`] for an item that does not decode.
    pub(crate) fn candidate(
        &self,
        q: &Sequences,
        v: &Vote,
        landmark: Option<(LandmarkMatch, f32)>,
        refolds: &mut Refolds,
        buf: &mut Buffers,
    ) -> Result<Candidate> {
        let c = &self.index.item(v.item)?;
        let rate = self.params.cens_rate() as f32;
        let hm = rerank::harmony(q, c, v, rate, refolds, buf);
        let nm = rerank::notes(&q.events, &c.events, v, buf);
        let ha = hm.alignment;
        let na = nm.alignment;
        let audio_corr = crate::similarity::band_agreement(
            q,
            c,
            (ha.q_start, ha.q_end),
            (hm.region_start + ha.c_start, hm.region_start + ha.c_end),
            hm.transpose,
        );
        let frame_s = self.params.frame_seconds() as f32;
        let mut raw = Raw {
            query_s: q.frames() as f32 / rate,
            votes: v.votes,
            melodic_votes: v.melodic.map_or(0, |m| m.count),
            harmony: hm.mean,
            harmony_frames: ha.cells,
            harmony_null: hm.null.score,
            harmony_score: ha.score,
            harmony_null_frames: hm.null.cells,
            notes: na.score,
            note_events: na.cells,
            notes_bits: na.bits(),
            notes_null_bits: nm.null.bits(),
            audio_corr,
            ..Raw::default()
        };
        if let Some((m, ratio)) = landmark {
            raw.landmarks = m.count;
            raw.landmark_ratio = ratio;
            raw.landmark_span_s = (m.query_frames.1 - m.query_frames.0) as f32 * frame_s;
        }
        let audio_score = score::audio_score(&raw);
        let melody_score = score::melody_score(&raw);

        // where the match is: the evidence that speaks loudest
        let fraction = (q.tuning_cents - c.tuning_cents) / 100.0;
        let span = |e: &[crate::ngrams::Event], a: usize, b: usize| {
            let start = e[a].onset_s;
            let end = e.get(b).map_or(e[b - 1].onset_s + 0.25, |x| x.onset_s);
            (start, end)
        };
        let (mut qs, mut qe, mut cs, mut ce, mut ratio, mut transpose) = if na.cells > 0 && {
            let (notes, harmony) = score::melody_parts(&raw);
            notes > harmony
        } {
            let (qs, qe) = span(&q.events, na.q_start, na.q_end);
            let (cs, ce) = span(&c.events, na.c_start, na.c_end);
            let ratio = (ce - cs).max(1e-3) / (qe - qs).max(1e-3);
            (
                qs,
                qe,
                cs,
                ce,
                ratio,
                rerank::to_signed_semitones(nm.transpose as f32 + fraction),
            )
        } else if ha.cells > 0 {
            let lo = hm.region_start;
            (
                ha.q_start as f32 / rate,
                ha.q_end as f32 / rate,
                (lo + ha.c_start) as f32 / rate,
                (lo + ha.c_end) as f32 / rate,
                ha.tempo_ratio(),
                hm.transpose,
            )
        } else {
            (0.0, 0.0, 0.0, 0.0, 1.0, 0.0)
        };
        // the same recording found by its peaks while the alignments did
        // not find the match themselves (a copy under or inside other
        // music): the ranges are the matched pairs'
        if let Some((m, _)) = landmark {
            let lm_score = score::landmark_score(raw.landmark_ratio, raw.landmark_span_s);
            if lm_score >= 0.5 && lm_score >= audio_score && melody_score < 0.5 {
                let (q0, q1) = m.query_frames;
                let offset = m.offset_frames as f32 * frame_s;
                qs = q0 as f32 * frame_s;
                qe = q1 as f32 * frame_s;
                cs = qs + offset;
                ce = qe + offset;
                transpose = 0.0;
                ratio = 1.0;
            }
        }
        Ok(Candidate {
            item: v.item,
            path: self.index.manifest.items[v.item].path.clone(),
            audio_score,
            melody_score,
            query_start_s: qs,
            query_end_s: qe,
            match_start_s: cs,
            match_end_s: ce,
            transpose_semitones: transpose,
            tempo_ratio: ratio,
            raw,
        })
    }
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
        // every indexed song in key, by more than 5 % in tempo, and in
        // harmony. (The synthesizer's melodies and progressions come from
        // small sets and it plays every note of a timbre with one waveform:
        // a piece in a song's key at its tempo can replay stretches of it
        // sample for sample, which landmarks rightly count as copied audio;
        // and two pieces whose 4-bar progressions follow each other in the
        // same order for two phrases or more, in any key, share 20 s of
        // harmony, which the melody score rightly counts as the same music.)
        let key = |seed: u64| {
            let mut pcs = [false; 12];
            for n in &synth::compose(seed, 24).notes {
                pcs[(n.midi.round() as i32).rem_euclid(12) as usize] = true;
            }
            pcs
        };
        let bpm = |seed: u64| synth::compose(seed, 24).bpm;
        // the chord of every bar, as a pitch-class set
        let chords = |seed: u64, bars: usize| -> Vec<u16> {
            let mut v = vec![0u16; bars];
            for n in synth::compose(seed, bars).notes {
                if n.voice == synth::Voice::Chord {
                    let bar = (n.start / 4.0) as usize;
                    v[bar] |= 1 << (n.midi.round() as i32).rem_euclid(12);
                }
            }
            v
        };
        let rotate = |set: u16, t: u32| ((set << t) | (set >> (12 - t))) & 0xfff;
        // the longest run of bars with the same chords, in some key
        let shared_bars = |a: &[u16], b: &[u16]| {
            let mut best = 0;
            for t in 0..12 {
                for off in -(b.len() as i64)..a.len() as i64 {
                    let mut run = 0;
                    for (i, &x) in a.iter().enumerate() {
                        let j = i as i64 - off;
                        if j >= 0 && (j as usize) < b.len() && rotate(b[j as usize], t) == x {
                            run += 1;
                            best = best.max(run);
                        } else {
                            run = 0;
                        }
                    }
                }
            }
            best
        };
        let indexed: Vec<Vec<u16>> = (1..=9u64)
            .map(|s| chords(s, if s == 9 { 90 } else { 24 }))
            .collect();
        let distinct = |seed: u64| {
            let c = chords(seed, 12);
            (1..=9u64).all(|s| key(s) != key(seed) && (bpm(s) / bpm(seed) - 1.0).abs() > 0.05)
                && indexed.iter().all(|i| shared_bars(&c, i) < 8)
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
