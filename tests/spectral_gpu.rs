//! The GPU spectral functions and their Daleckii–Krein VJP against the f64 CPU reference, on
//! well separated, repeated and 1e-9-clustered spectra. Skips without an adapter unless
//! `EIGRAD_REQUIRE_GPU=1`.

mod gpu_support;

use eigrad::gpu::GpuContext;
use eigrad::samples::{self, Rng};
use eigrad::spectral::SpectralFn;
use eigrad::{cpu, EighOptions, Status};
use gpu_support::*;

const FUNCTIONS: [SpectralFn; 6] = [
    SpectralFn::Sqrt,
    SpectralFn::Log,
    SpectralFn::Exp,
    SpectralFn::Inv,
    SpectralFn::Pow(2.5),
    SpectralFn::Pow(-0.5),
];
/// f(A) and Ā relative to their norms: the derivative bound, which the cancellation-free
/// divided differences must also meet at ties.
const TOL: f64 = 1e-4;

/// Positive definite test matrices with eigenvalues in [0.5, 2.5]: separated, repeated and
/// clustered (1e-9 apart, which f32 cannot resolve: the GPU sees exact ties).
fn spd(n: usize, batch: usize, seed: u64) -> Vec<(&'static str, Vec<f64>)> {
    let mut rng = Rng::new(seed);
    let mut make = |f: &dyn Fn(&mut Rng, usize) -> f64| -> Vec<f64> {
        let mut out = Vec::new();
        for _ in 0..batch {
            let s: Vec<f64> = (0..n).map(|k| f(&mut rng, k)).collect();
            out.extend(samples::with_spectrum(&mut rng, &s));
        }
        round_f32(&out)
    };
    let step = 2.0 / n as f64;
    vec![
        (
            "separated",
            make(&|r, k| 0.5 + step * k as f64 + 0.3 * step * r.uniform()),
        ),
        ("repeated", make(&|_, k| 0.5 + 0.5 * (k % 3) as f64)),
        (
            "clustered 1e-9",
            make(&|_, k| 1.5 + 0.7 * (k / 2) as f64 / n as f64 + 1e-9 * (k % 2) as f64),
        ),
    ]
}

#[test]
fn spectral_functions_and_vjps_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for n in [1usize, 2, 3, 5, 8, 16, 33, 64] {
        check_spectral(ctx, n);
    }
}

/// Every spectral function and its VJP on `ctx` against the CPU's at size `n`.
fn check_spectral(ctx: &GpuContext, n: usize) {
    let batch = if n >= 33 { 2 } else { 4 };
    for (family, a) in spd(n, batch, 300 + n as u64) {
        let mut rng = Rng::new(n as u64);
        let g: Vec<f64> = (0..a.len()).map(|_| rng.normal() as f32 as f64).collect();
        for f in FUNCTIONS {
            let opts = EighOptions::default();
            let x = ctx.spectral(&to_f32(&a), n, f, &opts).unwrap();
            let y = cpu::spectral(&a, n, f, &opts).unwrap();
            assert!(x.eig.all_ok(), "{family} n={n} {f:?}: {:?}", x.eig.status);
            let nn = n * n;
            for b in 0..batch {
                let r = b * nn..(b + 1) * nn;
                let e = rel_err(&x.values[r.clone()], &y.values[r]);
                assert!(
                    e <= TOL,
                    "{family} n={n} {f:?} matrix {b}: f(A) rel err {e:e}"
                );
            }
            let gx = ctx.spectral_vjp(&x, &to_f32(&g)).unwrap();
            let gy = cpu::spectral_vjp(&y, &g).unwrap();
            for b in 0..batch {
                let r = b * nn..(b + 1) * nn;
                let e = rel_err(&gx[r.clone()], &gy[r]);
                assert!(
                    e <= TOL,
                    "{family} n={n} {f:?} matrix {b}: VJP rel err {e:e}"
                );
                assert!(gx[b * nn..(b + 1) * nn].iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
fn spectral_functions_and_projectors_run_at_every_size_under_the_default_limits() {
    // From n = 61 not even one matrix's V fits wgpu's default 16 KiB of workgroup memory: the
    // kernels read V from global memory (and the forward is the tridiagonal kernel's).
    let Some(ctx) = gpu_default_limits() else {
        return;
    };
    for n in [60usize, 61, 64] {
        check_spectral(&ctx, n);
        check_projectors(&ctx, n);
    }
}

#[test]
fn indefinite_input_is_out_of_domain_only_where_the_function_needs_it() {
    let Some(ctx) = gpu() else { return };
    let n = 4;
    let mut rng = Rng::new(1);
    let mut a = samples::with_spectrum(&mut rng, &[1.0, 2.0, 3.0, 4.0]);
    a.extend(samples::with_spectrum(&mut rng, &[-1.0, 2.0, 3.0, 4.0]));
    a.extend(samples::with_spectrum(&mut rng, &[0.5, 0.6, 0.7, 0.8]));
    let a = to_f32(&a);
    for f in FUNCTIONS {
        let s = ctx.spectral(&a, n, f, &EighOptions::default()).unwrap();
        let expect = if f == SpectralFn::Exp {
            Status::Ok
        } else {
            Status::OutOfDomain
        };
        assert_eq!(s.eig.status, vec![Status::Ok, expect, Status::Ok], "{f:?}");
        if expect != Status::Ok {
            assert!(s.values[16..32].iter().all(|v| v.is_nan()));
            let g = vec![1f32; 48];
            let gr = ctx.spectral_vjp(&s, &g).unwrap();
            assert!(gr[16..32].iter().all(|v| v.is_nan()));
            assert!(gr[..16].iter().chain(&gr[32..]).all(|v| v.is_finite()));
        }
    }
}

/// Matrices whose eigenvalues come in exact pairs (0.5, 0.5, 1, 1, …) or are well separated: a
/// cut after an even number of eigenvalues never splits a cluster.
fn paired(n: usize, batch: usize, seed: u64) -> Vec<(&'static str, Vec<f64>)> {
    let mut rng = Rng::new(seed);
    let mut sep = Vec::new();
    let mut pairs = Vec::new();
    for _ in 0..batch {
        let s: Vec<f64> = (0..n).map(|k| k as f64 + 0.5 * rng.uniform()).collect();
        sep.extend(samples::with_spectrum(&mut rng, &s));
        let s: Vec<f64> = (0..n).map(|k| 0.5 + (k / 2) as f64).collect();
        pairs.extend(samples::with_spectrum(&mut rng, &s));
    }
    vec![("separated", round_f32(&sep)), ("pairs", round_f32(&pairs))]
}

#[test]
fn projectors_and_their_vjps_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for n in [2usize, 4, 8, 16, 34, 64] {
        check_projectors(ctx, n);
    }
}

/// Projectors (cuts at 2, n − 2 and n) and their VJPs on `ctx` against the CPU's at size `n`.
fn check_projectors(ctx: &GpuContext, n: usize) {
    use eigrad::spectral::Projector;
    use eigrad::Degeneracy;
    let batch = if n >= 34 { 2 } else { 4 };
    for (family, a) in paired(n, batch, 500 + n as u64) {
        let mut rng = Rng::new(n as u64 + 9);
        let g: Vec<f64> = (0..a.len()).map(|_| rng.normal() as f32 as f64).collect();
        for sel in [
            Projector::Lowest(2),
            Projector::Highest(n - 2),
            Projector::Highest(n),
        ] {
            let opts = EighOptions::default();
            let x = ctx.projector(&to_f32(&a), n, sel, &opts).unwrap();
            let y = cpu::projector(&a, n, sel, &opts).unwrap();
            assert_eq!(x.cut_in_cluster, y.cut_in_cluster, "{family} n={n} {sel:?}");
            let e = rel_err(&x.values, &y.values);
            assert!(e <= TOL, "{family} n={n} {sel:?}: P rel err {e:e}");
            let gx = ctx
                .projector_vjp(&x, &to_f32(&g), Degeneracy::default())
                .unwrap();
            let gy = cpu::projector_vjp(&y, &g, Degeneracy::default()).unwrap();
            let e = rel_err(&gx, &gy);
            assert!(e <= TOL, "{family} n={n} {sel:?}: VJP rel err {e:e}");
        }
    }
}

#[test]
fn a_cut_inside_a_cluster_is_reported_and_masked() {
    use eigrad::spectral::Projector;
    use eigrad::Degeneracy;
    let Some(ctx) = gpu() else { return };
    let n = 3;
    // diag(1, 2, 2): exact tie across the cut of the top-1 projector.
    let a = [1f32, 0., 0., 0., 2., 0., 0., 0., 2.];
    let p = ctx
        .projector(&a, n, Projector::Highest(1), &EighOptions::default())
        .unwrap();
    assert_eq!(p.cut_in_cluster, vec![true]);
    let g = [0.5f32, 1., 2., 1., -1., 3., 2., 3., 0.25];
    let masked = ctx.projector_vjp(&p, &g, Degeneracy::default()).unwrap();
    assert!(masked.iter().all(|x| x.is_finite()));
    let raw = ctx.projector_vjp(&p, &g, Degeneracy::Propagate).unwrap();
    assert!(raw.iter().any(|x| !x.is_finite()));
}

#[test]
fn extreme_eigenvalues_match_cpu_including_exact_ties() {
    use eigrad::spectral::Extreme;
    let Some(ctx) = gpu() else { return };
    let n = 6;
    let mut rng = Rng::new(77);
    let mut a = Vec::new();
    for _ in 0..3 {
        let s: Vec<f64> = (0..n)
            .map(|k| k as f64 - 2.5 + 0.4 * rng.uniform())
            .collect();
        a.extend(samples::with_spectrum(&mut rng, &s));
    }
    // Exact ties at both ends, and ±equal magnitudes for the norm.
    for d in [
        [3.0, 3.0, 1.0, 0.0, -1.0, -1.0],
        [-4.0, 2.0, 4.0, 0.5, 4.0, -4.0],
    ] {
        let mut m = vec![0.0; n * n];
        for i in 0..n {
            m[i * n + i] = d[i];
        }
        a.extend(m);
    }
    let a = round_f32(&a);
    let g: Vec<f64> = (0..5).map(|b| 1.0 + b as f64).collect();
    for which in [Extreme::Max, Extreme::Min, Extreme::SpectralNorm] {
        let opts = EighOptions::default();
        let x = ctx
            .extreme_eigenvalue(&to_f32(&a), n, which, &opts, None)
            .unwrap();
        let y = cpu::extreme_eigenvalue(&a, n, which, &opts, None).unwrap();
        assert_eq!(x.multiplicity, y.multiplicity, "{which:?}");
        assert!(rel_err(&x.values, &y.values) <= TOL, "{which:?}");
        assert!(rel_err(&x.grads, &y.grads) <= TOL, "{which:?}");
        let gx = ctx.extreme_eigenvalue_vjp(&x, &to_f32(&g)).unwrap();
        let gy = cpu::extreme_eigenvalue_vjp(&y, &g).unwrap();
        assert!(rel_err(&gx, &gy) <= TOL, "{which:?}");
    }
}

#[test]
fn power_iteration_and_its_implicit_vjp_match_cpu() {
    let Some(ctx) = gpu() else { return };
    for n in [1usize, 2, 5, 16, 40, 64] {
        check_power_iteration(ctx, n);
    }
}

#[test]
fn power_iteration_runs_at_every_size_under_the_default_limits() {
    // From n = 63 not even one matrix fits wgpu's default 16 KiB of workgroup memory: both
    // kernels keep it in global memory instead, which changes no arithmetic, so they equal a
    // device where it fits, bit for bit (NaN outputs of the poisoned matrix included).
    let (Some(ctx), Some(wide)) = (gpu_default_limits(), gpu()) else {
        return;
    };
    use eigrad::spectral::PowerIterationOptions;
    for n in [62usize, 63, 64] {
        check_power_iteration(&ctx, n);
        let mut a = power_inputs(n, 5, 950 + n as u64);
        a[3 * n * n + 7] = f32::NAN;
        let opts = PowerIterationOptions::default();
        let (x, y) = (
            ctx.power_iteration(&a, n, &opts).unwrap(),
            wide.power_iteration(&a, n, &opts).unwrap(),
        );
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(x.status, y.status, "n={n}");
        assert_eq!(bits(&x.value), bits(&y.value), "n={n}");
        assert_eq!(bits(&x.vector), bits(&y.vector), "n={n}");
        let gl = vec![0.5f32; 5];
        let gv: Vec<f32> = (0..5 * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let vjp = |c: &GpuContext| c.power_iteration_vjp(&x, Some(&gl), Some(&gv)).unwrap();
        assert_eq!(bits(&vjp(&ctx)), bits(&vjp(wide)), "n={n}: VJP");
    }
}

/// `batch` matrices whose dominant eigenvalue is ±2n, the rest in [−n, n] (|λ|/gap ≤ 2),
/// rounded to f32.
fn power_inputs(n: usize, batch: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let mut a = Vec::new();
    for b in 0..batch {
        let sign = if b % 2 == 0 { 1.0 } else { -1.0 };
        let s: Vec<f64> = (0..n)
            .map(|k| {
                if k == 0 {
                    sign * 2.0 * n as f64
                } else {
                    (2.0 * rng.uniform() - 1.0) * n as f64
                }
            })
            .collect();
        a.extend(samples::with_spectrum(&mut rng, &s));
    }
    to_f32(&a)
}

/// Power iteration and its implicit VJP on `ctx` against the CPU's at size `n`.
fn check_power_iteration(ctx: &GpuContext, n: usize) {
    use eigrad::spectral::PowerIterationOptions;
    let batch = 4;
    let a: Vec<f64> = power_inputs(n, batch, 900 + n as u64)
        .iter()
        .map(|&x| x as f64)
        .collect();
    let mut rng = Rng::new(1900 + n as u64);
    let opts = PowerIterationOptions::default();
    let x = ctx.power_iteration(&to_f32(&a), n, &opts).unwrap();
    let y = cpu::power_iteration(&a, n, &opts).unwrap();
    assert!(x.status.iter().all(|s| s.is_ok()), "n={n}: {:?}", x.status);
    // The f32 stopping tolerance 32·eps·√n bounds the vector error by about tol·|λ|/gap.
    let tol = 2.0 * 32.0 * f32::EPSILON as f64 * (n as f64).sqrt() * 2.0;
    for b in 0..batch {
        let dl = (x.value[b] as f64 - y.value[b]).abs() / y.value[b].abs();
        assert!(dl <= tol, "n={n} matrix {b}: λ rel err {dl:e} > {tol:e}");
    }
    let ev = rel_err(&x.vector, &y.vector);
    assert!(ev <= tol, "n={n}: vector rel err {ev:e} > {tol:e}");
    let gl: Vec<f64> = (0..batch).map(|_| rng.normal() as f32 as f64).collect();
    let gv: Vec<f64> = (0..batch * n).map(|_| rng.normal() as f32 as f64).collect();
    let gx = ctx
        .power_iteration_vjp(&x, Some(&to_f32(&gl)), Some(&to_f32(&gv)))
        .unwrap();
    let gy = cpu::power_iteration_vjp(&y, Some(&gl), Some(&gv)).unwrap();
    let e = rel_err(&gx, &gy);
    assert!(e <= 4.0 * tol, "n={n}: VJP rel err {e:e} > {:e}", 4.0 * tol);
}

#[test]
fn power_iteration_reports_non_finite_and_unconverged_matrices() {
    use eigrad::spectral::PowerIterationOptions;
    let Some(ctx) = gpu() else { return };
    let n = 2;
    // A good matrix, a NaN, and ±1 (dominant magnitude tied: never converges).
    let a = [2f32, 0.5, 0.5, 1., f32::NAN, 0., 0., 1., 1., 0., 0., -1.];
    let opts = PowerIterationOptions {
        max_iterations: 200,
        ..PowerIterationOptions::default()
    };
    let p = ctx.power_iteration(&a, n, &opts).unwrap();
    assert_eq!(
        p.status,
        vec![Status::Ok, Status::NonFiniteInput, Status::NotConverged]
    );
    assert!(p.value[1].is_nan() && p.value[2].is_nan());
    assert!(p.vector[2..].iter().all(|x| x.is_nan()));
    let g = ctx
        .power_iteration_vjp(&p, Some(&[1., 1., 1.]), None)
        .unwrap();
    assert!(g[..4].iter().all(|x| x.is_finite()));
    assert!(g[4..].iter().all(|x| x.is_nan()));
    // A dominant eigenvalue beyond the f32 range (x·J has eigenvalue n·x): status 3, NaN.
    let x = 0.6 * f32::MAX;
    let p = ctx
        .power_iteration(&[x, x, x, x, 2., 0., 0., 1.], n, &opts)
        .unwrap();
    assert_eq!(p.status, vec![Status::OutOfDomain, Status::Ok]);
    assert!(p.value[0].is_nan() && p.vector[..2].iter().all(|v| v.is_nan()));
    assert_eq!(p.value[1], 2.0);
}

#[test]
fn exp_vjp_of_far_apart_eigenvalues_matches_cpu() {
    // e^{mean}·sinh(h)/h underflows times overflows at λ = −180 and 0 (0·inf = NaN in f32),
    // though the divided difference (1 − e^{−180})/180 is ordinary.
    for (kernel, ctx) in gpu_kernels() {
        for (lo, hi) in [(-180.0, 0.0), (-120.0, -10.0), (-60.0, 60.0), (0.0, 80.0)] {
            for n in [2usize, 9, 33] {
                if !runs(ctx, kernel, n) {
                    continue;
                }
                let mut rng = Rng::new(n as u64);
                let mut spectrum = vec![0.5 * (lo + hi); n];
                (spectrum[0], spectrum[n - 1]) = (lo, hi);
                let a = round_f32(&samples::with_spectrum(&mut rng, &spectrum));
                let g: Vec<f64> = (0..n * n).map(|_| rng.normal() as f32 as f64).collect();
                let opts = EighOptions::default();
                let x = ctx
                    .spectral(&to_f32(&a), n, SpectralFn::Exp, &opts)
                    .unwrap();
                let y = cpu::spectral(&a, n, SpectralFn::Exp, &opts).unwrap();
                assert!(x.eig.all_ok(), "{kernel:?} n={n} ({lo}, {hi})");
                let gx = ctx.spectral_vjp(&x, &to_f32(&g)).unwrap();
                let gy = cpu::spectral_vjp(&y, &g).unwrap();
                let e = rel_err(&gx, &gy);
                assert!(e <= TOL, "{kernel:?} n={n} ({lo}, {hi}): VJP rel err {e:e}");
            }
        }
    }
}

#[test]
fn function_values_beyond_f32_are_out_of_domain_on_the_gpu() {
    let Some(ctx) = gpu() else { return };
    let opts = EighOptions::default();
    // Batches of two: the overflowing matrix and a neighbour that must stay ok.
    for (a, f) in [
        ([100f32, 0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0], SpectralFn::Exp),
        (
            [4f32, 0.0, 0.0, 9.0, 1.5, 0.0, 0.0, 1.2],
            SpectralFn::Pow(200.0),
        ),
    ] {
        let s = ctx.spectral(&a, 2, f, &opts).unwrap();
        assert_eq!(s.eig.status, [Status::OutOfDomain, Status::Ok], "{f:?}");
        assert!(s.values[..4].iter().all(|v| v.is_nan()), "{f:?}");
        assert!(s.values[4..].iter().all(|v| v.is_finite()), "{f:?}");
    }
}

#[test]
fn slowly_converging_power_iteration_converges_on_every_adapter() {
    // |λ₂/λ₁| ≈ 0.99 at n = 33: about 1 500 iterations. Mesa's llvmpipe ends every loop of a
    // shader invocation after 65 535 loop trips in all; with loops over k this kernel was cut
    // off after ~600 iterations there (status 2, outputs partly stale); its sums are written
    // out now, three loop trips per iteration.
    use eigrad::spectral::PowerIterationOptions;
    let Some(ctx) = gpu() else { return };
    let n = 33;
    let mut a = vec![0f32; n * n];
    a[0] = 1.0;
    for i in 1..n {
        a[i * n + i] = 0.99 * (1.0 - 0.01 * i as f32 / n as f32);
    }
    let opts = PowerIterationOptions::default();
    let x = ctx.power_iteration(&a, n, &opts).unwrap();
    assert_eq!(
        x.status,
        [Status::Ok],
        "after {:?} iterations",
        x.iterations
    );
    assert!((x.value[0] - 1.0).abs() <= 1e-5, "{}", x.value[0]);
    // The dominant eigenvector is e₀.
    assert!((x.vector[0] - 1.0).abs() <= 1e-2, "{:?}", &x.vector[..4]);
}

#[test]
fn power_iteration_vjp_is_nan_where_the_dominant_eigenvalue_is_repeated() {
    use eigrad::spectral::PowerIterationOptions;
    let Some(ctx) = gpu() else { return };
    // Dominant eigenvalue −4 twice (tied to f32 rounding after the input is rounded): the
    // eigenvector is not a function of A, so a v̄ has no gradient. The Cholesky pivots of
    // sign(λ)(λI − A) + |λ|vvᵀ stayed above the tolerance here, which let finite values of
    // 1e4–1e6 through; λ̄ alone still has its subgradient λ̄ v vᵀ.
    let opts = PowerIterationOptions::default();
    for n in [3usize, 5, 33] {
        let mut s: Vec<f64> = (0..n - 2).map(|k| (k % 7) as f64 - 3.0).collect();
        s.extend([-4.0, -4.0]);
        let a = round_f32(&samples::with_spectrum(&mut Rng::new(1000 + n as u64), &s));
        let mut rng = Rng::new(9);
        let vbar: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        let p = ctx.power_iteration(&to_f32(&a), n, &opts).unwrap();
        assert_eq!(p.status, [Status::Ok], "n={n}");
        let g = ctx.power_iteration_vjp(&p, None, Some(&vbar)).unwrap();
        assert!(g.iter().all(|x| x.is_nan()), "n={n}: {g:?}");
        let g = ctx.power_iteration_vjp(&p, Some(&[1.0]), None).unwrap();
        assert!(g.iter().all(|x| x.is_finite()), "n={n}");
    }
}

#[test]
fn exp_vjp_near_the_top_of_f32_stays_finite_where_the_result_is() {
    // exp(88.5) ≈ 2.7e38 is within f32, but (W + Wᵀ)/2 summed the diagonal's two equal terms
    // first: inf from e^λ > f32::MAX/2 (λ > 88.03), with status 0.
    for (kernel, ctx) in gpu_kernels() {
        let a = [88.5f32, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 2.0];
        let g = [0.9f32, 0.1, 0.0, 0.1, 1.0, 0.0, 0.0, 0.0, 1.0];
        let opts = EighOptions::default();
        let x = ctx.spectral(&a, 3, SpectralFn::Exp, &opts).unwrap();
        assert!(x.eig.all_ok(), "{kernel:?}");
        let gx = ctx.spectral_vjp(&x, &g).unwrap();
        let wide = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let y = cpu::spectral(&wide(&a), 3, SpectralFn::Exp, &opts).unwrap();
        let gy = cpu::spectral_vjp(&y, &wide(&g)).unwrap();
        assert!(gx.iter().all(|v| v.is_finite()), "{kernel:?}: {gx:?}");
        let e = rel_err(&gx, &gy);
        assert!(e <= TOL, "{kernel:?}: VJP rel err {e:e}");
    }
}
