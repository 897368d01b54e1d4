//! `refrain audit --index INDEX_DIR PATH... [--format csv|json] [--out FILE] [--top K]`

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use refrain::audit::{AuditConfig, Auditor};
use refrain::index::{Index, Thresholds};
use refrain::inputs;
use refrain::report::{self, IndexInfo, Outcome};

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Json,
}

/// Flags of `refrain audit`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// The index directory (from `refrain index`).
    #[arg(long)]
    pub index: PathBuf,
    /// Audio files or fingerprint files (`.rfp`, from `refrain
    /// fingerprint`), or directories to search recursively for them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write the report here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Candidates listed per input in the JSON report.
    #[arg(long, default_value_t = 5)]
    pub top: usize,
    /// Override the index's audio-score threshold.
    #[arg(long)]
    pub audio_threshold: Option<f32>,
    /// Override the index's melody-score threshold.
    #[arg(long)]
    pub melody_threshold: Option<f32>,
    /// Print the batch's memorization rate and score distributions (to
    /// standard error).
    #[arg(long)]
    pub summary: bool,
    /// Write that summary to this file instead of standard error.
    #[arg(long, value_name = "FILE")]
    pub summary_out: Option<PathBuf>,
    /// Also write the self-contained HTML report (summary, sortable table,
    /// evidence panels with audio excerpts) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print one line per input for a reader (the demo does).
    #[arg(skip)]
    pub verdicts: bool,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let index = Index::open(&cfg.index)?;
    let thresholds: Thresholds = refrain::calibrate::set_by_caller(
        &index.manifest.thresholds,
        cfg.audio_threshold,
        cfg.melody_threshold,
    )
    .context("--audio-threshold / --melody-threshold")?;
    let auditor = Auditor::with_config(
        &index,
        AuditConfig {
            top_k: cfg.top.max(1),
            thresholds: Some(thresholds.clone()),
            limits: cfg.batch.limits(),
            // the JSON and the HTML report carry what the panels draw
            evidence: cfg.format == Format::Json || cfg.html.is_some(),
            ..AuditConfig::default()
        },
    );
    let (outcomes, failures) = audit_paths(&auditor, &cfg.paths, cfg.batch.threads, "auditing")?;
    anyhow::ensure!(
        !outcomes.is_empty(),
        "nothing to audit in {}: no audio or fingerprint (.rfp) file was found",
        cfg.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let info = IndexInfo {
        items: index.len(),
        hours: index.hours(),
        format_version: index.manifest.format_version,
    };
    let mut sink: Box<dyn Write> = match &cfg.out {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    match cfg.format {
        Format::Csv => report::write_csv(&mut sink, &outcomes)?,
        Format::Json => {
            report::write_json(
                &mut sink,
                &cfg.index.display().to_string(),
                Some(&info),
                &thresholds,
                &outcomes,
            )?;
            writeln!(sink)?;
        }
    }
    sink.flush()?;
    drop(sink);
    if let Some(p) = &cfg.html {
        let doc = report::AuditDocument {
            format: "refrain-audit".into(),
            version: report::JSON_VERSION,
            index: cfg.index.display().to_string(),
            index_info: Some(info.clone()),
            thresholds: thresholds.clone(),
            results: outcomes.clone(),
        };
        super::report::write_html(&doc, p, &cfg.batch.limits())?;
    }
    let flagged = outcomes.iter().filter(|o| o.verdict() == "flag").count();
    for o in &outcomes {
        for n in o.report.iter().flat_map(|r| &r.notes) {
            eprintln!("refrain: note: {}: {n}", o.input);
        }
    }
    let errors = print_errors(&outcomes, &failures);
    if cfg.verdicts {
        eprint!("\n{}\n", super::summary::verdict_lines(&outcomes));
    }
    if let Some(p) = &cfg.summary_out {
        std::fs::write(p, super::summary::render(&outcomes, &thresholds))
            .with_context(|| format!("cannot write {}", p.display()))?;
    } else if cfg.summary {
        eprint!("{}", super::summary::render(&outcomes, &thresholds));
    }
    eprintln!(
        "audited {} input(s) against {} item(s) ({:.1} h) in {:.1} s: {flagged} flagged, {} passed, {errors} error(s); {}",
        outcomes.len(),
        index.len(),
        index.hours(),
        t0.elapsed().as_secs_f64(),
        outcomes.len() - flagged - errors,
        refrain::calibrate::describe(&thresholds)
    );
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Audits every audio file (and fingerprint file, `.rfp`) under `paths` (in
/// parallel, with a progress bar on a terminal): one outcome per input,
/// unreadable inputs and paths included as errors, in input order; and the
/// errors themselves, for the hints. Says on standard error what the
/// directory walk skipped.
pub fn audit_paths(
    auditor: &Auditor,
    paths: &[PathBuf],
    threads: Option<usize>,
    what: &str,
) -> anyhow::Result<(Vec<Outcome>, Vec<refrain::Error>)> {
    let scan = inputs::scan(paths, true);
    if let Some(s) = inputs::skipped_summary(&scan.skipped) {
        eprintln!("refrain: {s}");
    }
    let (inputs, walk_errors) = (scan.inputs, scan.errors);
    let pool = super::pool(threads)?;
    let bar = super::progress::bar(inputs.len() as u64, what);
    let params = refrain::AnalysisParams::default();
    let results: Vec<(Outcome, Option<refrain::Error>)> = pool.install(|| {
        inputs
            .par_iter()
            .map(|input| {
                let r = if refrain::fingerprint::Fingerprint::looks_like_file(&input.path) {
                    refrain::fingerprint::Fingerprint::read(&input.path, &params)
                        .and_then(|fp| auditor.check_fingerprint(&fp))
                        .map_err(|e| e.with_path(&input.path))
                } else {
                    auditor.check_file(&input.path)
                };
                bar.inc(1);
                let input = input.path.display().to_string();
                match r {
                    Ok(rep) => (
                        Outcome {
                            input,
                            report: Some(rep),
                            error: None,
                        },
                        None,
                    ),
                    Err(e) => (
                        Outcome {
                            input,
                            report: None,
                            error: Some(e.to_string()),
                        },
                        Some(e),
                    ),
                }
            })
            .collect()
    });
    bar.finish_and_clear();
    let (mut outcomes, failures): (Vec<Outcome>, Vec<Option<refrain::Error>>) =
        results.into_iter().unzip();
    let mut failures: Vec<refrain::Error> = failures.into_iter().flatten().collect();
    for e in walk_errors {
        outcomes.push(Outcome {
            input: e
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            report: None,
            error: Some(e.to_string()),
        });
        failures.push(e);
    }
    Ok((outcomes, failures))
}

/// Writes the CSV report to `path`.
pub fn write_csv_file(path: &std::path::Path, outcomes: &[Outcome]) -> anyhow::Result<()> {
    let f =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(f);
    report::write_csv(&mut w, outcomes)?;
    w.flush()?;
    Ok(())
}

/// One line naming each input that could not be audited, then what to do
/// about each kind of failure; returns how many there were.
pub fn print_errors(outcomes: &[Outcome], failures: &[refrain::Error]) -> usize {
    let mut n = 0;
    for o in outcomes.iter().filter(|o| o.report.is_none()) {
        eprintln!(
            "refrain: could not audit {}",
            o.error.as_deref().unwrap_or("")
        );
        n += 1;
    }
    eprint!("{}", super::what_to_do(failures.iter()));
    n
}
