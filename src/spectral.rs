//! Stable objectives: spectral functions `f(A) = V f(Λ) Vᵀ` and their Daleckii–Krein derivative.
//! (Outline: the CPU implementation lands with the stable-objectives work.)

use crate::{Eigh, Error};

/// A scalar function applied to the spectrum of a symmetric matrix.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SpectralFn {
    /// `√λ` (positive definite input).
    Sqrt,
    /// `log λ` (positive definite input).
    Log,
    /// `e^λ`.
    Exp,
    /// `1/λ` (positive definite input).
    Inv,
    /// `λ^p` (positive definite input).
    Pow(f64),
}

impl std::str::FromStr for SpectralFn {
    type Err = Error;
    /// Parses `sqrt`, `log`, `exp`, `inv` or `pow:P`.
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "sqrt" => Ok(SpectralFn::Sqrt),
            "log" => Ok(SpectralFn::Log),
            "exp" => Ok(SpectralFn::Exp),
            "inv" => Ok(SpectralFn::Inv),
            _ => match s.strip_prefix("pow:").map(str::parse::<f64>) {
                Some(Ok(p)) if p.is_finite() => Ok(SpectralFn::Pow(p)),
                _ => Err(Error::InvalidArgument(format!(
                    "unknown spectral function '{s}' (expected sqrt, log, exp, inv or pow:P)"
                ))),
            },
        }
    }
}

/// The result of a batched spectral function: `f(A)` and what its VJP needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectral<T> {
    /// The function that was applied.
    pub function: SpectralFn,
    /// `f(A)`, `[B][n][n]`, symmetric; NaN where the status is not ok.
    pub values: Vec<T>,
    /// The eigendecomposition of `A` (saved for the VJP); its status is the status of `f(A)`
    /// ([`crate::Status::OutOfDomain`] when an eigenvalue is outside the domain of `f`).
    pub eig: Eigh<T>,
}
