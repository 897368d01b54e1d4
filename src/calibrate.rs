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
use crate::index::{Index, Thresholds};

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
/// seen. Duplicates of the item elsewhere in the index will score high.
///
/// # Errors
///
/// The errors of [`Auditor::check_audio`] on the excerpts.
pub fn leave_one_out(index: &Index, item: usize, audio: &Audio) -> Result<Vec<BestScores>> {
    let auditor = Auditor::with_config(
        index,
        AuditConfig {
            exclude_item: Some(item),
            ..AuditConfig::default()
        },
    );
    let rate = audio.sample_rate as f64;
    let total = audio.samples.len() as f64 / rate;
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
        out.push(BestScores::of(&auditor.check_audio(&clip)?));
    }
    Ok(out)
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
/// bound. `method` labels the result.
///
/// # Errors
///
/// [`ErrorKind::InvalidInput`] (at [`Stage::Calibrate`]) when there are no
/// negatives or `target_fpr` is not in (0, 1).
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
        fpr_upper_95: None,
        flagged_negatives: None,
    };
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
        (Some(f), Some(up)) => format!(
            "{} for {:.1} % false positives on {} negatives: {} flagged, at most {:.1} % with 95 % confidence",
            t.method,
            100.0 * f,
            t.negatives,
            t.flagged_negatives
                .map(|k| k.to_string())
                .unwrap_or_else(|| "?".into()),
            100.0 * up
        ),
        _ => format!("{}; false-positive rate not calibrated: run `refrain calibrate`", t.method),
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
