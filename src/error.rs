//! The one error type: what the environment or the caller's input can get wrong.
//!
//! Per-matrix numerical trouble (a non-finite entry, no convergence) is not an error: it is a
//! [`crate::Status`] value next to NaN outputs, so one bad matrix never fails a whole batch.

/// Everything an eigrad call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter could be found (callers such as `--device auto` fall back to the CPU).
    #[error("no GPU adapter found: {0}")]
    NoAdapter(String),
    /// The adapter was found but refused to create a device with the limits eigrad needs.
    #[error("could not create a GPU device: {0}")]
    RequestDevice(String),
    /// The GPU reported an error while running a kernel (validation, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// The matrix size is outside what this path supports.
    #[error("matrix size n = {n} is not supported here (supported: 1..={max})")]
    UnsupportedSize {
        /// The requested size.
        n: usize,
        /// The largest supported size.
        max: usize,
    },
    /// A buffer's length or a shape does not match what the call needs.
    #[error("shape error: {0}")]
    Shape(String),
    /// An argument is out of its domain (a negative tolerance, a zero sweep cap, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
