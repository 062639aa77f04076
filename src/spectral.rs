//! Stable objectives (DESIGN §2): quantities of a symmetric matrix whose derivatives stay defined
//! when eigenvalues coincide, and the types their batched implementations return.
//!
//! - Spectral functions `f(A) = V diag(f(λ)) Vᵀ` ([`SpectralFn`], [`Spectral`]) with the
//!   Daleckii–Krein derivative, whose divided differences [`SpectralFn::divided_difference`]
//!   evaluates without cancellation, so the gradient is finite and accurate at repeated
//!   eigenvalues.
//! - Projectors `P = V_k V_kᵀ` onto the `k` lowest or highest eigenvectors ([`Projector`],
//!   [`Projection`]), whose derivative only involves the gaps across the cut.
//! - Extreme eigenvalues `λ_max`, `λ_min` and the spectral norm ([`Extreme`],
//!   [`ExtremeEigenvalue`]) with their minimum-norm subgradient.
//! - The dominant eigenpair by power iteration ([`PowerIterationOptions`], [`PowerIteration`]),
//!   differentiated implicitly through its fixed point.
//!
//! The CPU reference implementations are [`crate::cpu::spectral`], [`crate::cpu::projector`],
//! [`crate::cpu::extreme_eigenvalue`] and [`crate::cpu::power_iteration`] with their `_vjp`
//! companions.
//!
//! ```
//! use eigrad::{cpu, spectral::SpectralFn, EighOptions};
//! // √A of A = diag(4, 9), and the gradient of the loss ⟨E₁₁, √A⟩ = (√A)₁₁.
//! let a = [4.0, 0.0, 0.0, 9.0];
//! let s = cpu::spectral(&a, 2, SpectralFn::Sqrt, &EighOptions::default())?;
//! assert_eq!(s.values, [2.0, 0.0, 0.0, 3.0]);
//! let grad = cpu::spectral_vjp(&s, &[1.0, 0.0, 0.0, 0.0])?;
//! assert_eq!(grad, [0.25, 0.0, 0.0, 0.0]); // d√λ/dλ = 1/(2·2)
//! # Ok::<(), eigrad::Error>(())
//! ```

use crate::eigh::{batch_len, check_len, matrix_len};
use crate::{Eigh, Error, Result, Status, Symmetry};

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
    /// `λ^p` (positive definite input, whatever `p`; `p` finite).
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
            _ => match s.strip_prefix("pow:").map(|p| (p, p.parse::<f64>())) {
                Some((_, Ok(p))) => {
                    let f = SpectralFn::Pow(p);
                    f.validate().map(|()| f)
                }
                Some((p, Err(_))) => Err(Error::InvalidArgument(format!(
                    "the exponent of pow must be a number, got '{p}' (pow:P, e.g. pow:0.5)"
                ))),
                None => Err(Error::InvalidArgument(format!(
                    "unknown spectral function '{s}' (expected sqrt, log, exp, inv or pow:P)"
                ))),
            },
        }
    }
}

impl SpectralFn {
    /// Checks the parameter of [`SpectralFn::Pow`] (it must be finite).
    pub fn validate(self) -> Result<()> {
        match self {
            SpectralFn::Pow(p) if !p.is_finite() => Err(Error::InvalidArgument(format!(
                "the exponent of pow must be finite, got {p}"
            ))),
            _ => Ok(()),
        }
    }

    /// True when the function needs a positive definite matrix (every function but `exp`).
    pub fn needs_positive_definite(self) -> bool {
        !matches!(self, SpectralFn::Exp)
    }

    /// True when the eigenvalue `x` lies in the domain: `x > 0` for sqrt, log, inv and pow,
    /// any finite `x` for exp. An eigenvalue outside it gives [`Status::OutOfDomain`].
    pub fn in_domain(self, x: f64) -> bool {
        if self.needs_positive_definite() {
            x > 0.0
        } else {
            x.is_finite()
        }
    }

    /// `f(x)`.
    pub fn value(self, x: f64) -> f64 {
        match self {
            SpectralFn::Sqrt => x.sqrt(),
            SpectralFn::Log => x.ln(),
            SpectralFn::Exp => x.exp(),
            SpectralFn::Inv => 1.0 / x,
            SpectralFn::Pow(p) => x.powf(p),
        }
    }

    /// `f′(x)`.
    pub fn derivative(self, x: f64) -> f64 {
        match self {
            SpectralFn::Sqrt => 0.5 / x.sqrt(),
            SpectralFn::Log => 1.0 / x,
            SpectralFn::Exp => x.exp(),
            SpectralFn::Inv => -1.0 / (x * x),
            SpectralFn::Pow(p) => {
                if p == 0.0 {
                    0.0
                } else {
                    p * x.powf(p - 1.0)
                }
            }
        }
    }

    /// The divided difference `f[a, b] = (f(a) − f(b)) / (a − b)`, with `f[a, a] = f′(a)`, in
    /// forms that do not cancel when `a` and `b` are close (relative error a few ulps for
    /// `a = b`, for `|a − b| ≈ 1e-9·a` and for well separated arguments):
    ///
    /// - sqrt: `1/(√a + √b)`;
    /// - log: with `b < a` and `δ = (a − b)/b`, `log1p(δ)/(a − b)`;
    /// - exp: `e^{(a+b)/2} · sinh(h)/h` with `h = (a − b)/2` when `|a − b| < 1`, else the
    ///   plain quotient (no cancellation there, and no overflow of `sinh`);
    /// - inv: `−1/(ab)`;
    /// - pow: with `b < a`, `δ = (a − b)/b` and `t = p·log1p(δ)`, `b^{p−1} · expm1(t)/δ`
    ///   (the plain quotient only if that over- or underflows).
    ///
    /// Symmetric in `a` and `b`. Arguments outside the domain give NaN (or ±inf) like `f`.
    pub fn divided_difference(self, a: f64, b: f64) -> f64 {
        let (hi, lo) = if a >= b { (a, b) } else { (b, a) };
        if hi == lo {
            return self.derivative(hi);
        }
        let plain = || (self.value(hi) - self.value(lo)) / (hi - lo);
        match self {
            SpectralFn::Sqrt => 1.0 / (hi.sqrt() + lo.sqrt()),
            SpectralFn::Inv => -(1.0 / hi) / lo,
            SpectralFn::Exp => {
                let d = hi - lo;
                if d < 1.0 {
                    let h = 0.5 * d;
                    (0.5 * hi + 0.5 * lo).exp() * (h.sinh() / h)
                } else {
                    plain()
                }
            }
            SpectralFn::Log => {
                if lo.is_nan() || lo <= 0.0 {
                    return f64::NAN;
                }
                let delta = (hi - lo) / lo;
                if delta.is_finite() {
                    delta.ln_1p() / (hi - lo)
                } else {
                    plain()
                }
            }
            SpectralFn::Pow(p) => {
                if lo.is_nan() || lo <= 0.0 {
                    return f64::NAN;
                }
                if p == 0.0 {
                    return 0.0;
                }
                let delta = (hi - lo) / lo;
                let r = lo.powf(p - 1.0) * ((p * delta.ln_1p()).exp_m1() / delta);
                if r.is_finite() && r != 0.0 {
                    r
                } else {
                    plain()
                }
            }
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
    /// ([`crate::Status::OutOfDomain`] when an eigenvalue is outside the domain of `f`). As for
    /// every status other than ok, that matrix's eigenvalues and eigenvectors are NaN.
    pub eig: Eigh<T>,
}

/// Which eigenvectors a projector keeps: the `k` with the lowest or the `k` with the highest
/// eigenvalues (`0 ≤ k ≤ n`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Projector {
    /// The `k` lowest eigenvalues (ascending indices `0..k`).
    Lowest(usize),
    /// The `k` highest eigenvalues (ascending indices `n−k..n`).
    Highest(usize),
}

impl Projector {
    /// The number of eigenvectors kept.
    pub fn k(self) -> usize {
        match self {
            Projector::Lowest(k) | Projector::Highest(k) => k,
        }
    }

    /// Checks `k ≤ n`.
    pub fn validate(self, n: usize) -> Result<()> {
        if self.k() > n {
            return Err(Error::InvalidArgument(format!(
                "the projector keeps k = {} eigenvectors of an {n}×{n} matrix",
                self.k()
            )));
        }
        Ok(())
    }

    /// The kept indices, in the ascending eigenvalue order, for matrices of size `n ≥ k` (all
    /// of `0..n` when `k > n`, which [`Projector::validate`] rejects).
    pub fn selected(self, n: usize) -> std::ops::Range<usize> {
        match self {
            Projector::Lowest(k) => 0..k.min(n),
            Projector::Highest(k) => n.saturating_sub(k)..n,
        }
    }

    /// The two ascending indices `(i, i + 1)` on either side of the cut, or `None` when nothing
    /// or everything is kept (`k = 0` or `k = n`: `P = 0` or `P = I`, no cut).
    pub fn cut(self, n: usize) -> Option<(usize, usize)> {
        let r = self.selected(n);
        if r.is_empty() || r.len() == n {
            None
        } else if r.start == 0 {
            Some((r.end - 1, r.end))
        } else {
            Some((r.start - 1, r.start))
        }
    }
}

/// The result of a batched projector `P = V_k V_kᵀ`: `P`, what its VJP needs, and a report of
/// degenerate cuts.
#[derive(Clone, Debug, PartialEq)]
pub struct Projection<T> {
    /// Which eigenvectors are kept.
    pub selection: Projector,
    /// `P`, `[B][n][n]`, symmetric; NaN where the status is not ok.
    pub values: Vec<T>,
    /// The eigendecomposition of `A` (saved for the VJP); its status is the status of `P`.
    pub eig: Eigh<T>,
    /// `[B]`: the gap `λ_{i+1} − λ_i ≥ 0` across the cut (see [`Projector::cut`]); `+inf` when
    /// there is no cut, NaN where the status is not ok.
    pub cut_gap: Vec<T>,
    /// `[B]`: true when the cut falls inside a degenerate cluster, i.e. `cut_gap` is at most the
    /// default `Mask` tolerance (`eps^(3/4)·max|λ|` of the compute precision). `P` then depends on
    /// an arbitrary choice of basis inside the cluster and has no derivative; the VJP applies its
    /// [`crate::Degeneracy`] policy to the tied pairs. False where the status is not ok.
    pub cut_in_cluster: Vec<bool>,
}

/// Which extreme of the spectrum [`crate::cpu::extreme_eigenvalue`] returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extreme {
    /// `λ_max`, the largest eigenvalue.
    Max,
    /// `λ_min`, the smallest eigenvalue.
    Min,
    /// The spectral norm `‖A‖₂ = max_i |λ_i|`.
    SpectralNorm,
}

impl Extreme {
    /// The extreme of the ascending `lambda` and the weights of its minimum-norm (sub)gradient
    /// `Σ w_i u_i u_iᵀ`: `s_i/m` on the `m` eigenvalues within the `mask` tolerance of the
    /// extreme (in `|λ|` for the norm, with `s_i = sign(λ_i)`; 1 otherwise), 0 elsewhere; all 0
    /// for the norm of a zero matrix. Returns the extreme and `m` (NaN and 0 for no eigenvalues).
    /// Shared by the CPU and GPU paths (which pass their own precision).
    pub fn cluster_weights(
        self,
        lambda: &[f64],
        mask: crate::Degeneracy,
        precision: crate::Precision,
        weights: &mut [f64],
    ) -> (f64, u32) {
        let n = lambda.len();
        if n == 0 {
            return (f64::NAN, 0);
        }
        let biggest = lambda.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let thr = mask.abs_threshold(biggest, precision);
        let extreme = match self {
            Extreme::Max => lambda[n - 1],
            Extreme::Min => lambda[0],
            Extreme::SpectralNorm => biggest,
        };
        for (w, &l) in weights.iter_mut().zip(lambda) {
            *w = match self {
                Extreme::Max if extreme - l <= thr => 1.0,
                Extreme::Min if l - extreme <= thr => 1.0,
                Extreme::SpectralNorm if extreme - l.abs() <= thr => {
                    if l < 0.0 {
                        -1.0
                    } else {
                        1.0
                    }
                }
                _ => 0.0,
            };
        }
        let m = weights.iter().filter(|w| **w != 0.0).count();
        if self == Extreme::SpectralNorm && biggest == 0.0 {
            weights.fill(0.0);
        }
        let inv_m = 1.0 / m as f64;
        weights.iter_mut().for_each(|w| *w *= inv_m);
        (extreme, m as u32)
    }
}

/// The result of a batched extreme eigenvalue: the value per matrix and its (minimum-norm sub)
/// gradient with respect to `A`.
///
/// With `U` the eigenvectors of the extreme cluster (the `m` eigenvalues within the `Mask`
/// tolerance of the extreme, `m` = [`ExtremeEigenvalue::multiplicity`]) the gradient is
/// `G = (1/m) Σ_{i∈cluster} s_i u_i u_iᵀ`, with `s_i = 1` for `Max` and `Min` and
/// `s_i = sign(λ_i)` for `SpectralNorm`. For a simple extreme eigenvalue that is the gradient
/// `u uᵀ`. For a repeated one the function is not differentiable; its subdifferential is
/// `{U Z Uᵀ : Z ⪰ 0, tr Z = 1}` (with the signs for the norm), and `G` (`Z = I/m`) is its
/// element of minimum Frobenius norm, which is also the gradient of the average of the cluster's
/// eigenvalues (smooth, and equal to the extreme at the tie). For `SpectralNorm` of the zero
/// matrix `G = 0` (the minimum-norm element of the unit nuclear-norm ball).
#[derive(Clone, Debug, PartialEq)]
pub struct ExtremeEigenvalue<T> {
    /// What was computed.
    pub which: Extreme,
    /// Matrix size.
    pub n: usize,
    /// Number of matrices.
    pub batch: usize,
    /// `[B]`: the extreme eigenvalue (or norm); NaN where the status is not ok.
    pub values: Vec<T>,
    /// `[B][n][n]`: the gradient `G` described above, symmetric; NaN where the status is not ok.
    pub grads: Vec<T>,
    /// `[B]`: the number `m` of eigenvalues averaged over (1 for a simple extreme); 0 where the
    /// status is not ok.
    pub multiplicity: Vec<u32>,
    /// One status per matrix (that of the eigendecomposition).
    pub status: Vec<Status>,
}

impl<T> ExtremeEigenvalue<T> {
    /// Checks the VJP's inputs: `grad_values` (its length) per matrix, and the fields against
    /// `n` and `batch` (public fields: a result may have been edited).
    pub(crate) fn check_vjp_inputs(&self, grad_values: usize) -> Result<()> {
        let grads = batch_len(self.batch, matrix_len(self.n)?)?;
        check_len(grad_values, self.batch, "grad_values")?;
        check_len(self.status.len(), self.batch, "status")?;
        check_len(self.grads.len(), grads, "extreme-eigenvalue gradients")
    }
}

/// The start vector of power iteration (CPU and GPU alike) is `1 + fract((i + 1)·STEP)/2`,
/// normalised: deterministic, positive, and with no special structure.
pub const POWER_START_STEP: f64 = 0.618_033_988_749_894_9;

/// Options of [`crate::cpu::power_iteration`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PowerIterationOptions {
    /// How the symmetric matrix is formed from the input.
    pub symmetry: Symmetry,
    /// Iteration cap; a matrix whose residual is still above `tol` after it gets
    /// [`Status::NotConverged`] and NaN outputs.
    pub max_iterations: u32,
    /// Convergence test: stop when `‖A v − ρ v‖₂ ≤ tol·|ρ|` with `ρ = vᵀ A v` (`‖v‖ = 1`). The
    /// eigenvector error is then about `tol·|λ|/gap` and the eigenvalue error `tol²·|λ|²/gap`.
    pub tol: f64,
}

impl Default for PowerIterationOptions {
    fn default() -> Self {
        PowerIterationOptions {
            symmetry: Symmetry::Symmetrize,
            max_iterations: 10_000,
            tol: 1e-12,
        }
    }
}

impl PowerIterationOptions {
    /// Checks the options: at least one iteration and `0 < tol < 1`.
    pub fn validate(&self) -> Result<()> {
        if self.max_iterations == 0 {
            return Err(Error::InvalidArgument(
                "max_iterations must be at least 1".into(),
            ));
        }
        if !(self.tol > 0.0 && self.tol < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "power iteration tol must lie in (0, 1), got {}",
                self.tol
            )));
        }
        Ok(())
    }
}

/// The dominant eigenpair (largest `|λ|`) of each matrix of a batch, by power iteration.
#[derive(Clone, Debug, PartialEq)]
pub struct PowerIteration<T> {
    /// Matrix size.
    pub n: usize,
    /// Number of matrices.
    pub batch: usize,
    /// `[B]`: the dominant eigenvalue `λ` (signed); NaN where the status is not ok.
    pub value: Vec<T>,
    /// `[B][n]`: its unit eigenvector `v`, with the sign gauge of DESIGN §1; NaN where the status
    /// is not ok.
    pub vector: Vec<T>,
    /// `[B]`: the iterations used (matrix–vector products).
    pub iterations: Vec<u32>,
    /// One status per matrix: ok, non-finite input, or not converged within the iteration cap
    /// (which is what a dominant eigenvalue tied in magnitude, `λ` and `−λ`, or a relative gap
    /// too small for the cap gives).
    pub status: Vec<Status>,
    /// `[B][n][n]`: the symmetric matrix that was iterated on (after [`Symmetry`]), saved for the
    /// VJP.
    pub matrix: Vec<T>,
}

impl<T> PowerIteration<T> {
    /// Checks the lengths of the saved state and of the cotangents `λ̄` (`[B]`) and `v̄`
    /// (`[B][n]`) of a VJP call (CPU and GPU share this).
    pub(crate) fn check_vjp_inputs(
        &self,
        grad_value: Option<usize>,
        grad_vector: Option<usize>,
    ) -> Result<()> {
        let (n, batch) = (self.n, self.batch);
        let matrices = batch_len(batch, matrix_len(n)?)?;
        if let Some(len) = grad_value {
            check_len(len, batch, "grad_value")?;
        }
        if let Some(len) = grad_vector {
            check_len(len, batch * n, "grad_vector")?;
        }
        check_len(self.matrix.len(), matrices, "power-iteration matrix")?;
        check_len(self.vector.len(), batch * n, "power-iteration vector")?;
        check_len(self.value.len(), batch, "power-iteration value")?;
        check_len(self.status.len(), batch, "status")
    }
}
