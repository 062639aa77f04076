// Scalar spectral functions and their cancellation-free divided differences, in f32.
// Function codes (FUNC): 0 sqrt, 1 log, 2 exp, 3 inv, 4 pow (exponent params.tol),
// 5 projector onto the params.extra lowest eigenvectors, 6 onto the params.extra highest.
// Projectors are index functions: f_i = 1 for the selected eigenvalues, else 0, and their
// divided difference is (f_i − f_j)/(λ_i − λ_j), non-zero only across the cut.

override FUNC: u32;

// True when the function needs positive eigenvalues (sqrt, log, inv, pow).
fn needs_positive() -> bool {
    return FUNC == 0u || FUNC == 1u || FUNC == 3u || FUNC == 4u;
}

fn selected(i: u32) -> bool {
    if (FUNC == 5u) {
        return i < params.extra;
    }
    return i + params.extra >= N;
}

// f(λ_i).
fn spectral_value(x: f32, i: u32) -> f32 {
    switch FUNC {
        case 0u: { return sqrt(x); }
        case 1u: { return log(x); }
        case 2u: { return exp(x); }
        case 3u: { return 1.0 / x; }
        case 4u: { return pow(x, params.tol); }
        default: { return select(0.0, 1.0, selected(i)); }
    }
}

// atanh(z)/z = Σ z^{2k}/(2k+1), for |z| ≤ 1/2 (12 terms: error below 1e-8).
fn atanh_ratio(z: f32) -> f32 {
    let z2 = z * z;
    var s = 1.0 / 25.0;
    for (var k = 11; k >= 0; k--) {
        s = 1.0 / f32(2 * k + 1) + z2 * s;
    }
    return s;
}

// (e^y − 1)/y = Σ y^k/(k+1)!, by series for |y| < 1/2 (error below 1e-9).
fn expm1_ratio(y: f32) -> f32 {
    if (abs(y) < 0.5) {
        var s = 1.0;
        for (var k = 9; k >= 2; k--) {
            s = 1.0 + y / f32(k) * s;
        }
        return s;
    }
    return (exp(y) - 1.0) / y;
}

// sinh(d)/d, by series for |d| < 1/2.
fn sinhc(d: f32) -> f32 {
    if (abs(d) < 0.5) {
        let d2 = d * d;
        return 1.0 + d2 / 6.0 * (1.0 + d2 / 20.0 * (1.0 + d2 / 42.0 * (1.0 + d2 / 72.0)));
    }
    return sinh(d) / d;
}

// The divided difference (f(a) − f(b))/(a − b) of eigenvalues a = λ_i, b = λ_j, equal to f′(a)
// when a = b, free of cancellation near ties (a, b > 0 where the function needs it). For
// projectors: 1/(λ_s − λ_u) across the cut (s the kept index), under the degeneracy policy with
// threshold `thr` (for pairs tied across the cut), else 0.
fn divided_difference(a: f32, b: f32, i: u32, j: u32, thr: f32) -> f32 {
    switch FUNC {
        case 0u: {
            return 1.0 / (sqrt(a) + sqrt(b));
        }
        case 1u: {
            // log a − log b = 2 atanh(z), z = (a − b)/(a + b).
            let z = (a - b) / (a + b);
            if (abs(z) <= 0.5) {
                return 2.0 / (a + b) * atanh_ratio(z);
            }
            return (log(a) - log(b)) / (a - b);
        }
        case 2u: {
            // Less than 1 apart, e^{mean}·sinh(h)/h (no cancellation); further apart the
            // quotient itself as e^{max}·(1 − e^{−d})/d, where e^{mean} may underflow while
            // sinh(h) overflows (λ = −180 and 0: 0·inf).
            let d = abs(a - b);
            if (d < 1.0) {
                return exp(0.5 * (a + b)) * sinhc(0.5 * (a - b));
            }
            return exp(max(a, b)) * ((1.0 - exp(-d)) / d);
        }
        case 3u: {
            return -1.0 / (a * b);
        }
        case 4u: {
            let p = params.tol;
            let z = (a - b) / (a + b);
            if (abs(z) <= 0.5) {
                // a^p − b^p = b^p (e^{p·log(a/b)} − 1), log(a/b) = 2z·atanh(z)/z, a − b = 2zb/(1 − z).
                let s = atanh_ratio(z);
                let y = 2.0 * p * z * s;
                return pow(b, p - 1.0) * p * s * expm1_ratio(y) * (1.0 - z);
            }
            return (pow(a, p) - pow(b, p)) / (a - b);
        }
        default: {
            let si = selected(i);
            if (si == selected(j)) {
                return 0.0;
            }
            let gap = select(b - a, a - b, si);
            return degeneracy_factor(POLICY, gap, thr, params.tol, bitcast<f32>(params.inf_bits));
        }
    }
}
