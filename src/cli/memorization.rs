//! `refrain memorization --index INDEX_DIR --generated DIR --reference DIR`:
//! the share of a model's outputs that copy the training set, against the
//! same share for real music that is not in it (the null), each with a 95 %
//! confidence interval, and the best-score distributions of both.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use refrain::audit::{AuditConfig, Auditor};
use refrain::calibrate::{self, BestScores};
use refrain::html;
use refrain::index::{Index, Thresholds};
use refrain::report::{IndexInfo, Outcome};

/// Flags of `refrain memorization`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// The index directory (from `refrain index`, ideally calibrated).
    #[arg(long)]
    pub index: PathBuf,
    /// The model's outputs: files or directories.
    #[arg(long, required = true, num_args = 1..)]
    pub generated: Vec<PathBuf>,
    /// Real music known not to be in the training set: files or directories.
    #[arg(long, required = true, num_args = 1..)]
    pub reference: Vec<PathBuf>,
    /// Write the table as CSV here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the per-input audit report (CSV) of both sets here, with
    /// a last column `set` (`generated` or `reference`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Also write the HTML page (both sets' best-score distributions with
    /// the thresholds, the rates with their intervals) here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

/// Quantiles of the best-score distributions in the table.
const QUANTILES: [f64; 6] = [0.1, 0.5, 0.9, 0.95, 0.99, 1.0];

/// One row of the table: one set, one dimension.
struct Row {
    set: &'static str,
    dimension: &'static str,
    n: usize,
    flagged: usize,
    ci: (f64, f64),
    quantiles: Vec<f32>,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let index = Index::open(&cfg.index)?;
    let auditor = Auditor::with_config(
        &index,
        AuditConfig {
            limits: cfg.batch.limits(),
            ..AuditConfig::default()
        },
    );
    let t = auditor.thresholds().clone();
    let (generated, mut failures) =
        super::audit::audit_paths(&auditor, &cfg.generated, cfg.batch.threads, "generated")?;
    let (reference, more) =
        super::audit::audit_paths(&auditor, &cfg.reference, cfg.batch.threads, "reference")?;
    failures.extend(more);
    let all: Vec<Outcome> = generated.iter().chain(&reference).cloned().collect();
    let errors = super::audit::print_errors(&all, &failures);
    let rows: Vec<Row> = [("generated", &generated), ("reference", &reference)]
        .into_iter()
        .flat_map(|(set, o)| rows_of(set, o, &t))
        .collect();
    super::print_out(&render(&rows, &t))?;
    if let Some(p) = &cfg.out {
        write_csv(p, &rows, &t)?;
    }
    if let Some(p) = &cfg.report {
        let f =
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let n = generated.len();
        refrain::report::write_csv_with(&mut w, &all, &["set"], |i| {
            vec![if i < n { "generated" } else { "reference" }.to_string()]
        })?;
        std::io::Write::flush(&mut w)?;
    }
    if let Some(p) = &cfg.html {
        write_html(p, cfg, &index, &t, &rows, &generated, &reference)?;
    }
    eprintln!(
        "audited {} generated and {} reference input(s) against {} item(s) in {:.1} s, {errors} error(s)",
        generated.len(),
        reference.len(),
        index.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Whether a dimension flags these scores.
type Flag = fn(&BestScores, &Thresholds) -> bool;
/// The score a dimension's distribution is made of.
type Value = fn(&BestScores) -> f32;

fn rows_of(set: &'static str, outcomes: &[Outcome], t: &Thresholds) -> Vec<Row> {
    let best: Vec<BestScores> = outcomes
        .iter()
        .filter_map(|o| o.report.as_ref().map(BestScores::of))
        .collect();
    let n = best.len();
    let dims: [(&'static str, Flag, Value); 3] = [
        ("audio", |s, t| s.audio >= t.audio, |s| s.audio),
        ("melody", |s, t| s.melody >= t.melody, |s| s.melody),
        ("either", |s, t| s.flagged_by(t), |s| s.audio.max(s.melody)),
    ];
    dims.into_iter()
        .map(|(dimension, flag, value)| {
            let flagged = best.iter().filter(|s| flag(s, t)).count();
            let v: Vec<f32> = best.iter().map(value).collect();
            Row {
                set,
                dimension,
                n,
                flagged,
                ci: calibrate::wilson_95(flagged, n),
                quantiles: calibrate::quantiles(&v, &QUANTILES),
            }
        })
        .collect()
}

fn render(rows: &[Row], t: &Thresholds) -> String {
    let mut s = format!("memorization rate ({})\n", calibrate::describe(t));
    s.push_str(
        "set        dimension      n  flagged    rate   95 % interval      best score p10    p50    p90    p95    p99    max\n",
    );
    for r in rows {
        let q = &r.quantiles;
        s.push_str(&format!(
            "{:<10} {:<9} {:>6} {:>8} {:>6.1} %  [{:>5.1} %, {:>5.1} %]   {:>14.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3} {:>6.3}\n",
            r.set,
            r.dimension,
            r.n,
            r.flagged,
            pct(r.flagged, r.n),
            100.0 * r.ci.0,
            100.0 * r.ci.1,
            q[0],
            q[1],
            q[2],
            q[3],
            q[4],
            q[5]
        ));
    }
    // the excess over the null, per dimension
    for dim in ["audio", "melody", "either"] {
        let g = rows
            .iter()
            .find(|r| r.set == "generated" && r.dimension == dim);
        let n = rows
            .iter()
            .find(|r| r.set == "reference" && r.dimension == dim);
        if let (Some(g), Some(n)) = (g, n) {
            let (lo, hi) = newcombe(g.flagged, g.n, n.flagged, n.n);
            s.push_str(&format!(
                "{dim:<7} generated − reference: {:+.1} points, 95 % interval [{:+.1}, {:+.1}]\n",
                pct(g.flagged, g.n) - pct(n.flagged, n.n),
                100.0 * lo,
                100.0 * hi
            ));
        }
    }
    s
}

fn write_html(
    path: &std::path::Path,
    cfg: &Config,
    index: &Index,
    t: &Thresholds,
    rows: &[Row],
    generated: &[Outcome],
    reference: &[Outcome],
) -> anyhow::Result<()> {
    let best = |o: &[Outcome]| -> Vec<BestScores> {
        o.iter()
            .filter_map(|o| o.report.as_ref().map(BestScores::of))
            .collect()
    };
    let rates: Vec<html::RateRow> = rows
        .iter()
        .map(|r| html::RateRow {
            set: r.set.to_string(),
            dimension: r.dimension.to_string(),
            n: r.n,
            flagged: r.flagged,
            ci95: r.ci,
        })
        .collect();
    let differences: Vec<(String, f64, (f64, f64))> = ["audio", "melody", "either"]
        .into_iter()
        .filter_map(|dim| {
            let g = rows
                .iter()
                .find(|r| r.set == "generated" && r.dimension == dim)?;
            let n = rows
                .iter()
                .find(|r| r.set == "reference" && r.dimension == dim)?;
            let (lo, hi) = newcombe(g.flagged, g.n, n.flagged, n.n);
            Some((
                dim.to_string(),
                pct(g.flagged, g.n) - pct(n.flagged, n.n),
                (100.0 * lo, 100.0 * hi),
            ))
        })
        .collect();
    let info = IndexInfo {
        items: index.len(),
        hours: index.hours(),
        format_version: index.manifest.format_version,
    };
    let index_name = cfg.index.display().to_string();
    let (g, r) = (best(generated), best(reference));
    let page = html::render_memorization(&html::Memorization {
        index: &index_name,
        index_info: Some(&info),
        thresholds: t,
        rows: &rates,
        differences: &differences,
        generated: &g,
        reference: &r,
    });
    std::fs::write(path, page).with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote the HTML page {}", path.display());
    Ok(())
}

fn pct(k: usize, n: usize) -> f64 {
    100.0 * k as f64 / n.max(1) as f64
}

/// Newcombe's interval for a difference of two proportions (from the two
/// Wilson intervals).
fn newcombe(k1: usize, n1: usize, k2: usize, n2: usize) -> (f64, f64) {
    let (p1, p2) = (k1 as f64 / n1.max(1) as f64, k2 as f64 / n2.max(1) as f64);
    let (l1, u1) = calibrate::wilson_95(k1, n1);
    let (l2, u2) = calibrate::wilson_95(k2, n2);
    let d = p1 - p2;
    (
        d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
    )
}

fn write_csv(path: &std::path::Path, rows: &[Row], t: &Thresholds) -> anyhow::Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = csv::Writer::from_writer(std::io::BufWriter::new(f));
    let mut header: Vec<String> = [
        "set",
        "dimension",
        "n",
        "flagged",
        "rate",
        "ci95_low",
        "ci95_high",
        "threshold",
        "target_fpr",
    ]
    .map(String::from)
    .to_vec();
    header.extend(QUANTILES.iter().map(|q| {
        if *q >= 1.0 {
            "best_max".to_string()
        } else {
            format!("best_p{}", (q * 100.0).round())
        }
    }));
    w.write_record(&header)?;
    for r in rows {
        let thr = match r.dimension {
            "audio" => format!("{:.4}", t.audio),
            "melody" => format!("{:.4}", t.melody),
            _ => String::new(),
        };
        let mut rec = vec![
            r.set.to_string(),
            r.dimension.to_string(),
            r.n.to_string(),
            r.flagged.to_string(),
            format!("{:.4}", r.flagged as f64 / r.n.max(1) as f64),
            format!("{:.4}", r.ci.0),
            format!("{:.4}", r.ci.1),
            thr,
            t.target_fpr.map(|f| f.to_string()).unwrap_or_default(),
        ];
        rec.extend(r.quantiles.iter().map(|q| format!("{q:.4}")));
        w.write_record(&rec)?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newcombe_brackets_the_difference() {
        let (lo, hi) = newcombe(30, 100, 5, 100);
        assert!(lo > 0.1 && lo < 0.25 && hi > 0.25 && hi < 0.4, "{lo} {hi}");
        let (lo, hi) = newcombe(0, 50, 0, 50);
        assert!(lo < 0.0 && hi > 0.0);
    }
}
