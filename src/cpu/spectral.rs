//! The f64 CPU reference for the stable objectives that go through the full eigendecomposition
//! (DESIGN §2): spectral functions and their Daleckii–Krein VJP, projectors onto the `k` lowest
//! or highest eigenvectors and their VJP, extreme eigenvalues and the spectral norm with their
//! minimum-norm subgradients. Parallel over the batch like the rest of [`crate::cpu`].

use super::{
    check_len, derivatives, items, jacobi_eigh, max_abs, Workspace, MIN_MATRICES_PER_TASK,
};
use crate::spectral::{Extreme, ExtremeEigenvalue, Projection, Projector, Spectral, SpectralFn};
use crate::{Degeneracy, Eigh, EighOptions, Precision, Result, Scalar, Status};
use rayon::prelude::*;

/// Batched spectral function `f(A) = V diag(f(λ)) Vᵀ` in f64.
///
/// `a` holds `B` row-major `n×n` matrices (formed per `opts.symmetry`). Returns `f(A)`
/// (`[B][n][n]`, exactly symmetric) with the eigendecomposition the VJP needs. sqrt, log, inv
/// and pow need a positive definite matrix: a matrix with a computed eigenvalue `≤ 0` gets
/// [`Status::OutOfDomain`] and NaN in `values`, `eig.eigenvalues` and `eig.eigenvectors` (as
/// for every status other than ok); the other matrices are unaffected. The statuses of the
/// eigendecomposition (non-finite input, not converged) are kept. `exp` accepts any symmetric
/// matrix; a value of `f` beyond the f64 range (`exp` of an eigenvalue above ~709, `pow` with
/// a large exponent) also gives [`Status::OutOfDomain`] and NaN outputs.
pub fn spectral<S: Scalar>(
    a: &[S],
    n: usize,
    function: SpectralFn,
    opts: &EighOptions,
) -> Result<Spectral<f64>> {
    function.validate()?;
    let mut eig = jacobi_eigh(a, n, opts)?;
    let nn = n * n;
    let mut values = vec![0.0; eig.batch * nn];
    let Eigh {
        eigenvalues,
        eigenvectors,
        status,
        ..
    } = &mut eig;
    let vectors = eigenvectors
        .as_mut()
        .expect("jacobi_eigh computes eigenvectors");
    eigenvalues
        .par_chunks_mut(n)
        .zip(vectors.par_chunks_mut(nn))
        .zip(status.par_iter_mut())
        .zip(values.par_chunks_mut(nn))
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            || vec![0.0; n],
            |f_lambda, (((lambda, v), s), out)| {
                if s.is_ok() && !lambda.iter().all(|&x| function.in_domain(x)) {
                    *s = Status::OutOfDomain;
                    lambda.fill(f64::NAN);
                    v.fill(f64::NAN);
                }
                if !s.is_ok() {
                    out.fill(f64::NAN);
                    return;
                }
                for (f, &x) in f_lambda.iter_mut().zip(lambda.iter()) {
                    *f = function.value(x);
                }
                derivatives::congruence_diag(n, v, f_lambda, out);
                // Values beyond the f64 range (exp or pow of a large eigenvalue, or their
                // products) are out of domain too, rather than inf and inf·0 = NaN with ok.
                if !f_lambda.iter().chain(out.iter()).all(|x| x.is_finite()) {
                    *s = Status::OutOfDomain;
                    lambda.fill(f64::NAN);
                    v.fill(f64::NAN);
                    out.fill(f64::NAN);
                }
            },
        );
    Ok(Spectral {
        function,
        values,
        eig,
    })
}

/// The Daleckii–Krein VJP of [`spectral`]: `Ā = V (L ∘ (Vᵀ sym(Ḡ) V)) Vᵀ` per matrix with
/// `L_ij = f[λ_i, λ_j]` ([`SpectralFn::divided_difference`], `L_ii = f′(λ_i)`).
///
/// `grad` is the cotangent `Ḡ` of `f(A)` (`[B][n][n]`, symmetrised before use). Returns `Ā`
/// (`[B][n][n]`, exactly symmetric); NaN for matrices whose status is not ok. No degeneracy
/// policy is needed: the divided differences are evaluated without cancellation, so the result is
/// finite and accurate for repeated and clustered eigenvalues alike.
pub fn spectral_vjp(s: &Spectral<f64>, grad: &[f64]) -> Result<Vec<f64>> {
    s.function.validate()?;
    s.eig.check()?;
    let (n, batch) = (s.eig.n, s.eig.batch);
    let nn = n * n;
    check_len(grad.len(), batch * nn, "grad")?;
    check_len(s.values.len(), batch * nn, "spectral values")?;
    let f = s.function;
    daleckii_krein_batch(
        &s.eig,
        grad,
        |_| 0.0,
        |lambda, i, j, _| f.divided_difference(lambda[i], lambda[j]),
    )
}

/// Batched projector `P = V_k V_kᵀ` onto the eigenvectors of the `k` lowest or highest
/// eigenvalues, in f64.
///
/// `a` holds `B` row-major `n×n` matrices (formed per `opts.symmetry`); `selection.k() ≤ n`.
/// Returns `P` (`[B][n][n]`, exactly symmetric), the eigendecomposition the VJP needs, and per
/// matrix the gap across the cut and whether the cut falls inside a degenerate cluster
/// ([`Projection::cut_in_cluster`]: gap `≤ eps^(3/4)·max|λ|` in f64, where `P` is not
/// well defined). NaN outputs for matrices whose status is not ok.
pub fn projector<S: Scalar>(
    a: &[S],
    n: usize,
    selection: Projector,
    opts: &EighOptions,
) -> Result<Projection<f64>> {
    selection.validate(n)?;
    let eig = jacobi_eigh(a, n, opts)?;
    let nn = n * n;
    let batch = eig.batch;
    let mut values = vec![0.0; batch * nn];
    let mut cut_gap = vec![0.0; batch];
    let mut cut_in_cluster = vec![false; batch];
    let keep = selection.selected(n);
    let cut = selection.cut(n);
    let mask = Degeneracy::default();
    items(&eig)?
        .zip(values.par_chunks_mut(nn))
        .zip(cut_gap.par_iter_mut())
        .zip(cut_in_cluster.par_iter_mut())
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            || vec![0.0; n],
            |weights, (((it, out), gap), in_cluster)| {
                if !it.status.is_ok() {
                    out.fill(f64::NAN);
                    *gap = f64::NAN;
                    *in_cluster = false;
                    return;
                }
                for (i, w) in weights.iter_mut().enumerate() {
                    *w = if keep.contains(&i) { 1.0 } else { 0.0 };
                }
                derivatives::congruence_diag(n, it.v, weights, out);
                match cut {
                    Some((below, above)) => {
                        *gap = it.lambda[above] - it.lambda[below];
                        let thr = mask.abs_threshold(max_abs(it.lambda), Precision::F64);
                        *in_cluster = *gap <= thr;
                    }
                    None => {
                        *gap = f64::INFINITY;
                        *in_cluster = false;
                    }
                }
            },
        );
    Ok(Projection {
        selection,
        values,
        eig,
        cut_gap,
        cut_in_cluster,
    })
}

/// The VJP of [`projector`]: `Ā = V (L ∘ (Vᵀ sym(P̄) V)) Vᵀ` per matrix, the Daleckii–Krein rule
/// of the indicator of the kept set, so `L_ij = 1/(λ_s − λ_u)` when exactly one of `i, j` is
/// kept (`s` the kept index, `u` the other) and `L_ij = 0` otherwise: only gaps across the cut
/// appear, and ties on either side of it do not matter.
///
/// `grad` is the cotangent `P̄` (`[B][n][n]`, symmetrised before use). `policy` only matters for
/// pairs across the cut that are tied, i.e. when [`Projection::cut_in_cluster`] is true (there
/// `P` has no derivative): `L_ij = policy.factor(λ_s − λ_u)`, so `Mask` (the default) drops the
/// tied pairs, `Lorentzian` smooths them and `Propagate` gives ±inf/NaN. Returns `Ā`
/// (`[B][n][n]`, exactly symmetric); NaN for matrices whose status is not ok.
pub fn projector_vjp(p: &Projection<f64>, grad: &[f64], policy: Degeneracy) -> Result<Vec<f64>> {
    policy.validate()?;
    let (n, batch) = (p.eig.n, p.eig.batch);
    let nn = n * n;
    p.selection.validate(n)?;
    check_len(grad.len(), batch * nn, "grad")?;
    let keep = p.selection.selected(n);
    daleckii_krein_batch(
        &p.eig,
        grad,
        |lambda| policy.abs_threshold(max_abs(lambda), Precision::F64),
        |lambda, i, j, thr| match (keep.contains(&i), keep.contains(&j)) {
            (true, false) => policy.factor(lambda[i] - lambda[j], thr),
            (false, true) => policy.factor(lambda[j] - lambda[i], thr),
            _ => 0.0,
        },
    )
}

/// The Daleckii–Krein rule `Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ` over a batch, with
/// `L_ij = l(λ, i, j, threshold(λ))` (the threshold computed once per matrix); NaN where the
/// status is not ok. Shared by the spectral-function and projector VJPs.
fn daleckii_krein_batch(
    eig: &Eigh<f64>,
    grad: &[f64],
    threshold: impl Fn(&[f64]) -> f64 + Sync,
    l: impl Fn(&[f64], usize, usize, f64) -> f64 + Sync,
) -> Result<Vec<f64>> {
    let n = eig.n;
    let nn = n * n;
    let mut out = vec![0.0; eig.batch * nn];
    items(eig)?
        .zip(grad.par_chunks(nn))
        .zip(out.par_chunks_mut(nn))
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            || Workspace::new(n),
            |ws, ((it, g), out)| {
                if !it.status.is_ok() {
                    out.fill(f64::NAN);
                    return;
                }
                let lambda = it.lambda;
                let thr = threshold(lambda);
                derivatives::daleckii_krein_one(
                    n,
                    it.v,
                    g,
                    |i, j| l(lambda, i, j, thr),
                    &mut ws.m1,
                    &mut ws.m2,
                    out,
                );
            },
        );
    Ok(out)
}

/// Batched extreme eigenvalue (`λ_max`, `λ_min`) or spectral norm (`max|λ|`) with its gradient,
/// in f64.
///
/// `a` holds `B` row-major `n×n` matrices (formed per `opts.symmetry`). The extreme cluster is
/// the set of eigenvalues within `rel_tol·max|λ|` of the extreme (in `|λ|` for the norm);
/// `rel_tol` is the `Mask` tolerance of [`Degeneracy::Mask`] (`None`: `eps^(3/4)` of f64). The
/// gradient is the average of `s_i u_i u_iᵀ` over the cluster — `u uᵀ` for a simple extreme, the
/// minimum-norm subgradient for a repeated one; see [`ExtremeEigenvalue`] for the definition and
/// why. NaN outputs for matrices whose status is not ok.
pub fn extreme_eigenvalue<S: Scalar>(
    a: &[S],
    n: usize,
    which: Extreme,
    opts: &EighOptions,
    rel_tol: Option<f64>,
) -> Result<ExtremeEigenvalue<f64>> {
    let mask = Degeneracy::Mask { rel_tol };
    mask.validate()?;
    let eig = jacobi_eigh(a, n, opts)?;
    let (nn, batch) = (n * n, eig.batch);
    let mut values = vec![0.0; batch];
    let mut grads = vec![0.0; batch * nn];
    let mut multiplicity = vec![0u32; batch];
    items(&eig)?
        .zip(values.par_iter_mut())
        .zip(grads.par_chunks_mut(nn))
        .zip(multiplicity.par_iter_mut())
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            || vec![0.0; n],
            |weights, (((it, value), grad), mult)| {
                if !it.status.is_ok() {
                    *value = f64::NAN;
                    grad.fill(f64::NAN);
                    *mult = 0;
                    return;
                }
                let (extreme, m) = which.cluster_weights(it.lambda, mask, Precision::F64, weights);
                *value = extreme;
                *mult = m;
                derivatives::congruence_diag(n, it.v, weights, grad);
            },
        );
    Ok(ExtremeEigenvalue {
        which,
        n,
        batch,
        values,
        grads,
        multiplicity,
        status: eig.status,
    })
}

/// The VJP of [`extreme_eigenvalue`]: `Ā_b = ḡ_b · G_b` for the cotangents `ḡ` (`[B]`) of the
/// values. NaN for matrices whose status is not ok.
pub fn extreme_eigenvalue_vjp(e: &ExtremeEigenvalue<f64>, grad_values: &[f64]) -> Result<Vec<f64>> {
    e.check_vjp_inputs(grad_values.len())?;
    let nn = e.n * e.n;
    let mut out = vec![0.0; e.batch * nn];
    out.par_chunks_mut(nn)
        .zip(e.grads.par_chunks(nn))
        .zip(grad_values.par_iter())
        .zip(e.status.par_iter())
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each(|(((out, g), &gv), s)| {
            if s.is_ok() {
                out.iter_mut().zip(g).for_each(|(o, &x)| *o = gv * x);
            } else {
                out.fill(f64::NAN);
            }
        });
    Ok(out)
}
