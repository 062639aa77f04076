//! The command line's one error: a message printed as `error: …`, exit status 2.

use std::fmt;

/// Why a command failed: bad usage, bad input, an I/O or GPU problem. Printed as
/// `error: {0}` on stderr; the process exits with status 2 and leaves no partial output.
#[derive(Debug)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<eigrad::Error> for CliError {
    fn from(e: eigrad::Error) -> Self {
        CliError(e.to_string())
    }
}

/// Shorthand for results of the command line.
pub type CliResult<T> = Result<T, CliError>;

/// Returns early with a [`CliError`] built from a format string.
macro_rules! fail {
    ($($arg:tt)*) => {
        return Err($crate::cli::error::CliError(format!($($arg)*)))
    };
}
pub(crate) use fail;
