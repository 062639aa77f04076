//! The dominant eigenpair (largest `|λ|`) by power iteration in f64, and its VJP by implicit
//! differentiation of the fixed point `A v = λ v`, `vᵀv = 1` (DESIGN §2). Parallel over the batch.

use super::jacobi::{exponent, gauge_sign, pow2};
use super::{batch_of, MIN_MATRICES_PER_TASK};
use crate::spectral::{PowerIteration, PowerIterationOptions};
use crate::{Precision, Result, Scalar, Status, Symmetry};
use rayon::prelude::*;

/// Batched dominant eigenpair by power iteration, in f64.
///
/// `a` holds `B` row-major `n×n` matrices (formed per `opts.symmetry`). Each matrix is scaled by
/// an exact power of two, then iterated from a fixed start vector (positive, unequal components):
/// `y = A v`, `ρ = vᵀy`, stop when `‖y − ρ v‖₂ ≤ opts.tol·|ρ|`, else `v ← y/‖y‖`. Returns
/// `λ = ρ` (signed), the unit `v` with the sign gauge of DESIGN §1, the iteration count, and a
/// status per matrix: [`Status::NonFiniteInput`], or [`Status::NotConverged`] when the cap is
/// reached (a dominant eigenvalue tied in magnitude, `λ` and `−λ`, never converges; a gap
/// `|λ₁| − |λ₂|` small relative to `|λ₁|` needs about `log(tol)/log|λ₂/λ₁|` iterations), with NaN
/// outputs. A repeated dominant eigenvalue converges to a vector of its eigenspace that depends
/// on the start (the eigenvector is then not unique; see [`power_iteration_vjp`]).
pub fn power_iteration<S: Scalar>(
    a: &[S],
    n: usize,
    opts: &PowerIterationOptions,
) -> Result<PowerIteration<f64>> {
    opts.validate()?;
    let batch = batch_of(a.len(), n, "input")?;
    let nn = n * n;
    let mut value = vec![0.0; batch];
    let mut vector = vec![0.0; batch * n];
    let mut iterations = vec![0u32; batch];
    let mut status = vec![Status::Ok; batch];
    let mut matrix = vec![0.0; batch * nn];
    a.par_chunks(nn)
        .zip(matrix.par_chunks_mut(nn))
        .zip(value.par_iter_mut())
        .zip(vector.par_chunks_mut(n))
        .zip(iterations.par_iter_mut())
        .zip(status.par_iter_mut())
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            // Sized for the first matrix a task takes: nothing for an empty batch.
            || (Vec::new(), Vec::new()),
            |(scaled, y), (((((input, m), lambda), v), iters), s)| {
                if scaled.is_empty() {
                    (*scaled, *y) = (vec![0.0; nn], vec![0.0; n]);
                }
                *s = power_one(input, n, opts, m, scaled, y, lambda, v, iters);
                if !s.is_ok() {
                    *lambda = f64::NAN;
                    v.fill(f64::NAN);
                }
            },
        );
    Ok(PowerIteration {
        n,
        batch,
        value,
        vector,
        iterations,
        status,
        matrix,
    })
}

/// Power iteration on one matrix; `m` receives the symmetric matrix, `scaled` and `y` are scratch.
fn power_one<S: Scalar>(
    input: &[S],
    n: usize,
    opts: &PowerIterationOptions,
    m: &mut [f64],
    scaled: &mut [f64],
    y: &mut [f64],
    lambda: &mut f64,
    v: &mut [f64],
    iters: &mut u32,
) -> Status {
    let load = |i: usize| input[i].to_f64();
    let mut biggest = 0.0f64;
    let mut finite = true;
    for i in 0..n {
        for j in 0..=i {
            let x = match opts.symmetry {
                Symmetry::Symmetrize if i != j => 0.5 * load(i * n + j) + 0.5 * load(j * n + i),
                _ => load(i * n + j),
            };
            finite &= x.is_finite();
            biggest = biggest.max(x.abs());
            m[i * n + j] = x;
            m[j * n + i] = x;
        }
    }
    if !finite {
        return Status::NonFiniteInput;
    }
    // Exact power-of-two scaling (largest entry in [0.5, 1)): no overflow in A v.
    let e = exponent(biggest).clamp(-1000, 1000);
    let scale = pow2(-e);
    scaled
        .iter_mut()
        .zip(m.iter())
        .for_each(|(s, &x)| *s = x * scale);
    start_vector(v);
    for it in 1..=opts.max_iterations {
        *iters = it;
        for i in 0..n {
            let row = &scaled[i * n..i * n + n];
            y[i] = row.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
        }
        let rho: f64 = y.iter().zip(v.iter()).map(|(a, b)| a * b).sum();
        let residual = y
            .iter()
            .zip(v.iter())
            .map(|(yi, vi)| (yi - rho * vi).powi(2))
            .sum::<f64>()
            .sqrt();
        if residual <= opts.tol * rho.abs() {
            let sign = gauge_sign(v);
            v.iter_mut().for_each(|x| *x *= sign);
            *lambda = rho * pow2(e);
            // Beyond the f64 range (up to n times the largest entry): no ±inf with status ok.
            if !lambda.is_finite() {
                return Status::OutOfDomain;
            }
            return Status::Ok;
        }
        v.copy_from_slice(y);
        normalize(v);
    }
    Status::NotConverged
}

/// Scales `v` to unit length; returns its length before.
fn normalize(v: &mut [f64]) -> f64 {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    norm
}

/// The fixed start vector of power iteration: positive, unequal components (golden-ratio
/// sequence), normalised.
fn start_vector(v: &mut [f64]) {
    for (i, vi) in v.iter_mut().enumerate() {
        *vi = 1.0 + 0.5 * ((i + 1) as f64 * crate::spectral::POWER_START_STEP).fract();
    }
    normalize(v);
}

/// The VJP of [`power_iteration`], by implicit differentiation of the fixed point (no unrolling
/// of the iterations).
///
/// For a loss `L(λ, v)` with cotangents `λ̄` (`[B]`) and `v̄` (`[B][n]`), each optional (absent
/// means zero): from `A v = λ v`, `vᵀv = 1` follow `dλ = vᵀ dA v` and
/// `(λI − A) dv = (I − v vᵀ) dA v` with `dv ⊥ v`, hence
///
/// `Ā = λ̄ v vᵀ + sym(w vᵀ)`,  where `w ⊥ v` solves `(λI − A) w = (I − v vᵀ) v̄` on `v⊥`.
///
/// The system is solved directly: `M = sign(λ)(λI − A) + |λ| v vᵀ` is symmetric positive
/// definite exactly when `λ` is the simple dominant eigenvalue (its eigenvalues are `|λ|` on `v`
/// and `|λ| − sign(λ) λ_j ≥ |λ| − |λ_j|` on the others), so `M w = sign(λ)(I − v vᵀ) v̄` is solved
/// by Cholesky. Returns `Ā` (`[B][n][n]`, exactly symmetric). NaN for matrices whose status is
/// not ok, and, when `v̄` is given, for matrices whose dominant eigenvalue is not numerically
/// simple (the smallest eigenvalue of `M` at most `(eps^(3/4) + 4·n·eps)·|λ|`, shown by a
/// Cholesky pivot that small or by two steps of inverse iteration, since the pivots alone can
/// stay well above it: the eigenvector is then not a differentiable function of `A`); with
/// `λ̄` only, `λ̄ v vᵀ` (the gradient of `λ` when it is simple, one of its subgradients when it
/// is repeated).
pub fn power_iteration_vjp(
    p: &PowerIteration<f64>,
    grad_value: Option<&[f64]>,
    grad_vector: Option<&[f64]>,
) -> Result<Vec<f64>> {
    let (n, batch) = (p.n, p.batch);
    let nn = n * n;
    p.check_vjp_inputs(grad_value.map(<[f64]>::len), grad_vector.map(<[f64]>::len))?;
    let pivot_rel_tol = Precision::F64.default_mask_rel_tol();
    let mut out = vec![0.0; batch * nn];
    out.par_chunks_mut(nn)
        .enumerate()
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            // Sized for the first matrix a task takes: nothing for an empty batch.
            || (Vec::new(), Vec::new()),
            |(chol, w), (b, out)| {
                if chol.is_empty() {
                    (*chol, *w) = (vec![0.0; nn], vec![0.0; n]);
                }
                if !p.status[b].is_ok() {
                    out.fill(f64::NAN);
                    return;
                }
                let lambda = p.value[b];
                let v = &p.vector[b * n..b * n + n];
                let a = &p.matrix[b * nn..b * nn + nn];
                let lbar = grad_value.map_or(0.0, |g| g[b]);
                w.fill(0.0);
                if let Some(g) = grad_vector {
                    let vbar = &g[b * n..b * n + n];
                    if !solve_fixed_point(n, a, lambda, v, vbar, pivot_rel_tol, chol, w) {
                        out.fill(f64::NAN);
                        return;
                    }
                }
                // Ā = λ̄ v vᵀ + (w vᵀ + v wᵀ)/2, upper triangle mirrored.
                for i in 0..n {
                    for j in i..n {
                        let x = lbar * v[i] * v[j] + 0.5 * (w[i] * v[j] + v[i] * w[j]);
                        out[i * n + j] = x;
                        out[j * n + i] = x;
                    }
                }
            },
        );
    Ok(out)
}

/// Solves `(λI − A) w = (I − v vᵀ) v̄` for `w ⊥ v` through the Cholesky factorisation of
/// `M = sign(λ)(λI − A) + |λ| v vᵀ` (in `chol`); false when `M`'s smallest eigenvalue is
/// `≤ (rel_tol + 4·n·eps)·|λ|`: a pivot that small, or `1/‖M⁻¹x‖` that small for the unit `x` that two
/// steps of inverse iteration from the start vector give (`‖M⁻¹x‖ ≤ 1/μ_min` for every unit
/// `x`, so that shows `μ_min` that small).
fn solve_fixed_point(
    n: usize,
    a: &[f64],
    lambda: f64,
    v: &[f64],
    vbar: &[f64],
    rel_tol: f64,
    chol: &mut [f64],
    w: &mut [f64],
) -> bool {
    let sign = if lambda < 0.0 { -1.0 } else { 1.0 };
    let abs = lambda.abs();
    for i in 0..n {
        for j in 0..n {
            let shift = if i == j { lambda } else { 0.0 };
            chol[i * n + j] = sign * (shift - a[i * n + j]) + abs * v[i] * v[j];
        }
    }
    // In-place Cholesky, lower triangle: M = L Lᵀ. The tolerance plus the factorisation's
    // backward error (about n·eps·‖M‖, ‖M‖ ≤ 2|λ|), below which M's smallest eigenvalue is not
    // resolved at all.
    let min_pivot = (rel_tol + 4.0 * n as f64 * f64::EPSILON) * abs;
    for j in 0..n {
        let mut d = chol[j * n + j];
        for k in 0..j {
            d -= chol[j * n + k] * chol[j * n + k];
        }
        if d.is_nan() || d <= min_pivot {
            return false;
        }
        let ljj = d.sqrt();
        chol[j * n + j] = ljj;
        for i in j + 1..n {
            let mut s = chol[i * n + j];
            for k in 0..j {
                s -= chol[i * n + k] * chol[j * n + k];
            }
            chol[i * n + j] = s / ljj;
        }
    }
    start_vector(w);
    cholesky_solve(n, chol, w);
    normalize(w);
    cholesky_solve(n, chol, w);
    // (A NaN estimate fails too.)
    let estimate = normalize(w) * min_pivot;
    if estimate.is_nan() || estimate >= 1.0 {
        return false;
    }
    // Right-hand side sign(λ)(I − v vᵀ) v̄.
    let vv: f64 = v.iter().zip(vbar).map(|(a, b)| a * b).sum();
    for i in 0..n {
        w[i] = sign * (vbar[i] - vv * v[i]);
    }
    cholesky_solve(n, chol, w);
    // Remove the (rounding-level) component along v.
    let wv: f64 = w.iter().zip(v).map(|(a, b)| a * b).sum();
    w.iter_mut().zip(v).for_each(|(x, &vi)| *x -= wv * vi);
    true
}

/// Solves `L Lᵀ x = x` in place, `L` the Cholesky factor in the lower triangle of `chol`.
fn cholesky_solve(n: usize, chol: &[f64], x: &mut [f64]) {
    for i in 0..n {
        let mut s = x[i];
        for k in 0..i {
            s -= chol[i * n + k] * x[k];
        }
        x[i] = s / chol[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = x[i];
        for k in i + 1..n {
            s -= chol[k * n + i] * x[k];
        }
        x[i] = s / chol[i * n + i];
    }
}
