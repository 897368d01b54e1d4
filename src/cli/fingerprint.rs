//! `refrain fingerprint PATH... --out DIR`

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use refrain::analysis::Analyzer;
use refrain::inputs::{self, Input};
use refrain::{decode, fingerprint, AnalysisParams};

/// Flags of `refrain fingerprint`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// Audio files, or directories to search recursively.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Directory to write `<name>.rfp` fingerprint files into.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let params = AnalysisParams::default();
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create the output directory {}", cfg.out.display()))?;
    let scan = inputs::scan(&cfg.paths, false);
    if let Some(s) = inputs::skipped_summary(&scan.skipped) {
        eprintln!("refrain: {s}");
    }
    let (inputs, mut errors) = (scan.inputs, scan.errors);
    anyhow::ensure!(
        !inputs.is_empty() || !errors.is_empty(),
        "nothing to fingerprint in {}: no audio file was found",
        cfg.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pool = super::pool(cfg.batch.threads)?;
    let bar = super::progress::bar(inputs.len() as u64, "fingerprinting");
    let start = Instant::now();
    let results: Vec<Result<f64, refrain::Error>> = pool.install(|| {
        inputs
            .par_iter()
            .map_init(
                || Analyzer::new(&params),
                |analyzer, input| {
                    let r = one(analyzer, input, cfg);
                    bar.inc(1);
                    r
                },
            )
            .collect()
    });
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    let mut audio_s = 0.0;
    let mut ok = 0usize;
    for r in results {
        match r {
            Ok(d) => {
                ok += 1;
                audio_s += d;
            }
            Err(e) => errors.push(e),
        }
    }
    for e in &errors {
        eprintln!("refrain: skipped {e}");
    }
    eprint!("{}", super::what_to_do(&errors));
    eprintln!(
        "fingerprinted {ok} file(s), {:.1} min of audio, in {secs:.2} s ({:.0}x real time) into {}; {} failed",
        audio_s / 60.0,
        if secs > 0.0 { audio_s / secs } else { 0.0 },
        cfg.out.display(),
        errors.len()
    );
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn one(analyzer: &mut Analyzer, input: &Input, cfg: &Config) -> refrain::Result<f64> {
    let rate = analyzer.params().sample_rate;
    let audio = decode::decode_file_with_limits(&input.path, rate, &cfg.batch.limits())?;
    let fp = analyzer
        .analyze(&audio)
        .map_err(|e| e.with_path(&input.path))?;
    let mut name = input.relative.clone().into_os_string();
    name.push(".");
    name.push(fingerprint::EXTENSION);
    let out = cfg.out.join(name);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| refrain::Error::at(parent, refrain::Stage::WriteFingerprint, e.into()))?;
    }
    fp.write(&out)?;
    Ok(audio.source.duration_s)
}
