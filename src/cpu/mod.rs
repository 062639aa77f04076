//! The f64 CPU reference: batched Jacobi eigendecomposition and its derivatives, parallel over
//! the batch (rayon), with one [`Workspace`] per worker thread and no allocation per matrix.
//!
//! Every GPU result is checked against these functions; they are also what users without a GPU
//! run. Inputs may be f16, f32 or f64; computation is in f64.
//!
//! Two forward solvers with the same output contract (ascending eigenvalues, ties in index order,
//! the sign gauge of DESIGN §1, status codes, power-of-two prescaling):
//! - [`jacobi`] ([`jacobi_eigh`], [`jacobi_eigvalsh`]): cyclic Jacobi, the **reference** (the
//!   oracle of the GPU tests, the `check` and `demo` commands and the derivative commands): the
//!   same algorithm family as the GPU kernels, with relative accuracy on graded matrices;
//! - [`tridiagonal`] ([`tridiagonal_eigh`], [`tridiagonal_eigvalsh`],
//!   [`tridiagonal_eigh_in_place`]): Householder tridiagonalisation and implicit QL, several
//!   times fewer flops, normwise accurate (backward stable). The CLI's `eigh --device cpu` uses
//!   it.
//!
//! Besides the eigendecomposition and its derivatives ([`jacobi_eigh`], [`eigh_vjp`],
//! [`eigh_jvp`], ...), the stable objectives of [`crate::spectral`] with their VJPs: spectral
//! functions ([`spectral`], [`spectral_vjp`]), projectors ([`projector`], [`projector_vjp`]),
//! extreme eigenvalues and the spectral norm ([`extreme_eigenvalue`],
//! [`extreme_eigenvalue_vjp`]) and the dominant eigenpair by power iteration
//! ([`power_iteration`], [`power_iteration_vjp`]).

mod derivatives;
mod jacobi;
mod power_iteration;
mod spectral;
mod tridiagonal;

pub use jacobi::{eigh_chunk, eigh_one, gauge_sign, Workspace, LANES};
pub use power_iteration::{power_iteration, power_iteration_vjp};
pub use spectral::{
    extreme_eigenvalue, extreme_eigenvalue_vjp, projector, projector_vjp, spectral, spectral_vjp,
};
use tridiagonal::{tridiagonal_eigh_chunk, tridiagonal_eigh_chunk_in_place};
pub use tridiagonal::{
    tridiagonal_eigh_one, tridiagonal_eigh_one_in_place, TridiagonalWorkspace, LOCKSTEP_MAX_N,
    QL_LANES,
};

use crate::eigh::check_len;
use crate::{
    Degeneracy, Eigh, EighOptions, Error, Jvp, Precision, Result, Scalar, Status, Vectors,
};
use rayon::prelude::*;

/// Matrices handed to one rayon task at least (small matrices are cheap; this bounds overhead).
const MIN_MATRICES_PER_TASK: usize = 16;

/// The batch size of a buffer of `len` elements holding `n×n` matrices.
pub(crate) fn batch_of(len: usize, n: usize, what: &str) -> Result<usize> {
    let nn = crate::eigh::matrix_len(n)?;
    if !len.is_multiple_of(nn) {
        return Err(Error::Shape(format!(
            "{what} has {len} elements, which is not a whole number of {n}×{n} matrices"
        )));
    }
    Ok(len / nn)
}

/// Batched symmetric eigendecomposition by cyclic Jacobi in f64.
///
/// `a` holds `B` row-major `n×n` matrices. Returns ascending eigenvalues, eigenvectors as columns
/// with the sign gauge of DESIGN §1 (when `vectors` is [`Vectors::Yes`]), and a status per matrix.
pub fn jacobi<S: Scalar>(
    a: &[S],
    n: usize,
    opts: &EighOptions,
    vectors: Vectors,
) -> Result<Eigh<f64>> {
    opts.validate()?;
    let batch = batch_of(a.len(), n, "input")?;
    let nn = n * n;
    let thr = opts.threshold(Precision::F64);
    let mut eigenvalues = vec![0.0; batch * n];
    let mut status = vec![Status::Ok; batch];
    let mut eigenvectors = match vectors {
        Vectors::Yes => Some(vec![0.0; batch * nn]),
        Vectors::No => None,
    };
    // Chunks of LANES matrices, solved in lockstep (see jacobi.rs).
    let solve =
        |ws: &mut Workspace, m: &[S], w: &mut [f64], v: Option<&mut [f64]>, s: &mut [Status]| {
            eigh_chunk(
                |i| m[i].to_f64(),
                s.len(),
                n,
                opts.symmetry,
                opts.max_sweeps,
                thr,
                ws,
                w,
                v,
                s,
            )
        };
    let min_chunks = MIN_MATRICES_PER_TASK.div_ceil(LANES);
    match eigenvectors.as_mut() {
        Some(vecs) => a
            .par_chunks(LANES * nn)
            .zip(eigenvalues.par_chunks_mut(LANES * n))
            .zip(vecs.par_chunks_mut(LANES * nn))
            .zip(status.par_chunks_mut(LANES))
            .with_min_len(min_chunks)
            .for_each_init(
                // Made for the first matrix a task takes: none for an empty batch.
                || None,
                |ws, (((m, w), v), s)| {
                    let ws = ws.get_or_insert_with(|| Workspace::new(n));
                    solve(ws, m, w, Some(v), s)
                },
            ),
        None => a
            .par_chunks(LANES * nn)
            .zip(eigenvalues.par_chunks_mut(LANES * n))
            .zip(status.par_chunks_mut(LANES))
            .with_min_len(min_chunks)
            .for_each_init(
                // Made for the first matrix a task takes: none for an empty batch.
                || None,
                |ws, ((m, w), s)| {
                    let ws = ws.get_or_insert_with(|| Workspace::new(n));
                    solve(ws, m, w, None, s)
                },
            ),
    }
    guard_range(
        n,
        &mut eigenvalues,
        eigenvectors.as_deref_mut(),
        &mut status,
    );
    Ok(Eigh {
        n,
        batch,
        eigenvalues,
        eigenvectors,
        status,
    })
}

/// Chunks of [`QL_LANES`] matrices of size `n` handed to one rayon task at least for the
/// tridiagonal solver: about 32 KiB of input, so tasks stay few and cache-sized.
fn tridiagonal_task_len(n: usize) -> usize {
    (4096 / (QL_LANES * n * n)).clamp(1, 64)
}

/// Batched symmetric eigendecomposition by Householder tridiagonalisation and implicit QL in f64
/// (see [`tridiagonal_eigh_one`]; for `n ≤` [`LOCKSTEP_MAX_N`] the reductions, `Q` formations and
/// QL iterations of [`QL_LANES`] matrices run in lockstep, with results bitwise those of one
/// matrix at a time): the fast CPU path, with the output
/// contract of [`jacobi`] and normwise accuracy. `opts.max_sweeps·n` caps the QL iterations per
/// matrix; `opts.rel_threshold` (a Jacobi parameter) is validated but not used.
pub fn tridiagonal<S: Scalar>(
    a: &[S],
    n: usize,
    opts: &EighOptions,
    vectors: Vectors,
) -> Result<Eigh<f64>> {
    opts.validate()?;
    let batch = batch_of(a.len(), n, "input")?;
    let nn = n * n;
    let mut eigenvalues = vec![0.0; batch * n];
    let mut status = vec![Status::Ok; batch];
    let min_len = tridiagonal_task_len(n);
    let (sym, sweeps) = (opts.symmetry, opts.max_sweeps);
    let solve = |ws: &mut TridiagonalWorkspace,
                 m: &[S],
                 w: &mut [f64],
                 v: Option<&mut [f64]>,
                 s: &mut [Status]| {
        tridiagonal_eigh_chunk(|i| m[i].to_f64(), s.len(), n, sym, sweeps, ws, w, v, s)
    };
    let mut eigenvectors = match vectors {
        Vectors::Yes => {
            let mut vecs = vec![0.0; batch * nn];
            a.par_chunks(QL_LANES * nn)
                .zip(eigenvalues.par_chunks_mut(QL_LANES * n))
                .zip(vecs.par_chunks_mut(QL_LANES * nn))
                .zip(status.par_chunks_mut(QL_LANES))
                .with_min_len(min_len)
                .for_each_init(
                    // Made for the first matrix a task takes: none for an empty batch.
                    || None,
                    |ws, (((m, w), v), s)| {
                        let ws = ws.get_or_insert_with(|| TridiagonalWorkspace::new(n));
                        solve(ws, m, w, Some(v), s)
                    },
                );
            Some(vecs)
        }
        Vectors::No => {
            a.par_chunks(QL_LANES * nn)
                .zip(eigenvalues.par_chunks_mut(QL_LANES * n))
                .zip(status.par_chunks_mut(QL_LANES))
                .with_min_len(min_len)
                .for_each_init(
                    // Made for the first matrix a task takes: none for an empty batch.
                    || None,
                    |ws, ((m, w), s)| {
                        let ws = ws.get_or_insert_with(|| TridiagonalWorkspace::new(n));
                        solve(ws, m, w, None, s)
                    },
                );
            None
        }
    };
    guard_range(
        n,
        &mut eigenvalues,
        eigenvectors.as_deref_mut(),
        &mut status,
    );
    Ok(Eigh {
        n,
        batch,
        eigenvalues,
        eigenvectors,
        status,
    })
}

/// [`tridiagonal`] with eigenvectors: the full decomposition.
pub fn tridiagonal_eigh<S: Scalar>(a: &[S], n: usize, opts: &EighOptions) -> Result<Eigh<f64>> {
    tridiagonal(a, n, opts, Vectors::Yes)
}

/// [`tridiagonal`] without eigenvectors: eigenvalues (ascending) and status only (exactly the
/// eigenvalues [`tridiagonal_eigh`] gives).
pub fn tridiagonal_eigvalsh<S: Scalar>(a: &[S], n: usize, opts: &EighOptions) -> Result<Eigh<f64>> {
    tridiagonal(a, n, opts, Vectors::No)
}

/// [`tridiagonal_eigh`] of f64 matrices that overwrites each input matrix with its eigenvectors
/// (no second `B·n²` buffer: half the memory traffic and page faults of a fresh output). Returns
/// the eigenvalues (`[B][n]`) and the statuses; results are bitwise those of
/// [`tridiagonal_eigh`].
pub fn tridiagonal_eigh_in_place(
    a: &mut [f64],
    n: usize,
    opts: &EighOptions,
) -> Result<(Vec<f64>, Vec<Status>)> {
    opts.validate()?;
    let batch = batch_of(a.len(), n, "input")?;
    let mut eigenvalues = vec![0.0; batch * n];
    let mut status = vec![Status::Ok; batch];
    let (sym, sweeps) = (opts.symmetry, opts.max_sweeps);
    a.par_chunks_mut(QL_LANES * n * n)
        .zip(eigenvalues.par_chunks_mut(QL_LANES * n))
        .zip(status.par_chunks_mut(QL_LANES))
        .with_min_len(tridiagonal_task_len(n))
        .for_each_init(
            // Made for the first matrix a task takes: none for an empty batch.
            || None,
            |ws, ((m, w), s)| {
                let ws = ws.get_or_insert_with(|| TridiagonalWorkspace::new(n));
                tridiagonal_eigh_chunk_in_place(m, n, sym, sweeps, ws, w, s)
            },
        );
    guard_range(n, &mut eigenvalues, Some(a), &mut status);
    Ok((eigenvalues, status))
}

/// Gives matrices whose eigenvalues are beyond the f64 range once scaled back (a matrix of
/// finite entries can have them, up to n times its largest entry) [`Status::OutOfDomain`] and
/// NaN outputs, instead of ±inf with status ok.
fn guard_range(n: usize, values: &mut [f64], vectors: Option<&mut [f64]>, status: &mut [Status]) {
    let mut outputs = vec![(values, n)];
    outputs.extend(vectors.map(|v| (v, n * n)));
    // The eigenvectors of a matrix whose eigenvalues are finite are unit vectors.
    fail_where(status, &mut outputs, 1, |x| !x.is_finite());
}

/// Gives each matrix of an ok status with a value `lost(x)` holds for in one of its first
/// `checked` results [`Status::OutOfDomain`] and NaN in every result; `outputs` are each
/// result's values with the number of values per matrix.
pub(crate) fn fail_where(
    status: &mut [Status],
    outputs: &mut [(&mut [f64], usize)],
    checked: usize,
    lost: impl Fn(f64) -> bool,
) {
    for (b, s) in status.iter_mut().enumerate() {
        let range = |per: usize| b * per..(b + 1) * per;
        if s.is_ok()
            && outputs[..checked]
                .iter()
                .any(|(v, per)| v[range(*per)].iter().any(|&x| lost(x)))
        {
            *s = Status::OutOfDomain;
            for (v, per) in outputs.iter_mut() {
                v[range(*per)].fill(f64::NAN);
            }
        }
    }
}

/// [`jacobi`] with eigenvectors: the full decomposition.
pub fn jacobi_eigh<S: Scalar>(a: &[S], n: usize, opts: &EighOptions) -> Result<Eigh<f64>> {
    jacobi(a, n, opts, Vectors::Yes)
}

/// [`jacobi`] without eigenvectors: eigenvalues (ascending) and status only.
pub fn jacobi_eigvalsh<S: Scalar>(a: &[S], n: usize, opts: &EighOptions) -> Result<Eigh<f64>> {
    jacobi(a, n, opts, Vectors::No)
}

fn need_vectors(eig: &Eigh<f64>) -> Result<&[f64]> {
    eig.eigenvectors.as_deref().ok_or_else(|| {
        Error::InvalidArgument("this derivative needs the eigenvectors (use jacobi_eigh)".into())
    })
}

fn max_abs(xs: &[f64]) -> f64 {
    xs.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Forward results and cotangents of one matrix, gathered for the per-matrix rules.
struct Item<'a> {
    lambda: &'a [f64],
    v: &'a [f64],
    status: Status,
}

fn items(eig: &Eigh<f64>) -> Result<impl IndexedParallelIterator<Item = Item<'_>>> {
    eig.check()?;
    let v = need_vectors(eig)?;
    let n = eig.n;
    Ok(eig
        .eigenvalues
        .par_chunks(n)
        .zip(v.par_chunks(n * n))
        .zip(eig.status.par_iter())
        .map(|((lambda, v), &status)| Item { lambda, v, status }))
}

/// The reverse rule (VJP) of [`jacobi_eigh`]:
/// `Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ` per matrix, with `F_ij = policy(λ_j − λ_i)`.
///
/// `grad_values` (`[B][n]`) and `grad_vectors` (`[B][n][n]`) are each optional (absent means zero).
/// Returns `Ā` as `[B][n][n]`, exactly symmetric; NaN for matrices whose status is not ok. The
/// `Mask` default tolerance is the f64 one (`eps^(3/4)·max|λ|`).
pub fn eigh_vjp(
    eig: &Eigh<f64>,
    grad_values: Option<&[f64]>,
    grad_vectors: Option<&[f64]>,
    policy: Degeneracy,
) -> Result<Vec<f64>> {
    policy.validate()?;
    let (n, batch) = (eig.n, eig.batch);
    let nn = n * n;
    if let Some(g) = grad_values {
        check_len(g.len(), batch * n, "grad_values")?;
    }
    if let Some(g) = grad_vectors {
        check_len(g.len(), batch * nn, "grad_vectors")?;
    }
    let mut out = vec![0.0; batch * nn];
    items(eig)?
        .zip(out.par_chunks_mut(nn))
        .enumerate()
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            // Made for the first matrix a task takes: none for an empty batch.
            || None,
            |ws, (b, (it, out))| {
                let ws = ws.get_or_insert_with(|| Workspace::new(n));
                if !it.status.is_ok() {
                    out.fill(f64::NAN);
                    return;
                }
                let thr = policy.abs_threshold(max_abs(it.lambda), Precision::F64);
                derivatives::vjp_one(
                    n,
                    it.lambda,
                    it.v,
                    grad_values.map(|g| &g[b * n..b * n + n]),
                    grad_vectors.map(|g| &g[b * nn..b * nn + nn]),
                    policy,
                    thr,
                    &mut ws.m1,
                    &mut ws.m2,
                    out,
                );
            },
        );
    Ok(out)
}

/// The reverse rule of the eigenvalues alone: `Ā = V diag(λ̄) Vᵀ` (no `1/(λ_j − λ_i)` factor, so
/// no degeneracy policy is involved). `eig` must hold eigenvectors.
pub fn eigvalsh_vjp(eig: &Eigh<f64>, grad_values: &[f64]) -> Result<Vec<f64>> {
    eigh_vjp(eig, Some(grad_values), None, Degeneracy::Propagate)
}

/// The forward rule (JVP): for the tangent `Ȧ` (`[B][n][n]`, symmetrised before use),
/// `P = VᵀȦV`, `λ̇ = diag(P)`, `V̇ = V (F∘P)` with the same `F` and policy as [`eigh_vjp`].
/// NaN for matrices whose status is not ok.
pub fn eigh_jvp(eig: &Eigh<f64>, tangent: &[f64], policy: Degeneracy) -> Result<Jvp<f64>> {
    policy.validate()?;
    let (n, batch) = (eig.n, eig.batch);
    let nn = n * n;
    check_len(tangent.len(), batch * nn, "tangent")?;
    let mut values_dot = vec![0.0; batch * n];
    let mut vectors_dot = vec![0.0; batch * nn];
    items(eig)?
        .zip(tangent.par_chunks(nn))
        .zip(values_dot.par_chunks_mut(n))
        .zip(vectors_dot.par_chunks_mut(nn))
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            // Made for the first matrix a task takes: none for an empty batch.
            || None,
            |ws, (((it, da), ld), vd)| {
                let ws = ws.get_or_insert_with(|| Workspace::new(n));
                if !it.status.is_ok() {
                    ld.fill(f64::NAN);
                    vd.fill(f64::NAN);
                    return;
                }
                let thr = policy.abs_threshold(max_abs(it.lambda), Precision::F64);
                derivatives::jvp_one(
                    n, it.lambda, it.v, da, policy, thr, &mut ws.m1, &mut ws.m2, ld, vd,
                );
            },
        );
    Ok(Jvp {
        values_dot,
        vectors_dot,
    })
}

/// The gauge diagnostic (DESIGN §2): per matrix, the largest `|skew(VᵀV̄)_ij|` over pairs whose
/// eigenvalues lie within the `Mask` tolerance (`rel_tol`, default `eps^(3/4)` of f64, times
/// `max|λ|`). Zero means the loss does not depend on the basis chosen inside degenerate
/// eigenspaces; a large value means no policy can give a meaningful gradient. NaN where the
/// status is not ok.
pub fn gauge_diagnostic(
    eig: &Eigh<f64>,
    grad_vectors: &[f64],
    rel_tol: Option<f64>,
) -> Result<Vec<f64>> {
    let policy = Degeneracy::Mask { rel_tol };
    policy.validate()?;
    let (n, batch) = (eig.n, eig.batch);
    let nn = n * n;
    check_len(grad_vectors.len(), batch * nn, "grad_vectors")?;
    let mut out = vec![0.0; batch];
    items(eig)?
        .zip(grad_vectors.par_chunks(nn))
        .zip(out.par_iter_mut())
        .with_min_len(MIN_MATRICES_PER_TASK)
        .for_each_init(
            // Made for the first matrix a task takes: none for an empty batch.
            || None,
            |ws, ((it, gv), o)| {
                let ws = ws.get_or_insert_with(|| Workspace::new(n));
                *o = if it.status.is_ok() {
                    let thr = policy.abs_threshold(max_abs(it.lambda), Precision::F64);
                    derivatives::gauge_one(n, it.lambda, it.v, gv, thr, &mut ws.m1)
                } else {
                    f64::NAN
                };
            },
        );
    Ok(out)
}
