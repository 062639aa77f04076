//! Reverse and forward rules for one matrix, in f64, writing into caller-owned buffers.
//!
//! With `X = VᵀV̄` and `F_ij = policy(λ_j − λ_i)` (antisymmetric, `F_ii = 0`):
//! `Ā = V (diag(λ̄) + F∘skew(X)) Vᵀ`, which is exactly symmetric in exact arithmetic and is
//! symmetrised on output; the forward rule is `P = VᵀȦV`, `λ̇ = diag(P)`, `V̇ = V (F∘P)`.

use crate::Degeneracy;

/// `out = V · M · Vᵀ`, symmetrised, with `t` as scratch (all `n×n`, row-major).
fn congruence(n: usize, v: &[f64], m: &[f64], t: &mut [f64], out: &mut [f64]) {
    // T = V M
    for i in 0..n {
        let trow = &mut t[i * n..i * n + n];
        trow.fill(0.0);
        for l in 0..n {
            let vil = v[i * n + l];
            if vil == 0.0 {
                continue;
            }
            let mrow = &m[l * n..l * n + n];
            for k in 0..n {
                trow[k] += vil * mrow[k];
            }
        }
    }
    // out = T Vᵀ (upper triangle), mirrored: exactly symmetric.
    for i in 0..n {
        for j in i..n {
            let trow = &t[i * n..i * n + n];
            let vrow = &v[j * n..j * n + n];
            let mut s = 0.0;
            for k in 0..n {
                s += trow[k] * vrow[k];
            }
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
}

/// `x = Vᵀ · G` (`n×n`).
fn vt_times(n: usize, v: &[f64], g: &[f64], x: &mut [f64]) {
    x.fill(0.0);
    for k in 0..n {
        let vrow = &v[k * n..k * n + n];
        let grow = &g[k * n..k * n + n];
        for i in 0..n {
            let vki = vrow[i];
            if vki == 0.0 {
                continue;
            }
            let xrow = &mut x[i * n..i * n + n];
            for j in 0..n {
                xrow[j] += vki * grow[j];
            }
        }
    }
}

/// The reverse rule for one matrix. `m` and `t` are `n×n` scratch.
pub(crate) fn vjp_one(
    n: usize,
    lambda: &[f64],
    v: &[f64],
    grad_values: Option<&[f64]>,
    grad_vectors: Option<&[f64]>,
    policy: Degeneracy,
    threshold: f64,
    m: &mut [f64],
    t: &mut [f64],
    out: &mut [f64],
) {
    match grad_vectors {
        Some(gv) => {
            vt_times(n, v, gv, m);
            for i in 0..n {
                for j in i + 1..n {
                    let skew = 0.5 * (m[i * n + j] - m[j * n + i]);
                    let f = policy.factor(lambda[j] - lambda[i], threshold);
                    // F∘skew(X) is symmetric because both factors are antisymmetric.
                    let x = f * skew;
                    m[i * n + j] = x;
                    m[j * n + i] = x;
                }
            }
        }
        None => m.fill(0.0),
    }
    for i in 0..n {
        m[i * n + i] = grad_values.map_or(0.0, |g| g[i]);
    }
    congruence(n, v, m, t, out);
}

/// The forward rule for one matrix: writes `λ̇` and `V̇`. `w` and `p` are `n×n` scratch.
pub(crate) fn jvp_one(
    n: usize,
    lambda: &[f64],
    v: &[f64],
    tangent: &[f64],
    policy: Degeneracy,
    threshold: f64,
    w: &mut [f64],
    p: &mut [f64],
    values_dot: &mut [f64],
    vectors_dot: &mut [f64],
) {
    // W = sym(Ȧ) V
    for i in 0..n {
        for j in 0..n {
            let mut s = 0.0;
            for k in 0..n {
                let dik = 0.5 * (tangent[i * n + k] + tangent[k * n + i]);
                s += dik * v[k * n + j];
            }
            w[i * n + j] = s;
        }
    }
    // P = Vᵀ W, then λ̇ = diag(P) and G = F∘P (into w).
    vt_times(n, v, w, p);
    for i in 0..n {
        values_dot[i] = p[i * n + i];
        for j in 0..n {
            w[i * n + j] = if i == j {
                0.0
            } else {
                policy.factor(lambda[j] - lambda[i], threshold) * p[i * n + j]
            };
        }
    }
    // V̇ = V G
    for k in 0..n {
        for j in 0..n {
            let mut s = 0.0;
            for i in 0..n {
                s += v[k * n + i] * w[i * n + j];
            }
            vectors_dot[k * n + j] = s;
        }
    }
}

/// The gauge diagnostic for one matrix: the largest `|skew(VᵀV̄)_ij|` over pairs `i ≠ j` whose
/// eigenvalues differ by at most `threshold` (0 when there is no such pair).
pub(crate) fn gauge_one(
    n: usize,
    lambda: &[f64],
    v: &[f64],
    grad_vectors: &[f64],
    threshold: f64,
    x: &mut [f64],
) -> f64 {
    vt_times(n, v, grad_vectors, x);
    let mut worst = 0.0f64;
    for i in 0..n {
        for j in i + 1..n {
            if (lambda[j] - lambda[i]).abs() <= threshold {
                worst = worst.max((0.5 * (x[i * n + j] - x[j * n + i])).abs());
            }
        }
    }
    worst
}

/// `out = V diag(d) Vᵀ` (all `n×n` row-major, `d` of length `n`), computed on the upper triangle
/// and mirrored so it is exactly symmetric; terms with `d_k = 0` are skipped (projectors).
pub(crate) fn congruence_diag(n: usize, v: &[f64], d: &[f64], out: &mut [f64]) {
    for i in 0..n {
        let vi = &v[i * n..i * n + n];
        for j in i..n {
            let vj = &v[j * n..j * n + n];
            let mut s = 0.0;
            for k in 0..n {
                if d[k] != 0.0 {
                    s += vi[k] * d[k] * vj[k];
                }
            }
            out[i * n + j] = s;
            out[j * n + i] = s;
        }
    }
}

/// The Daleckii–Krein rule for one matrix: `out = V (L ∘ sym(Vᵀ G V)) Vᵀ`, exactly symmetric,
/// where `l(i, j)` (called for `i ≤ j` only; `L` is symmetric) gives `L_ij`. This is the VJP
/// (and, `L` being symmetric, also the JVP) of every matrix function `V diag(f(λ)) Vᵀ`, with
/// `L_ij` the divided difference `f[λ_i, λ_j]`; spectral functions and projectors use it.
/// `m` and `t` are `n×n` scratch.
pub(crate) fn daleckii_krein_one(
    n: usize,
    v: &[f64],
    grad: &[f64],
    l: impl Fn(usize, usize) -> f64,
    m: &mut [f64],
    t: &mut [f64],
    out: &mut [f64],
) {
    // m = Vᵀ G, then t = m V = Vᵀ G V.
    vt_times(n, v, grad, m);
    for i in 0..n {
        let trow = &mut t[i * n..i * n + n];
        trow.fill(0.0);
        for k in 0..n {
            let mik = m[i * n + k];
            if mik == 0.0 {
                continue;
            }
            let vrow = &v[k * n..k * n + n];
            for j in 0..n {
                trow[j] += mik * vrow[j];
            }
        }
    }
    // t ← L ∘ sym(t), symmetric.
    for i in 0..n {
        for j in i..n {
            let x = l(i, j) * (0.5 * (t[i * n + j] + t[j * n + i]));
            t[i * n + j] = x;
            t[j * n + i] = x;
        }
    }
    congruence(n, v, t, m, out);
}
