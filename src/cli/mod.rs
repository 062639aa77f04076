//! The command line (DESIGN §5), binary-only.
//!
//! - [`args`]: the grammar (clap).
//! - [`npy`]: `.npy` reading and transactional writing; [`hostbuf`]: the buffers files are read
//!   into.
//! - [`device`]: `--device auto|gpu|cpu` and one engine over the CPU and GPU paths.
//! - [`files`]: `eigh`, `vjp`, `jvp`, `spectral` on files.
//! - [`demo`], [`check`], [`bench`]: generated workloads against the CPU reference.
//! - [`memory`]: refusing sizes that cannot fit before allocating them.

mod args;
mod bench;
mod check;
mod demo;
mod device;
mod error;
mod files;
mod hostbuf;
mod memory;
mod metrics;
mod npy;
mod progress;

use args::{Cli, Command};
use clap::Parser;
use error::CliResult;
use std::process::ExitCode;

/// Runs the command the arguments name.
fn run(cli: &Cli) -> CliResult<ExitCode> {
    let done = |r: CliResult<()>| r.map(|()| ExitCode::SUCCESS);
    match &cli.command {
        None => demo::demo(&cli.demo),
        Some(Command::Demo(a)) => demo::demo(a),
        Some(Command::Check(a)) => check::check(a),
        Some(Command::Eigh(a)) => done(files::eigh(a)),
        Some(Command::Vjp(a)) => done(files::vjp(a)),
        Some(Command::Jvp(a)) => done(files::jvp(a)),
        Some(Command::Spectral(a)) => done(files::spectral(a)),
        Some(Command::Bench(a)) => bench::bench(a),
    }
}

/// Parses the arguments, runs, and maps errors to `error: …` with exit status 2 (clap's own
/// usage errors already exit with 2).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    log::debug!("{cli:?}");
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
