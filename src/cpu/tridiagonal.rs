//! The fast f64 CPU eigensolver: Householder reduction to tridiagonal form followed by the
//! implicit QL algorithm with shifts (EISPACK's `tred2`/`tql2` family, as in LAPACK's
//! `dsytd2` + `dsteqr`), one matrix at a time or, for small n, four in lockstep (bitwise the same
//! results), writing into caller-owned buffers.
//!
//! It needs several times fewer flops than cyclic Jacobi (about 2n³ for the reduction, (4/3)n³
//! for forming `Q` and about 6n³ for the QL rotations on the eigenvectors, against Jacobi's
//! 50-odd n³), and the QL recurrence costs one square root and one division per rotation. It
//! meets the output contract of [`super::jacobi`] (ascending eigenvalues, ties in index order,
//! the sign gauge, power-of-two prescaling, status codes with NaN outputs, exact results for
//! diagonal inputs) with normwise accuracy (backward stable: eigenvalue errors of a few
//! n·eps·‖A‖), but it is not the oracle: Jacobi is, because it matches the GPU kernels and has
//! relative accuracy on graded matrices.

use super::jacobi::{gauge_sign, gauge_sign_by, load_symmetric, pow2};
use crate::{Status, Symmetry};

/// Scratch space for [`tridiagonal_eigh_one`] on matrices of size `n`; reused across the matrices
/// a thread handles so the hot loop allocates nothing.
#[derive(Clone, Debug)]
pub struct TridiagonalWorkspace {
    n: usize,
    /// The working copy of the matrix (row-major); after the reduction, row `k` right of the
    /// diagonal holds the Householder vector of step `k`.
    a: Vec<f64>,
    /// `Zᵀ`: row `j` is (unsorted) eigenvector `j`.
    zt: Vec<f64>,
    /// Diagonal of the tridiagonal matrix, then the eigenvalues.
    d: Vec<f64>,
    /// Off-diagonal: `e[k]` couples `k` and `k+1`; `e[n-1] = 0`.
    e: Vec<f64>,
    /// Householder scalars.
    tau: Vec<f64>,
    /// Scratch vector (`p`, then `w`, of the rank-two update).
    p: Vec<f64>,
    /// Sort permutation.
    order: Vec<usize>,
    /// The lockstep path's lanes.
    pub(crate) lanes: QlLanes,
}

impl TridiagonalWorkspace {
    /// Scratch space for matrices of size `n`.
    pub fn new(n: usize) -> Self {
        TridiagonalWorkspace {
            n,
            a: vec![0.0; n * n],
            zt: vec![0.0; n * n],
            d: vec![0.0; n],
            e: vec![0.0; n],
            tau: vec![0.0; n],
            p: vec![0.0; n],
            order: vec![0; n],
            lanes: QlLanes::new(n),
        }
    }
}

/// Eigendecomposition of one symmetric matrix by tridiagonalisation and implicit QL.
///
/// `load(i)` gives element `i` of the stored `n×n` matrix widened to f64; results go to `values`
/// (ascending, ties in index order) and, when given, `vectors` (row-major, columns are
/// eigenvectors, sign gauge applied). At most `max_sweeps·n` QL iterations are performed (the QL
/// needs fewer than `2n` on typical inputs); beyond that the status is
/// [`Status::NotConverged`]. On a status other than ok every output is NaN.
pub fn tridiagonal_eigh_one(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    values: &mut [f64],
    vectors: Option<&mut [f64]>,
) -> Status {
    let want_vectors = vectors.is_some();
    let result = compute(load, n, symmetry, max_sweeps, ws, want_vectors);
    finish(result, n, ws, values, vectors)
}

/// [`tridiagonal_eigh_one`] of an f64 matrix `m` whose storage then receives the eigenvectors
/// (bitwise the same results).
pub fn tridiagonal_eigh_one_in_place(
    m: &mut [f64],
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    values: &mut [f64],
) -> Status {
    let result = compute(|i| m[i], n, symmetry, max_sweeps, ws, true);
    finish(result, n, ws, values, Some(m))
}

/// Loads, reduces and diagonalises one matrix into `ws`: the prescaling exponent, or the status
/// of a failure.
fn compute(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    want_vectors: bool,
) -> Result<i32, Status> {
    debug_assert!(ws.n == n);
    let max_iterations = (max_sweeps as usize).saturating_mul(n);
    // One specialised copy per small n (the loops unroll and the bounds checks go), a general
    // one above.
    macro_rules! specialised {
        ($($k:literal)*) => {
            match n {
                $($k => solve($k, load, symmetry, max_iterations, ws, want_vectors),)*
                _ => solve(n, load, symmetry, max_iterations, ws, want_vectors),
            }
        };
    }
    specialised!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 24 32)
}

/// The body of [`compute`]; always inlined, so a constant `n` specialises it.
#[inline(always)]
fn solve(
    n: usize,
    load: impl Fn(usize) -> f64,
    symmetry: Symmetry,
    max_iterations: usize,
    ws: &mut TridiagonalWorkspace,
    want_vectors: bool,
) -> Result<i32, Status> {
    let exp = load_matrix(load, n, symmetry, &mut ws.a[..n * n]).ok_or(Status::NonFiniteInput)?;
    reduce(n, ws);
    if want_vectors {
        form_q_transposed(n, ws);
    }
    if !ql(n, ws, want_vectors, max_iterations) {
        return Err(Status::NotConverged);
    }
    Ok(exp)
}

/// Writes the sorted, unscaled eigenvalues and the gauged eigenvectors of a [`compute`] result
/// (NaN on failure) and returns the status.
fn finish(
    result: Result<i32, Status>,
    n: usize,
    ws: &mut TridiagonalWorkspace,
    values: &mut [f64],
    vectors: Option<&mut [f64]>,
) -> Status {
    let nn = n * n;
    let values = &mut values[..n];
    let exp = match result {
        Ok(exp) => exp,
        Err(status) => {
            fail(values, vectors);
            return status;
        }
    };
    let (d, zt, order) = (&ws.d[..n], &ws.zt[..nn], &mut ws.order[..n]);
    // Ascending order; ties keep the index order (as the Jacobi reference does).
    for (j, o) in order.iter_mut().enumerate() {
        *o = j;
    }
    order.sort_unstable_by(|&x, &y| d[x].total_cmp(&d[y]).then(x.cmp(&y)));
    let unscale = pow2(exp);
    for (r, &j) in order.iter().enumerate() {
        values[r] = d[j] * unscale;
    }
    if let Some(v) = vectors {
        let v = &mut v[..nn];
        for (r, &j) in order.iter().enumerate() {
            let z = &zt[j * n..j * n + n];
            let sign = gauge_sign(z);
            for i in 0..n {
                v[i * n + r] = sign * z[i];
            }
        }
    }
    Status::Ok
}

/// NaN outputs for a matrix whose status is not ok.
fn fail(values: &mut [f64], vectors: Option<&mut [f64]>) {
    values.fill(f64::NAN);
    if let Some(v) = vectors {
        v.fill(f64::NAN);
    }
}

/// Loads one matrix into `a` (stored in full), scaled as the Jacobi reference scales it
/// ([`load_symmetric`]); returns the exponent that undoes the scaling, or `None` for a
/// non-finite entry.
#[inline(always)]
fn load_matrix(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    a: &mut [f64],
) -> Option<i32> {
    let e = load_symmetric(load, n, symmetry, |k, x| a[k] = x)?;
    if e != 0 {
        let scale = pow2(-e);
        a.iter_mut().for_each(|x| *x *= scale);
    }
    Some(e)
}

/// Householder reduction `A = Q T Qᵀ` (LAPACK `dsytd2`, lower, on the full matrix): fills `d`
/// and `e` with `T` and leaves the Householder vector of step `k` (its leading 1 implicit) in
/// row `k` of `a` right of the subdiagonal, with its scalar in `tau[k]`. A column that is already
/// reduced (zero below the subdiagonal) is left alone (`tau = 0`), so a diagonal matrix passes
/// through exactly.
#[inline(always)]
fn reduce(n: usize, ws: &mut TridiagonalWorkspace) {
    let a = &mut ws.a[..n * n];
    let (d, e, tau, p) = (
        &mut ws.d[..n],
        &mut ws.e[..n],
        &mut ws.tau[..n],
        &mut ws.p[..n],
    );
    for k in 0..n.saturating_sub(2) {
        d[k] = a[k * n + k];
        let alpha = a[k * n + k + 1];
        let mut sigma = 0.0;
        for j in k + 2..n {
            sigma += a[k * n + j] * a[k * n + j];
        }
        if sigma == 0.0 {
            e[k] = alpha;
            tau[k] = 0.0;
            continue;
        }
        let norm = (alpha * alpha + sigma).sqrt();
        let beta = if alpha > 0.0 { -norm } else { norm };
        let t = (beta - alpha) / beta;
        let scal = 1.0 / (alpha - beta);
        e[k] = beta;
        tau[k] = t;
        // v = (1, x[1..]/(alpha − beta)), kept in row k.
        a[k * n + k + 1] = 1.0;
        for j in k + 2..n {
            a[k * n + j] *= scal;
        }
        let (head, tail) = a.split_at_mut((k + 1) * n);
        let v = &head[k * n + k + 1..k * n + n];
        let m = n - k - 1;
        // p = τ·A₂₂·v, then w = p − (τ/2)(pᵀv)·v.
        let mut pv = 0.0;
        for i in 0..m {
            let row = &tail[i * n + k + 1..i * n + n];
            let mut s = 0.0;
            for j in 0..m {
                s += row[j] * v[j];
            }
            p[i] = t * s;
            pv += p[i] * v[i];
        }
        let kk = -0.5 * t * pv;
        for i in 0..m {
            p[i] += kk * v[i];
        }
        // A₂₂ ← A₂₂ − v wᵀ − w vᵀ.
        for i in 0..m {
            let (vi, wi) = (v[i], p[i]);
            let row = &mut tail[i * n + k + 1..i * n + n];
            for j in 0..m {
                row[j] -= vi * p[j] + wi * v[j];
            }
        }
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 2) * n + n - 1];
    }
    d[n - 1] = a[n * n - 1];
    e[n - 1] = 0.0;
}

/// `Zᵀ = Qᵀ = H_{n−3} ⋯ H_0`, accumulated right to left into `zt` (rows are the columns of `Q`).
#[inline(always)]
fn form_q_transposed(n: usize, ws: &mut TridiagonalWorkspace) {
    let (a, zt, tau) = (&ws.a[..n * n], &mut ws.zt[..n * n], &ws.tau[..n]);
    for (i, z) in zt.iter_mut().enumerate() {
        *z = if i % (n + 1) == 0 { 1.0 } else { 0.0 };
    }
    for k in (0..n.saturating_sub(2)).rev() {
        let t = tau[k];
        if t == 0.0 {
            continue;
        }
        let v = &a[k * n + k + 1..k * n + n];
        // Rows 0..=k of M are untouched by H_k (zero in columns k+1..).
        for r in k + 1..n {
            let row = &mut zt[r * n + k + 1..r * n + n];
            let mut s = 0.0;
            for j in 0..row.len() {
                s += row[j] * v[j];
            }
            let s = t * s;
            for j in 0..row.len() {
                row[j] -= s * v[j];
            }
        }
    }
}

/// Implicit QL with shifts on the tridiagonal `(d, e)` (EISPACK `tql2`), rotating the rows of
/// `zt` along when `want_vectors`. An off-diagonal entry is negligible when it is at most
/// `eps·‖T‖` (normwise, with `‖T‖ = max_i |d_i| + |e_i|`). Returns false after
/// `max_iterations` iterations without convergence.
#[inline(always)]
fn ql(n: usize, ws: &mut TridiagonalWorkspace, want_vectors: bool, max_iterations: usize) -> bool {
    let (d, e, zt) = (&mut ws.d[..n], &mut ws.e[..n], &mut ws.zt[..n * n]);
    let mut norm = 0.0f64;
    for i in 0..n {
        norm = norm.max(d[i].abs() + e[i].abs());
    }
    let tol = f64::EPSILON * norm;
    let mut shift = 0.0;
    let mut iterations = 0;
    for l in 0..n {
        loop {
            // The first negligible e[m] at or after l closes the block l..=m (e[n−1] = 0).
            let mut m = l;
            while m + 1 < n && e[m].abs() > tol {
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > max_iterations {
                return false;
            }
            // The shift: the eigenvalue of the leading 2×2 block nearer d[l].
            let g = d[l];
            let mut p = (d[l + 1] - g) / (2.0 * e[l]);
            let mut r = (p * p + 1.0).sqrt();
            if p < 0.0 {
                r = -r;
            }
            d[l] = e[l] / (p + r);
            d[l + 1] = e[l] * (p + r);
            let dl1 = d[l + 1];
            let h = g - d[l];
            for di in d[l + 2..].iter_mut() {
                *di -= h;
            }
            shift += h;
            // The implicit QL sweep from m − 1 up to l.
            p = d[m];
            let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
            let el1 = e[l + 1];
            let (mut s, mut s2) = (0.0, 0.0);
            for i in (l..m).rev() {
                c3 = c2;
                c2 = c;
                s2 = s;
                let g = c * e[i];
                let h = c * p;
                r = (p * p + e[i] * e[i]).sqrt();
                e[i + 1] = s * r;
                s = e[i] / r;
                c = p / r;
                p = c * d[i] - s * g;
                d[i + 1] = h + s * (c * g + s * d[i]);
                if want_vectors {
                    let (lo, hi) = zt.split_at_mut((i + 1) * n);
                    let (zi, zi1) = (&mut lo[i * n..i * n + n], &mut hi[..n]);
                    for k in 0..n {
                        let h = zi1[k];
                        zi1[k] = s * zi[k] + c * h;
                        zi[k] = c * zi[k] - s * h;
                    }
                }
            }
            p = -s * s2 * c3 * el1 * e[l] / dl1;
            e[l] = s * p;
            d[l] = c * p;
        }
        // (Skipped while no shift happened, so that a diagonal input keeps even its −0.0.)
        if shift != 0.0 {
            d[l] += shift;
        }
        e[l] = 0.0;
    }
    true
}

/// Matrices solved in lockstep (reduction, `Q` and QL) in `tridiagonal_eigh_chunk`.
pub const QL_LANES: usize = 4;

/// The largest `n` solved in lockstep. Above it the eigenvector rotations (length `n`) dominate
/// rather than the rotations' square-root and division chains, and the rotations a lane skips
/// cost more than the overlap gains (measured at n = 32: about 10 % slower), so larger matrices
/// are solved one at a time (bitwise the same results either way).
pub const LOCKSTEP_MAX_N: usize = 16;

type Lanes = [f64; QL_LANES];

/// Lane-interleaved working storage of up to [`QL_LANES`] matrices (structure of arrays:
/// `a[i*n + j][lane]`, `d[i][lane]`, `zt[j*n + k][lane]`), the counterparts of the fields of
/// [`TridiagonalWorkspace`] for the lockstep reduction, `Q` formation and QL.
#[derive(Clone, Debug, Default)]
pub(crate) struct QlLanes {
    a: Vec<Lanes>,
    d: Vec<Lanes>,
    e: Vec<Lanes>,
    tau: Vec<Lanes>,
    p: Vec<Lanes>,
    zt: Vec<Lanes>,
}

impl QlLanes {
    /// Lanes for matrices of size `n` (empty above [`LOCKSTEP_MAX_N`], where they go unused).
    pub(crate) fn new(n: usize) -> Self {
        let n = if n <= LOCKSTEP_MAX_N { n } else { 0 };
        QlLanes {
            a: vec![[0.0; QL_LANES]; n * n],
            d: vec![[0.0; QL_LANES]; n],
            e: vec![[0.0; QL_LANES]; n],
            tau: vec![[0.0; QL_LANES]; n],
            p: vec![[0.0; QL_LANES]; n],
            zt: vec![[0.0; QL_LANES]; n * n],
        }
    }
}

/// [`tridiagonal_eigh_one`] of `m ≤ QL_LANES` consecutive matrices: each is loaded on its own,
/// then their reductions, `Q` formations and QL iterations run in lockstep (the lanes' square-root
/// and division chains overlap and the vector operations run across lanes). A lane that skips a
/// step another lane takes (a reflection or a rotation) keeps its state by selection, so every
/// lane does exactly the arithmetic of [`tridiagonal_eigh_one`] and results are bitwise those of
/// one matrix at a time.
///
/// `load(i)` gives element `i` of the chunk (`m` stored `n×n` matrices); results go to `values`
/// (`m·n`), `vectors` when given (`m·n²`) and `status` (`m`).
pub(crate) fn tridiagonal_eigh_chunk(
    load: impl Fn(usize) -> f64,
    m: usize,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    values: &mut [f64],
    mut vectors: Option<&mut [f64]>,
    status: &mut [Status],
) {
    let nn = n * n;
    if n > LOCKSTEP_MAX_N {
        for l in 0..m {
            let vecs = vectors.as_deref_mut().map(|v| &mut v[l * nn..(l + 1) * nn]);
            let values = &mut values[l * n..];
            let load = |i| load(l * nn + i);
            status[l] = tridiagonal_eigh_one(load, n, symmetry, max_sweeps, ws, values, vecs);
        }
        return;
    }
    let want_vectors = vectors.is_some();
    let mut lanes = std::mem::take(&mut ws.lanes);
    let results = chunk_compute(
        load,
        m,
        n,
        symmetry,
        max_sweeps,
        ws,
        &mut lanes,
        want_vectors,
    );
    chunk_finish(&results, m, n, &lanes, values, vectors, status);
    ws.lanes = lanes;
}

/// [`tridiagonal_eigh_chunk`] of f64 matrices whose storage then receives the eigenvectors.
pub(crate) fn tridiagonal_eigh_chunk_in_place(
    chunk: &mut [f64],
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    values: &mut [f64],
    status: &mut [Status],
) {
    let nn = n * n;
    if n > LOCKSTEP_MAX_N {
        for (l, v) in chunk.chunks_exact_mut(nn).enumerate() {
            let values = &mut values[l * n..];
            status[l] = tridiagonal_eigh_one_in_place(v, n, symmetry, max_sweeps, ws, values);
        }
        return;
    }
    let m = chunk.len() / nn;
    let mut lanes = std::mem::take(&mut ws.lanes);
    let results = chunk_compute(
        |i| chunk[i],
        m,
        n,
        symmetry,
        max_sweeps,
        ws,
        &mut lanes,
        true,
    );
    chunk_finish(&results, m, n, &lanes, values, Some(chunk), status);
    ws.lanes = lanes;
}

/// Loads each matrix of the chunk into its lane, then reduces, forms `Q` and runs the QL on the
/// lanes in lockstep.
fn chunk_compute(
    load: impl Fn(usize) -> f64,
    m: usize,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    ws: &mut TridiagonalWorkspace,
    lanes: &mut QlLanes,
    want_vectors: bool,
) -> [Result<i32, Status>; QL_LANES] {
    debug_assert!(m <= QL_LANES && ws.n == n);
    let max_iterations = (max_sweeps as usize).saturating_mul(n);
    macro_rules! specialised {
        ($($k:literal)*) => {
            match n {
                $($k => chunk_solve($k, load, m, symmetry, max_iterations, ws, lanes, want_vectors),)*
                _ => chunk_solve(n, load, m, symmetry, max_iterations, ws, lanes, want_vectors),
            }
        };
    }
    specialised!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The body of [`chunk_compute`]; always inlined, so a constant `n` specialises it.
#[inline(always)]
fn chunk_solve(
    n: usize,
    load: impl Fn(usize) -> f64,
    m: usize,
    symmetry: Symmetry,
    max_iterations: usize,
    ws: &mut TridiagonalWorkspace,
    lanes: &mut QlLanes,
    want_vectors: bool,
) -> [Result<i32, Status>; QL_LANES] {
    let nn = n * n;
    let mut results = [Err(Status::NonFiniteInput); QL_LANES];
    let mut live = [false; QL_LANES];
    for l in 0..QL_LANES {
        let exp = if l < m {
            load_matrix(|i| load(l * nn + i), n, symmetry, &mut ws.a[..nn])
        } else {
            None
        };
        results[l] = exp.ok_or(Status::NonFiniteInput);
        live[l] = exp.is_some();
        // A lane without a (finite) matrix holds zeros: no reflection, no rotation.
        for (x, &w) in lanes.a[..nn].iter_mut().zip(&ws.a[..nn]) {
            x[l] = if live[l] { w } else { 0.0 };
        }
    }
    reduce_lanes(n, lanes);
    if want_vectors {
        form_q_transposed_lanes(n, lanes);
    }
    let converged = ql_lanes(n, lanes, live, want_vectors, max_iterations);
    for l in 0..QL_LANES {
        if live[l] && !converged[l] {
            results[l] = Err(Status::NotConverged);
        }
    }
    results
}

/// Writes the outputs of the `m` lanes of a [`chunk_compute`] result, each exactly as [`finish`]
/// writes them: the order comes from ranks (a lane's eigenvalue `j` goes to the number of
/// eigenvalues before it in [`f64::total_cmp`] order, ties by index), which is the permutation
/// the sort in [`finish`] gives, found without branches on the data.
fn chunk_finish(
    results: &[Result<i32, Status>; QL_LANES],
    m: usize,
    n: usize,
    lanes: &QlLanes,
    values: &mut [f64],
    vectors: Option<&mut [f64]>,
    status: &mut [Status],
) {
    macro_rules! specialised {
        ($($k:literal)*) => {
            match n {
                $($k => finish_lanes($k, results, m, lanes, values, vectors, status),)*
                _ => finish_lanes(n, results, m, lanes, values, vectors, status),
            }
        };
    }
    specialised!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16)
}

/// The body of [`chunk_finish`]; always inlined, so a constant `n` specialises it.
#[inline(always)]
fn finish_lanes(
    n: usize,
    results: &[Result<i32, Status>; QL_LANES],
    m: usize,
    lanes: &QlLanes,
    values: &mut [f64],
    mut vectors: Option<&mut [f64]>,
    status: &mut [Status],
) {
    let nn = n * n;
    let (d, zt) = (&lanes.d[..n], &lanes.zt[..nn]);
    for l in 0..m {
        let values = &mut values[l * n..(l + 1) * n];
        let vecs = vectors.as_deref_mut().map(|v| &mut v[l * nn..(l + 1) * nn]);
        let exp = match results[l] {
            Ok(exp) => exp,
            Err(s) => {
                fail(values, vecs);
                status[l] = s;
                continue;
            }
        };
        status[l] = Status::Ok;
        // The keys of `f64::total_cmp`: the bits, negatives' magnitude bits flipped.
        let mut key = [0i64; LOCKSTEP_MAX_N];
        for j in 0..n {
            let b = d[j][l].to_bits() as i64;
            key[j] = b ^ (((b >> 63) as u64) >> 1) as i64;
        }
        let mut order = [0usize; LOCKSTEP_MAX_N];
        for j in 0..n {
            let mut rank = 0;
            for i in 0..j {
                rank += usize::from(key[i] <= key[j]);
            }
            for i in j + 1..n {
                rank += usize::from(key[i] < key[j]);
            }
            order[rank] = j;
        }
        let order = &order[..n];
        let unscale = pow2(exp);
        for (r, &j) in order.iter().enumerate() {
            values[r] = d[j][l] * unscale;
        }
        if let Some(v) = vecs {
            for (r, &j) in order.iter().enumerate() {
                let z = &zt[j * n..j * n + n];
                let sign = gauge_sign_by(n, |i| z[i][l]);
                for i in 0..n {
                    v[i * n + r] = sign * z[i][l];
                }
            }
        }
    }
}

/// [`reduce`] on the lanes of `lanes` in lockstep. A lane whose column needs no reflection
/// (`tau = 0`) while another's does keeps its values by selection, so each lane gets exactly the
/// arithmetic of [`reduce`].
#[inline(always)]
fn reduce_lanes(n: usize, lanes: &mut QlLanes) {
    let a = &mut lanes.a[..n * n];
    let (d, e, tau, p) = (
        &mut lanes.d[..n],
        &mut lanes.e[..n],
        &mut lanes.tau[..n],
        &mut lanes.p[..n],
    );
    for k in 0..n.saturating_sub(2) {
        d[k] = a[k * n + k];
        let alpha = a[k * n + k + 1];
        let mut sigma = [0.0; QL_LANES];
        for x in &a[k * n + k + 2..k * n + n] {
            for l in 0..QL_LANES {
                sigma[l] += x[l] * x[l];
            }
        }
        let on = mask(sigma.map(|x| x != 0.0));
        if on == [0; QL_LANES] {
            e[k] = alpha;
            tau[k] = [0.0; QL_LANES];
            continue;
        }
        let (mut beta, mut t, mut scal) = ([0.0; QL_LANES], [0.0; QL_LANES], [0.0; QL_LANES]);
        for l in 0..QL_LANES {
            let norm = (alpha[l] * alpha[l] + sigma[l]).sqrt();
            beta[l] = if alpha[l] > 0.0 { -norm } else { norm };
            t[l] = (beta[l] - alpha[l]) / beta[l];
            scal[l] = 1.0 / (alpha[l] - beta[l]);
        }
        e[k] = select(&on, beta, alpha);
        tau[k] = select(&on, t, [0.0; QL_LANES]);
        a[k * n + k + 1] = select(&on, [1.0; QL_LANES], alpha);
        for x in &mut a[k * n + k + 2..k * n + n] {
            *x = select(&on, std::array::from_fn(|l| x[l] * scal[l]), *x);
        }
        let (head, tail) = a.split_at_mut((k + 1) * n);
        let v = &head[k * n + k + 1..k * n + n];
        let m = n - k - 1;
        let mut pv = [0.0; QL_LANES];
        for i in 0..m {
            let row = &tail[i * n + k + 1..i * n + n];
            let mut s = [0.0; QL_LANES];
            for j in 0..m {
                for l in 0..QL_LANES {
                    s[l] += row[j][l] * v[j][l];
                }
            }
            for l in 0..QL_LANES {
                p[i][l] = t[l] * s[l];
                pv[l] += p[i][l] * v[i][l];
            }
        }
        let kk: Lanes = std::array::from_fn(|l| -0.5 * t[l] * pv[l]);
        for i in 0..m {
            for l in 0..QL_LANES {
                p[i][l] += kk[l] * v[i][l];
            }
        }
        for i in 0..m {
            let (vi, wi) = (v[i], p[i]);
            let row = &mut tail[i * n + k + 1..i * n + n];
            for j in 0..m {
                let x = row[j];
                let y = std::array::from_fn(|l| x[l] - (vi[l] * p[j][l] + wi[l] * v[j][l]));
                row[j] = select(&on, y, x);
            }
        }
    }
    if n >= 2 {
        d[n - 2] = a[(n - 2) * n + n - 2];
        e[n - 2] = a[(n - 2) * n + n - 1];
    }
    d[n - 1] = a[n * n - 1];
    e[n - 1] = [0.0; QL_LANES];
}

/// [`form_q_transposed`] on the lanes of `lanes` in lockstep (a lane with `tau = 0` keeps its
/// rows by selection).
#[inline(always)]
fn form_q_transposed_lanes(n: usize, lanes: &mut QlLanes) {
    let (a, zt, tau) = (&lanes.a[..n * n], &mut lanes.zt[..n * n], &lanes.tau[..n]);
    for (i, z) in zt.iter_mut().enumerate() {
        *z = [if i % (n + 1) == 0 { 1.0 } else { 0.0 }; QL_LANES];
    }
    for k in (0..n.saturating_sub(2)).rev() {
        let t = tau[k];
        let on = mask(t.map(|x| x != 0.0));
        if on == [0; QL_LANES] {
            continue;
        }
        let v = &a[k * n + k + 1..k * n + n];
        for r in k + 1..n {
            let row = &mut zt[r * n + k + 1..r * n + n];
            let mut s = [0.0; QL_LANES];
            for j in 0..row.len() {
                for l in 0..QL_LANES {
                    s[l] += row[j][l] * v[j][l];
                }
            }
            let s: Lanes = std::array::from_fn(|l| t[l] * s[l]);
            for j in 0..row.len() {
                let x = row[j];
                row[j] = select(&on, std::array::from_fn(|l| x[l] - s[l] * v[j][l]), x);
            }
        }
    }
}

/// Per lane all ones or all zeros: the lanes that take a step.
type Mask = [u64; QL_LANES];

/// The [`Mask`] of the lanes where `on`.
#[inline(always)]
fn mask(on: [bool; QL_LANES]) -> Mask {
    on.map(|x| u64::from(x).wrapping_neg())
}

/// Picks `x[l]` where `on[l]` is all ones, else `y[l]` (bitwise, so no branch per lane).
#[inline(always)]
fn select(on: &Mask, x: Lanes, y: Lanes) -> Lanes {
    std::array::from_fn(|l| f64::from_bits((x[l].to_bits() & on[l]) | (y[l].to_bits() & !on[l])))
}

/// [`ql`] on the live lanes of `lanes` in lockstep. Each lane keeps its own block `l..=m`, shift
/// and iteration count; every rotation step runs over the union of the lanes' blocks, and a lane
/// outside its block keeps its values (selection, not arithmetic). Returns per lane whether it
/// converged within `max_iterations`.
#[inline(always)]
fn ql_lanes(
    n: usize,
    lanes: &mut QlLanes,
    live: [bool; QL_LANES],
    want_vectors: bool,
    max_iterations: usize,
) -> [bool; QL_LANES] {
    let (d, e, zt) = (&mut lanes.d[..n], &mut lanes.e[..n], &mut lanes.zt[..n * n]);
    let mut tol = [0.0; QL_LANES];
    for l in 0..QL_LANES {
        let mut norm = 0.0f64;
        for i in 0..n {
            norm = norm.max(d[i][l].abs() + e[i][l].abs());
        }
        tol[l] = f64::EPSILON * norm;
    }
    let mut first = [0usize; QL_LANES];
    let mut shift = [0.0; QL_LANES];
    let mut iterations = [0usize; QL_LANES];
    let mut done = live.map(|x| !x);
    let mut converged = [true; QL_LANES];
    loop {
        let mut last = [0usize; QL_LANES];
        let mut active = [false; QL_LANES];
        for l in 0..QL_LANES {
            while !done[l] {
                let f = first[l];
                let mut m = f;
                while m + 1 < n && e[m][l].abs() > tol[l] {
                    m += 1;
                }
                if m > f {
                    last[l] = m;
                    break;
                }
                if shift[l] != 0.0 {
                    d[f][l] += shift[l];
                }
                e[f][l] = 0.0;
                first[l] += 1;
                done[l] = first[l] == n;
            }
            if done[l] {
                continue;
            }
            iterations[l] += 1;
            if iterations[l] > max_iterations {
                done[l] = true;
                converged[l] = false;
                continue;
            }
            active[l] = true;
        }
        if active == [false; QL_LANES] {
            return converged;
        }
        // Per lane: the shift and the start of the sweep.
        let mut p = [0.0; QL_LANES];
        let mut el1 = [0.0; QL_LANES];
        let mut dl1 = [1.0; QL_LANES];
        let (mut lo, mut hi) = (n, 0);
        for l in 0..QL_LANES {
            if !active[l] {
                continue;
            }
            let (f, m) = (first[l], last[l]);
            let g = d[f][l];
            let q = (d[f + 1][l] - g) / (2.0 * e[f][l]);
            let mut r = (q * q + 1.0).sqrt();
            if q < 0.0 {
                r = -r;
            }
            d[f][l] = e[f][l] / (q + r);
            d[f + 1][l] = e[f][l] * (q + r);
            dl1[l] = d[f + 1][l];
            let h = g - d[f][l];
            for di in d[f + 2..].iter_mut() {
                di[l] -= h;
            }
            shift[l] += h;
            p[l] = d[m][l];
            el1[l] = e[f + 1][l];
            lo = lo.min(f);
            hi = hi.max(m);
        }
        let (mut c, mut c2, mut c3) = ([1.0; QL_LANES], [1.0; QL_LANES], [1.0; QL_LANES]);
        let (mut s, mut s2) = ([0.0; QL_LANES], [0.0; QL_LANES]);
        for i in (lo..hi).rev() {
            let on = mask(std::array::from_fn(|l| {
                active[l] && first[l] <= i && i < last[l]
            }));
            let (ei, di) = (e[i], d[i]);
            let mut r = [0.0; QL_LANES];
            let (mut g, mut h) = ([0.0; QL_LANES], [0.0; QL_LANES]);
            for l in 0..QL_LANES {
                g[l] = c[l] * ei[l];
                h[l] = c[l] * p[l];
                r[l] = (p[l] * p[l] + ei[l] * ei[l]).sqrt();
            }
            let (mut cn, mut sn, mut e1) = ([0.0; QL_LANES], [0.0; QL_LANES], [0.0; QL_LANES]);
            let (mut pn, mut d1) = ([0.0; QL_LANES], [0.0; QL_LANES]);
            for l in 0..QL_LANES {
                e1[l] = s[l] * r[l];
                sn[l] = ei[l] / r[l];
                cn[l] = p[l] / r[l];
                pn[l] = cn[l] * di[l] - sn[l] * g[l];
                d1[l] = h[l] + sn[l] * (cn[l] * g[l] + sn[l] * di[l]);
            }
            // Every lane rotating (the common case) needs no selection.
            let all = on == [u64::MAX; QL_LANES];
            if all {
                (e[i + 1], d[i + 1]) = (e1, d1);
                (c3, c2, s2) = (c2, c, s);
                (c, s, p) = (cn, sn, pn);
            } else {
                e[i + 1] = select(&on, e1, e[i + 1]);
                d[i + 1] = select(&on, d1, d[i + 1]);
                c3 = select(&on, c2, c3);
                c2 = select(&on, c, c2);
                s2 = select(&on, s, s2);
                c = select(&on, cn, c);
                s = select(&on, sn, s);
                p = select(&on, pn, p);
            }
            if want_vectors {
                let (lo_rows, hi_rows) = zt.split_at_mut((i + 1) * n);
                let (zi, zi1) = (&mut lo_rows[i * n..i * n + n], &mut hi_rows[..n]);
                let rotate = |x: Lanes, y: Lanes| -> (Lanes, Lanes) {
                    let u = std::array::from_fn(|l| c[l] * x[l] - s[l] * y[l]);
                    let w = std::array::from_fn(|l| s[l] * x[l] + c[l] * y[l]);
                    (u, w)
                };
                if all {
                    for (x, y) in zi.iter_mut().zip(zi1.iter_mut()) {
                        (*x, *y) = rotate(*x, *y);
                    }
                } else {
                    for (x, y) in zi.iter_mut().zip(zi1.iter_mut()) {
                        let (u, w) = rotate(*x, *y);
                        (*x, *y) = (select(&on, u, *x), select(&on, w, *y));
                    }
                }
            }
        }
        for l in 0..QL_LANES {
            if active[l] {
                let f = first[l];
                let q = -s[l] * s2[l] * c3[l] * el1[l] * e[f][l] / dl1[l];
                e[f][l] = s[l] * q;
                d[f][l] = c[l] * q;
            }
        }
    }
}
