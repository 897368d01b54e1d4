//! Command-line commands. Each subcommand checks its flags once into a
//! config and calls the library; only this module prints.

mod audit;
mod demo;
mod fingerprint;
mod index;
mod inspect;
mod progress;
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
    Demo {
        /// Keep the demo's files in this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Compute chroma, melody and embedding fingerprints of audio files.
    Fingerprint {
        /// Audio files, or directories to search recursively.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Directory to write `<name>.rfp` fingerprint files into.
        #[arg(long)]
        out: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Index a training set: fingerprint it and write an index directory.
    Index {
        /// Audio files, or directories to search recursively.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The index directory.
        #[arg(long)]
        out: PathBuf,
        /// Append to the existing index instead of replacing it.
        #[arg(long)]
        add: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Audit audio files against an index: which ones copy a training item?
    Audit {
        /// The index directory (from `refrain index`).
        #[arg(long)]
        index: PathBuf,
        /// Audio files, or directories to search recursively.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Report format.
        #[arg(long, value_enum, default_value = "csv")]
        format: audit::Format,
        /// Write the report here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Candidates listed per input in the JSON report.
        #[arg(long, default_value_t = 5)]
        top: usize,
        /// Override the index's audio-score threshold.
        #[arg(long)]
        audio_threshold: Option<f32>,
        /// Override the index's melody-score threshold.
        #[arg(long)]
        melody_threshold: Option<f32>,
        /// Print the batch's memorization rate and score distributions.
        #[arg(long)]
        summary: bool,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Show what Refrain sees in an audio file or a fingerprint file.
    Inspect {
        /// An audio file or a `.rfp` fingerprint file.
        file: PathBuf,
    },
}

/// Runs the parsed command; the exit code says whether every input succeeded.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Demo { dir } => demo::run(&demo::Config { dir }),
        Command::Fingerprint {
            paths,
            out,
            threads,
        } => fingerprint::run(&fingerprint::Config {
            paths,
            out,
            threads,
        }),
        Command::Index {
            paths,
            out,
            add,
            threads,
        } => index::run(&index::Config {
            paths,
            out,
            add,
            threads,
        }),
        Command::Audit {
            index,
            paths,
            format,
            out,
            top,
            audio_threshold,
            melody_threshold,
            summary,
            threads,
        } => audit::run(&audit::Config {
            index,
            paths,
            format,
            out,
            top,
            audio_threshold,
            melody_threshold,
            summary,
            threads,
        }),
        Command::Inspect { file } => inspect::run(&file),
    }
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
