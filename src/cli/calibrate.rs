//! `refrain calibrate --index INDEX_DIR [NEGATIVES...] [--fpr 0.01] [--self] [--keep-suspects]`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use refrain::audit::{AuditConfig, Auditor};
use refrain::calibrate::{self, BestScores, Calibration, Negative, Suspects};
use refrain::decode::DecodeLimits;
use refrain::index::Index;
use refrain::{decode, Error};

/// Flags of `refrain calibrate`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// The index directory (from `refrain index`); its thresholds are replaced.
    #[arg(long)]
    pub index: PathBuf,
    /// Music known NOT to be in the training set: files or directories.
    #[arg(required_unless_present = "self_")]
    pub negatives: Vec<PathBuf>,
    /// Target false-positive rate (share of negatives flagged).
    #[arg(long, default_value_t = 0.01)]
    pub fpr: f64,
    /// Without negatives: leave-one-out over the training items themselves
    /// (decoded again from the paths stored in the index).
    #[arg(long = "self", conflicts_with = "negatives")]
    pub self_: bool,
    /// Compute and print the thresholds without storing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep negatives that look like copies of a training item (with
    /// --self: excerpts of near-duplicate training items) in the fit; by
    /// default they are named and left out.
    #[arg(long)]
    pub keep_suspects: bool,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        cfg.fpr > 0.0 && cfg.fpr < 1.0,
        "--fpr must be between 0 and 1 (0.01 is 1 %)"
    );
    let t0 = Instant::now();
    let mut index = Index::open(&cfg.index)?;
    let (negatives, failed, method, rule) = if cfg.self_ {
        let (s, f) = self_scores(&index, cfg.batch.threads, &cfg.batch.limits())?;
        (s, f, calibrate::METHOD_SELF, Suspects::NearDuplicates)
    } else {
        let (s, f) = negative_scores(
            &index,
            &cfg.negatives,
            cfg.batch.threads,
            &cfg.batch.limits(),
        )?;
        (s, f, calibrate::METHOD_NEGATIVES, Suspects::Copies)
    };
    report_skipped(&failed);
    if cfg.self_ && !failed.is_empty() {
        eprintln!(
            "refrain: hint: --self decodes the training files from the paths they were indexed with: run it where those paths resolve"
        );
    }
    let cal = calibrate::calibrate_set(
        &negatives,
        cfg.fpr,
        method,
        rule,
        cfg.keep_suspects,
        std::time::SystemTime::now(),
    )
    .with_context(|| format!("calibrating {}: nothing stored", cfg.index.display()))?;
    report_suspects(&cal, &index);
    let t = &cal.thresholds;
    super::print_out(&format!("{}\n", render(&cal.used, t)))?;
    // with none flagged, the 95 % bound reaches the target only from about 3 / fpr negatives
    let enough = (3.0 / cfg.fpr).ceil() as usize;
    if cal.used.len() < enough {
        eprintln!(
            "refrain: hint: {} negatives cannot show a rate as low as {:.1} %: use at least {enough} for the upper bound to reach it",
            cal.used.len(),
            100.0 * cfg.fpr
        );
    }
    if !cfg.dry_run {
        index.set_thresholds(t.clone());
        index
            .save(&cfg.index)
            .with_context(|| format!("storing the thresholds in {}", cfg.index.display()))?;
    }
    eprintln!(
        "calibrated {} on {} negative(s) in {:.1} s, {} failed; {}{}",
        cfg.index.display(),
        cal.used.len(),
        t0.elapsed().as_secs_f64(),
        failed.len(),
        calibrate::describe(t),
        if cfg.dry_run {
            " (dry run: nothing stored)"
        } else {
            ""
        }
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// One line per suspect negative (or near-duplicate training pair) and
/// what was done with it.
pub fn report_suspects(cal: &Calibration, index: &Index) {
    if cal.suspects.is_empty() {
        return;
    }
    let done = if cal.kept_suspects {
        "kept in the fit (--keep-suspects)"
    } else {
        "left out of the fit"
    };
    for s in &cal.suspects {
        let what = if s.from_item.is_some() {
            "near-duplicate of"
        } else {
            "looks like a copy of"
        };
        eprintln!(
            "refrain: suspect: {} {what} training item {} ({} {:.4} over {:.1} s): {done}",
            s.input, s.matches.path, s.score, s.matches.score, s.matches.span_s
        );
    }
    for (a, b) in cal.pairs(index) {
        eprintln!("refrain: near-duplicate training items: {a} and {b}");
    }
    let n = cal.suspects.len();
    if cal.kept_suspects {
        eprintln!("refrain: {n} suspect negative(s) kept in the fit (--keep-suspects)");
    } else {
        eprintln!(
            "refrain: {n} suspect negative(s) left out of the fit; check them, and pass --keep-suspects to keep them"
        );
    }
}

/// One line per input that could not be used, then what to do about them.
pub fn report_skipped(failed: &[Error]) {
    for e in failed {
        eprintln!("refrain: skipped {e}");
    }
    eprint!("{}", super::what_to_do(failed));
}

/// Every negative under `paths`, audited, and the inputs that failed.
pub fn negative_scores(
    index: &Index,
    paths: &[PathBuf],
    threads: Option<usize>,
    limits: &DecodeLimits,
) -> anyhow::Result<(Vec<Negative>, Vec<Error>)> {
    let auditor = Auditor::with_config(
        index,
        AuditConfig {
            limits: *limits,
            ..AuditConfig::default()
        },
    );
    let (outcomes, failed) = super::audit::audit_paths(&auditor, paths, threads, "calibrating")?;
    let negatives = outcomes
        .iter()
        .filter_map(|o| o.report.as_ref().map(|r| Negative::of(&o.input, r)))
        .collect();
    Ok((negatives, failed))
}

/// Leave-one-out excerpts of every training item, audited.
fn self_scores(
    index: &Index,
    threads: Option<usize>,
    limits: &DecodeLimits,
) -> anyhow::Result<(Vec<Negative>, Vec<Error>)> {
    let pool = super::pool(threads)?;
    let bar = super::progress::bar(index.len() as u64, "self-calibrating");
    let rate = index.params().sample_rate;
    let results: Vec<Result<Vec<Negative>, Error>> = pool.install(|| {
        (0..index.len())
            .into_par_iter()
            .map(|i| {
                let path = PathBuf::from(&index.manifest.items[i].path);
                let r = decode::decode_file_with_limits(&path, rate, limits)
                    .and_then(|audio| calibrate::leave_one_out(index, i, &audio))
                    .map_err(|e| e.with_path(&path));
                bar.inc(1);
                r
            })
            .collect()
    });
    bar.finish_and_clear();
    let mut scores = Vec::new();
    let mut failed = Vec::new();
    for r in results {
        match r {
            Ok(s) => scores.extend(s),
            Err(e) => failed.push(e),
        }
    }
    Ok((scores, failed))
}

/// The calibration table: the negatives' score distribution and the result.
fn render(scores: &[BestScores], t: &refrain::index::Thresholds) -> String {
    let ps = [0.5, 0.9, 0.99, 1.0];
    let mut s = String::from("score     p50     p90     p99     max     threshold  flagged\n");
    for (name, v, thr) in [
        (
            "audio",
            scores.iter().map(|x| x.audio).collect::<Vec<_>>(),
            t.audio,
        ),
        (
            "melody",
            scores.iter().map(|x| x.melody).collect::<Vec<_>>(),
            t.melody,
        ),
    ] {
        let q = calibrate::quantiles(&v, &ps);
        let k = v.iter().filter(|&&x| x >= thr).count();
        s.push_str(&format!(
            "{name:<8} {:>6.3}  {:>6.3}  {:>6.3}  {:>6.3}  {thr:>9.3}  {k:>4}/{}\n",
            q[0],
            q[1],
            q[2],
            q[3],
            v.len()
        ));
    }
    let k = t.flagged_negatives.unwrap_or(0);
    s.push_str(&format!(
        "either: {k} of {} negatives flagged ({:.2} %); 95 % upper bound {:.2} % (target {:.2} %)",
        scores.len(),
        100.0 * k as f64 / scores.len().max(1) as f64,
        100.0 * t.fpr_upper_95.unwrap_or(1.0),
        100.0 * t.target_fpr.unwrap_or(0.0)
    ));
    s
}
