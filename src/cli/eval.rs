//! `refrain eval DEVSET_DIR [--work DIR] [--fpr 0.01]`: the development-set
//! check in one step. Indexes `train/`, calibrates on half of `neg/` (split
//! by source recording), audits `query/` and the other half of `neg/`, and
//! prints the per-class table that `shared/eval/score.py` prints for the same
//! files.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use refrain::audit::{AuditConfig, Auditor};
use refrain::calibrate::{self, BestScores};
use refrain::eval;
use refrain::index::Index;
use refrain::inputs;

/// Flags of `refrain eval`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// The evaluation set: `train/`, `query/`, `neg/` and `truth.tsv`
    /// (as made by `shared/eval/make-devset.sh`).
    pub dir: PathBuf,
    /// Where the index, the results CSV and the test labels go
    /// (default: DIR/refrain-eval).
    #[arg(long)]
    pub work: Option<PathBuf>,
    /// Target false-positive rate of the calibration.
    #[arg(long, default_value_t = 0.01)]
    pub fpr: f64,
    /// Share of the negative sources used to calibrate (the rest are tested).
    #[arg(long, default_value_t = 0.5)]
    pub calibration_share: f64,
    /// Keep the index in the work directory if it opens (skip indexing).
    #[arg(long)]
    pub reuse_index: bool,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let dir = &cfg.dir;
    for sub in ["train", "query", "neg"] {
        anyhow::ensure!(
            dir.join(sub).is_dir(),
            "{} has no {sub}/ directory: give a set made by shared/eval/make-devset.sh",
            dir.display()
        );
    }
    anyhow::ensure!(
        dir.join("truth.tsv").is_file(),
        "{} has no truth.tsv",
        dir.display()
    );
    let work = cfg.work.clone().unwrap_or_else(|| dir.join("refrain-eval"));
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let index_dir = work.join("index");

    // 1. index
    let reuse = cfg.reuse_index && Index::open(&index_dir).is_ok();
    if !reuse {
        super::index::run(&super::index::Config {
            paths: vec![dir.join("train")],
            out: index_dir.clone(),
            add: false,
            batch: cfg.batch.clone(),
        })?;
    }
    let mut index = Index::open(&index_dir)?;

    // 2. calibrate on part of the negatives
    let (negs, neg_errors) = inputs::collect(&[dir.join("neg")]);
    anyhow::ensure!(
        neg_errors.is_empty() && !negs.is_empty(),
        "cannot list the negatives in {}",
        dir.join("neg").display()
    );
    let (cal, test) = eval::split_by_source(
        &negs,
        |i| i.path.display().to_string(),
        cfg.calibration_share,
    );
    let cal_paths: Vec<PathBuf> = cal.iter().map(|i| i.path.clone()).collect();
    let limits = cfg.batch.limits();
    let (scores, failed) =
        super::calibrate::negative_scores(&index, &cal_paths, cfg.batch.threads, &limits)?;
    super::calibrate::report_skipped(&failed);
    let fit = calibrate::calibrate_set(
        &scores,
        cfg.fpr,
        calibrate::METHOD_NEGATIVES,
        calibrate::Suspects::Copies,
        false,
        std::time::SystemTime::now(),
    )?;
    super::calibrate::report_suspects(&fit, &index);
    let thresholds = fit.thresholds;
    index.set_thresholds(thresholds.clone());
    index.save(&index_dir)?;
    eprintln!(
        "calibrated on {} negative file(s) from {} source(s); {}",
        fit.used.len(),
        count_sources(&cal_paths),
        calibrate::describe(&thresholds)
    );

    // 3. audit the queries and the held-out negatives
    let auditor = Auditor::with_config(
        &index,
        AuditConfig {
            thresholds: Some(thresholds.clone()),
            limits,
            // every re-ranked candidate stays in the report, for the
            // candidate-recall table; the verdict and the CSV read only the
            // first
            top_k: usize::MAX,
            ..AuditConfig::default()
        },
    );
    let mut paths = vec![dir.join("query")];
    paths.extend(test.iter().map(|i| i.path.clone()));
    let (outcomes, failures) =
        super::audit::audit_paths(&auditor, &paths, cfg.batch.threads, "auditing")?;
    let results_csv = work.join("results.csv");
    super::audit::write_csv_file(&results_csv, &outcomes)?;
    let errors = super::audit::print_errors(&outcomes, &failures);

    // 4. score against the labels of what was audited
    let cal_set: std::collections::HashSet<String> =
        cal.iter().map(|i| file_name(&i.path)).collect();
    let truth_test = work.join("truth-test.tsv");
    write_truth_subset(&dir.join("truth.tsv"), &truth_test, &cal_set)?;
    let test_truth = eval::read_truth(&truth_test)?;
    let card = eval::score(&test_truth, &eval::rows_of(&outcomes));
    super::print_out(&card.render())?;
    super::print_out(&format!(
        "candidate recall (the right item among the re-ranked candidates):\n{}",
        eval::render_candidate_recall(&eval::candidate_recall(&test_truth, &outcomes))
    ))?;
    let test_names: std::collections::HashSet<String> =
        test.iter().map(|i| i.path.display().to_string()).collect();
    let neg_test: Vec<BestScores> = outcomes
        .iter()
        .filter(|o| test_names.contains(&o.input))
        .filter_map(|o| o.report.as_ref().map(BestScores::of))
        .collect();
    let k = neg_test
        .iter()
        .filter(|s| s.flagged_by(&thresholds))
        .count();
    super::print_out(&format!(
        "held-out negatives flagged: {k} of {} ({:.2} %, 95 % upper bound {:.2} %) at thresholds calibrated for {:.1} %\n",
        neg_test.len(),
        100.0 * k as f64 / neg_test.len().max(1) as f64,
        100.0 * calibrate::clopper_pearson_upper(k, neg_test.len(), 0.95),
        100.0 * cfg.fpr
    ))?;
    eprintln!(
        "evaluated {} in {:.1} s: {} audited, {errors} error(s); results {}; check with: python3 shared/eval/score.py {} {}",
        dir.display(),
        t0.elapsed().as_secs_f64(),
        outcomes.len(),
        results_csv.display(),
        truth_test.display(),
        results_csv.display()
    );
    Ok(if errors == 0 && failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn count_sources(paths: &[PathBuf]) -> usize {
    let mut k: Vec<String> = paths
        .iter()
        .map(|p| eval::source_key(&p.display().to_string()))
        .collect();
    k.sort();
    k.dedup();
    k.len()
}

/// Copies the label lines of `from` except the calibration negatives.
fn write_truth_subset(
    from: &Path,
    to: &Path,
    calibration: &std::collections::HashSet<String>,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(from)?;
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            let mut parts = l.split('\t');
            let (q, exp) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let negative = matches!(exp.trim(), "-" | "");
            !(negative && calibration.contains(&file_name(Path::new(q))))
        })
        .collect();
    std::fs::write(to, kept.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", to.display()))
}
