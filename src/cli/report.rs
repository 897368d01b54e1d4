//! `refrain report AUDIT.json --out REPORT.html`: the self-contained HTML
//! report from an audit's JSON (also written directly by `audit --html`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use rayon::prelude::*;
use refrain::audit::Verdict;
use refrain::decode::DecodeLimits;
use refrain::excerpt::{self, MAX_EXCERPT_S};
use refrain::html::{self, Clip, Excerpts};
use refrain::report::{self, AuditDocument};

/// Flags of `refrain report`, checked once by clap.
#[derive(Debug, clap::Args)]
pub struct Config {
    /// An audit report in JSON (`refrain audit --format json`).
    pub json: PathBuf,
    /// Where to write the HTML file.
    #[arg(long)]
    pub out: PathBuf,
    /// Leave out the audio excerpts (no file is decoded).
    #[arg(long)]
    pub no_audio: bool,
    #[command(flatten)]
    pub batch: super::limits::BatchArgs,
}

pub fn run(cfg: &Config) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let text = std::fs::read_to_string(&cfg.json)
        .with_context(|| format!("cannot read {}", cfg.json.display()))?;
    let doc = report::read_json(&text).map_err(|e| e.with_path(&cfg.json))?;
    let base = cfg.json.parent().map(Path::to_path_buf);
    let pool = super::pool(cfg.batch.threads)?;
    let excerpts = if cfg.no_audio {
        Vec::new()
    } else {
        pool.install(|| excerpts(&doc, base.as_deref(), &cfg.batch.limits()))
    };
    let page = html::render_audit(&doc, &excerpts);
    std::fs::write(&cfg.out, &page)
        .with_context(|| format!("cannot write {}", cfg.out.display()))?;
    let audio = if cfg.no_audio {
        "audio left out".to_string()
    } else {
        format!("{} audio excerpt(s) missing", missing_clips(&excerpts))
    };
    eprintln!(
        "wrote {} ({:.1} kB, {} input(s), {} evidence panel(s), {audio}) in {:.1} s",
        cfg.out.display(),
        page.len() as f64 / 1000.0,
        doc.results.len(),
        flagged(&doc),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes the HTML report of `doc` to `path`, with audio excerpts.
pub fn write_html(doc: &AuditDocument, path: &Path, limits: &DecodeLimits) -> anyhow::Result<()> {
    let clips = excerpts(doc, None, limits);
    let page = html::render_audit(doc, &clips);
    std::fs::write(path, &page).with_context(|| format!("cannot write {}", path.display()))?;
    let missing = missing_clips(&clips);
    eprintln!(
        "wrote the HTML report {} ({:.1} kB, {} evidence panel(s){})",
        path.display(),
        page.len() as f64 / 1000.0,
        flagged(doc),
        if missing > 0 {
            format!(", {missing} audio excerpt(s) missing: see the page")
        } else {
            String::new()
        }
    );
    Ok(())
}

fn flagged(doc: &AuditDocument) -> usize {
    doc.results
        .iter()
        .filter(|o| o.report.as_ref().map(|r| r.verdict) == Some(Verdict::Flag))
        .count()
}

fn missing_clips(e: &[Option<Excerpts>]) -> usize {
    e.iter()
        .flatten()
        .flat_map(|x| [&x.query, &x.item])
        .filter(|c| matches!(c, Clip::Missing(_)))
        .count()
}

/// The two excerpts of every flagged input (in parallel), `None` for the
/// others: the matched seconds, at most [`MAX_EXCERPT_S`] per side.
fn excerpts(
    doc: &AuditDocument,
    base: Option<&Path>,
    limits: &DecodeLimits,
) -> Vec<Option<Excerpts>> {
    doc.results
        .par_iter()
        .map(|o| {
            let r = o.report.as_ref().filter(|r| r.verdict == Verdict::Flag)?;
            let c = r.best()?;
            let q_len = (c.query_end_s - c.query_start_s).max(0.0) as f64;
            let i_len = (c.match_end_s - c.match_start_s).max(0.0) as f64;
            let q_take = q_len.min(MAX_EXCERPT_S);
            // the item's part of the same stretch, at its own tempo
            let i_take = if q_len > 0.0 {
                (i_len * q_take / q_len).min(MAX_EXCERPT_S)
            } else {
                i_len.min(MAX_EXCERPT_S)
            };
            let make = |p: &str, start: f64, len: f64| -> Clip {
                let path = resolve(p, base);
                match excerpt::opus_excerpt(&path, start, len, limits) {
                    Ok(bytes) => Clip::Audio {
                        bytes,
                        range_s: (start, start + len),
                    },
                    Err(e) => Clip::Missing(e.to_string()),
                }
            };
            Some(Excerpts {
                query: make(&o.input, c.query_start_s as f64, q_take),
                item: make(&c.path, c.match_start_s as f64, i_take),
            })
        })
        .collect()
}

/// `p` as given when it exists, else relative to the JSON file's folder.
fn resolve(p: &str, base: Option<&Path>) -> PathBuf {
    let path = PathBuf::from(p);
    if path.exists() || path.is_absolute() {
        return path;
    }
    match base {
        Some(b) if b.join(&path).exists() => b.join(path),
        _ => path,
    }
}
