//! Per-matrix outcome codes (DESIGN §1): `0 ok`, `1 non-finite input`, `2 not converged`.

/// What happened to one matrix of a batch. The codes are part of the file contract
/// (`status.npy` holds them as int32) and of the GPU kernels (which write them as u32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Status {
    /// Converged; all outputs are valid.
    #[default]
    Ok = 0,
    /// The input had a NaN or infinite entry; all outputs of this matrix are NaN.
    NonFiniteInput = 1,
    /// The sweep cap was reached before the off-diagonal became negligible; outputs are NaN.
    NotConverged = 2,
    /// The input is outside the domain of the requested function (for example `log` of a matrix
    /// that is not positive definite), or a result is beyond the precision's range: the
    /// function's value (`exp` or `pow` of a large eigenvalue), or an eigenvalue itself (a
    /// matrix of finite entries can have eigenvalues up to n times its largest entry); outputs
    /// are NaN.
    OutOfDomain = 3,
}

impl Status {
    /// The integer code written to files and read from GPU buffers.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// Decodes a code; unknown codes (which no eigrad kernel writes) are reported as `None`.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            0 => Some(Self::Ok),
            1 => Some(Self::NonFiniteInput),
            2 => Some(Self::NotConverged),
            3 => Some(Self::OutOfDomain),
            _ => None,
        }
    }

    /// True for [`Status::Ok`].
    pub fn is_ok(self) -> bool {
        self == Self::Ok
    }
}
