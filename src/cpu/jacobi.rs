//! Cyclic Jacobi for symmetric matrices in f64, writing into caller-owned buffers.
//!
//! The same algorithm family as the GPU kernels (two-sided Jacobi rotations with the
//! Demmel–Veselić relative threshold, power-of-two prescaling, ascending sort and the sign gauge),
//! so that disagreements between the two paths are informative.
//!
//! A sweep is a chain of dependent rotations whose parameters cost two square roots and two
//! divisions each, so one matrix at a time is latency-bound. [`eigh_chunk`] therefore solves up
//! to [`LANES`] matrices in lockstep, lane by lane (structure of arrays): the lanes' chains
//! overlap and the updates vectorise. Each lane does exactly the arithmetic it would do alone
//! (a lane that skips a pair applies the identity, which is exact), so results do not depend on
//! which matrices share a chunk.

use crate::{Status, Symmetry};

/// Matrices solved together in lockstep.
pub const LANES: usize = 4;

type Lanes = [f64; LANES];

/// Scratch space for matrices of size `n`; reused across the matrices a thread handles so the
/// hot loop allocates nothing.
#[derive(Clone, Debug)]
pub struct Workspace {
    n: usize,
    /// The working copies of up to [`LANES`] matrices (row-major, lane-interleaved).
    a: Vec<Lanes>,
    /// Their accumulated rotations, `vt[j*n + k][l]` = component k of (unsorted) eigenvector j
    /// of lane l.
    vt: Vec<Lanes>,
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
            a: vec![[0.0; LANES]; n * n],
            vt: vec![[0.0; LANES]; n * n],
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

/// Eigendecomposition of one matrix: [`eigh_chunk`] with a chunk of one.
///
/// `load(i)` gives element `i` of the stored `n×n` matrix widened to f64; results go to `values`
/// (ascending) and, when given, `vectors` (row-major, columns are eigenvectors, sign gauge
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
    let mut status = [Status::Ok];
    eigh_chunk(
        load,
        1,
        n,
        symmetry,
        max_sweeps,
        rel_threshold,
        ws,
        values,
        vectors,
        &mut status,
    );
    status[0]
}

/// Eigendecomposition of `m ≤ LANES` consecutive matrices, solved in lockstep.
///
/// `load(i)` gives element `i` of the chunk (`m` stored `n×n` matrices) widened to f64; results
/// go to `values` (`m·n`, ascending per matrix), `vectors` when given (`m·n²`, columns are
/// eigenvectors, sign gauge applied) and `status` (`m`). A matrix whose status is not ok gets NaN
/// outputs; the others are unaffected.
pub fn eigh_chunk(
    load: impl Fn(usize) -> f64,
    m: usize,
    n: usize,
    symmetry: Symmetry,
    max_sweeps: u32,
    rel_threshold: f64,
    ws: &mut Workspace,
    values: &mut [f64],
    mut vectors: Option<&mut [f64]>,
    status: &mut [Status],
) {
    debug_assert!(m <= LANES && ws.n == n);
    let nn = n * n;
    let want_vectors = vectors.is_some();
    // Load, symmetrise and prescale each lane by an exact power of two so its largest entry
    // lies in [0.5, 1): no squares over- or underflow. Unused and bad lanes hold zeros (which
    // never rotate).
    let mut exps = [0i32; LANES];
    let mut live = [false; LANES];
    for l in 0..LANES {
        let e = if l < m {
            load_lane(|i| load(l * nn + i), n, symmetry, &mut ws.a, l)
        } else {
            None
        };
        match e {
            Some(e) => {
                exps[l] = e;
                live[l] = true;
            }
            None => ws.a.iter_mut().for_each(|x| x[l] = 0.0),
        }
        if l < m {
            status[l] = if e.is_some() {
                Status::Ok
            } else {
                Status::NonFiniteInput
            };
        }
    }
    if want_vectors {
        for (i, x) in ws.vt.iter_mut().enumerate() {
            *x = [if i % (n + 1) == 0 { 1.0 } else { 0.0 }; LANES];
        }
    }
    // Entries below this absolute floor (relative to the largest entry, now ≈ 1) are negligible
    // whatever the diagonal; it stops endless rotations of underflowing residue.
    let floor = f64::EPSILON * f64::EPSILON;
    let (thr2, floor2) = (rel_threshold * rel_threshold, floor * floor);
    let (a, vt) = (&mut ws.a, &mut ws.vt);
    // One specialised copy of the sweeps per small n (the loops unroll), a general one above.
    macro_rules! specialised {
        ($($k:literal)*) => {
            match n {
                $($k => sweeps($k, a, vt, want_vectors, max_sweeps, thr2, floor2),)*
                _ => sweeps(n, a, vt, want_vectors, max_sweeps, thr2, floor2),
            }
        };
    }
    let converged = specialised!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
    for l in 0..m {
        let vals = &mut values[l * n..(l + 1) * n];
        let vecs = vectors.as_deref_mut().map(|v| &mut v[l * nn..(l + 1) * nn]);
        if live[l] && !converged[l] {
            status[l] = Status::NotConverged;
        }
        if status[l] != Status::Ok {
            vals.fill(f64::NAN);
            if let Some(v) = vecs {
                v.fill(f64::NAN);
            }
            continue;
        }
        // Ascending order; ties keep the index order (the GPU ranks the same way).
        let order = &mut ws.order;
        for (j, o) in order.iter_mut().enumerate() {
            *o = j;
        }
        order
            .sort_unstable_by(|&x, &y| a[x * n + x][l].total_cmp(&a[y * n + y][l]).then(x.cmp(&y)));
        let unscale = pow2(exps[l]);
        for (r, &j) in order.iter().enumerate() {
            vals[r] = a[j * n + j][l] * unscale;
        }
        if let Some(v) = vecs {
            for (r, &j) in order.iter().enumerate() {
                let sign = gauge_sign_by(n, |i| vt[j * n + i][l]);
                for i in 0..n {
                    v[i * n + r] = sign * vt[j * n + i][l];
                }
            }
        }
    }
}

/// Reads one symmetric matrix (symmetrised, or its lower triangle), handing each entry to
/// `put(index, x)` for both of its positions; returns the exponent `e` of an exact power-of-two
/// scale `2^-e` that brings the largest entry into [0.5, 1), or `None` for a non-finite entry.
/// The caller applies the scale to what `put` stored.
#[inline(always)]
pub(crate) fn load_symmetric(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    mut put: impl FnMut(usize, f64),
) -> Option<i32> {
    let mut max_abs = 0.0f64;
    let mut finite = true;
    for i in 0..n {
        for j in 0..=i {
            let x = match symmetry {
                Symmetry::Symmetrize if i != j => 0.5 * load(i * n + j) + 0.5 * load(j * n + i),
                _ => load(i * n + j),
            };
            finite &= x.is_finite();
            max_abs = max_abs.max(x.abs());
            put(i * n + j, x);
            put(j * n + i, x);
        }
    }
    finite.then(|| exponent(max_abs).clamp(-1000, 1000))
}

/// Loads one matrix into lane `l` of `a`, scaled as [`load_symmetric`] says; returns the
/// exponent to undo the scaling, or `None` for a non-finite entry.
fn load_lane(
    load: impl Fn(usize) -> f64,
    n: usize,
    symmetry: Symmetry,
    a: &mut [Lanes],
    l: usize,
) -> Option<i32> {
    let e = load_symmetric(load, n, symmetry, |k, x| a[k][l] = x)?;
    if e != 0 {
        let scale = pow2(-e);
        a[..n * n].iter_mut().for_each(|x| x[l] *= scale);
    }
    Some(e)
}

/// Cyclic-by-row Jacobi sweeps on the upper triangles of the lanes of `a` (row-major `n×n`,
/// largest entry ≈ 1), accumulating the rotations into the rows of `vt` when `want_vectors`.
/// The pair (p, q) of a lane is rotated only while `a_pq² > thr2·|a_pp·a_qq|` and
/// `a_pq² > floor2` (Demmel–Veselić, in squares: no square root per pair); a lane that skips a
/// pair applies the identity. Returns, per lane, whether a sweep performed no rotation within
/// `max_sweeps`. Always inlined, so a constant `n` specialises it.
#[inline(always)]
fn sweeps(
    n: usize,
    a: &mut [Lanes],
    vt: &mut [Lanes],
    want_vectors: bool,
    max_sweeps: u32,
    thr2: f64,
    floor2: f64,
) -> [bool; LANES] {
    let a = &mut a[..n * n];
    let vt = &mut vt[..n * n];
    let mut converged = [false; LANES];
    for _sweep in 0..max_sweeps {
        let mut rotated = [false; LANES];
        for p in 0..n {
            for q in p + 1..n {
                let (apq, app, aqq) = (a[p * n + q], a[p * n + p], a[q * n + q]);
                let mut on = [false; LANES];
                for l in 0..LANES {
                    let apq2 = apq[l] * apq[l];
                    on[l] = apq2 > floor2 && apq2 > thr2 * (app[l] * aqq[l]).abs();
                }
                if on == [false; LANES] {
                    continue;
                }
                // Every lane computes a rotation (branch-free, so the square roots and divisions
                // of the lanes run side by side); a lane that skips the pair takes the identity.
                let (mut t, mut c, mut s) = ([0.0; LANES], [1.0; LANES], [0.0; LANES]);
                for l in 0..LANES {
                    let (tl, cl, sl) = rotation(app[l], aqq[l], if on[l] { apq[l] } else { 1.0 });
                    t[l] = if on[l] { tl } else { 0.0 };
                    c[l] = if on[l] { cl } else { 1.0 };
                    s[l] = if on[l] { sl } else { 0.0 };
                }
                for l in 0..LANES {
                    rotated[l] |= on[l];
                }
                // A ← Jᵀ A J, on the upper triangle only: (k, p) and (k, q) for k < p, then
                // (p, k) and (k, q) for p < k < q, then (p, k) and (q, k) for k > q.
                let rotate = |x: &Lanes, y: &Lanes| -> (Lanes, Lanes) {
                    let (mut u, mut w) = ([0.0; LANES], [0.0; LANES]);
                    for l in 0..LANES {
                        u[l] = c[l] * x[l] - s[l] * y[l];
                        w[l] = s[l] * x[l] + c[l] * y[l];
                    }
                    (u, w)
                };
                for k in 0..p {
                    (a[k * n + p], a[k * n + q]) = rotate(&a[k * n + p], &a[k * n + q]);
                }
                for k in p + 1..q {
                    (a[p * n + k], a[k * n + q]) = rotate(&a[p * n + k], &a[k * n + q]);
                }
                for k in q + 1..n {
                    (a[p * n + k], a[q * n + k]) = rotate(&a[p * n + k], &a[q * n + k]);
                }
                for l in 0..LANES {
                    a[p * n + p][l] = app[l] - t[l] * apq[l];
                    a[q * n + q][l] = aqq[l] + t[l] * apq[l];
                    a[p * n + q][l] = if on[l] { 0.0 } else { apq[l] };
                }
                if want_vectors {
                    // V ← V J, stored transposed so the update runs over contiguous rows.
                    for k in 0..n {
                        (vt[p * n + k], vt[q * n + k]) = rotate(&vt[p * n + k], &vt[q * n + k]);
                    }
                }
            }
        }
        for l in 0..LANES {
            converged[l] |= !rotated[l];
        }
        if converged == [true; LANES] {
            break;
        }
    }
    converged
}

/// The sign gauge of DESIGN §1: +1 when the component of largest magnitude (the first of those
/// within [`GAUGE_TIE`](crate::GAUGE_TIE) of it) is positive, else −1.
#[inline]
pub fn gauge_sign(vector: &[f64]) -> f64 {
    gauge_sign_by(vector.len(), |i| vector[i])
}

/// [`gauge_sign`] of the vector whose component `i` is `get(i)`, `i < n`.
#[inline(always)]
pub(crate) fn gauge_sign_by(n: usize, get: impl Fn(usize) -> f64) -> f64 {
    let top = (0..n).fold(0.0f64, |m, i| m.max(get(i).abs()));
    let floor = top * (1.0 - crate::GAUGE_TIE);
    let first = (0..n).find(|&i| get(i).abs() >= floor).unwrap_or(0);
    if get(first) < 0.0 {
        -1.0
    } else {
        1.0
    }
}
