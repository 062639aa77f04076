//! Checkers shared by the test files: norms that neither overflow nor underflow, the
//! decomposition checks of DESIGN §1 (reconstruction, orthogonality, order, sign gauge), central
//! finite differences, and a sign-invariant eigen-loss with its cotangents.
//!
//! Everything takes plain slices of row-major `n×n` matrices and f64 values, so the CPU and GPU
//! tests (f32 results widened to f64) can share it. Failures print actual, expected, difference
//! and tolerance.
#![allow(dead_code)] // each test file uses a different subset

/// Unit roundoff of f64.
pub const EPS: f64 = f64::EPSILON;

/// Largest absolute value of a slice (0 for an empty slice; NaN entries are skipped).
pub fn max_abs(x: &[f64]) -> f64 {
    x.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Frobenius (Euclidean) norm, computed with scaling so that entries near 1e±300 neither
/// overflow nor underflow when squared. NaN if any entry is NaN.
pub fn frobenius(x: &[f64]) -> f64 {
    if x.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = max_abs(x);
    if m == 0.0 || !m.is_finite() {
        return m;
    }
    x.iter().map(|v| (v / m) * (v / m)).sum::<f64>().sqrt() * m
}

/// Inner product `⟨x, y⟩ = Σ x_i y_i`.
pub fn dot(x: &[f64], y: &[f64]) -> f64 {
    assert_eq!(x.len(), y.len(), "dot of slices of different lengths");
    x.iter().zip(y).map(|(a, b)| a * b).sum()
}

/// `x − y` elementwise.
pub fn sub(x: &[f64], y: &[f64]) -> Vec<f64> {
    assert_eq!(
        x.len(),
        y.len(),
        "difference of slices of different lengths"
    );
    x.iter().zip(y).map(|(a, b)| a - b).collect()
}

/// `x + t·y` elementwise.
pub fn axpy(x: &[f64], t: f64, y: &[f64]) -> Vec<f64> {
    assert_eq!(x.len(), y.len(), "axpy of slices of different lengths");
    x.iter().zip(y).map(|(a, b)| a + t * b).collect()
}

/// `s·x` elementwise.
pub fn scaled(x: &[f64], s: f64) -> Vec<f64> {
    x.iter().map(|v| s * v).collect()
}

/// The `n×n` product `A·B` (row-major).
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// The transpose of an `n×n` matrix.
pub fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    let mut t = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            t[j * n + i] = a[i * n + j];
        }
    }
    t
}

/// `(A + Aᵀ)/2`.
pub fn symmetrize(a: &[f64], n: usize) -> Vec<f64> {
    let mut s = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            s[i * n + j] = 0.5 * (a[i * n + j] + a[j * n + i]);
        }
    }
    s
}

/// The `n×n` identity.
pub fn identity(n: usize) -> Vec<f64> {
    let mut e = vec![0.0; n * n];
    for i in 0..n {
        e[i * n + i] = 1.0;
    }
    e
}

/// `V diag(λ) Vᵀ`.
pub fn compose(values: &[f64], vectors: &[f64], n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n)
                .map(|k| vectors[i * n + k] * values[k] * vectors[j * n + k])
                .sum();
        }
    }
    a
}

/// Column `j` of an `n×n` matrix.
pub fn column(m: &[f64], n: usize, j: usize) -> Vec<f64> {
    (0..n).map(|i| m[i * n + j]).collect()
}

/// The quadratic form `xᵀ G y` for an `n×n` `G`.
pub fn bilinear(x: &[f64], g: &[f64], y: &[f64], n: usize) -> f64 {
    (0..n)
        .map(|i| x[i] * (0..n).map(|k| g[i * n + k] * y[k]).sum::<f64>())
        .sum()
}

/// Relative reconstruction residual `‖A V − V Λ‖_F / ‖A‖_F` of one matrix (`A` symmetric as
/// stored); the absolute residual when `A = 0`. Computed on `A / max|A|`, so entries near
/// 1e±300 neither overflow nor underflow.
pub fn reconstruction_error(a: &[f64], values: &[f64], vectors: &[f64], n: usize) -> f64 {
    let s = max_abs(a);
    let s = if s > 0.0 { s } else { 1.0 };
    let a: Vec<f64> = a.iter().map(|x| x / s).collect();
    let mut r = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let av: f64 = (0..n).map(|k| a[i * n + k] * vectors[k * n + j]).sum();
            r[i * n + j] = av - vectors[i * n + j] * (values[j] / s);
        }
    }
    let na = frobenius(&a);
    let nr = frobenius(&r);
    if na > 0.0 {
        nr / na
    } else {
        nr
    }
}

/// Orthogonality defect `‖VᵀV − I‖_F` of one `n×n` matrix.
pub fn orthogonality_error(vectors: &[f64], n: usize) -> f64 {
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let g: f64 = (0..n)
                .map(|k| vectors[k * n + i] * vectors[k * n + j])
                .sum();
            d[i * n + j] = g - if i == j { 1.0 } else { 0.0 };
        }
    }
    frobenius(&d)
}

/// True when the values are non-decreasing (and none is NaN).
pub fn is_ascending(values: &[f64]) -> bool {
    values.iter().all(|v| !v.is_nan()) && values.windows(2).all(|w| w[0] <= w[1])
}

/// The first column (if any) whose component of largest magnitude (the first within
/// [`eigrad::GAUGE_TIE`] of it) is not positive, violating the sign gauge of DESIGN §1.
pub fn sign_gauge_violation(vectors: &[f64], n: usize) -> Option<usize> {
    (0..n).find(|&j| {
        let col: Vec<f64> = (0..n).map(|i| vectors[i * n + j]).collect();
        let top = col.iter().fold(0f64, |m, x| m.max(x.abs()));
        let first = col
            .iter()
            .find(|x| x.abs() >= top * (1.0 - eigrad::GAUGE_TIE));
        first.is_none_or(|&x| x.is_nan() || x <= 0.0)
    })
}

/// Panics with actual, expected, difference and tolerance unless `|actual − expected| ≤ tol`.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64, tol: f64, what: &str) {
    let diff = (actual - expected).abs();
    assert!(
        diff <= tol,
        "{what}: actual {actual:e}, expected {expected:e}, difference {diff:e}, tolerance {tol:e}"
    );
}

/// Panics with actual, tolerance and context unless `value ≤ tol` (and not NaN).
#[track_caller]
pub fn assert_small(value: f64, tol: f64, what: &str) {
    assert!(
        value <= tol,
        "{what}: actual {value:e}, expected 0, difference {value:e}, tolerance {tol:e}"
    );
}

/// Panics on the first index where `|actual_i − expected_i| > tol`.
#[track_caller]
pub fn assert_all_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let diff = (a - e).abs();
        assert!(
            diff <= tol,
            "{what}[{i}]: actual {a:e}, expected {e:e}, difference {diff:e}, tolerance {tol:e}"
        );
    }
}

/// Panics unless the two slices are bitwise equal (NaN payloads included).
#[track_caller]
pub fn assert_bitwise_eq(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            a.to_bits() == e.to_bits(),
            "{what}[{i}]: actual {a:e}, expected {e:e} (bitwise), difference {:e}",
            a - e
        );
    }
}

/// Checks one decomposition against DESIGN §1: `‖AV − VΛ‖/‖A‖ ≤ tol`, `‖VᵀV − I‖ ≤ tol`,
/// ascending eigenvalues and the sign gauge. `a` is the symmetric matrix actually decomposed.
#[track_caller]
pub fn assert_valid_decomposition(
    a: &[f64],
    values: &[f64],
    vectors: &[f64],
    n: usize,
    tol: f64,
    what: &str,
) {
    assert_small(
        reconstruction_error(a, values, vectors, n),
        tol,
        &format!("{what}: reconstruction ‖AV−VΛ‖/‖A‖"),
    );
    assert_small(
        orthogonality_error(vectors, n),
        tol,
        &format!("{what}: orthogonality ‖VᵀV−I‖"),
    );
    assert!(
        is_ascending(values),
        "{what}: eigenvalues not ascending: {values:?}"
    );
    if let Some(j) = sign_gauge_violation(vectors, n) {
        panic!(
            "{what}: eigenvector {j} violates the sign gauge: {:?}",
            column(vectors, n, j)
        );
    }
}

/// Second-order central difference `(f(h) − f(−h)) / 2h`.
pub fn central_difference(f: impl Fn(f64) -> f64, h: f64) -> f64 {
    (f(h) - f(-h)) / (2.0 * h)
}

/// Fourth-order central difference `(−f(2h) + 8f(h) − 8f(−h) + f(−2h)) / 12h` (truncation error
/// `h⁴ f⁽⁵⁾/30`).
pub fn central_difference4(f: impl Fn(f64) -> f64, h: f64) -> f64 {
    (-f(2.0 * h) + 8.0 * f(h) - 8.0 * f(-h) + f(-2.0 * h)) / (12.0 * h)
}

/// The sign-invariant eigen-loss `L = Σ_i w_i λ_i + Σ_j c_j v_jᵀ G v_j` (`v_j` column `j` of `V`).
pub fn eigen_loss(
    values: &[f64],
    vectors: &[f64],
    n: usize,
    w: &[f64],
    c: &[f64],
    g: &[f64],
) -> f64 {
    let mut l = dot(w, values);
    for j in 0..n {
        let v = column(vectors, n, j);
        l += c[j] * bilinear(&v, g, &v, n);
    }
    l
}

/// The cotangents of [`eigen_loss`]: `λ̄ = w` and `V̄_j = c_j (G + Gᵀ) v_j`.
pub fn eigen_loss_cotangents(
    vectors: &[f64],
    n: usize,
    w: &[f64],
    c: &[f64],
    g: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let mut gv = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            let s: f64 = (0..n)
                .map(|k| (g[i * n + k] + g[k * n + i]) * vectors[k * n + j])
                .sum();
            gv[i * n + j] = c[j] * s;
        }
    }
    (w.to_vec(), gv)
}

/// An upper bound of the magnitudes summed in [`eigen_loss`], `Σ|w_i λ_i| + Σ|c_j|·‖G‖_F`, which
/// sets its rounding error. Missing weights (empty slices) count as zero.
pub fn eigen_loss_magnitude(values: &[f64], w: &[f64], c: &[f64], g: &[f64]) -> f64 {
    let lw: f64 = w.iter().zip(values).map(|(a, b)| (a * b).abs()).sum();
    let lc: f64 = c.iter().map(|x| x.abs()).sum();
    lw + lc * frobenius(g)
}

/// `diag(d)` as a row-major matrix.
pub fn diagonal(d: &[f64]) -> Vec<f64> {
    let n = d.len();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        a[i * n + i] = d[i];
    }
    a
}
