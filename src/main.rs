//! The `eigrad` command line (DESIGN §5): `demo` (the default), `check`, `eigh`, `vjp`, `jvp`,
//! `spectral` and `bench`, each with `--device auto|gpu|cpu`.
//!
//! Errors are printed to stderr as `error: …` with exit status 2; a failed accuracy check exits
//! with 1; everything else with 0. Logs go through `RUST_LOG` (env_logger, default `warn`).

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    cli::main()
}
