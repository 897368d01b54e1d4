//! Command-line commands. Each subcommand checks its flags once into a
//! config and calls the library; only this module prints.

mod audit;
mod calibrate;
mod demo;
mod eval;
mod fingerprint;
mod index;
mod inspect;
mod limits;
mod memorization;
mod progress;
mod report;
mod serve;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Refrain audits music for copying.
#[derive(Debug, Parser)]
#[command(name = "refrain", version, about)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole job on synthesized music: index songs, audit clips, report.
    Demo(demo::Config),
    /// Compute chroma, melody and embedding fingerprints of audio files.
    Fingerprint(fingerprint::Config),
    /// Index a training set: fingerprint it and write an index directory.
    Index(index::Config),
    /// Audit audio files against an index: which ones copy a training item?
    Audit(audit::Config),
    /// Set thresholds for a target false-positive rate from music known not
    /// to be in the training set (or leave-one-out with --self).
    Calibrate(calibrate::Config),
    /// The development-set check in one step: index, calibrate, audit, score.
    Eval(eval::Config),
    /// Memorization rate of a model's outputs against a reference (null) set.
    Memorization(memorization::Config),
    /// The self-contained HTML report (summary, table, evidence panels,
    /// audio excerpts) from an audit's JSON.
    Report(report::Config),
    /// Serve checks over HTTP (JSON) for many workers sharing one index.
    Serve(serve::Config),
    /// Show what Refrain sees in an audio file or a fingerprint file.
    Inspect {
        /// An audio file or a `.rfp` fingerprint file.
        file: PathBuf,
    },
}

/// Runs the parsed command; the exit code says whether every input succeeded.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Demo(cfg) => demo::run(&cfg),
        Command::Fingerprint(cfg) => fingerprint::run(&cfg),
        Command::Index(cfg) => index::run(&cfg),
        Command::Audit(cfg) => audit::run(&cfg),
        Command::Calibrate(cfg) => calibrate::run(&cfg),
        Command::Eval(cfg) => eval::run(&cfg),
        Command::Memorization(cfg) => memorization::run(&cfg),
        Command::Report(cfg) => report::run(&cfg),
        Command::Serve(cfg) => serve::run(&cfg),
        Command::Inspect { file } => inspect::run(&file),
    }
}

/// Whether `e` comes from writing to a standard output that was closed
/// early (`refrain demo | head -3`), which is not a failure.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    let pipe = |io: &std::io::Error| io.kind() == std::io::ErrorKind::BrokenPipe;
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(pipe)
            || c.downcast_ref::<csv::Error>()
                .is_some_and(|ce| matches!(ce.kind(), csv::ErrorKind::Io(io) if pipe(io)))
    })
}

/// Writes `text` to standard output; an error (a closed pipe) is returned,
/// not a panic as from `print!`.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Builds the rayon pool for a batch command.
fn pool(threads: Option<usize>) -> anyhow::Result<rayon::ThreadPool> {
    let mut b = rayon::ThreadPoolBuilder::new();
    if let Some(n) = threads {
        anyhow::ensure!(n >= 1, "--threads must be at least 1");
        b = b.num_threads(n);
    }
    Ok(b.build()?)
}

/// What to do about failed inputs, one line per kind of failure (empty when
/// nothing failed).
fn what_to_do<'a>(errors: impl IntoIterator<Item = &'a refrain::Error>) -> String {
    use refrain::ErrorKind as K;
    let mut hints: Vec<&str> = Vec::new();
    for e in errors {
        let h = match e.kind {
            K::Io(_) => "check that the path exists and is readable",
            K::Unsupported(_) => {
                "each unsupported file's error names its container or codec and what to convert it to"
            }
            K::NotFound(_) => "check the path; build an index with `refrain index`",
            K::Corrupt(_) | K::Empty(_) => {
                "damaged files or files without audio: re-export them from the source, or leave them out"
            }
            K::Limit(_) => "if such long or large inputs are expected, raise --max-duration or --max-bytes",
            K::InvalidInput(_) => "the input is out of range for analysis",
            K::Version { .. } | K::Params { .. } => {
                "re-create fingerprints and indexes with this version of refrain"
            }
            _ => continue,
        };
        if !hints.contains(&h) {
            hints.push(h);
        }
    }
    hints
        .iter()
        .map(|h| format!("refrain: hint: {h}\n"))
        .collect()
}
