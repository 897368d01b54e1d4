//! `refrain index PATH... --out INDEX_DIR [--add]`

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use refrain::analysis::Analyzer;
use refrain::fingerprint::Fingerprint;
use refrain::index::{cache_dir, content_hash, Index, IndexBuilder};
use refrain::inputs::{self, Input};
use refrain::{decode, AnalysisParams};

/// Flags of `refrain index`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// Audio files or fingerprint files (`.rfp`, from `refrain
    /// fingerprint`), or directories to search recursively for them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The index directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Append to the existing index instead of replacing it.
    #[arg(long)]
    pub add: bool,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

/// What became of one input.
enum Done {
    New(String, Box<Fingerprint>, bool),
    Known,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let params = AnalysisParams::default();
    let start = Instant::now();
    let mut builder = if cfg.add {
        let old = Index::open(&cfg.out).with_context(|| {
            format!(
                "--add needs an existing index in {} (build one without --add first)",
                cfg.out.display()
            )
        })?;
        IndexBuilder::from_index(&old)?
    } else {
        IndexBuilder::new(&params)
    };
    let before = builder.len();
    let cache = cache_dir(&cfg.out);
    std::fs::create_dir_all(&cache)
        .with_context(|| format!("cannot create {}", cache.display()))?;
    let limits = cfg.batch.limits();
    let scan = inputs::scan(&cfg.paths, true);
    if let Some(s) = inputs::skipped_summary(&scan.skipped) {
        eprintln!("refrain: {s}");
    }
    let (inputs, mut errors) = (scan.inputs, scan.errors);
    anyhow::ensure!(
        !inputs.is_empty() || !errors.is_empty(),
        "nothing to index in {}: no audio or fingerprint (.rfp) file was found",
        cfg.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let pool = super::pool(cfg.batch.threads)?;
    let bar = super::progress::bar(inputs.len() as u64, "indexing");
    let results: Vec<(Input, refrain::Result<Done>)> = pool.install(|| {
        inputs
            .par_iter()
            .map_init(
                || Analyzer::new(&params),
                |an, input| {
                    let r = one(an, input, &cache, &builder, &limits);
                    bar.inc(1);
                    (input.clone(), r)
                },
            )
            .collect()
    });
    bar.finish_and_clear();
    let (mut added, mut reused, mut known, mut audio_s) = (0usize, 0usize, 0usize, 0.0f64);
    for (input, r) in results {
        match r {
            Ok(Done::New(hash, fp, from_cache)) => {
                let fp = *fp;
                if builder.contains(&hash) {
                    known += 1; // the same file twice in this run
                    continue;
                }
                audio_s += fp.source.duration_s;
                reused += from_cache as usize;
                if let Some(n) = decode::cancelled_note(&fp.source) {
                    eprintln!("refrain: warning: {}: {n}", input.path.display());
                }
                builder.add(&input.path.display().to_string(), &hash, &fp)?;
                added += 1;
            }
            Ok(Done::Known) => known += 1,
            Err(e) => errors.push(e),
        }
    }
    anyhow::ensure!(
        !builder.is_empty(),
        "no item could be indexed ({} error(s)); nothing was written",
        errors.len()
    );
    let t_build = Instant::now();
    let mut index = builder.build();
    index
        .save(&cfg.out)
        .with_context(|| format!("writing the index to {}", cfg.out.display()))?;
    let build_s = t_build.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&cache);
    for e in &errors {
        eprintln!("refrain: skipped {e}");
    }
    eprint!("{}", super::what_to_do(&errors));
    let bytes = Index::disk_bytes(&cfg.out);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "indexed {added} new item(s) ({:.1} min of audio{}), {known} already present, {} before; \
         {} item(s), {:.2} h, {} windows in {}; {:.1} MB ({:.2} MB per hour); \
         {secs:.1} s ({build_s:.1} s building the search graph); {} failed",
        audio_s / 60.0,
        if reused > 0 {
            format!(", {reused} from an interrupted run")
        } else {
            String::new()
        },
        before,
        index.len(),
        index.hours(),
        index.window_item.len(),
        cfg.out.display(),
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / index.hours().max(1e-9),
        errors.len()
    );
    Ok(if errors.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn one(
    analyzer: &mut Analyzer,
    input: &Input,
    cache: &Path,
    builder: &IndexBuilder,
    limits: &decode::DecodeLimits,
) -> refrain::Result<Done> {
    // the size limit before hashing: a huge file is refused unread
    let meta = std::fs::metadata(&input.path)
        .map_err(|e| refrain::Error::at(&input.path, refrain::Stage::Open, e.into()))?;
    if meta.is_file() && meta.len() > limits.max_bytes {
        return Err(refrain::Error::at(
            &input.path,
            refrain::Stage::Open,
            refrain::ErrorKind::Limit(format!(
                "the input is {} bytes, more than the limit of {} bytes",
                meta.len(),
                limits.max_bytes
            )),
        ));
    }
    let hash = content_hash(&input.path)?;
    if builder.contains(&hash) {
        return Ok(Done::Known);
    }
    if Fingerprint::looks_like_file(&input.path) {
        // a fingerprint file from `refrain fingerprint`: indexed as it is
        let fp = Fingerprint::read(&input.path, analyzer.params())?;
        if fp.source.duration_s > limits.max_duration_s {
            return Err(refrain::Error::at(
                &input.path,
                refrain::Stage::ReadFingerprint,
                refrain::ErrorKind::Limit(format!(
                    "the recording is {:.1} s long, more than the limit of {} s",
                    fp.source.duration_s, limits.max_duration_s
                )),
            ));
        }
        return Ok(Done::New(hash, Box::new(fp), false));
    }
    let cached = cache.join(format!("{hash}.rfp"));
    if let Ok(fp) = Fingerprint::read(&cached, analyzer.params()) {
        return Ok(Done::New(hash, Box::new(fp), true));
    }
    let audio =
        decode::decode_file_with_limits(&input.path, analyzer.params().sample_rate, limits)?;
    let fp = analyzer
        .analyze(&audio)
        .map_err(|e| e.with_path(&input.path))?;
    // a cache write failure only costs a re-run its head start
    let _ = fp.write(&cached);
    Ok(Done::New(hash, Box::new(fp), false))
}
