//! Stable objectives on the CPU (issue 5): spectral functions, projectors, extreme eigenvalues
//! and power iteration, with their VJPs, checked against f64 central finite differences of
//! gauge-invariant losses on random, repeated and 1e-9-clustered spectra, and their values
//! against independent identities.
//!
//! Finite differences: `ℓ′(A)[E]` is estimated by Richardson-extrapolated central differences,
//! `(4·D(h/2) − D(h))/3` with `D(h) = (ℓ(A + hE) − ℓ(A − hE))/2h`, `‖E‖_F = 1`. Its truncation
//! error is `O(h⁴·ℓ⁽⁵⁾)` and its rounding error about `eps·|ℓ|/h`. With `h = 1e-3·s` (`s` the
//! smallest distance from the spectrum to a singularity of the loss: the domain boundary 0 for
//! sqrt/log/inv/pow, the gap across the cut for projectors and extreme eigenvalues) both are
//! ≲ 1e-11 relative to the loss scale (the worst seen is 2.3e-11), and [`FD_REL_TOL`] = 1e-9 leaves
//! a margin of 40 while still catching a cancelling divided difference `(f(a) − f(b))/(a − b)`
//! inside a 1e-9 cluster (relative error up to `eps/1e-9 ≈ 2e-7`; it shows as 3e-8 here), a
//! missing factor or a wrong sign (O(1)).

use eigrad::cpu;
use eigrad::samples::{clustered_spectrum, random_symmetric, with_spectrum, Rng};
use eigrad::spectral::{Extreme, PowerIterationOptions, Projector, SpectralFn};
use eigrad::{Degeneracy, EighOptions, Status, Symmetry};

const EPS: f64 = f64::EPSILON;

/// Relative tolerance of every finite-difference comparison (see the module docs).
const FD_REL_TOL: f64 = 1e-9;

// ---------------------------------------------------------------------------------------------
// Helpers

fn matmul(n: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    c
}

fn frob(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn identity(n: usize) -> Vec<f64> {
    let mut m = vec![0.0; n * n];
    for i in 0..n {
        m[i * n + i] = 1.0;
    }
    m
}

fn transpose(n: usize, a: &[f64]) -> Vec<f64> {
    let mut t = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            t[j * n + i] = a[i * n + j];
        }
    }
    t
}

fn sym(n: usize, a: &[f64]) -> Vec<f64> {
    let t = transpose(n, a);
    a.iter().zip(&t).map(|(x, y)| 0.5 * (x + y)).collect()
}

/// A random `n×n` matrix with `‖E‖_F = 1`, not symmetric (the forward symmetrises, so the
/// directional derivative along `E` is the one along `sym(E)`, which exercises that too).
fn unit_direction(rng: &mut Rng, n: usize) -> Vec<f64> {
    let e: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    let s = frob(&e);
    e.into_iter().map(|x| x / s).collect()
}

fn is_symmetric(n: usize, a: &[f64]) -> bool {
    (0..n).all(|i| (0..n).all(|j| a[i * n + j] == a[j * n + i]))
}

/// Richardson-extrapolated central differences of a batched loss along each direction.
/// `loss` maps a batch of `n×n` matrices to one loss value per matrix.
fn fd_directional(
    n: usize,
    a: &[f64],
    dirs: &[Vec<f64>],
    h: f64,
    loss: impl Fn(&[f64]) -> Vec<f64>,
) -> Vec<f64> {
    let nn = n * n;
    let steps = [h, -h, 0.5 * h, -0.5 * h];
    let mut batch = Vec::with_capacity(dirs.len() * steps.len() * nn);
    for e in dirs {
        for &s in &steps {
            batch.extend(a.iter().zip(e).map(|(x, y)| x + s * y));
        }
    }
    let l = loss(&batch);
    assert_eq!(l.len(), dirs.len() * steps.len());
    l.chunks(4)
        .map(|q| {
            let d_h = (q[0] - q[1]) / (2.0 * h);
            let d_h2 = (q[2] - q[3]) / h;
            (4.0 * d_h2 - d_h) / 3.0
        })
        .collect()
}

/// Asserts `|analytic − fd| ≤ FD_REL_TOL·scale` with a message that shows all four numbers.
fn assert_fd(what: &str, analytic: f64, fd: f64, scale: f64) {
    let diff = (analytic - fd).abs();
    let tol = FD_REL_TOL * scale;
    assert!(
        analytic.is_finite() && diff <= tol,
        "{what}: analytic {analytic:e}, finite differences {fd:e}, difference {diff:e}, tolerance {tol:e}"
    );
}

/// The three spectrum families of the issue, scaled into `[lo, lo + width]`-ish ranges:
/// random (distinct), repeated (exact ties up to the rounding of `Q Λ Qᵀ`) and 1e-9-clustered.
fn families(rng: &mut Rng, n: usize, lo: f64) -> Vec<(&'static str, Vec<f64>)> {
    let shift = |s: Vec<f64>| {
        let m = s.iter().cloned().fold(f64::INFINITY, f64::min);
        s.into_iter().map(|x| x - m + lo).collect::<Vec<f64>>()
    };
    let random: Vec<f64> = (0..n).map(|_| 3.0 * rng.uniform()).collect();
    // Repeated: three levels at least 0.4 apart so that every family has a cut outside ties.
    let levels = [0.0, 0.7, 1.9];
    let mut repeated: Vec<f64> = (0..n).map(|i| levels[i * levels.len() / n]).collect();
    repeated.sort_by(f64::total_cmp);
    let clustered = clustered_spectrum(rng, n, 1e-9);
    vec![
        ("random", shift(random)),
        ("repeated", shift(repeated)),
        ("clustered 1e-9", shift(clustered)),
    ]
}

// ---------------------------------------------------------------------------------------------
// Scalar divided differences

/// The `k`-th derivative of `f` at `x` (closed forms, independent of the code under test).
fn nth_derivative(f: SpectralFn, k: u32, x: f64) -> f64 {
    let falling = |p: f64| (0..k).map(|i| p - i as f64).product::<f64>() * x.powf(p - k as f64);
    match f {
        SpectralFn::Sqrt => falling(0.5),
        SpectralFn::Inv => falling(-1.0),
        SpectralFn::Pow(p) => falling(p),
        SpectralFn::Exp => x.exp(),
        SpectralFn::Log => {
            let fact: f64 = (1..k).map(|i| i as f64).product();
            let sign = if k % 2 == 1 { 1.0 } else { -1.0 };
            sign * fact / x.powi(k as i32)
        }
    }
}

/// `f[a, b]` by its Taylor series about the midpoint, `Σ_{j even} f^{(j+1)}(m) h^j/(j+1)!`,
/// `h = (a − b)/2`; truncated after `h⁶`, so exact to rounding for `|a − b| ≤ 1e-3·|a|`.
fn divided_difference_by_taylor(f: SpectralFn, a: f64, b: f64) -> f64 {
    let m = 0.5 * (a + b);
    let h = 0.5 * (a - b);
    let mut s = 0.0;
    let mut fact = 1.0;
    for j in 0..=6u32 {
        fact *= (j + 1) as f64;
        if j % 2 == 0 {
            s += nth_derivative(f, j + 1, m) * h.powi(j as i32) / fact;
        }
    }
    s
}

fn all_functions() -> Vec<SpectralFn> {
    vec![
        SpectralFn::Sqrt,
        SpectralFn::Log,
        SpectralFn::Exp,
        SpectralFn::Inv,
        SpectralFn::Pow(2.0),
        SpectralFn::Pow(2.5),
        SpectralFn::Pow(-1.5),
        SpectralFn::Pow(0.5),
        SpectralFn::Pow(1e-3),
    ]
}

#[test]
fn divided_differences_are_accurate_at_ties_near_ties_and_apart() {
    // Relative error allowed: 16 ulps. Each closed form is a handful of correctly rounded (or
    // ≤ 1 ulp) operations on well-conditioned quantities; the Taylor reference adds ~2 ulps.
    let tol = 16.0 * EPS;
    let mut worst = 0.0f64;
    for f in all_functions() {
        let points: &[f64] = match f {
            SpectralFn::Exp => &[-30.0, -2.0, 0.0, 0.3, 1.0, 25.0],
            _ => &[1e-3, 0.3, 1.0, 7.5, 1e4],
        };
        for &a in points {
            // Ties and near-ties against the Taylor series.
            for &r in &[0.0, 1e-15, 1e-12, 1e-9, 1e-6, 1e-3] {
                let da = if a == 0.0 { r } else { r * a.abs() };
                for b in [a + da, a - da] {
                    let got = f.divided_difference(a, b);
                    let reference = divided_difference_by_taylor(f, a, b);
                    let err = (got - reference).abs() / reference.abs().max(f64::MIN_POSITIVE);
                    worst = worst.max(err);
                    assert!(
                        err <= tol,
                        "{f:?}[{a:e}, {b:e}] = {got:e}, Taylor {reference:e}, rel. error {err:e} > {tol:e}"
                    );
                    assert_eq!(got, f.divided_difference(b, a), "{f:?} is symmetric");
                }
            }
            // Well separated: the plain quotient is accurate to eps·κ with
            // κ = (|f(a)| + |f(b)|)/|f(a) − f(b)|, so allow 16 ulps times (1 + κ).
            for &ratio in &[1.5f64, 3.0, 10.0, 1e3] {
                let b = if matches!(f, SpectralFn::Exp) {
                    a + ratio.ln()
                } else {
                    a * ratio
                };
                let (fa, fb) = (f.value(a), f.value(b));
                let reference = (fa - fb) / (a - b);
                let kappa = (fa.abs() + fb.abs()) / (fa - fb).abs();
                let got = f.divided_difference(a, b);
                let err = (got - reference).abs() / reference.abs();
                assert!(
                    err <= tol * (1.0 + kappa),
                    "{f:?}[{a:e}, {b:e}] = {got:e}, quotient {reference:e}, rel. error {err:e} > {:e}",
                    tol * (1.0 + kappa)
                );
            }
        }
    }
    eprintln!(
        "worst divided-difference error near ties: {:.2} ulp",
        worst / EPS
    );
}

#[test]
fn divided_difference_at_a_tie_is_the_derivative() {
    for f in all_functions() {
        for &x in &[0.25, 1.0, 3.0] {
            assert_eq!(f.divided_difference(x, x), f.derivative(x), "{f:?} at {x}");
            let d = nth_derivative(f, 1, x);
            assert!(
                (f.derivative(x) - d).abs() <= 4.0 * EPS * d.abs(),
                "{f:?}′({x})"
            );
        }
    }
}

#[test]
fn spectral_fn_parses_and_validates() {
    assert_eq!("sqrt".parse::<SpectralFn>().unwrap(), SpectralFn::Sqrt);
    assert_eq!(
        "pow:-0.5".parse::<SpectralFn>().unwrap(),
        SpectralFn::Pow(-0.5)
    );
    assert!("pow:nan".parse::<SpectralFn>().is_err());
    assert!("cbrt".parse::<SpectralFn>().is_err());
    let a = identity(2);
    assert!(cpu::spectral(&a, 2, SpectralFn::Pow(f64::NAN), &EighOptions::default()).is_err());
}

// ---------------------------------------------------------------------------------------------
// Spectral functions: values

/// `‖X − Y‖_F ≤ c·n·eps·scale`, reporting everything on failure.
fn assert_close(what: &str, x: &[f64], y: &[f64], n: usize, c: f64, scale: f64) {
    let d: Vec<f64> = x.iter().zip(y).map(|(a, b)| a - b).collect();
    let err = frob(&d);
    let tol = c * n as f64 * EPS * scale;
    assert!(
        err <= tol,
        "{what}: ‖difference‖_F = {err:e} > tolerance {tol:e} ({c}·n·eps·{scale:e})"
    );
}

#[test]
fn spectral_values_satisfy_independent_identities() {
    // Each identity composes one or two backward-stable eigendecompositions: the results are
    // those of a matrix within ~n·eps·‖A‖ of the input, amplified by the conditioning of the
    // identity (κ(A) = λ_max/λ_min ≤ 9 here), so 64·n·eps times the scale stated per identity.
    let opts = EighOptions::default();
    let mut rng = Rng::new(11);
    for n in [1, 2, 3, 5, 8, 13] {
        for (family, spectrum) in families(&mut rng, n, 0.5) {
            let a = with_spectrum(&mut rng, &spectrum);
            let norm = frob(&a);
            let kappa = spectrum.iter().cloned().fold(0.0, f64::max)
                / spectrum.iter().cloned().fold(f64::INFINITY, f64::min);
            let run = |f: SpectralFn, m: &[f64]| {
                let s = cpu::spectral(m, n, f, &opts).unwrap();
                assert_eq!(s.eig.status, vec![Status::Ok], "{family} n={n} {f:?}");
                assert!(is_symmetric(n, &s.values), "{f:?}(A) is exactly symmetric");
                s.values
            };
            let what = |s: &str| format!("{s} ({family}, n = {n})");
            let sqrt = run(SpectralFn::Sqrt, &a);
            assert_close(
                &what("sqrt(A)² = A"),
                &matmul(n, &sqrt, &sqrt),
                &a,
                n,
                64.0,
                norm,
            );
            let log = run(SpectralFn::Log, &a);
            let exp_log = run(SpectralFn::Exp, &log);
            assert_close(&what("exp(log A) = A"), &exp_log, &a, n, 64.0, norm * kappa);
            let inv = run(SpectralFn::Inv, &a);
            let id = identity(n);
            assert_close(
                &what("A·inv(A) = I"),
                &matmul(n, &a, &inv),
                &id,
                n,
                64.0,
                kappa,
            );
            let sq = run(SpectralFn::Pow(2.0), &a);
            let a2 = matmul(n, &a, &a);
            assert_close(&what("pow(A, 2) = A²"), &sq, &a2, n, 64.0, norm * norm);
            let p1 = run(SpectralFn::Pow(1.0), &a);
            assert_close(&what("pow(A, 1) = A"), &p1, &a, n, 64.0, norm);
            let half = run(SpectralFn::Pow(0.5), &a);
            assert_close(
                &what("pow(A, 1/2) = sqrt(A)"),
                &half,
                &sqrt,
                n,
                64.0,
                frob(&sqrt),
            );
            let pm1 = run(SpectralFn::Pow(-1.0), &a);
            assert_close(
                &what("pow(A, −1) = inv(A)"),
                &pm1,
                &inv,
                n,
                64.0,
                frob(&inv),
            );
            let p3 = run(SpectralFn::Pow(1.5), &a);
            assert_close(
                &what("pow(A, 3/2) = A·sqrt(A)"),
                &p3,
                &matmul(n, &a, &sqrt),
                n,
                64.0,
                norm * frob(&sqrt),
            );
        }
    }
}

#[test]
fn exp_of_a_zero_matrix_is_the_identity_and_exp_accepts_indefinite_input() {
    let opts = EighOptions::default();
    let s = cpu::spectral(&[0.0; 9], 3, SpectralFn::Exp, &opts).unwrap();
    assert_eq!(s.values, identity(3));
    let mut rng = Rng::new(3);
    let a = with_spectrum(&mut rng, &[-2.0, -0.5, 1.0, 1.5]);
    let e = cpu::spectral(&a, 4, SpectralFn::Exp, &opts).unwrap();
    assert_eq!(e.eig.status, vec![Status::Ok]);
    // exp(A)·exp(−A) = I.
    let minus: Vec<f64> = a.iter().map(|x| -x).collect();
    let em = cpu::spectral(&minus, 4, SpectralFn::Exp, &opts).unwrap();
    let prod = matmul(4, &e.values, &em.values);
    assert_close(
        "exp(A)·exp(−A) = I",
        &prod,
        &identity(4),
        4,
        64.0,
        2.0f64.exp() * 2.0,
    );
}

#[test]
fn out_of_domain_input_gets_its_own_status_and_nan_outputs() {
    let n = 3;
    let opts = EighOptions::default();
    let mut rng = Rng::new(5);
    let pd = with_spectrum(&mut rng, &[0.5, 1.0, 2.0]);
    let indefinite = with_spectrum(&mut rng, &[-0.5, 1.0, 2.0]);
    let singular = vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let mut non_finite = pd.clone();
    non_finite[4] = f64::NAN;
    let batch: Vec<f64> = [&pd, &indefinite, &pd, &singular, &non_finite]
        .iter()
        .flat_map(|m| m.iter().cloned())
        .collect();
    let grad = random_symmetric(&mut rng, n, 5);
    for f in [
        SpectralFn::Sqrt,
        SpectralFn::Log,
        SpectralFn::Inv,
        SpectralFn::Pow(2.0),
        SpectralFn::Pow(-0.5),
    ] {
        let s = cpu::spectral(&batch, n, f, &opts).unwrap();
        use Status::*;
        assert_eq!(
            s.eig.status,
            vec![Ok, OutOfDomain, Ok, OutOfDomain, NonFiniteInput],
            "{f:?}"
        );
        let g = cpu::spectral_vjp(&s, &grad).unwrap();
        for b in 0..5 {
            let m = &s.values[b * 9..b * 9 + 9];
            let gm = &g[b * 9..b * 9 + 9];
            let ok = s.eig.status[b].is_ok();
            assert_eq!(m.iter().all(|x| x.is_finite()), ok, "{f:?} matrix {b}");
            assert_eq!(m.iter().all(|x| x.is_nan()), !ok, "{f:?} matrix {b}");
            assert_eq!(gm.iter().all(|x| x.is_finite()), ok, "{f:?} VJP {b}");
            assert_eq!(gm.iter().all(|x| x.is_nan()), !ok, "{f:?} VJP {b}");
            assert_eq!(s.eig.values(b).iter().all(|x| x.is_nan()), !ok);
        }
        // The good matrices are untouched by their bad neighbours.
        let alone = cpu::spectral(&pd, n, f, &opts).unwrap();
        assert_eq!(&s.values[..9], &alone.values[..]);
        assert_eq!(&s.values[18..27], &alone.values[..]);
    }
    let e = cpu::spectral(&batch, n, SpectralFn::Exp, &opts).unwrap();
    use Status::*;
    assert_eq!(e.eig.status, vec![Ok, Ok, Ok, Ok, NonFiniteInput]);
}

#[test]
fn eigendecomposition_failures_keep_their_status() {
    let mut rng = Rng::new(9);
    let n = 10;
    let a = random_symmetric(&mut rng, n, 2);
    let opts = EighOptions {
        max_sweeps: 1,
        ..EighOptions::default()
    };
    let s = cpu::spectral(&a, n, SpectralFn::Exp, &opts).unwrap();
    assert_eq!(s.eig.status, vec![Status::NotConverged; 2]);
    assert!(s.values.iter().all(|x| x.is_nan()));
    let p = cpu::projector(&a, n, Projector::Lowest(3), &opts).unwrap();
    assert_eq!(p.eig.status, vec![Status::NotConverged; 2]);
    assert!(p.values.iter().all(|x| x.is_nan()));
    let e = cpu::extreme_eigenvalue(&a, n, Extreme::Max, &opts, None).unwrap();
    assert_eq!(e.status, vec![Status::NotConverged; 2]);
    assert!(e.values.iter().all(|x| x.is_nan()) && e.grads.iter().all(|x| x.is_nan()));
}

#[test]
fn vjps_reject_cotangents_of_the_wrong_shape() {
    let a = identity(3);
    let opts = EighOptions::default();
    let s = cpu::spectral(&a, 3, SpectralFn::Sqrt, &opts).unwrap();
    assert!(cpu::spectral_vjp(&s, &[0.0; 8]).is_err());
    let p = cpu::projector(&a, 3, Projector::Highest(1), &opts).unwrap();
    assert!(cpu::projector_vjp(&p, &[0.0; 10], Degeneracy::default()).is_err());
    assert!(cpu::projector(&a, 3, Projector::Lowest(4), &opts).is_err());
    let e = cpu::extreme_eigenvalue(&a, 3, Extreme::Min, &opts, None).unwrap();
    assert!(cpu::extreme_eigenvalue_vjp(&e, &[1.0, 2.0]).is_err());
    let pi = cpu::power_iteration(&a, 3, &PowerIterationOptions::default()).unwrap();
    assert!(cpu::power_iteration_vjp(&pi, Some(&[1.0, 1.0]), None).is_err());
    assert!(cpu::power_iteration_vjp(&pi, None, Some(&[1.0; 2])).is_err());
}

// ---------------------------------------------------------------------------------------------
// Spectral functions: VJP

#[test]
fn spectral_vjp_matches_finite_differences_on_random_repeated_and_clustered_spectra() {
    let opts = EighOptions::default();
    let mut rng = Rng::new(21);
    let mut worst = 0.0f64;
    for f in all_functions() {
        for n in [2, 4, 6, 7] {
            // Positive spectra from 1 (so A ± hE stays well inside the domain); exp also on
            // spectra straddling 0.
            let lo = if f == SpectralFn::Exp { -2.0 } else { 1.0 };
            for (family, spectrum) in families(&mut rng, n, lo) {
                let a = with_spectrum(&mut rng, &spectrum);
                let g = random_symmetric(&mut rng, n, 1);
                let s = cpu::spectral(&a, n, f, &opts).unwrap();
                let abar = cpu::spectral_vjp(&s, &g).unwrap();
                assert!(is_symmetric(n, &abar), "{f:?}: Ā is exactly symmetric");
                let dirs: Vec<Vec<f64>> = (0..3).map(|_| unit_direction(&mut rng, n)).collect();
                let loss = |m: &[f64]| {
                    let s = cpu::spectral(m, n, f, &opts).unwrap();
                    assert!(s.eig.all_ok());
                    s.values.chunks(n * n).map(|fm| dot(&g, fm)).collect()
                };
                let fd = fd_directional(n, &a, &dirs, 1e-3, loss);
                let scale = frob(&abar) + dot(&g, &s.values).abs();
                for (e, fd) in dirs.iter().zip(fd) {
                    let an = dot(&abar, e);
                    worst = worst.max((an - fd).abs() / scale);
                    assert_fd(&format!("{f:?} {family} n={n}"), an, fd, scale);
                }
            }
        }
    }
    eprintln!("spectral VJP: worst FD difference / scale = {worst:e}");
}

#[test]
fn spectral_vjp_symmetrises_the_cotangent() {
    let mut rng = Rng::new(4);
    let n = 5;
    let a = with_spectrum(&mut rng, &[1.0, 1.0, 2.0, 3.0, 3.0]);
    let s = cpu::spectral(&a, n, SpectralFn::Log, &EighOptions::default()).unwrap();
    let g: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    let x = cpu::spectral_vjp(&s, &g).unwrap();
    let y = cpu::spectral_vjp(&s, &sym(n, &g)).unwrap();
    assert!(max_abs_diff(&x, &y) <= 4.0 * EPS * frob(&x));
}

#[test]
fn spectral_vjp_at_exactly_repeated_eigenvalues_is_the_elementwise_divided_difference() {
    // A = diag(2, 2, 5): V = I, so Ā = L∘sym(Ḡ) with L_ij = f[λ_i, λ_j] exactly, and the tied
    // block is f′(2). A multiple of the identity gives f′(c)·sym(Ḡ).
    let n = 3;
    let a = [2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0];
    let lambda = [2.0, 2.0, 5.0];
    let mut rng = Rng::new(8);
    let g: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    let gs = sym(n, &g);
    for f in all_functions() {
        let s = cpu::spectral(&a, n, f, &EighOptions::default()).unwrap();
        let abar = cpu::spectral_vjp(&s, &g).unwrap();
        for i in 0..n {
            for j in 0..n {
                let expected = f.divided_difference(lambda[i], lambda[j]) * gs[i * n + j];
                let got = abar[i * n + j];
                assert!(
                    (got - expected).abs() <= 4.0 * EPS * expected.abs(),
                    "{f:?} ({i},{j}): {got:e} vs {expected:e}"
                );
            }
        }
        let c = 1.7;
        let ci: Vec<f64> = identity(4).iter().map(|x| c * x).collect();
        let g4 = random_symmetric(&mut rng, 4, 1);
        let s = cpu::spectral(&ci, 4, f, &EighOptions::default()).unwrap();
        let abar = cpu::spectral_vjp(&s, &g4).unwrap();
        let expected: Vec<f64> = g4.iter().map(|x| f.derivative(c) * x).collect();
        assert!(
            max_abs_diff(&abar, &expected) <= 16.0 * EPS * frob(&expected),
            "{f:?} at c·I"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Projectors

#[test]
fn projectors_are_symmetric_idempotent_commute_with_a_and_have_trace_k() {
    // P = V_k V_kᵀ with V orthonormal to ~n·eps: P² − P and the trace are off by ~n·eps·k,
    // [A, P] by ~n·eps·‖A‖·√k (no cut within a cluster here).
    let opts = EighOptions::default();
    let mut rng = Rng::new(31);
    for n in [1, 2, 3, 6, 9] {
        let a = random_symmetric(&mut rng, n, 1);
        for k in 0..=n {
            let low = cpu::projector(&a, n, Projector::Lowest(k), &opts).unwrap();
            let high = cpu::projector(&a, n, Projector::Highest(n - k), &opts).unwrap();
            let p = &low.values;
            assert!(is_symmetric(n, p), "Pᵀ = P exactly");
            assert_close(
                "P² = P",
                &matmul(n, p, p),
                p,
                n,
                16.0,
                (k as f64).sqrt().max(1.0),
            );
            let tr: f64 = (0..n).map(|i| p[i * n + i]).sum();
            assert!((tr - k as f64).abs() <= 16.0 * n as f64 * EPS * (k as f64).max(1.0));
            assert_close(
                "AP = PA",
                &matmul(n, &a, p),
                &matmul(n, p, &a),
                n,
                64.0,
                frob(&a),
            );
            let sum: Vec<f64> = p.iter().zip(&high.values).map(|(x, y)| x + y).collect();
            assert_close(
                "P_low(k) + P_high(n−k) = I",
                &sum,
                &identity(n),
                n,
                16.0,
                1.0,
            );
            if k == 0 || k == n {
                assert_eq!(low.cut_gap, vec![f64::INFINITY]);
            } else {
                let l = low.eig.values(0);
                assert_eq!(low.cut_gap, vec![l[k] - l[k - 1]]);
                assert_eq!(high.cut_gap, low.cut_gap);
            }
        }
    }
}

/// The cut positions (number kept from below) that fall between two distinct levels.
fn cuts_outside_clusters(spectrum: &[f64]) -> Vec<usize> {
    let mut s = spectrum.to_vec();
    s.sort_by(f64::total_cmp);
    (1..s.len()).filter(|&k| s[k] - s[k - 1] > 0.1).collect()
}

#[test]
fn projector_vjp_matches_finite_differences_when_the_cut_is_outside_clusters() {
    let opts = EighOptions::default();
    let mut rng = Rng::new(41);
    let mut worst = 0.0f64;
    for n in [2, 4, 6, 7] {
        for (family, spectrum) in families(&mut rng, n, -1.0) {
            let a = with_spectrum(&mut rng, &spectrum);
            let mut sorted = spectrum.clone();
            sorted.sort_by(f64::total_cmp);
            for k in cuts_outside_clusters(&spectrum) {
                let gap = sorted[k] - sorted[k - 1];
                for selection in [Projector::Lowest(k), Projector::Highest(n - k)] {
                    let g = random_symmetric(&mut rng, n, 1);
                    let p = cpu::projector(&a, n, selection, &opts).unwrap();
                    assert_eq!(p.cut_in_cluster, vec![false]);
                    let abar = cpu::projector_vjp(&p, &g, Degeneracy::default()).unwrap();
                    assert!(is_symmetric(n, &abar));
                    // The policy is irrelevant away from a degenerate cut.
                    let prop = cpu::projector_vjp(&p, &g, Degeneracy::Propagate).unwrap();
                    assert_eq!(abar, prop);
                    let dirs: Vec<Vec<f64>> = (0..2).map(|_| unit_direction(&mut rng, n)).collect();
                    let loss = |m: &[f64]| {
                        let p = cpu::projector(m, n, selection, &opts).unwrap();
                        p.values.chunks(n * n).map(|pm| dot(&g, pm)).collect()
                    };
                    let fd = fd_directional(n, &a, &dirs, 1e-3 * gap, loss);
                    let scale = frob(&abar) + frob(&g);
                    for (e, fd) in dirs.iter().zip(fd) {
                        let an = dot(&abar, e);
                        worst = worst.max((an - fd).abs() / scale);
                        assert_fd(&format!("{selection:?} {family} n={n}"), an, fd, scale);
                    }
                }
            }
        }
    }
    eprintln!("projector VJP: worst FD difference / scale = {worst:e}");
}

#[test]
fn projector_vjp_agrees_with_the_eigenvector_vjp() {
    // ⟨Ḡ, P⟩ = Σ_{i kept} v_iᵀ Ḡ v_i, whose eigenvector cotangent is V̄_:,i = 2·sym(Ḡ) v_i on the
    // kept columns: an independent path through eigh_vjp (distinct eigenvalues).
    let opts = EighOptions::default();
    let mut rng = Rng::new(43);
    let n = 6;
    let a = random_symmetric(&mut rng, n, 1);
    let g = random_symmetric(&mut rng, n, 1);
    let eig = cpu::jacobi_eigh(&a, n, &opts).unwrap();
    let v = eig.vectors(0).unwrap();
    for selection in [
        Projector::Lowest(2),
        Projector::Highest(4),
        Projector::Highest(1),
    ] {
        let p = cpu::projector(&a, n, selection, &opts).unwrap();
        let abar = cpu::projector_vjp(&p, &g, Degeneracy::default()).unwrap();
        let gv = matmul(n, &g, v);
        let mut vbar = vec![0.0; n * n];
        for i in 0..n {
            for j in selection.selected(n) {
                vbar[i * n + j] = 2.0 * gv[i * n + j];
            }
        }
        let reference = cpu::eigh_vjp(&eig, None, Some(&vbar), Degeneracy::default()).unwrap();
        assert!(
            max_abs_diff(&abar, &reference) <= 64.0 * n as f64 * EPS * frob(&reference),
            "{selection:?}: {abar:?} vs {reference:?}"
        );
    }
}

#[test]
fn a_cut_inside_a_degenerate_cluster_is_reported_and_the_policy_decides() {
    let opts = EighOptions::default();
    let mut rng = Rng::new(47);
    let n = 5;
    // Tied pair across the cut at k = 2: λ = 1, 1.
    let a = with_spectrum(&mut rng, &[-1.0, 1.0, 1.0, 2.0, 3.0]);
    let g = random_symmetric(&mut rng, n, 1);
    let p = cpu::projector(&a, n, Projector::Lowest(2), &opts).unwrap();
    assert_eq!(p.cut_in_cluster, vec![true]);
    assert!(p.cut_gap[0] <= 1e-14);
    let masked = cpu::projector_vjp(&p, &g, Degeneracy::default()).unwrap();
    assert!(masked.iter().all(|x| x.is_finite()));
    let lor = cpu::projector_vjp(&p, &g, Degeneracy::Lorentzian { eps: 1e-6 }).unwrap();
    assert!(lor.iter().all(|x| x.is_finite()));
    // A 1e-9 gap is a real (if sensitive) gap: not reported, and the VJP is finite.
    let b = with_spectrum(&mut rng, &[-1.0, 1.0, 1.0 + 1e-9, 2.0, 3.0]);
    let q = cpu::projector(&b, n, Projector::Lowest(2), &opts).unwrap();
    assert_eq!(q.cut_in_cluster, vec![false]);
    assert!((q.cut_gap[0] - 1e-9).abs() <= 1e-13);
    let qv = cpu::projector_vjp(&q, &g, Degeneracy::default()).unwrap();
    assert!(qv.iter().all(|x| x.is_finite()));
    // A cut beside the tied pair is clear.
    let r = cpu::projector(&a, n, Projector::Highest(2), &opts).unwrap();
    assert_eq!(r.cut_in_cluster, vec![false]);
}

// ---------------------------------------------------------------------------------------------
// Extreme eigenvalues and the spectral norm

#[test]
fn extreme_values_and_gradients_of_simple_extremes() {
    let opts = EighOptions::default();
    let mut rng = Rng::new(51);
    let n = 6;
    let batch = 8;
    let a = random_symmetric(&mut rng, n, batch);
    let eig = cpu::jacobi_eigh(&a, n, &opts).unwrap();
    for which in [Extreme::Max, Extreme::Min, Extreme::SpectralNorm] {
        let e = cpu::extreme_eigenvalue(&a, n, which, &opts, None).unwrap();
        for b in 0..batch {
            let l = eig.values(b);
            let v = eig.vectors(b).unwrap();
            let idx = match which {
                Extreme::Max => n - 1,
                Extreme::Min => 0,
                Extreme::SpectralNorm => {
                    if l[0].abs() > l[n - 1].abs() {
                        0
                    } else {
                        n - 1
                    }
                }
            };
            let sign = if which == Extreme::SpectralNorm {
                l[idx].signum()
            } else {
                1.0
            };
            assert_eq!(e.values[b], sign * l[idx]);
            assert_eq!(e.multiplicity[b], 1);
            let g = &e.grads[b * n * n..(b + 1) * n * n];
            for i in 0..n {
                for j in 0..n {
                    let expected = sign * v[i * n + idx] * v[j * n + idx];
                    assert!((g[i * n + j] - expected).abs() <= 4.0 * EPS);
                }
            }
            // ⟨G, A⟩ = the value (Euler's identity for a degree-1 homogeneous function).
            let am = &a[b * n * n..(b + 1) * n * n];
            assert!((dot(g, am) - e.values[b]).abs() <= 64.0 * n as f64 * EPS * frob(am));
        }
        let cot: Vec<f64> = (0..batch).map(|b| b as f64 - 2.5).collect();
        let vjp = cpu::extreme_eigenvalue_vjp(&e, &cot).unwrap();
        for b in 0..batch {
            for i in 0..n * n {
                assert_eq!(vjp[b * n * n + i], cot[b] * e.grads[b * n * n + i]);
            }
        }
    }
}

#[test]
fn extreme_eigenvalue_gradients_match_finite_differences() {
    // Random and repeated/clustered spectra whose extreme itself is simple (the ties are
    // interior); h = 1e-3·(gap next to the extreme).
    let opts = EighOptions::default();
    let mut rng = Rng::new(53);
    let mut worst = 0.0f64;
    for n in [2, 4, 7] {
        for (family, mut spectrum) in families(&mut rng, n, -1.5) {
            spectrum.sort_by(f64::total_cmp);
            // Make both ends simple: push them 0.5 away from their neighbours.
            if n > 1 {
                spectrum[0] -= 0.5;
                spectrum[n - 1] += 0.5;
            }
            let a = with_spectrum(&mut rng, &spectrum);
            for which in [Extreme::Max, Extreme::Min, Extreme::SpectralNorm] {
                let e = cpu::extreme_eigenvalue(&a, n, which, &opts, None).unwrap();
                assert_eq!(e.multiplicity, vec![1]);
                let dirs: Vec<Vec<f64>> = (0..3).map(|_| unit_direction(&mut rng, n)).collect();
                let loss = |m: &[f64]| {
                    cpu::extreme_eigenvalue(m, n, which, &opts, None)
                        .unwrap()
                        .values
                };
                let mut gap = if n > 1 {
                    (spectrum[1] - spectrum[0]).min(spectrum[n - 1] - spectrum[n - 2])
                } else {
                    1.0
                };
                if which == Extreme::SpectralNorm && n > 1 {
                    let tie = (spectrum[0].abs() - spectrum[n - 1].abs()).abs();
                    assert!(
                        tie > 0.05,
                        "{family} n={n}: the norm is nearly tied ({tie})"
                    );
                    gap = gap.min(tie);
                }
                let fd = fd_directional(n, &a, &dirs, 1e-3 * gap, loss);
                for (d, fd) in dirs.iter().zip(fd) {
                    let an = dot(&e.grads, d);
                    worst = worst.max((an - fd).abs());
                    assert_fd(&format!("{which:?} {family} n={n}"), an, fd, 1.0);
                }
            }
        }
    }
    eprintln!("extreme eigenvalues: worst FD difference = {worst:e}");
}

#[test]
fn repeated_extreme_eigenvalue_gets_the_average_over_its_eigenspace() {
    let opts = EighOptions::default();
    let mut rng = Rng::new(57);
    let n = 6;
    let spectrum = [-4.0, -4.0, 0.5, 1.0, 4.0, 4.0];
    let a = with_spectrum(&mut rng, &spectrum);
    let top = cpu::projector(&a, n, Projector::Highest(2), &opts).unwrap();
    let bottom = cpu::projector(&a, n, Projector::Lowest(2), &opts).unwrap();
    for which in [Extreme::Max, Extreme::Min, Extreme::SpectralNorm] {
        let e = cpu::extreme_eigenvalue(&a, n, which, &opts, None).unwrap();
        // Expected: the eigenspace projector over the multiplicity (signed for the norm, where
        // λ = −4 and λ = 4 tie in magnitude).
        let (m, expected): (u32, Vec<f64>) = match which {
            Extreme::Max => (2, top.values.iter().map(|x| x / 2.0).collect()),
            Extreme::Min => (2, bottom.values.iter().map(|x| x / 2.0).collect()),
            Extreme::SpectralNorm => (
                4,
                top.values
                    .iter()
                    .zip(&bottom.values)
                    .map(|(t, b)| (t - b) / 4.0)
                    .collect(),
            ),
        };
        assert_eq!(e.multiplicity, vec![m], "{which:?}");
        assert!(
            max_abs_diff(&e.grads, &expected) <= 64.0 * n as f64 * EPS,
            "{which:?}: gradient is not the eigenspace average"
        );
        // It is a subgradient of the convex function (λ_max, ‖·‖₂; −λ_min is convex):
        // f(A + E) ≥ f(A) + ⟨G, E⟩ for any E, here with ‖E‖ = 0.1.
        let conv = if which == Extreme::Min { -1.0 } else { 1.0 };
        for _ in 0..20 {
            let d: Vec<f64> = unit_direction(&mut rng, n)
                .iter()
                .map(|x| 0.1 * x)
                .collect();
            let ad: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x + y).collect();
            let f1 = cpu::extreme_eigenvalue(&ad, n, which, &opts, None)
                .unwrap()
                .values[0];
            let lhs = conv * (f1 - e.values[0]);
            let rhs = conv * dot(&e.grads, &d);
            assert!(
                lhs >= rhs - 64.0 * EPS * 4.0,
                "{which:?}: not a subgradient"
            );
        }
        // And it is the gradient of the smooth average of the tied eigenvalues: central
        // differences of that average match ⟨G, E⟩ (h = 1e-3 against a gap of 3.5).
        let dirs: Vec<Vec<f64>> = (0..3).map(|_| unit_direction(&mut rng, n)).collect();
        let loss = |mm: &[f64]| -> Vec<f64> {
            let eig = cpu::jacobi_eigvalsh(mm, n, &opts).unwrap();
            (0..eig.batch)
                .map(|b| {
                    let l = eig.values(b);
                    match which {
                        Extreme::Max => (l[4] + l[5]) / 2.0,
                        Extreme::Min => (l[0] + l[1]) / 2.0,
                        Extreme::SpectralNorm => (l[4] + l[5] - l[0] - l[1]) / 4.0,
                    }
                })
                .collect()
        };
        let fd = fd_directional(n, &a, &dirs, 1e-3, loss);
        for (d, fd) in dirs.iter().zip(fd) {
            assert_fd(
                &format!("{which:?} cluster average"),
                dot(&e.grads, d),
                fd,
                1.0,
            );
        }
    }
}

#[test]
fn a_1e9_cluster_at_the_extreme_is_resolved_not_averaged() {
    // A gap of 1e-9 is far above the Mask tolerance (1.8e-12·‖A‖₂ = 5.4e-12 here), so λ_max is
    // simple and its gradient is u uᵀ. Generic differences would need h ≪ 1e-9, so check it along
    // E = V diag(e) Vᵀ, which moves each eigenvalue by h·e_i without turning the basis: with
    // h·|e| ≤ 1e-11 the order is kept and the difference quotient is e_top. Rounding: each
    // computed eigenvalue is off by up to ~10·eps·‖A‖₂ ≈ 7e-15, over 2h = 2e-11 that is ≤ 7e-4,
    // hence the 1e-3 tolerance; averaging over the cluster would be off by 1/3.
    let opts = EighOptions::default();
    let mut rng = Rng::new(59);
    let spectrum = [-2.0, -1.0, 3.0, 3.0 + 1e-9, 3.0 + 2e-9];
    let n = spectrum.len();
    let a = with_spectrum(&mut rng, &spectrum);
    let e = cpu::extreme_eigenvalue(&a, n, Extreme::Max, &opts, None).unwrap();
    assert_eq!(e.multiplicity, vec![1]);
    let eig = cpu::jacobi_eigh(&a, n, &opts).unwrap();
    let v = eig.vectors(0).unwrap();
    let shifts = [0.3, -0.7, 1.0, -1.0, 0.5];
    let mut d = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            d[i * n + j] = (0..n)
                .map(|k| v[i * n + k] * shifts[k] * v[j * n + k])
                .sum();
        }
    }
    let h = 1e-11;
    let plus: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x + h * y).collect();
    let minus: Vec<f64> = a.iter().zip(&d).map(|(x, y)| x - h * y).collect();
    let fp = cpu::extreme_eigenvalue(&plus, n, Extreme::Max, &opts, None).unwrap();
    let fm = cpu::extreme_eigenvalue(&minus, n, Extreme::Max, &opts, None).unwrap();
    let fd = (fp.values[0] - fm.values[0]) / (2.0 * h);
    let an = dot(&e.grads, &d);
    assert!((an - shifts[4]).abs() <= 1e-12, "⟨u uᵀ, E⟩ = e_top: {an}");
    eprintln!("1e-9 cluster at the top: FD − analytic = {:e}", fd - an);
    assert!((fd - an).abs() <= 1e-3, "FD {fd} vs analytic {an}");
}

#[test]
fn spectral_norm_of_the_zero_matrix_has_zero_gradient() {
    let opts = EighOptions::default();
    let z = vec![0.0; 16];
    let e = cpu::extreme_eigenvalue(&z, 4, Extreme::SpectralNorm, &opts, None).unwrap();
    assert_eq!(e.values, vec![0.0]);
    assert!(e.grads.iter().all(|&x| x == 0.0));
    let m = cpu::extreme_eigenvalue(&z, 4, Extreme::Max, &opts, None).unwrap();
    assert_eq!(m.multiplicity, vec![4]);
    let quarter: Vec<f64> = identity(4).iter().map(|x| x / 4.0).collect();
    assert!(max_abs_diff(&m.grads, &quarter) <= 4.0 * EPS);
    assert!(cpu::extreme_eigenvalue(&z, 4, Extreme::Max, &opts, Some(-1.0)).is_err());
}

// ---------------------------------------------------------------------------------------------
// Power iteration

fn power_opts(tol: f64) -> PowerIterationOptions {
    PowerIterationOptions {
        tol,
        ..PowerIterationOptions::default()
    }
}

/// The index of the dominant (largest |λ|) eigenvalue in an ascending spectrum.
fn dominant_index(l: &[f64]) -> usize {
    let n = l.len();
    if l[0].abs() > l[n - 1].abs() {
        0
    } else {
        n - 1
    }
}

#[test]
fn power_iteration_agrees_with_the_dominant_pair_of_jacobi() {
    // With residual ≤ tol·|λ| the eigenvector error is ≤ tol·|λ|/gap (+ rounding) and the
    // eigenvalue error ≤ (tol·|λ|)²/gap + n·eps·|λ|.
    let tol = 1e-13;
    let mut rng = Rng::new(61);
    let eopts = EighOptions::default();
    for n in [1, 2, 5, 8, 16] {
        let batch = 16;
        let a = random_symmetric(&mut rng, n, batch);
        let p = cpu::power_iteration(&a, n, &power_opts(tol)).unwrap();
        let eig = cpu::jacobi_eigh(&a, n, &eopts).unwrap();
        for b in 0..batch {
            let l = eig.values(b);
            let k = dominant_index(l);
            let lam = l[k];
            let gap = (0..n)
                .filter(|&j| j != k)
                .map(|j| (lam - l[j]).abs())
                .fold(f64::INFINITY, f64::min);
            let ratio = (0..n)
                .filter(|&j| j != k)
                .map(|j| (l[j] / lam).abs())
                .fold(0.0, f64::max);
            if ratio > 0.99 {
                // Too slow for the cap; such matrices are covered by the status test.
                continue;
            }
            assert_eq!(p.status[b], Status::Ok, "n={n} b={b} ratio {ratio}");
            let got = p.value[b];
            assert!(
                (got - lam).abs() <= 16.0 * n as f64 * EPS * lam.abs() + (tol * lam).powi(2) / gap,
                "λ: {got} vs {lam}"
            );
            let v = eig.vectors(b).unwrap();
            let vp = &p.vector[b * n..b * n + n];
            let err = (0..n)
                .map(|i| (vp[i] - v[i * n + k]).powi(2))
                .sum::<f64>()
                .sqrt();
            let bound = 4.0 * tol * lam.abs() / gap + 64.0 * n as f64 * EPS * lam.abs() / gap;
            assert!(err <= bound, "v: error {err:e} > {bound:e} (n={n}, b={b})");
        }
    }
}

#[test]
fn power_iteration_vjp_agrees_with_the_eigendecomposition_vjp() {
    // For a simple dominant pair, L(λ, v) with cotangents (λ̄, v̄) is the eigh loss with λ̄ and v̄
    // placed at the dominant index, so the implicit solve must agree with eigh_vjp (an
    // independent path: F∘skew(VᵀV̄) in the eigenbasis) to the eigenvector accuracy of power
    // iteration.
    let tol = 1e-14;
    let mut rng = Rng::new(67);
    let eopts = EighOptions::default();
    let n = 6;
    let batch = 12;
    let a = random_symmetric(&mut rng, n, batch);
    let p = cpu::power_iteration(&a, n, &power_opts(tol)).unwrap();
    let eig = cpu::jacobi_eigh(&a, n, &eopts).unwrap();
    let lbar: Vec<f64> = (0..batch).map(|_| rng.normal()).collect();
    let vbar: Vec<f64> = (0..batch * n).map(|_| rng.normal()).collect();
    let got = cpu::power_iteration_vjp(&p, Some(&lbar), Some(&vbar)).unwrap();
    let mut gl = vec![0.0; batch * n];
    let mut gv = vec![0.0; batch * n * n];
    for b in 0..batch {
        let k = dominant_index(eig.values(b));
        gl[b * n + k] = lbar[b];
        for i in 0..n {
            gv[b * n * n + i * n + k] = vbar[b * n + i];
        }
    }
    let reference = cpu::eigh_vjp(&eig, Some(&gl), Some(&gv), Degeneracy::default()).unwrap();
    for b in 0..batch {
        assert_eq!(p.status[b], Status::Ok);
        let l = eig.values(b);
        let k = dominant_index(l);
        let gap = (0..n)
            .filter(|&j| j != k)
            .map(|j| (l[k] - l[j]).abs())
            .fold(f64::INFINITY, f64::min);
        let r = &reference[b * n * n..(b + 1) * n * n];
        let g = &got[b * n * n..(b + 1) * n * n];
        let err = max_abs_diff(g, r);
        // v is off by an angle θ ≤ (tol + n·eps)·|λ|/gap (residual over gap), and Ā moves by
        // about θ·(1 + |λ|/gap)·‖Ā‖ when v turns by θ (w = (λI − A)⁺(I − vvᵀ)v̄ has |λ|/gap in
        // it); 8 times that (the worst seen is 0.37 times θ·‖Ā‖).
        let theta = (tol + n as f64 * EPS) * l[k].abs() / gap;
        let bound = 8.0 * theta * (1.0 + l[k].abs() / gap) * frob(r);
        assert!(err <= bound, "matrix {b}: difference {err:e} > {bound:e}");
    }
}

#[test]
fn power_iteration_vjp_matches_finite_differences() {
    // Loss λ̄·λ + v̄·v. The iterates converge to tol = 1e-14 (v error ~1e-14/gap), which
    // rounding amplifies by 1/h in the differences: with h = 1e-3·gap this stays ~1e-10, under
    // the FD tolerance. Spectra: random, repeated and 1e-9-clustered in the interior, with a
    // simple dominant eigenvalue (positive or negative) at least 0.5 from the rest.
    let tol = 1e-14;
    let mut rng = Rng::new(71);
    let mut worst = 0.0f64;
    for n in [2, 4, 7] {
        for (family, spectrum) in families(&mut rng, n, -1.0) {
            for dominant in [4.5, -4.5] {
                let mut s = spectrum.clone();
                s[0] = dominant;
                let gap = s[1..]
                    .iter()
                    .map(|x| dominant.abs() - x.abs())
                    .fold(f64::INFINITY, f64::min);
                let a = with_spectrum(&mut rng, &s);
                let p = cpu::power_iteration(&a, n, &power_opts(tol)).unwrap();
                assert_eq!(p.status, vec![Status::Ok]);
                assert!((p.value[0] - dominant).abs() <= 1e-12);
                let lbar = [rng.normal()];
                let vbar: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
                let abar = cpu::power_iteration_vjp(&p, Some(&lbar), Some(&vbar)).unwrap();
                assert!(is_symmetric(n, &abar));
                let dirs: Vec<Vec<f64>> = (0..3).map(|_| unit_direction(&mut rng, n)).collect();
                let loss = |m: &[f64]| {
                    let q = cpu::power_iteration(m, n, &power_opts(tol)).unwrap();
                    assert!(q.status.iter().all(|s| s.is_ok()));
                    (0..q.batch)
                        .map(|b| lbar[0] * q.value[b] + dot(&vbar, &q.vector[b * n..b * n + n]))
                        .collect()
                };
                let fd = fd_directional(n, &a, &dirs, 1e-3 * gap, loss);
                let scale = frob(&abar) + lbar[0].abs() + frob(&vbar);
                for (d, fd) in dirs.iter().zip(fd) {
                    let an = dot(&abar, d);
                    worst = worst.max((an - fd).abs() / scale);
                    assert_fd(
                        &format!("power iteration {family} n={n} λ={dominant}"),
                        an,
                        fd,
                        scale,
                    );
                }
            }
        }
    }
    eprintln!("power iteration VJP: worst FD difference / scale = {worst:e}");
}

#[test]
fn power_iteration_reports_what_it_cannot_resolve() {
    let mut rng = Rng::new(73);
    let n = 4;
    let cap = PowerIterationOptions {
        max_iterations: 2000,
        ..PowerIterationOptions::default()
    };
    // Dominant eigenvalue tied in magnitude with its negative: never converges.
    let pm = with_spectrum(&mut rng, &[-3.0, 0.5, 1.0, 3.0]);
    // A 1e-9 cluster at the top: convergence would need ~1e10 iterations.
    let clustered = with_spectrum(&mut rng, &[0.5, 1.0, 3.0, 3.0 + 1e-9]);
    // A non-finite entry.
    let mut bad = with_spectrum(&mut rng, &[0.5, 1.0, 2.0, 3.0]);
    bad[5] = f64::INFINITY;
    // A good one, and an exactly repeated dominant eigenvalue (converges in residual).
    let good = with_spectrum(&mut rng, &[0.5, 1.0, 2.0, -3.0]);
    let repeated = with_spectrum(&mut rng, &[0.5, 1.0, 3.0, 3.0]);
    let batch: Vec<f64> = [&pm, &clustered, &bad, &good, &repeated]
        .iter()
        .flat_map(|m| m.iter().cloned())
        .collect();
    let p = cpu::power_iteration(&batch, n, &cap).unwrap();
    use Status::*;
    assert_eq!(
        p.status,
        vec![NotConverged, NotConverged, NonFiniteInput, Ok, Ok]
    );
    assert_eq!(p.iterations[0], 2000);
    assert!(p.value[..3].iter().all(|x| x.is_nan()));
    assert!((p.value[3] + 3.0).abs() <= 1e-12 && (p.value[4] - 3.0).abs() <= 1e-12);
    // The sign gauge: the largest component is positive.
    let v3 = &p.vector[3 * n..4 * n];
    let big = v3
        .iter()
        .cloned()
        .fold(0.0f64, |m, x| if x.abs() > m.abs() { x } else { m });
    assert!(big > 0.0);
    let lbar = vec![1.0; 5];
    let vbar = vec![0.3; 5 * n];
    let nn = n * n;
    let only_l = cpu::power_iteration_vjp(&p, Some(&lbar), None).unwrap();
    assert!(only_l[..3 * nn].iter().all(|x| x.is_nan()));
    assert!(only_l[3 * nn..].iter().all(|x| x.is_finite()));
    let both = cpu::power_iteration_vjp(&p, Some(&lbar), Some(&vbar)).unwrap();
    assert!(both[3 * nn..4 * nn].iter().all(|x| x.is_finite()));
    // The eigenvector of a repeated dominant eigenvalue is not differentiable: NaN.
    assert!(both[4 * nn..].iter().all(|x| x.is_nan()));
}

#[test]
fn power_iteration_reads_the_lower_triangle_on_request() {
    let mut rng = Rng::new(79);
    let n = 5;
    let a = with_spectrum(&mut rng, &[0.1, 0.2, 0.3, 0.4, 2.0]);
    let mut lower = a.clone();
    for i in 0..n {
        for j in i + 1..n {
            lower[i * n + j] = 99.0;
        }
    }
    let opts = PowerIterationOptions {
        symmetry: Symmetry::Lower,
        ..PowerIterationOptions::default()
    };
    let p = cpu::power_iteration(&lower, n, &opts).unwrap();
    let q = cpu::power_iteration(&a, n, &PowerIterationOptions::default()).unwrap();
    assert_eq!(p.value, q.value);
    assert_eq!(p.vector, q.vector);
    assert_eq!(p.matrix, a);
}

#[test]
fn power_iteration_is_exact_under_power_of_two_scaling_and_widens_f32_exactly() {
    // The matrix is prescaled by an exact power of two, so 2^k·A gives 2^k·λ and the same v
    // bit for bit, even at the ends of the exponent range.
    let mut rng = Rng::new(83);
    let n = 4;
    let a = with_spectrum(&mut rng, &[0.5, -1.0, 2.0, 3.5]);
    let opts = PowerIterationOptions::default();
    let p = cpu::power_iteration(&a, n, &opts).unwrap();
    for k in [-1000, -300, 7, 300, 1000] {
        let s = 2f64.powi(k);
        let scaled: Vec<f64> = a.iter().map(|x| x * s).collect();
        let q = cpu::power_iteration(&scaled, n, &opts).unwrap();
        assert_eq!(q.status, vec![Status::Ok], "2^{k}");
        assert_eq!(q.value[0], p.value[0] * s, "2^{k}");
        assert_eq!(q.vector, p.vector, "2^{k}");
    }
    let a32: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let a64: Vec<f64> = a32.iter().map(|&x| x as f64).collect();
    let p32 = cpu::power_iteration(&a32, n, &opts).unwrap();
    let p64 = cpu::power_iteration(&a64, n, &opts).unwrap();
    assert_eq!(p32, p64);
    let s32 = cpu::spectral(&a32, n, SpectralFn::Exp, &EighOptions::default()).unwrap();
    let s64 = cpu::spectral(&a64, n, SpectralFn::Exp, &EighOptions::default()).unwrap();
    assert_eq!(s32, s64);
}

#[test]
fn spectral_and_projector_vjps_are_adjoint_to_the_eigendecomposition_jvp() {
    // d f(A) = V̇ f(Λ) Vᵀ + V diag(f′(λ)·λ̇) Vᵀ + V f(Λ) V̇ᵀ with (λ̇, V̇) from eigh_jvp (distinct
    // eigenvalues), so ⟨Ḡ, d f(A)⟩ must equal ⟨Ā, Ȧ⟩ for the Daleckii–Krein Ā; likewise for a
    // projector (f the indicator of the kept set, f′ = 0). Both sides are rounding-level
    // accurate: 64·n·eps relative to ‖Ḡ‖·‖Ȧ‖·(1 + ‖A‖/gap)·max|f, f′|.
    let opts = EighOptions::default();
    let mut rng = Rng::new(89);
    let n = 6;
    let spectrum = [0.6, 1.1, 1.7, 2.4, 3.0, 3.9];
    let a = with_spectrum(&mut rng, &spectrum);
    let eig = cpu::jacobi_eigh(&a, n, &opts).unwrap();
    let v = eig.vectors(0).unwrap();
    let g = random_symmetric(&mut rng, n, 1);
    let adot = unit_direction(&mut rng, n);
    let jvp = cpu::eigh_jvp(&eig, &adot, Degeneracy::default()).unwrap();
    let vdot = &jvp.vectors_dot;
    // ⟨Ḡ, V̇ D Vᵀ + V D V̇ᵀ + V diag(d′) Vᵀ⟩ for weights d (values) and d′ (their tangents).
    let pairing = |d: &[f64], d_dot: &[f64]| -> f64 {
        let mut s = 0.0;
        for i in 0..n {
            for j in 0..n {
                let mut x = 0.0;
                for k in 0..n {
                    x += vdot[i * n + k] * d[k] * v[j * n + k]
                        + v[i * n + k] * d[k] * vdot[j * n + k]
                        + v[i * n + k] * d_dot[k] * v[j * n + k];
                }
                s += g[i * n + j] * x;
            }
        }
        s
    };
    let gap = 0.5;
    let tol = 64.0 * n as f64 * EPS * frob(&g) * (1.0 + 3.9 / gap);
    for f in all_functions() {
        let s = cpu::spectral(&a, n, f, &opts).unwrap();
        let abar = cpu::spectral_vjp(&s, &g).unwrap();
        let l = eig.values(0);
        let d: Vec<f64> = l.iter().map(|&x| f.value(x)).collect();
        let d_dot: Vec<f64> = (0..n)
            .map(|k| f.derivative(l[k]) * jvp.values_dot[k])
            .collect();
        let scale = d.iter().chain(&d_dot).fold(1.0f64, |m, x| m.max(x.abs()));
        let lhs = pairing(&d, &d_dot);
        let rhs = dot(&abar, &adot);
        assert!(
            (lhs - rhs).abs() <= tol * scale,
            "{f:?}: JVP {lhs:e} vs VJP {rhs:e}"
        );
    }
    for selection in [
        Projector::Lowest(2),
        Projector::Highest(1),
        Projector::Lowest(5),
    ] {
        let p = cpu::projector(&a, n, selection, &opts).unwrap();
        let abar = cpu::projector_vjp(&p, &g, Degeneracy::default()).unwrap();
        let d: Vec<f64> = (0..n)
            .map(|k| {
                if selection.selected(n).contains(&k) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let lhs = pairing(&d, &[0.0; 6]);
        let rhs = dot(&abar, &adot);
        assert!(
            (lhs - rhs).abs() <= tol,
            "{selection:?}: JVP {lhs:e} vs VJP {rhs:e}"
        );
    }
}

#[test]
fn function_values_beyond_f64_are_out_of_domain_not_nan_with_ok() {
    let opts = EighOptions::default();
    let diag = |a: f64, b: f64| vec![a, 0.0, 0.0, b];
    for (a, f) in [
        (diag(1000.0, 1.0), SpectralFn::Exp),
        (diag(4.0, 9.0), SpectralFn::Pow(1e300)),
    ] {
        let s = cpu::spectral(&a, 2, f, &opts).unwrap();
        assert_eq!(s.eig.status, [Status::OutOfDomain], "{f:?}");
        assert!(s.values.iter().all(|v| v.is_nan()), "{f:?}");
    }
    // Large but representable: ok.
    let s = cpu::spectral(&diag(700.0, 1.0), 2, SpectralFn::Exp, &opts).unwrap();
    assert!(s.eig.all_ok() && s.values.iter().all(|v| v.is_finite()));
}

#[test]
fn selections_and_cluster_weights_of_degenerate_arguments_do_not_panic() {
    assert_eq!(Projector::Highest(5).selected(2), 0..2);
    assert_eq!(Projector::Lowest(5).selected(2), 0..2);
    assert_eq!(Projector::Highest(5).cut(2), None);
    assert!(Projector::Highest(5).validate(2).is_err());
    let (value, m) =
        Extreme::Max.cluster_weights(&[], Degeneracy::default(), eigrad::Precision::F64, &mut []);
    assert!(value.is_nan() && m == 0);
}

#[test]
fn power_iteration_vjp_is_nan_where_the_dominant_eigenvalue_is_tied_below_the_tolerance() {
    // Dominant eigenvalues −4 and −4·(1 − 1e-14): 1e-14 apart relative, below f64's
    // eps^(3/4) ≈ 1.8e-12, so not numerically simple; the Cholesky pivots alone missed it for
    // some bases (a finite Ā of 1e13).
    let n = 5;
    for seed in 0..6u64 {
        let mut rng = Rng::new(1000 * seed + n as u64);
        let mut s: Vec<f64> = (0..n - 2).map(|k| (k % 7) as f64 - 3.0).collect();
        s.extend([-4.0, -4.0 * (1.0 - 1e-14)]);
        s.sort_by(f64::total_cmp);
        let a = with_spectrum(&mut rng, &s);
        let vbar: Vec<f64> = (0..n).map(|_| rng.normal() as f32 as f64).collect();
        let p = cpu::power_iteration(&a, n, &PowerIterationOptions::default()).unwrap();
        assert_eq!(p.status, [Status::Ok], "seed {seed}");
        let g = cpu::power_iteration_vjp(&p, None, Some(&vbar)).unwrap();
        assert!(g.iter().all(|x| x.is_nan()), "seed {seed}: {g:?}");
    }
}
