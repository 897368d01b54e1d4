//! The `refrain` command line: parses flags once into a configuration and
//! hands it to a command in `cli/`. All the work is in the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        // standard output closed early (`refrain demo | head -3`): the
        // reader had what it wanted
        Err(e) if cli::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("refrain: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
