//! Cyclic Jacobi for one symmetric matrix in f64, writing into caller-owned buffers.
//!
//! The same algorithm family as the GPU kernels (two-sided Jacobi rotations with the
//! Demmel–Veselić relative threshold, power-of-two prescaling, ascending sort and the sign gauge),
//! so that disagreements between the two paths are informative.

use crate::{Status, Symmetry};

/// Scratch space for one matrix of size `n`; reused across the matrices a thread handles so the
/// hot loop allocates nothing.
#[derive(Clone, Debug)]
pub struct Workspace {
    n: usize,
    /// The working copy of A (full symmetric storage, row-major).
    a: Vec<f64>,
    /// The accumulated rotations, `v[j*n + k]` = component k of (unsorted) eigenvector j.
    vt: Vec<f64>,
    /// Sort permutation.
    order: Vec<usize>,
    /// A general `n×n` scratch matrix (used by the derivatives).
    pub(crate) m1: Vec<f64>,
    /// A second `n×n` scratch matrix (used by the derivatives).
    pub(crate) m2: Vec<f64>,
}

impl Workspace {
    /// Scratch space for matrices of size `n`.
    pub fn new(n: usize) -> Self {
        Workspace {
            n,
            a: vec![0.0; n * n],
            vt: vec![0.0; n * n],
            order: vec![0; n],
            m1: vec![0.0; n * n],
            m2: vec![0.0; n * n],
        }
    }
}

/// Power of two `2^k` as f64 for `k` in the normal range.
#[inline]
pub(crate) fn pow2(k: i32) -> f64 {
    f64::from_bits(((1023 + k) as u64) << 52)
}

/// The exponent `e` with `x = f·2^e`, `f ∈ [0.5, 1)`, for finite positive `x` (normal or not).
#[inline]
pub(crate) fn exponent(x: f64) -> i32 {
    if x == 0.0 {
        return 0;
    }
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32;
    if e == 0 {
        // Subnormal: scale up first.
        exponent(x * pow2(64)) - 64
    } else {
        e - 1022
    }
}

/// The rotation `(t, c, s)` that zeroes `a_pq` (Golub & Van Loan, sym.schur2), overflow-safe.
#[inline]
pub(crate) fn rotation(app: f64, aqq: f64, apq: f64) -> (f64, f64, f64) {
    let tau = (aqq - app) / (2.0 * apq);
    let t = if tau.abs() > 1e150 {
        0.5 / tau
    } else {
        tau.signum() / (tau.abs() + (1.0 + tau * tau).sqrt())
    };
    let c = 1.0 / (1.0 + t * t).sqrt();
    (t, c, t * c)
}

/// Eigendecomposition of one matrix.
///
/// `input` is the stored `n×n` matrix (any element type widened to f64 by `load`); results go to
/// `values` (ascending) and, when given, `vectors` (row-major, columns are eigenvectors, sign gauge
/// applied). On a status other than ok every output is NaN.
pub fn eigh_one(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    rel_threshold: f64,
    ws: &mut Workspace,
    values: &mut [f64],
    vectors: Option<&mut [f64]>,
) -> Status {
    debug_assert_eq!(ws.n, n);
    let want_vectors = vectors.is_some();
    // Load, symmetrise and find the largest magnitude (for exact power-of-two prescaling).
    let a = &mut ws.a;
    let mut max_abs = 0.0f64;
    let mut finite = true;
    for i in 0..n {
        for j in 0..=i {
            let x = match symmetry {
                Symmetry::Symmetrize => {
                    if i == j {
                        load(i * n + i)
                    } else {
                        0.5 * load(i * n + j) + 0.5 * load(j * n + i)
                    }
                }
                Symmetry::Lower => load(i * n + j),
            };
            finite &= x.is_finite();
            max_abs = max_abs.max(x.abs());
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    if !finite {
        values.fill(f64::NAN);
        if let Some(v) = vectors {
            v.fill(f64::NAN);
        }
        return Status::NonFiniteInput;
    }
    // Scale so the largest entry lies in [0.5, 1): exact, and no squares over- or underflow.
    let e = exponent(max_abs).clamp(-1000, 1000);
    let scale = pow2(-e);
    if e != 0 {
        a.iter_mut().for_each(|x| *x *= scale);
    }
    let vt = &mut ws.vt;
    if want_vectors {
        vt.fill(0.0);
        for j in 0..n {
            vt[j * n + j] = 1.0;
        }
    }
    // Entries below this absolute floor (relative to the largest entry, now ≈ 1) are negligible
    // whatever the diagonal; it stops endless rotations of underflowing residue.
    let floor = f64::EPSILON * f64::EPSILON;
    let mut converged = false;
    for _sweep in 0..max_sweeps {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                let app = a[p * n + p];
                let aqq = a[q * n + q];
                if apq.abs() <= (rel_threshold * (app.abs() * aqq.abs()).sqrt()).max(floor) {
                    continue;
                }
                rotated = true;
                let (t, c, s) = rotation(app, aqq, apq);
                // A ← Jᵀ A J on rows/columns p and q, keeping full symmetric storage.
                for k in 0..n {
                    if k == p || k == q {
                        continue;
                    }
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    let np = c * akp - s * akq;
                    let nq = s * akp + c * akq;
                    a[k * n + p] = np;
                    a[p * n + k] = np;
                    a[k * n + q] = nq;
                    a[q * n + k] = nq;
                }
                a[p * n + p] = app - t * apq;
                a[q * n + q] = aqq + t * apq;
                a[p * n + q] = 0.0;
                a[q * n + p] = 0.0;
                if want_vectors {
                    // V ← V J, stored transposed so the update runs over contiguous rows.
                    let (rp, rq) = vt.split_at_mut(q * n);
                    let rp = &mut rp[p * n..p * n + n];
                    let rq = &mut rq[..n];
                    for k in 0..n {
                        let vp = rp[k];
                        let vq = rq[k];
                        rp[k] = c * vp - s * vq;
                        rq[k] = s * vp + c * vq;
                    }
                }
            }
        }
        if !rotated {
            converged = true;
            break;
        }
    }
    if !converged {
        values.fill(f64::NAN);
        if let Some(v) = vectors {
            v.fill(f64::NAN);
        }
        return Status::NotConverged;
    }
    // Ascending order; ties keep the index order (the GPU ranks the same way).
    let order = &mut ws.order;
    for (j, o) in order.iter_mut().enumerate() {
        *o = j;
    }
    order.sort_unstable_by(|&x, &y| a[x * n + x].total_cmp(&a[y * n + y]).then(x.cmp(&y)));
    let unscale = pow2(e);
    for (r, &j) in order.iter().enumerate() {
        values[r] = a[j * n + j] * unscale;
    }
    if let Some(v) = vectors {
        for (r, &j) in order.iter().enumerate() {
            let row = &vt[j * n..j * n + n];
            let sign = gauge_sign(row);
            for i in 0..n {
                v[i * n + r] = sign * row[i];
            }
        }
    }
    Status::Ok
}

/// The sign gauge of DESIGN §1: +1 when the component of largest magnitude (the first on ties) is
/// positive, else −1.
#[inline]
pub fn gauge_sign(vector: &[f64]) -> f64 {
    let mut best = 0;
    let mut best_abs = -1.0;
    for (i, &x) in vector.iter().enumerate() {
        if x.abs() > best_abs {
            best_abs = x.abs();
            best = i;
        }
    }
    if vector[best] < 0.0 {
        -1.0
    } else {
        1.0
    }
}
