//! Calibration: decision thresholds whose false-positive rate is measured on
//! music known not to be in the training set, and the interval statistics
//! that go with them.
//!
//! A query's best score is a maximum over many comparisons, so the scores of
//! unrelated music have a long upper tail whose shape depends on the index.
//! [`calibrate`] takes the best scores of negatives (audited against the same
//! index) and, for each of the two scores, sets the threshold at the larger
//! of two estimates of the `(1 − α)` quantile, `α` being half the target rate
//! (the verdict flags when *either* score crosses, so the two halves add up
//! to at most the target):
//!
//! * the empirical quantile: at most `⌊α·n⌋` negatives reach the threshold;
//! * an exponential tail fitted to the largest 20 % of the scores' logits
//!   (peaks over a threshold, the Gumbel domain's tail), which extrapolates
//!   beyond the largest negative when `n` is too small to see a rate of `α`.
//!
//! The rate achieved on the negatives (either score at or above its
//! threshold) is then counted and given with its exact one-sided 95 %
//! Clopper–Pearson upper bound, so a report can say "calibrated for 1 %,
//! measured on N files, at most X % with 95 % confidence".

use serde::{Deserialize, Serialize};

use crate::analysis::audio_at_analysis_rate;
use crate::audit::{AuditConfig, Auditor, Report};
use crate::decode::Audio;
use crate::error::{Error, ErrorKind, Result, Stage};
use crate::index::{DurationRange, Index, Thresholds};

/// The best audio and melody scores of one audited query.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct BestScores {
    /// Best `audio_score` over the query's candidates.
    pub audio: f32,
    /// Best `melody_score` over the query's candidates.
    pub melody: f32,
}

impl BestScores {
    /// The best scores of a report (0 when it has no candidate).
    pub fn of(report: &Report) -> Self {
        let fold = |f: fn(&crate::audit::Candidate) -> f32| {
            report.candidates.iter().map(f).fold(0.0f32, f32::max)
        };
        BestScores {
            audio: fold(|c| c.audio_score),
            melody: fold(|c| c.melody_score),
        }
    }

    /// Whether `t` flags these scores.
    pub fn flagged_by(&self, t: &Thresholds) -> bool {
        self.audio >= t.audio || self.melody >= t.melody
    }
}

/// How thresholds were calibrated: a label stored in the manifest.
pub const METHOD_NEGATIVES: &str = "calibrated";
/// Label of thresholds calibrated by leave-one-out over the training set.
pub const METHOD_SELF: &str = "self-calibrated (leave-one-out)";

/// Excerpts `(start, length)` in seconds that self-calibration cuts from
/// each training item: the lengths of typical generated clips. An item too
/// short for a start gives its last `length` seconds; one shorter than the
/// length gives none of that length.
pub const SELF_EXCERPTS: [(f64, f64); 3] = [(30.0, 30.0), (60.0, 5.0), (90.0, 10.0)];

/// Leave-one-out: audits excerpts of training item `item` (decoded as
/// `audio`, at the analysis rate) against `index` with the item itself left
/// out, so its best scores are those of music the rest of the index has not
/// seen. Duplicates of the item elsewhere in the index score high: each
/// excerpt is returned as a [`Negative`] named `PATH [START–END s]`, so
/// [`calibrate_set`] can name and leave out near-duplicate pairs.
///
/// # Errors
///
/// An [`Error`] from auditing an excerpt (stage `audit`).
pub fn leave_one_out(index: &Index, item: usize, audio: &Audio) -> Result<Vec<Negative>> {
    let auditor = Auditor::with_config(
        index,
        AuditConfig {
            exclude_item: Some(item),
            ..AuditConfig::default()
        },
    );
    let rate = audio.sample_rate as f64;
    let total = audio.samples.len() as f64 / rate;
    let path = index
        .manifest
        .items
        .get(item)
        .map(|i| i.path.as_str())
        .unwrap_or("");
    let mut out = Vec::new();
    for (start, len) in SELF_EXCERPTS {
        if total < len {
            continue;
        }
        let start = start.min(total - len);
        let (a, b) = ((start * rate) as usize, ((start + len) * rate) as usize);
        let excerpt = audio.samples[a..b.min(audio.samples.len())].to_vec();
        let mut clip = audio_at_analysis_rate(excerpt, index.params());
        clip.source = audio.source;
        clip.source.duration_s = len;
        let report = auditor.check_audio(&clip)?;
        let name = format!("{path} [{start:.0}–{:.0} s]", start + len);
        let mut n = Negative::of(&name, &report);
        n.item = Some(item);
        out.push(n);
    }
    Ok(out)
}

/// One audited calibration negative: its best scores, its length and the
/// candidates that gave its highest same-recording and same-music scores.
#[derive(Debug, Clone, PartialEq)]
pub struct Negative {
    /// The input as given (a self-calibration excerpt: `PATH [START–END s]`).
    pub input: String,
    /// Its duration, seconds.
    pub duration_s: f64,
    /// Its best scores.
    pub scores: BestScores,
    /// The candidate with the highest `audio_score`, if any.
    pub top_audio: Option<TopMatch>,
    /// The candidate with the highest `melody_score`, if any.
    pub top_melody: Option<TopMatch>,
    /// For a self-calibration excerpt, the training item it was cut from.
    pub item: Option<usize>,
}

/// A candidate behind one of a negative's best scores.
#[derive(Debug, Clone, PartialEq)]
pub struct TopMatch {
    /// Item id in the index.
    pub item: usize,
    /// The item's path as given at index time.
    pub path: String,
    /// The score (audio or melody, as the field says).
    pub score: f32,
    /// Length of the matched stretch of the negative, seconds.
    pub span_s: f32,
}

/// A negative whose same-recording score is at least this looks like a
/// copy of a training item rather than a sample of the null. Scores are
/// logistic and capped at 0.9999; 0.99 is 4.6 logits above the 0.5
/// boundary, a landmark ratio of 3.85 against the development set's
/// highest negative's 2.05 (score 0.07) and its weakest audible copy
/// mixed 6 dB under other music, 3.6. The contaminated negatives that
/// turned detection off (issue 12) all scored 0.9999.
pub const SUSPECT_SCORE: f32 = 0.99;

/// ... over a matched stretch of at least this many seconds: the shortest
/// copy the development set tests is 5 s, and a match over less than 3 s
/// is too short to be a copy a listener would hear, so it stays in the fit.
pub const SUSPECT_MIN_SPAN_S: f32 = 3.0;

/// No stored threshold may reach this: scores are capped at 0.9999, so a
/// threshold of 0.999 or more flags (almost) nothing, however the
/// negatives were chosen. A fit that lands there was pushed by negatives
/// that copy training items, or by a training set full of duplicates.
pub const MAX_THRESHOLD: f32 = 0.999;

impl Negative {
    /// The negative's facts from its audit report.
    pub fn of(input: &str, report: &Report) -> Self {
        let top = |f: fn(&crate::audit::Candidate) -> f32| {
            report
                .candidates
                .iter()
                .max_by(|a, b| f(a).total_cmp(&f(b)).then(b.item.cmp(&a.item)))
                .map(|c| TopMatch {
                    item: c.item,
                    path: c.path.clone(),
                    score: f(c),
                    span_s: (c.query_end_s - c.query_start_s).max(0.0),
                })
        };
        Negative {
            input: input.to_string(),
            duration_s: report.duration_s,
            scores: BestScores::of(report),
            top_audio: top(|c| c.audio_score),
            top_melody: top(|c| c.melody_score),
            item: None,
        }
    }

    /// The training item this negative looks like a copy of: a
    /// same-recording score of at least [`SUSPECT_SCORE`] over at least
    /// [`SUSPECT_MIN_SPAN_S`].
    pub fn copies(&self) -> Option<&TopMatch> {
        self.top_audio.as_ref().filter(|m| suspect(m))
    }

    /// The training item this self-calibration excerpt nearly duplicates:
    /// either score at least [`SUSPECT_SCORE`] over at least
    /// [`SUSPECT_MIN_SPAN_S`] (two items that share a melody are as much a
    /// near-duplicate pair as two copies of one recording).
    pub fn near_duplicate(&self) -> Option<&TopMatch> {
        self.copies()
            .or_else(|| self.top_melody.as_ref().filter(|m| suspect(m)))
    }
}

fn suspect(m: &TopMatch) -> bool {
    m.score >= SUSPECT_SCORE && m.span_s >= SUSPECT_MIN_SPAN_S
}

/// Which negatives [`calibrate_set`] treats as suspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suspects {
    /// Negatives from outside the training set: a suspect copies a
    /// training recording ([`Negative::copies`]).
    Copies,
    /// Self-calibration excerpts: a suspect nearly duplicates another
    /// training item in either score ([`Negative::near_duplicate`]).
    NearDuplicates,
}

/// A suspect negative: the negative and the training item it matches.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspect {
    /// The negative (or self-calibration excerpt).
    pub input: String,
    /// The training item it cut from, for a self-calibration excerpt.
    pub from_item: Option<usize>,
    /// The training item it matches.
    pub matches: TopMatch,
    /// `audio` or `melody`: which score is near the cap.
    pub score: &'static str,
}

/// What [`calibrate_set`] did: the thresholds, and the suspects it found
/// (left out of the fit unless they were kept).
#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    /// The calibrated thresholds, with the set they were measured on.
    pub thresholds: Thresholds,
    /// Every suspect, in input order.
    pub suspects: Vec<Suspect>,
    /// Whether the suspects were kept in the fit.
    pub kept_suspects: bool,
    /// The best scores the fit used.
    pub used: Vec<BestScores>,
}

impl Calibration {
    /// The distinct training-item pairs the self-calibration suspects
    /// name, as (path, path) sorted within and between pairs.
    pub fn pairs(&self, index: &Index) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .suspects
            .iter()
            .filter_map(|s| {
                let a = index.manifest.items.get(s.from_item?)?.path.clone();
                let b = s.matches.path.clone();
                Some(if a <= b { (a, b) } else { (b, a) })
            })
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
    }
}

/// Calibrates on audited negatives: names every suspect (see
/// [`Suspects`]) and leaves it out of the fit unless `keep_suspects`,
/// fits the thresholds with [`calibrate`] on the rest, and records the
/// set's duration range and the date (`now`).
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (stage `calibrate`) as [`calibrate`] gives
/// it, and when a threshold would reach [`MAX_THRESHOLD`]: the message
/// names the negatives with the highest scores of that kind.
pub fn calibrate_set(
    negatives: &[Negative],
    target_fpr: f64,
    method: &str,
    rule: Suspects,
    keep_suspects: bool,
    now: std::time::SystemTime,
) -> Result<Calibration> {
    let mut suspects = Vec::new();
    let mut used: Vec<&Negative> = Vec::new();
    for n in negatives {
        let hit = match rule {
            Suspects::Copies => n.copies(),
            Suspects::NearDuplicates => n.near_duplicate(),
        };
        match hit {
            Some(m) => {
                let score = if n.copies().is_some() {
                    "audio"
                } else {
                    "melody"
                };
                suspects.push(Suspect {
                    input: n.input.clone(),
                    from_item: n.item,
                    matches: m.clone(),
                    score,
                });
                if keep_suspects {
                    used.push(n);
                }
            }
            None => used.push(n),
        }
    }
    let scores: Vec<BestScores> = used.iter().map(|n| n.scores).collect();
    let mut t = calibrate(&scores, target_fpr, method).map_err(|e| {
        // name the negatives behind an unreachable threshold
        let msg = e.to_string();
        if !msg.contains("no score reaches") {
            return e;
        }
        let top = |f: fn(&BestScores) -> f32| {
            let mut v: Vec<&&Negative> = used.iter().collect();
            v.sort_by(|a, b| f(&b.scores).total_cmp(&f(&a.scores)));
            v.iter()
                .take(3)
                .map(|n| format!("{} ({:.4})", n.input, f(&n.scores)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Error::new(
            Stage::Calibrate,
            ErrorKind::InvalidInput(format!(
                "{msg}; the highest audio scores: {}; the highest melody scores: {}",
                top(|s| s.audio),
                top(|s| s.melody)
            )),
        )
    })?;
    let durations: Vec<f32> = used.iter().map(|n| n.duration_s as f32).collect();
    let q = quantiles(&durations, &[0.0, 0.5, 1.0]);
    t.durations_s = Some(DurationRange {
        min: q[0] as f64,
        median: q[1] as f64,
        max: q[2] as f64,
    });
    t.calibrated_at = Some(humantime::format_rfc3339_seconds(now).to_string());
    t.excluded_suspects = if keep_suspects { 0 } else { suspects.len() };
    Ok(Calibration {
        thresholds: t,
        suspects,
        kept_suspects: keep_suspects,
        used: scores,
    })
}

/// Label of thresholds set by the caller (a command-line flag, an
/// argument in Python): no false-positive rate is claimed for them.
pub const METHOD_CALLER: &str = "caller";

/// The thresholds `base` with the caller's `audio` and `melody` overrides
/// (either may be absent). Any override makes the result
/// [`METHOD_CALLER`], with every calibration claim removed: the rate
/// `base` was calibrated for holds only for `base`'s pair of thresholds.
/// Without an override, `base` is returned as it is.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (stage `audit`) when an override is not a
/// number in [0, 1] (scores are in [0, 1]: below 0 everything flags, above
/// 1 nothing does).
pub fn set_by_caller(
    base: &Thresholds,
    audio: Option<f32>,
    melody: Option<f32>,
) -> Result<Thresholds> {
    for (name, v) in [("audio", audio), ("melody", melody)] {
        if let Some(v) = v {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::new(
                    Stage::Audit,
                    ErrorKind::InvalidInput(format!(
                        "the {name} threshold {v} is outside [0, 1]: scores are in [0, 1], so it would flag everything or nothing"
                    )),
                ));
            }
        }
    }
    if audio.is_none() && melody.is_none() {
        return Ok(base.clone());
    }
    Ok(Thresholds {
        audio: audio.unwrap_or(base.audio),
        melody: melody.unwrap_or(base.melody),
        method: METHOD_CALLER.to_string(),
        ..Thresholds::default()
    })
}

/// What a reader must know when an input of `duration_s` seconds lies
/// outside the durations `t` was calibrated on: its false-positive rate
/// was not measured at that length. `None` inside the range, or when `t`
/// records no range.
pub fn coverage_note(t: &Thresholds, duration_s: f64) -> Option<String> {
    let r = t.durations_s?;
    // compared at the 0.1 s the note prints
    let d = (duration_s * 10.0).round() / 10.0;
    if d < (r.min * 10.0).round() / 10.0 {
        Some(format!(
            "the input ({duration_s:.1} s) is shorter than every calibration negative ({:.1}–{:.1} s): the false-positive rate was not measured at this length",
            r.min, r.max
        ))
    } else if d > (r.max * 10.0).round() / 10.0 {
        Some(format!(
            "the input ({duration_s:.1} s) is longer than every calibration negative ({:.1}–{:.1} s): the false-positive rate was not measured at this length",
            r.min, r.max
        ))
    } else {
        None
    }
}

/// Logits beyond this are clamped (scores of exactly 0 or 1).
const LOGIT_LIMIT: f64 = 14.0;

/// No calibrated threshold is lower than this. The scores are built so
/// that 0.5 separates the development set's copies from its negatives;
/// calibration moves a threshold to where an index's own negatives put it,
/// but the tail fitted to a few dozen negatives is too uncertain to trust
/// far below that point. (Measured: calibrated on 70 development
/// negatives, the audio threshold came out at 0.03, and 2 of the 73
/// held-out negatives scored 0.05 and 0.07, while all 56 copies that only
/// the audio score flagged scored above 0.97.) A floor can only lower the
/// false-positive rate.
pub const MIN_THRESHOLD: f32 = 0.3;

/// Thresholds for `target_fpr` from the best scores of `negatives` (never
/// below [`MIN_THRESHOLD`]), with the achieved rate and its 95 % upper
/// bound. `method` labels the result. [`calibrate_set`] adds the suspect
/// screen, the durations and the date.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (stage `calibrate`) when `target_fpr` is
/// not in (0, 1), with fewer than 2 negatives, and when a threshold would
/// reach [`MAX_THRESHOLD`] ("no score reaches"): such a threshold is
/// refused, never returned.
pub fn calibrate(negatives: &[BestScores], target_fpr: f64, method: &str) -> Result<Thresholds> {
    if !(target_fpr > 0.0 && target_fpr < 1.0) {
        return Err(Error::new(
            Stage::Calibrate,
            ErrorKind::InvalidInput(format!(
                "the target false-positive rate must be between 0 and 1, not {target_fpr}"
            )),
        ));
    }
    if negatives.len() < 2 {
        return Err(Error::new(
            Stage::Calibrate,
            ErrorKind::InvalidInput(format!(
                "calibration needs at least 2 negatives, got {}: give more music that is not in the training set",
                negatives.len()
            )),
        ));
    }
    let alpha = target_fpr / 2.0;
    let audio: Vec<f32> = negatives.iter().map(|s| s.audio).collect();
    let melody: Vec<f32> = negatives.iter().map(|s| s.melody).collect();
    let mut t = Thresholds {
        audio: threshold(&audio, alpha).max(MIN_THRESHOLD),
        melody: threshold(&melody, alpha).max(MIN_THRESHOLD),
        method: method.to_string(),
        target_fpr: Some(target_fpr),
        negatives: negatives.len(),
        ..Thresholds::default()
    };
    for (name, x) in [("audio", t.audio), ("melody", t.melody)] {
        if x >= MAX_THRESHOLD {
            return Err(Error::new(
                Stage::Calibrate,
                ErrorKind::InvalidInput(format!(
                    "the {name} threshold would be {x:.4}, which no score reaches (scores stop at 0.9999), so nothing would ever be flagged; not stored: the negatives probably hold copies of training items (or, with --self, the training set holds near-duplicates): remove them"
                )),
            ));
        }
    }
    let k = negatives.iter().filter(|s| s.flagged_by(&t)).count();
    t.flagged_negatives = Some(k);
    t.fpr_upper_95 = Some(clopper_pearson_upper(k, negatives.len(), 0.95));
    Ok(t)
}

/// One line saying what the thresholds are and how they were set, e.g.
/// "thresholds audio 0.412, melody 0.530 (calibrated for 1.0 % false
/// positives on 70 negatives: 0 flagged, at most 4.2 % with 95 % confidence)".
pub fn describe(t: &Thresholds) -> String {
    let how = match (t.target_fpr, t.fpr_upper_95) {
        (Some(f), Some(up)) => {
            let mut s = format!(
                "{} for {:.1} % false positives on {} negatives: {} flagged, at most {:.1} % with 95 % confidence",
                t.method,
                100.0 * f,
                t.negatives,
                t.flagged_negatives
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "?".into()),
                100.0 * up
            );
            if let Some(d) = t.durations_s {
                s.push_str(&format!(
                    "; negatives {:.1}–{:.1} s long (median {:.1} s)",
                    d.min, d.max, d.median
                ));
            }
            if t.excluded_suspects > 0 {
                s.push_str(&format!(
                    "; {} suspected copies left out",
                    t.excluded_suspects
                ));
            }
            if let Some(at) = &t.calibrated_at {
                s.push_str(&format!("; on {}", at.get(..10).unwrap_or(at)));
            }
            s
        }
        _ if t.method == METHOD_CALLER => {
            "set by the caller: no false-positive rate is claimed for them".to_string()
        }
        _ => format!(
            "{}; false-positive rate not calibrated: run `refrain calibrate`",
            t.method
        ),
    };
    let floor = |x: f32| {
        if t.target_fpr.is_some() && x == MIN_THRESHOLD {
            " (the floor)"
        } else {
            ""
        }
    };
    format!(
        "thresholds audio {:.3}{}, melody {:.3}{} ({how})",
        t.audio,
        floor(t.audio),
        t.melody,
        floor(t.melody)
    )
}

/// The threshold one score needs so that about a share `alpha` of these
/// negatives reach it: the larger of the empirical and the tail-fitted
/// quantile, never above 1 (a threshold above 1 flags nothing).
pub fn threshold(scores: &[f32], alpha: f64) -> f32 {
    empirical_threshold(scores, alpha)
        .max(tail_threshold(scores, alpha))
        .min(1.0 + f32::EPSILON)
}

/// The smallest threshold that at most `⌊alpha·n⌋` of `scores` reach.
pub fn empirical_threshold(scores: &[f32], alpha: f64) -> f32 {
    let mut s: Vec<f32> = scores.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 1.0;
    }
    s.sort_by(|a, b| b.total_cmp(a));
    let k = (alpha * s.len() as f64).floor() as usize;
    if k >= s.len() {
        return 0.0;
    }
    // just above the (k+1)-th largest: it and everything below pass
    next_up(s[k])
}

/// The `(1 − alpha)` quantile of an extreme-value tail fitted to the
/// logits of `scores`, mapped back to a score. Only the upper tail is fitted
/// (peaks over a threshold): above the empirical quantile `u` at
/// [`TAIL_SHARE`], the excesses are taken as exponential with their mean as
/// scale (the Gumbel domain's limit), so the bulk of near-zero scores does
/// not widen the fitted tail. `t = u + σ · ln(p_u / alpha)`.
pub fn tail_threshold(scores: &[f32], alpha: f64) -> f32 {
    let mut z: Vec<f64> = scores
        .iter()
        .filter(|x| x.is_finite())
        .map(|&x| logit(x as f64))
        .collect();
    if z.len() < 2 {
        return 0.0;
    }
    z.sort_by(|a, b| b.total_cmp(a));
    let k = ((TAIL_SHARE * z.len() as f64).ceil() as usize).clamp(1, z.len() - 1);
    let u = z[k];
    let p_u = k as f64 / z.len() as f64;
    if alpha >= p_u {
        return sigmoid(u) as f32;
    }
    let sigma = (z[..k].iter().map(|v| v - u).sum::<f64>() / k as f64).max(1e-6);
    sigmoid(u + sigma * (p_u / alpha).ln()) as f32
}

/// Share of the negatives whose excesses make up the fitted tail.
pub const TAIL_SHARE: f64 = 0.2;

fn logit(p: f64) -> f64 {
    let p = p.clamp(0.0, 1.0);
    ((p + 1e-12) / (1.0 - p + 1e-12))
        .ln()
        .clamp(-LOGIT_LIMIT, LOGIT_LIMIT)
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn next_up(x: f32) -> f32 {
    if x.is_nan() || x == f32::INFINITY {
        return x;
    }
    if x == 0.0 {
        return f32::from_bits(1);
    }
    let b = x.to_bits();
    f32::from_bits(if x > 0.0 { b + 1 } else { b - 1 })
}

/// The binomial probability of at most `k` successes in `n` trials.
fn binomial_cdf(k: usize, n: usize, p: f64) -> f64 {
    if p <= 0.0 {
        return 1.0;
    }
    if p >= 1.0 {
        return if k >= n { 1.0 } else { 0.0 };
    }
    // sum of pmf terms in log space
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_c = 0.0f64; // ln C(n, 0)
    let mut sum = 0.0f64;
    for i in 0..=k.min(n) {
        if i > 0 {
            log_c += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        sum += (log_c + i as f64 * lp + (n - i) as f64 * lq).exp();
    }
    sum.min(1.0)
}

/// The exact (Clopper–Pearson) one-sided upper confidence bound of a rate
/// observed as `k` of `n`, at confidence `conf` (e.g. 0.95).
pub fn clopper_pearson_upper(k: usize, n: usize, conf: f64) -> f64 {
    if n == 0 {
        return 1.0;
    }
    if k >= n {
        return 1.0;
    }
    // the p at which P(X <= k) = 1 - conf; the CDF falls as p grows
    let target = 1.0 - conf;
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if binomial_cdf(k, n, mid) > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The Wilson score interval of a rate observed as `k` of `n`, at 95 %.
pub fn wilson_95(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let den = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / den;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / den;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Quantiles (nearest rank) of `v`, which need not be sorted.
pub fn quantiles(v: &[f32], ps: &[f64]) -> Vec<f32> {
    let mut s: Vec<f32> = v.to_vec();
    s.sort_by(f32::total_cmp);
    ps.iter()
        .map(|&p| {
            if s.is_empty() {
                f32::NAN
            } else {
                s[((s.len() - 1) as f64 * p.clamp(0.0, 1.0)).round() as usize]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_abs_diff_eq;

    #[test]
    fn clopper_pearson_matches_known_values() {
        // 0 of n: the bound is 1 - 0.05^(1/n) (the "rule of three" for large n)
        for n in [10usize, 70, 143, 1000] {
            let exact = 1.0 - 0.05f64.powf(1.0 / n as f64);
            assert_abs_diff_eq!(clopper_pearson_upper(0, n, 0.95), exact, epsilon = 1e-9);
        }
        // 1 of 143: the p with (1-p)^143 + 143 p (1-p)^142 = 0.05, 0.0327428
        assert_abs_diff_eq!(
            clopper_pearson_upper(1, 143, 0.95),
            0.0327428,
            epsilon = 1e-6
        );
        assert_eq!(clopper_pearson_upper(5, 5, 0.95), 1.0);
    }

    #[test]
    fn wilson_interval_matches_a_known_value() {
        // 10 of 100: (0.0552, 0.1744)
        let (lo, hi) = wilson_95(10, 100);
        assert_abs_diff_eq!(lo, 0.0552, epsilon = 1e-4);
        assert_abs_diff_eq!(hi, 0.1744, epsilon = 1e-4);
        assert_eq!(wilson_95(0, 20).0, 0.0);
    }

    #[test]
    fn empirical_threshold_lets_through_at_most_the_rate() {
        let s: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let t = empirical_threshold(&s, 0.01);
        assert_eq!(s.iter().filter(|&&x| x >= t).count(), 2);
        // fewer negatives than 1 / alpha: none may reach it
        let t = empirical_threshold(&s[..50], 0.01);
        assert!(s[..50].iter().all(|&x| x < t));
    }

    #[test]
    fn tail_fit_recovers_the_quantile_of_exponential_tailed_samples() {
        // logits with a bulk far below and a Gumbel(mu = -3, beta = 1) upper
        // part, by inversion on a fixed grid: the bulk must not move the fit
        let n = 4000;
        let s: Vec<f32> = (0..n)
            .map(|i| {
                let u = (i as f64 + 0.5) / n as f64;
                if u < 0.5 {
                    sigmoid(-12.0 + u) as f32
                } else {
                    sigmoid(-3.0 - (-u.ln()).ln()) as f32
                }
            })
            .collect();
        let t = tail_threshold(&s, 0.01) as f64;
        let expected = sigmoid(-3.0 - (-(0.99f64).ln()).ln());
        assert_abs_diff_eq!(logit(t), logit(expected), epsilon = 0.25);
        // and its empirical rate is close to 1 %
        let k = s.iter().filter(|&&x| x as f64 >= t).count();
        assert!((28..=52).contains(&k), "{k}");
    }

    use crate::analysis::Analyzer;
    use crate::index::IndexBuilder;
    use crate::params::AnalysisParams;
    use crate::synth::{self, Render, Timbre};

    fn analysis_audio(x: Vec<f32>) -> Audio {
        audio_at_analysis_rate(x, &AnalysisParams::default())
    }

    fn index_of(songs: &[(String, Vec<f32>)]) -> Index {
        let p = AnalysisParams::default();
        let mut b = IndexBuilder::new(&p);
        for (i, (name, x)) in songs.iter().enumerate() {
            let fp = Analyzer::new(&p)
                .analyze(&analysis_audio(x.clone()))
                .unwrap();
            b.add(name, &format!("hash{i}"), &fp).unwrap();
        }
        b.build()
    }

    fn negative(auditor: &Auditor, name: &str, x: Vec<f32>) -> Negative {
        Negative::of(name, &auditor.check_audio(&analysis_audio(x)).unwrap())
    }

    #[test]
    fn seeded_copies_are_named_and_left_out_and_the_thresholds_stay() {
        let songs: Vec<(String, Vec<f32>)> = (1..=6u64)
            .map(|seed| {
                let r = Render {
                    melody: Timbre::Piano,
                    accompaniment: Timbre::Pluck,
                    ..Render::default()
                };
                (
                    format!("song{seed}.wav"),
                    synth::render(&synth::compose(seed, 16), &r),
                )
            })
            .collect();
        let index = index_of(&songs);
        let auditor = Auditor::new(&index);
        // clean negatives: 10 s of 24 other pieces, in other timbres
        let clean: Vec<Negative> = (300..324u64)
            .map(|seed| {
                let r = Render {
                    melody: Timbre::Organ,
                    accompaniment: Timbre::Strings,
                    duration_s: Some(10.0),
                    ..Render::default()
                };
                let x = synth::render(&synth::compose(seed, 8), &r);
                negative(&auditor, &format!("neg{seed}.wav"), x)
            })
            .collect();
        assert!(clean.iter().all(|n| n.copies().is_none()), "{clean:?}");
        // seeded: four of them are really 12 s excerpts of training songs,
        // with noise
        let mut seeded = clean.clone();
        let rate = AnalysisParams::default().sample_rate as usize;
        for (k, song) in [1usize, 2, 4, 5].into_iter().enumerate() {
            let mut x = songs[song].1[(4 + 3 * k) * rate..(16 + 3 * k) * rate].to_vec();
            synth::add_noise(&mut x, 20.0, k as u64);
            seeded.insert(5 * k, negative(&auditor, &format!("copy{k}.wav"), x));
        }
        let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_764_700_000);
        let fit = |set: &[Negative], keep: bool| {
            calibrate_set(set, 0.1, METHOD_NEGATIVES, Suspects::Copies, keep, now)
        };
        let a = fit(&clean, false).unwrap();
        let b = fit(&seeded, false).unwrap();
        // every seeded copy named, with the song it copies, and nothing else
        let named: Vec<(&str, &str)> = b
            .suspects
            .iter()
            .map(|s| (s.input.as_str(), s.matches.path.as_str()))
            .collect();
        assert_eq!(
            named,
            [
                ("copy0.wav", "song2.wav"),
                ("copy1.wav", "song3.wav"),
                ("copy2.wav", "song5.wav"),
                ("copy3.wav", "song6.wav")
            ]
        );
        assert!(a.suspects.is_empty());
        let (ta, tb) = (&a.thresholds, &b.thresholds);
        assert!((ta.audio - tb.audio).abs() <= 0.01, "{ta:?} {tb:?}");
        assert!((ta.melody - tb.melody).abs() <= 0.01, "{ta:?} {tb:?}");
        assert_eq!(
            (ta.negatives, tb.negatives, tb.excluded_suspects),
            (24, 24, 4)
        );
        // the set is on record: its lengths and the date
        let d = tb.durations_s.unwrap();
        assert!(
            (d.min - 10.0).abs() < 0.05 && (d.max - 10.0).abs() < 0.05,
            "{d:?}"
        );
        assert_eq!(tb.calibrated_at.as_deref(), Some("2025-12-02T18:26:40Z"));
        assert!(
            describe(tb).contains("4 suspected copies left out"),
            "{}",
            describe(tb)
        );
        // kept in the fit, the copies push the audio threshold to the cap,
        // and such a threshold is refused, naming the copies
        let e = fit(&seeded, true).unwrap_err().to_string();
        assert!(e.contains("no score reaches") && e.contains("copy"), "{e}");
        // an audit notes an input longer than every negative
        let note = coverage_note(tb, 30.0).unwrap();
        assert!(
            note.contains("longer than every calibration negative (10.0–10.0 s)"),
            "{note}"
        );
        assert!(coverage_note(tb, 10.0).is_none());
        assert!(coverage_note(tb, 3.0).unwrap().contains("shorter"));
    }

    #[test]
    fn self_calibration_names_two_training_items_that_share_a_melody() {
        // seven songs of 24 bars (over 60 s); songs a and b are one piece in
        // two arrangements
        let render = |seed: u64, melody: Timbre, accompaniment: Timbre| {
            synth::render(
                &synth::compose(seed, 24),
                &Render {
                    melody,
                    accompaniment,
                    ..Render::default()
                },
            )
        };
        let mut songs: Vec<(String, Vec<f32>)> = (11..=15u64)
            .map(|s| {
                (
                    format!("song{s}.wav"),
                    render(s, Timbre::Piano, Timbre::Pluck),
                )
            })
            .collect();
        songs.push(("a.wav".into(), render(7, Timbre::Piano, Timbre::Pluck)));
        songs.push(("b.wav".into(), render(7, Timbre::Piano, Timbre::Organ)));
        let index = index_of(&songs);
        let mut excerpts = Vec::new();
        for (i, (_, x)) in songs.iter().enumerate() {
            excerpts.extend(leave_one_out(&index, i, &analysis_audio(x.clone())).unwrap());
        }
        assert_eq!(excerpts.len(), 7 * 3);
        let now = std::time::SystemTime::now();
        let cal = calibrate_set(
            &excerpts,
            0.1,
            METHOD_SELF,
            Suspects::NearDuplicates,
            false,
            now,
        )
        .unwrap();
        assert_eq!(
            cal.pairs(&index),
            [("a.wav".to_string(), "b.wav".to_string())]
        );
        // the pair's excerpts are out of the null; the thresholds are usable
        assert!(cal
            .suspects
            .iter()
            .all(|s| s.input.starts_with("a.wav") || s.input.starts_with("b.wav")));
        assert_eq!(cal.thresholds.negatives + cal.suspects.len(), 21);
        assert!(cal.thresholds.melody < MAX_THRESHOLD && cal.thresholds.audio < MAX_THRESHOLD);
    }

    #[test]
    fn thresholds_stored_before_the_calibration_record_still_read() {
        // a manifest's thresholds as indexes written before this version hold them
        let old = r#"{"audio": 0.3, "melody": 0.32, "method": "calibrated", "target_fpr": 0.01,
                      "negatives": 70, "fpr_upper_95": 0.042, "flagged_negatives": 0}"#;
        let t: Thresholds = serde_json::from_str(old).unwrap();
        assert_eq!((t.audio, t.negatives, t.excluded_suspects), (0.3, 70, 0));
        assert!(t.durations_s.is_none() && t.calibrated_at.is_none());
        assert!(coverage_note(&t, 3600.0).is_none());
        // and what this version writes adds only fields with defaults
        let back: Thresholds = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(!serde_json::to_string(&t).unwrap().contains("durations_s"));
    }

    #[test]
    fn caller_thresholds_are_checked_and_claim_no_calibration() {
        let calibrated = Thresholds {
            audio: 0.4,
            melody: 0.6,
            method: METHOD_NEGATIVES.into(),
            target_fpr: Some(0.01),
            negatives: 149,
            fpr_upper_95: Some(0.02),
            flagged_negatives: Some(1),
            ..Thresholds::default()
        };
        for bad in [-1.0, 1.5, f32::NAN, f32::INFINITY] {
            let e = set_by_caller(&calibrated, Some(bad), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("outside [0, 1]"), "{e}");
            assert!(set_by_caller(&calibrated, None, Some(bad)).is_err());
        }
        assert_eq!(set_by_caller(&calibrated, None, None).unwrap(), calibrated);
        let t = set_by_caller(&calibrated, Some(0.8), None).unwrap();
        assert_eq!(
            (t.audio, t.melody, t.method.as_str()),
            (0.8, 0.6, METHOD_CALLER)
        );
        assert_eq!((t.target_fpr, t.fpr_upper_95, t.negatives), (None, None, 0));
        let d = describe(&t);
        assert!(
            d.contains("set by the caller") && !d.contains("false positives on"),
            "{d}"
        );
        assert!(coverage_note(&t, 1000.0).is_none());
    }

    #[test]
    fn calibration_splits_the_rate_and_reports_what_it_achieved() {
        // melody scores spread over (0, 1), audio scores lower
        let neg: Vec<BestScores> = (0..400)
            .map(|i| {
                let u = (i as f32 + 0.5) / 400.0;
                BestScores {
                    audio: 0.5 * u * u,
                    melody: u,
                }
            })
            .collect();
        let t = calibrate(&neg, 0.02, METHOD_NEGATIVES).unwrap();
        let k = neg.iter().filter(|s| s.flagged_by(&t)).count();
        assert_eq!(t.flagged_negatives, Some(k));
        assert!(k <= 8, "{k} of 400 flagged at a 2 % target");
        assert_eq!(t.negatives, 400);
        assert_eq!(t.target_fpr, Some(0.02));
        let up = t.fpr_upper_95.unwrap();
        assert!(up > k as f64 / 400.0 && up < 0.05, "{up}");
        // bad requests are refused with a message
        assert!(calibrate(&neg[..1], 0.01, METHOD_NEGATIVES).is_err());
        let e = calibrate(&neg, 1.5, METHOD_NEGATIVES)
            .unwrap_err()
            .to_string();
        assert!(e.contains("between 0 and 1"), "{e}");
    }
}
