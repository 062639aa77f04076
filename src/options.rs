//! Options shared by every path (CPU and GPU): input symmetry, sweep control and the
//! degeneracy policy of the derivative (DESIGN §1–2).

use crate::{Error, Result};

/// How the symmetric matrix is formed from the stored `n×n` input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Symmetry {
    /// `A ← (A + Aᵀ)/2` (the default, as in JAX): the derivative is well defined for any input.
    #[default]
    Symmetrize,
    /// Read only the lower triangle (`i ≥ j`) and mirror it.
    Lower,
}

/// The working precision of a path, which sets default thresholds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// The GPU kernels compute in f32.
    F32,
    /// The CPU reference computes in f64.
    F64,
}

impl Precision {
    /// Machine epsilon of the precision.
    pub fn eps(self) -> f64 {
        match self {
            Precision::F32 => f32::EPSILON as f64,
            Precision::F64 => f64::EPSILON,
        }
    }

    /// The default relative mask tolerance `eps^(3/4)` (f32 ≈ 6.5e-6, f64 ≈ 1.8e-12).
    pub fn default_mask_rel_tol(self) -> f64 {
        self.eps().powf(0.75)
    }
}

/// What to do with the factor `1/(λ_j − λ_i)` of the derivative when eigenvalues (nearly) coincide.
///
/// Used by the VJP and the JVP; one value per call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Degeneracy {
    /// `F_ij = 0` when `|λ_j − λ_i| ≤ rel_tol · max_k |λ_k|` (the default). Exact for losses that
    /// do not depend on the basis chosen inside a degenerate eigenspace (eigenvalues, projectors,
    /// spectral functions, traces). `rel_tol: None` means `eps^(3/4)` of the compute precision,
    /// see [`Precision::default_mask_rel_tol`]. A zero matrix masks every pair.
    Mask {
        /// Relative tolerance; `None` for the precision's default.
        rel_tol: Option<f64>,
    },
    /// `F_ij = Δ/(Δ² + eps)` with `Δ = λ_j − λ_i`: smooth and biased (as in TensorFlow).
    Lorentzian {
        /// The broadening `eps` (in units of eigenvalue squared), > 0.
        eps: f64,
    },
    /// The plain formula `1/Δ`: ties give ±inf/NaN, as PyTorch and JAX do.
    Propagate,
}

impl Default for Degeneracy {
    fn default() -> Self {
        Degeneracy::Mask { rel_tol: None }
    }
}

impl Degeneracy {
    /// Checks the policy's parameter.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Degeneracy::Mask { rel_tol: Some(t) } if !(t >= 0.0 && t.is_finite()) => Err(
                Error::InvalidArgument(format!("mask tolerance must be finite and >= 0, got {t}")),
            ),
            Degeneracy::Lorentzian { eps } if !(eps > 0.0 && eps.is_finite()) => Err(
                Error::InvalidArgument(format!("Lorentzian eps must be finite and > 0, got {eps}")),
            ),
            _ => Ok(()),
        }
    }

    /// The absolute threshold below which `Mask` drops a pair, for a matrix whose eigenvalues
    /// have largest magnitude `max_abs_lambda`; 0 for the other policies.
    pub fn abs_threshold(&self, max_abs_lambda: f64, precision: Precision) -> f64 {
        match *self {
            Degeneracy::Mask { rel_tol } => {
                rel_tol.unwrap_or_else(|| precision.default_mask_rel_tol()) * max_abs_lambda
            }
            _ => 0.0,
        }
    }

    /// The factor `F_ij` for `delta = λ_j − λ_i` (i ≠ j), given the threshold from
    /// [`Degeneracy::abs_threshold`]. Antisymmetric in `delta` for every policy.
    #[inline]
    pub fn factor(&self, delta: f64, abs_threshold: f64) -> f64 {
        match *self {
            Degeneracy::Mask { .. } => {
                if delta.abs() <= abs_threshold {
                    0.0
                } else {
                    1.0 / delta
                }
            }
            // Where Δ² ≥ eps (or overflows) as 1/(Δ + eps/Δ), as the GPU kernels do.
            Degeneracy::Lorentzian { eps } => {
                if delta * delta < eps {
                    delta / (delta * delta + eps)
                } else {
                    1.0 / (delta + eps / delta)
                }
            }
            Degeneracy::Propagate => 1.0 / delta,
        }
    }

    /// The integer code of the policy used by the GPU kernels (0 mask, 1 Lorentzian, 2 propagate).
    pub fn code(&self) -> u32 {
        match self {
            Degeneracy::Mask { .. } => 0,
            Degeneracy::Lorentzian { .. } => 1,
            Degeneracy::Propagate => 2,
        }
    }
}

/// Options of the forward eigendecomposition.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EighOptions {
    /// How the symmetric matrix is formed from the input.
    pub symmetry: Symmetry,
    /// Hard cap on Jacobi sweeps; a matrix still rotating after it gets
    /// [`crate::Status::NotConverged`] and NaN outputs. (The GPU's tridiagonal eigenvalues-only
    /// kernel, `gpu::EigvalshKernel::Tridiagonal`, has no sweeps and ignores it.)
    pub max_sweeps: u32,
    /// Relative rotation threshold `c`: the pair (p, q) is rotated only while
    /// `|a_pq| > c · √(|a_pp|·|a_qq|)` (Demmel–Veselić). `None` means the compute precision's eps.
    pub rel_threshold: Option<f64>,
}

impl Default for EighOptions {
    fn default() -> Self {
        EighOptions {
            symmetry: Symmetry::Symmetrize,
            max_sweeps: 20,
            rel_threshold: None,
        }
    }
}

impl EighOptions {
    /// Checks the options.
    pub fn validate(&self) -> Result<()> {
        if self.max_sweeps == 0 {
            return Err(Error::InvalidArgument(
                "max_sweeps must be at least 1".into(),
            ));
        }
        if let Some(c) = self.rel_threshold {
            if !(c > 0.0 && c < 1.0) {
                return Err(Error::InvalidArgument(format!(
                    "rel_threshold must lie in (0, 1), got {c}"
                )));
            }
        }
        Ok(())
    }

    /// The rotation threshold for a precision.
    pub fn threshold(&self, precision: Precision) -> f64 {
        self.rel_threshold.unwrap_or_else(|| precision.eps())
    }
}

/// Whether eigenvectors are computed (yes/no choices are enums, not bools).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vectors {
    /// Eigenvalues and eigenvectors.
    Yes,
    /// Eigenvalues only (faster: no rotation of the basis).
    No,
}
