//! The GPU eigendecomposition against the f64 CPU reference, on every adapter (Mesa's software
//! Vulkan included). Without an adapter each test prints why it skips, unless
//! `EIGRAD_REQUIRE_GPU=1`, which makes it fail.

mod gpu_support;

use eigrad::gpu::{
    EigvalshKernel, ForwardKernel, GpuContext, REGISTERS_MAX_N, TRIDIAGONAL_EIGVALSH_FROM,
};
use eigrad::samples::{self, Rng};
use eigrad::{cpu, EighOptions, Error, Status, Symmetry, Vectors};
use gpu_support::*;

const EPS: f64 = f32::EPSILON as f64;
const SIZES: [usize; 14] = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 33, 48, 64];

/// A named batch of test matrices (f32-representable, symmetric).
struct Family {
    name: &'static str,
    data: Vec<f64>,
}

/// Named inputs as families, their data rounded to f32 (what the GPU sees).
fn rounded_families(named: impl IntoIterator<Item = (&'static str, Vec<f64>)>) -> Vec<Family> {
    named
        .into_iter()
        .map(|(name, data)| Family {
            name,
            data: round_f32(&data),
        })
        .collect()
}

fn families(n: usize, batch: usize, seed: u64) -> Vec<Family> {
    let mut rng = Rng::new(seed);
    let mut spectra = |f: &mut dyn FnMut(&mut Rng) -> Vec<f64>| -> Vec<f64> {
        let mut out = Vec::new();
        for _ in 0..batch {
            let s = f(&mut rng);
            out.extend(samples::with_spectrum(&mut rng, &s));
        }
        out
    };
    let repeated = spectra(&mut |r| samples::repeated_spectrum(r, n));
    let clustered = spectra(&mut |r| samples::clustered_spectrum(r, n, 1e-6));
    let mut rng = Rng::new(seed + 1);
    let random = samples::random_symmetric(&mut rng, n, batch);
    let graded = samples::graded(&mut rng, n, batch, 3.0);
    let big: Vec<f64> = random.iter().map(|x| x * 1e30).collect();
    let tiny: Vec<f64> = random.iter().map(|x| x * 1e-30).collect();
    rounded_families([
        ("random", random),
        ("repeated", repeated),
        ("clustered 1e-6", clustered),
        ("graded 1e±6", graded),
        ("scaled 1e30", big),
        ("scaled 1e-30", tiny),
    ])
}

/// Checks eigenvalues `gw` against the reference's `cw`: error ≤ 8·n·eps·‖A‖₂, ascending.
fn check_values(what: &str, gw: &[f32], cw: &[f64]) {
    let n = cw.len();
    let tol = 8.0 * n as f64 * EPS * norm2(cw);
    for i in 0..n {
        let err = (gw[i] as f64 - cw[i]).abs();
        assert!(
            err <= tol,
            "{what}: eigenvalue {i}: gpu {} cpu {} |diff| {err:e} > tol {tol:e}",
            gw[i],
            cw[i]
        );
        if i > 0 {
            assert!(gw[i - 1] <= gw[i], "{what}: not ascending at {i}");
        }
    }
}

/// Checks one family at size n: eigenvalue error ≤ 8·n·eps·‖A‖₂, residual and orthogonality
/// ≤ 16·n·eps, and the sign of each eigenvector whose direction is well determined.
fn check_family(ctx: &GpuContext, n: usize, fam: &Family) {
    let opts = EighOptions::default();
    let g = ctx
        .eigh(&to_f32(&fam.data), n, &opts, Vectors::Yes)
        .unwrap();
    let c = cpu::jacobi_eigh(&fam.data, n, &opts).unwrap();
    let batch = fam.data.len() / (n * n);
    let gv = g.eigenvectors.as_ref().unwrap();
    for b in 0..batch {
        let what = format!("{:?} {} n={n} matrix {b}", ctx.forward_kernel(), fam.name);
        assert_eq!(g.status[b], Status::Ok, "{what}");
        let a = &fam.data[b * n * n..(b + 1) * n * n];
        let (gw, cw) = (g.values(b), c.values(b));
        check_values(&what, gw, cw);
        let scale = norm2(cw);
        let v = &gv[b * n * n..(b + 1) * n * n];
        let res = residual(n, a, gw, v);
        let orth = orthogonality(n, v);
        let tol = 16.0 * n as f64 * EPS;
        assert!(res <= tol, "{what}: residual {res:e} > {tol:e}");
        assert!(orth <= tol, "{what}: orthogonality {orth:e} > {tol:e}");
        // Sign gauge: where eigenvalue j is separated from its neighbours and the vector's
        // largest component stands clear of the second, GPU and CPU must pick the same sign.
        let cv = c.vectors(b).unwrap();
        for j in 0..n {
            let gap = (0..n)
                .filter(|&k| k != j)
                .map(|k| (cw[k] - cw[j]).abs())
                .fold(f64::INFINITY, f64::min);
            if gap < 1e-2 * scale.max(f64::MIN_POSITIVE) {
                continue;
            }
            let mut mags: Vec<f64> = (0..n).map(|i| cv[i * n + j].abs()).collect();
            mags.sort_by(|x, y| y.total_cmp(x));
            if n > 1 && mags[0] - mags[1] < 1e-2 {
                continue;
            }
            let dot: f64 = (0..n).map(|i| v[i * n + j] as f64 * cv[i * n + j]).sum();
            assert!(
                dot > 0.5,
                "{what}: eigenvector {j} has the other sign (dot {dot})"
            );
        }
    }
}

#[test]
fn eigh_matches_cpu_reference_for_every_size_and_family() {
    for (kernel, ctx) in gpu_kernels() {
        for n in SIZES.into_iter().filter(|&n| runs(ctx, kernel, n)) {
            let batch = if n >= 48 { 3 } else { 6 };
            for fam in families(n, batch, 100 + n as u64) {
                check_family(ctx, n, &fam);
            }
        }
    }
}

/// Structures that take the QL iterations of the tridiagonal kernel (and the sweeps of the
/// others) down their special paths: T splitting in the middle (a block-diagonal input), exactly
/// zero rows and columns, a zero diagonal (a zero first shift and zero rotations), a rank-one
/// matrix (one eigenvalue and an (n − 1)-fold zero), and off-diagonal entries far below the
/// deflation threshold.
fn special_structures(n: usize) -> Vec<Family> {
    let nn = n * n;
    let mut rng = Rng::new(90 + n as u64);
    let random = samples::random_symmetric(&mut rng, n, 1);
    let half = n / 2;
    let mut blocks = random.clone();
    let mut zero_rows = random.clone();
    let mut tiny_off = random.clone();
    let mut zero_diagonal = vec![0.0; nn];
    for i in 0..n {
        for j in 0..n {
            if (i < half) != (j < half) {
                blocks[i * n + j] = 0.0;
            }
            if [1, n - 2].contains(&i) || [1, n - 2].contains(&j) {
                zero_rows[i * n + j] = 0.0;
            }
            if i != j {
                tiny_off[i * n + j] *= 1e-20;
            }
            if i.abs_diff(j) == 1 {
                zero_diagonal[i * n + j] = 1.0;
            }
        }
    }
    let u: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    let rank_one: Vec<f64> = (0..nn).map(|k| u[k / n] * u[k % n]).collect();
    rounded_families([
        ("block diagonal", blocks),
        ("zero rows", zero_rows),
        ("zero diagonal, unit off-diagonal", zero_diagonal),
        ("rank one", rank_one),
        ("off-diagonal 1e-20", tiny_off),
    ])
}

#[test]
fn special_structures_match_cpu_reference() {
    for (kernel, ctx) in gpu_kernels() {
        for n in [5usize, 8, 17, 33, 64]
            .into_iter()
            .filter(|&n| runs(ctx, kernel, n))
        {
            for fam in special_structures(n) {
                check_family(ctx, n, &fam);
            }
        }
    }
}

/// The Jacobi kernels' eigenvalues-only variants do the same sweeps, so their eigenvalues are
/// bitwise the full decomposition's; the tridiagonal kernel's eigenvalues-only calls bisect
/// instead of iterating (they agree to rounding, which the reference comparisons check).
#[test]
fn eigenvalues_only_kernel_gives_the_same_eigenvalues() {
    for (kernel, ctx) in gpu_kernels() {
        if kernel == ForwardKernel::Tridiagonal {
            continue;
        }
        for n in [3usize, 8, 16, 64]
            .into_iter()
            .filter(|&n| runs(ctx, kernel, n))
        {
            let a = to_f32(&samples::random_symmetric(&mut Rng::new(7), n, 5));
            let opts = EighOptions::default();
            let full = ctx.eigh(&a, n, &opts, Vectors::Yes).unwrap();
            let vals = ctx.eigh(&a, n, &opts, Vectors::No).unwrap();
            assert!(vals.eigenvectors.is_none());
            assert_eq!(full.eigenvalues, vals.eigenvalues, "{kernel:?} n={n}");
            assert_eq!(full.status, vals.status);
        }
    }
}

#[test]
fn eigenvalues_only_kernels_match_cpu_reference_for_every_size_and_family() {
    for (kernel, ctx) in gpu_eigvalsh_kernels() {
        for n in SIZES {
            let batch = if n >= 48 { 3 } else { 6 };
            for fam in families(n, batch, 200 + n as u64) {
                let opts = EighOptions::default();
                let g = ctx.eigh(&to_f32(&fam.data), n, &opts, Vectors::No).unwrap();
                let c = cpu::jacobi_eigvalsh(&fam.data, n, &opts).unwrap();
                for b in 0..batch {
                    let what = format!("{kernel:?} {} n={n} matrix {b}", fam.name);
                    assert_eq!(g.status[b], Status::Ok, "{what}");
                    check_values(&what, g.values(b), c.values(b));
                }
            }
        }
    }
}

#[test]
fn tridiagonal_eigenvalues_handle_exact_and_nearly_diagonal_inputs() {
    for (kernel, ctx) in gpu_eigvalsh_kernels() {
        for n in [1usize, 2, 7, 20] {
            let nn = n * n;
            // Zero, identity, a diagonal with ties out of order, and that diagonal with
            // off-diagonal entries far below its rounding (1e-20: below the reflection
            // threshold) and at its rounding (1e-7).
            let mut a = vec![0f32; 5 * nn];
            let diag: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 * 0.5 - 1.0).collect();
            for i in 0..n {
                a[nn + i * n + i] = 1.0;
                for m in 2..5 {
                    a[m * nn + i * n + i] = diag[i];
                }
                for j in 0..i {
                    for (m, x) in [(3, 1e-20f32), (4, 1e-7)] {
                        a[m * nn + i * n + j] = x;
                        a[m * nn + j * n + i] = x;
                    }
                }
            }
            let r = ctx
                .eigh(&a, n, &EighOptions::default(), Vectors::No)
                .unwrap();
            let what = format!("{kernel:?} n={n}");
            assert!(r.all_ok(), "{what}");
            let mut sorted = diag.clone();
            sorted.sort_by(f32::total_cmp);
            assert_eq!(r.values(0), &vec![0f32; n][..], "{what}: zero");
            assert_eq!(r.values(1), &vec![1f32; n][..], "{what}: identity");
            assert_eq!(r.values(2), &sorted[..], "{what}: diagonal");
            let exact: Vec<f64> = a.iter().map(|&x| x as f64).collect();
            let c = cpu::jacobi_eigvalsh(&exact, n, &EighOptions::default()).unwrap();
            for m in 3..5 {
                check_values(&format!("{what}: matrix {m}"), r.values(m), c.values(m));
            }
        }
    }
}

#[test]
fn eigenvalues_only_kernels_report_poisoned_matrices_and_keep_neighbours() {
    for (kernel, ctx) in gpu_eigvalsh_kernels() {
        check_poisoned(&format!("{kernel:?}"), ctx, Vectors::No);
    }
}

#[test]
fn tridiagonal_eigenvalues_chunk_read_the_lower_triangle_and_ignore_the_sweep_cap() {
    let Some(ctx) = gpu_eigvalsh_kernel(EigvalshKernel::Tridiagonal) else {
        return;
    };
    let n = 17;
    let a = to_f32(&samples::random_symmetric(&mut Rng::new(21), n, 150));
    let opts = EighOptions::default();
    let whole = ctx.eigh(&a, n, &opts, Vectors::No).unwrap();
    ctx.set_max_chunk(64);
    let chunked = ctx.eigh(&a, n, &opts, Vectors::No);
    ctx.set_max_chunk(0);
    assert_eq!(whole, chunked.unwrap());
    let mut garbage_upper = a.clone();
    fill_upper(&mut garbage_upper, n, |i, j| 1e3 + (i * j) as f32);
    let lower = EighOptions {
        symmetry: Symmetry::Lower,
        ..EighOptions::default()
    };
    assert_eq!(
        whole,
        ctx.eigh(&garbage_upper, n, &lower, Vectors::No).unwrap()
    );
    // No sweeps: a sweep cap that the Jacobi kernels cannot meet changes nothing.
    let capped = EighOptions {
        max_sweeps: 1,
        ..EighOptions::default()
    };
    assert_eq!(whole, ctx.eigh(&a, n, &capped, Vectors::No).unwrap());
}

/// Matrices 3, 7 and 8 of ten, each with a NaN or an infinite entry, get status 1 and NaN
/// outputs; the other seven get exactly what they get in a clean batch.
fn check_poisoned(kernel: &str, ctx: &GpuContext, vectors: Vectors) {
    for n in [4usize, 7, 33] {
        let nn = n * n;
        let clean = to_f32(&samples::random_symmetric(&mut Rng::new(3), n, 10));
        let mut poisoned = clean.clone();
        poisoned[3 * nn + nn / 2] = f32::NAN;
        poisoned[7 * nn] = f32::INFINITY;
        poisoned[8 * nn + nn - 1] = f32::NEG_INFINITY;
        let opts = EighOptions::default();
        let a = ctx.eigh(&clean, n, &opts, vectors).unwrap();
        let b = ctx.eigh(&poisoned, n, &opts, vectors).unwrap();
        for m in 0..10 {
            let what = format!("{kernel} {vectors:?} n={n} matrix {m}");
            if [3, 7, 8].contains(&m) {
                assert_eq!(b.status[m], Status::NonFiniteInput, "{what}");
                assert!(b.values(m).iter().all(|x| x.is_nan()), "{what}");
                if let Some(v) = b.vectors(m) {
                    assert!(v.iter().all(|x| x.is_nan()), "{what}");
                }
            } else {
                assert_eq!(b.status[m], Status::Ok, "{what}");
                assert_eq!(a.values(m), b.values(m), "{what} was disturbed");
                assert_eq!(a.vectors(m), b.vectors(m), "{what} was disturbed");
            }
        }
    }
}

#[test]
fn poisoned_matrices_get_status_and_nan_without_disturbing_neighbours() {
    for (kernel, ctx) in gpu_kernels() {
        check_poisoned(&format!("{kernel:?}"), ctx, Vectors::Yes);
        // The register kernel's eigenvalues-only variant (the default below n = 16) too.
        if kernel == ForwardKernel::Registers {
            check_poisoned(&format!("{kernel:?}"), ctx, Vectors::No);
        }
    }
}

#[test]
fn sweep_cap_yields_not_converged_rather_than_a_wrong_answer() {
    for (kernel, ctx) in gpu_kernels() {
        let n = 8;
        let a = to_f32(&samples::random_symmetric(&mut Rng::new(5), n, 4));
        let opts = EighOptions {
            max_sweeps: 1,
            ..EighOptions::default()
        };
        let r = ctx.eigh(&a, n, &opts, Vectors::Yes).unwrap();
        for m in 0..4 {
            assert_eq!(r.status[m], Status::NotConverged, "{kernel:?}");
            assert!(r.values(m).iter().all(|x| x.is_nan()));
            assert!(r.vectors(m).unwrap().iter().all(|x| x.is_nan()));
        }
    }
}

#[test]
fn chunked_batches_give_the_same_results_as_one_dispatch() {
    for (kernel, ctx) in gpu_kernels() {
        for (n, batch) in [(4usize, 1000usize), (33, 150)] {
            if !runs(ctx, kernel, n) {
                continue;
            }
            let a = to_f32(&samples::random_symmetric(&mut Rng::new(11), n, batch));
            let opts = EighOptions::default();
            let whole = ctx.eigh(&a, n, &opts, Vectors::Yes).unwrap();
            ctx.set_max_chunk(64);
            let chunked = ctx.eigh(&a, n, &opts, Vectors::Yes);
            ctx.set_max_chunk(0);
            let chunked = chunked.unwrap();
            assert_eq!(whole, chunked, "{kernel:?} n={n}");
            assert!(whole.all_ok());
        }
    }
}

#[test]
fn tridiagonal_results_do_not_depend_on_the_workgroup_size() {
    let kernel = ForwardKernel::Tridiagonal;
    let Some(ctx) = gpu_kernel(kernel) else {
        return;
    };
    let default = ctx.tridiagonal_workgroup();
    // Batches that leave the last workgroup partly filled; from 256 invocations (n = 64: four
    // matrices per workgroup) down to one matrix per workgroup at every size.
    for (n, batch) in [(5usize, 77usize), (16, 37), (33, 21), (64, 9)] {
        if !runs(ctx, kernel, n) {
            continue;
        }
        let a = to_f32(&samples::random_symmetric(&mut Rng::new(23), n, batch));
        let opts = EighOptions::default();
        ctx.set_tridiagonal_workgroup(256).unwrap();
        let wide = ctx.eigh(&a, n, &opts, Vectors::Yes);
        for wg in [1u32, 64, 100] {
            ctx.set_tridiagonal_workgroup(wg).unwrap();
            let other = ctx.eigh(&a, n, &opts, Vectors::Yes);
            ctx.set_tridiagonal_workgroup(default).unwrap();
            assert_eq!(wide.as_ref().unwrap(), &other.unwrap(), "n={n} wg={wg}");
        }
        assert!(wide.unwrap().all_ok(), "n={n}");
    }
    for bad in [0u32, 257] {
        assert!(
            matches!(
                ctx.set_tridiagonal_workgroup(bad),
                Err(Error::InvalidArgument(_))
            ),
            "{bad}"
        );
        assert_eq!(ctx.tridiagonal_workgroup(), default);
    }
}

#[test]
fn f16_input_is_accepted_and_matches_the_reference_on_the_same_values() {
    for (kernel, ctx) in gpu_kernels() {
        let n = 6;
        let a: Vec<half::f16> = samples::random_symmetric(&mut Rng::new(13), n, 5)
            .iter()
            .map(|&x| half::f16::from_f64(x))
            .collect();
        let g = ctx
            .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        let c = cpu::jacobi_eigh(&a, n, &EighOptions::default()).unwrap();
        for b in 0..5 {
            let scale = norm2(c.values(b));
            for i in 0..n {
                assert!(
                    (g.values(b)[i] as f64 - c.values(b)[i]).abs() <= 8.0 * n as f64 * EPS * scale,
                    "{kernel:?}"
                );
            }
        }
    }
}

#[test]
fn lower_symmetry_reads_only_the_lower_triangle() {
    for (kernel, ctx) in gpu_kernels() {
        let n = 5;
        let sym = to_f32(&samples::random_symmetric(&mut Rng::new(17), n, 3));
        let mut garbage_upper = sym.clone();
        fill_upper(&mut garbage_upper, n, |i, j| 1e3 + (i * j) as f32);
        let lower = EighOptions {
            symmetry: Symmetry::Lower,
            ..EighOptions::default()
        };
        let x = ctx
            .eigh(&sym, n, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        let y = ctx.eigh(&garbage_upper, n, &lower, Vectors::Yes).unwrap();
        assert_eq!(x, y, "{kernel:?}");
    }
}

#[test]
fn bad_sizes_and_shapes_are_errors() {
    for (kernel, ctx) in gpu_kernels() {
        let opts = EighOptions::default();
        assert!(matches!(
            ctx.eigh(&vec![0f32; 65 * 65], 65, &opts, Vectors::Yes),
            Err(Error::UnsupportedSize { n: 65, .. })
        ));
        assert!(matches!(
            ctx.eigh(&[0f32; 10], 3, &opts, Vectors::Yes),
            Err(Error::Shape(_))
        ));
        let empty = ctx.eigh(&[0f32; 0], 3, &opts, Vectors::Yes).unwrap();
        assert_eq!(empty.batch, 0, "{kernel:?}");
    }
}

#[test]
fn off_diagonal_pairs_above_half_the_f32_range_are_symmetrised_without_overflow() {
    // (a + b)/2 of two entries of one sign above f32::MAX/2 must not overflow (a driver may
    // evaluate 0.5·a + 0.5·b as 0.5·(a + b)): [[0, x], [x, 0]] has eigenvalues ±x.
    for (kernel, ctx) in gpu_kernels() {
        for n in [2usize, 12] {
            let nn = n * n;
            let xs = [2e38f32, -3e38, 3.3e38];
            let mut a = vec![0f32; xs.len() * nn];
            for (m, &x) in xs.iter().enumerate() {
                a[m * nn + n - 1] = x;
                a[m * nn + (n - 1) * n] = x;
            }
            let r = ctx
                .eigh(&a, n, &EighOptions::default(), Vectors::No)
                .unwrap();
            for (m, &x) in xs.iter().enumerate() {
                let what = format!("{kernel:?} n={n} x={x:e}");
                assert_eq!(r.status[m], Status::Ok, "{what}");
                let w = r.values(m);
                let tol = 8.0 * n as f64 * EPS * x.abs() as f64;
                assert!((w[0] as f64 + x.abs() as f64).abs() <= tol, "{what}: {w:?}");
                assert!(
                    (w[n - 1] as f64 - x.abs() as f64).abs() <= tol,
                    "{what}: {w:?}"
                );
            }
        }
    }
}

#[test]
fn eigenvalues_beyond_the_f32_range_are_status_3_not_infinity() {
    // Finite entries, eigenvalues up to n times larger: x·J (all entries x) has eigenvalues 0
    // and n·x. Batches of four: n·x beyond f32::MAX (status 3, NaN outputs), then within it
    // (n·x ≈ 0.9 f32::MAX), a diagonal entry at 3.3e38, and an ordinary neighbour.
    let max = f32::MAX as f64;
    let mut contexts: Vec<(String, &GpuContext, Vectors)> = (gpu_kernels().into_iter())
        .map(|(k, c)| (format!("{k:?}"), c, Vectors::Yes))
        .collect();
    for (k, c) in gpu_eigvalsh_kernels() {
        contexts.push((format!("eigenvalues only, {k:?}"), c, Vectors::No));
    }
    for (what, ctx, vectors) in contexts {
        for n in [2usize, 5, 33, 64] {
            if vectors == Vectors::Yes && !runs(ctx, ctx.forward_kernel(), n) && n > 8 {
                continue;
            }
            let nn = n * n;
            let mut a = vec![0f32; 4 * nn];
            a[..nn].fill((1.2 * max / n as f64) as f32);
            a[nn..2 * nn].fill((0.9 * max / n as f64) as f32);
            a[2 * nn] = 3.3e38;
            for i in 0..n {
                a[3 * nn + i * n + i] = i as f32 - 1.5;
            }
            let r = ctx.eigh(&a, n, &EighOptions::default(), vectors).unwrap();
            let what = format!("{what} n={n}");
            assert_eq!(
                r.status,
                [Status::OutOfDomain, Status::Ok, Status::Ok, Status::Ok],
                "{what}: {:?}",
                r.values(0)
            );
            assert!(r.values(0).iter().all(|x| x.is_nan()), "{what}");
            if let Some(v) = &r.eigenvectors {
                assert!(v[..nn].iter().all(|x| x.is_nan()), "{what}");
                assert!(v[nn..].iter().all(|x| x.is_finite()), "{what}");
            }
            let top = r.values(1)[n - 1] as f64;
            assert!(
                (top / (0.9 * max) - 1.0).abs() <= 8.0 * n as f64 * EPS,
                "{what}: {top:e}"
            );
            assert_eq!(r.values(2)[n - 1], 3.3e38, "{what}");
            assert_eq!(r.values(3)[0], -1.5, "{what}");
        }
    }
}

#[test]
fn zero_identity_and_diagonal_inputs_are_exact() {
    for (kernel, ctx) in gpu_kernels() {
        let n = 7;
        let nn = n * n;
        // Zero, identity, a descending diagonal, a diagonal with ties out of order, and one with
        // entries above f32::MAX/2 (whose symmetrisation must not overflow).
        let diagonals: [Vec<f32>; 5] = [
            vec![0.0; n],
            vec![1.0; n],
            (0..n).map(|i| (n - i) as f32 * 0.5).collect(),
            (0..n).map(|i| ((i * 7) % 5) as f32 * 0.5 - 1.0).collect(),
            (0..n).map(|i| f32::MAX / (1.0 + i as f32)).collect(),
        ];
        let mut a = vec![0f32; diagonals.len() * nn];
        for (m, d) in diagonals.iter().enumerate() {
            for i in 0..n {
                a[m * nn + i * n + i] = d[i];
            }
        }
        let r = ctx
            .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        for (m, d) in diagonals.iter().enumerate() {
            // Ascending, equal values in the order of their index (as the CPU reference).
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
            let values: Vec<f32> = order.iter().map(|&i| d[i]).collect();
            let mut vectors = vec![0f32; nn];
            for (rank, &i) in order.iter().enumerate() {
                vectors[i * n + rank] = 1.0;
            }
            let what = format!("{kernel:?} matrix {m}");
            assert_eq!(r.values(m), &values[..], "{what}");
            assert_eq!(r.vectors(m).unwrap(), &vectors[..], "{what}");
        }
    }
}

#[test]
fn sign_gauge_takes_the_first_of_equal_largest_components() {
    // Blocks [[d, 1], [1, d]]: eigenvectors (1, ±1)/√2, whose components every kernel computes
    // with exactly equal magnitudes (the rotation's τ is exactly 0).
    for (kernel, ctx) in gpu_kernels() {
        for n in [2usize, 4, 6] {
            let mut a = vec![0f32; n * n];
            for b in 0..n / 2 {
                let (i, j) = (2 * b, 2 * b + 1);
                let d = 2.0 + 3.0 * b as f32;
                a[i * n + i] = d;
                a[j * n + j] = d;
                a[i * n + j] = 1.0;
                a[j * n + i] = 1.0;
            }
            let r = ctx
                .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
                .unwrap();
            let v = r.vectors(0).unwrap();
            for j in 0..n {
                let col: Vec<f32> = (0..n).map(|i| v[i * n + j]).collect();
                let big = col.iter().fold(0f32, |m, x| m.max(x.abs()));
                let first = col.iter().find(|x| x.abs() == big).unwrap();
                assert!(*first > 0.0, "{kernel:?} n={n} vector {j}: {col:?}");
            }
        }
    }
}

#[test]
fn the_sign_gauge_agrees_with_the_cpu_where_components_tie_up_to_rounding() {
    // Eigenvectors with components of equal magnitude in exact arithmetic, which each solver
    // computes with rounding-level differences: a path graph's Laplacian (|v_i| = |v_{n−1−i}|)
    // and A = H diag(1..n) Hᵀ with H a normalised Hadamard matrix (every |v_i| = n^−½). Every
    // eigenvalue is simple, so each eigenvector is unique up to its sign, which the gauge
    // (the first component within GAUGE_TIE of the largest, positive) must fix alike on every
    // path: the GPU kernels, the CPU's fast solver and its Jacobi reference.
    let opts = EighOptions::default();
    let path = |n: usize| {
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = if i == 0 || i == n - 1 { 1.0 } else { 2.0 };
            if i + 1 < n {
                (a[i * n + i + 1], a[(i + 1) * n + i]) = (-1.0, -1.0);
            }
        }
        a
    };
    let hadamard = |n: usize| {
        let h = |i: usize, j: usize| {
            if (i & j).count_ones().is_multiple_of(2) {
                1.0
            } else {
                -1.0
            }
        };
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n)
                    .map(|k| h(i, k) * (k + 1) as f64 * h(j, k))
                    .sum::<f64>()
                    / n as f64;
            }
        }
        a
    };
    let mut cases = vec![];
    for n in [5usize, 8, 16, 33, 64] {
        cases.push((format!("path n={n}"), n, path(n)));
    }
    for n in [4usize, 8, 16, 32, 64] {
        cases.push((format!("Hadamard n={n}"), n, hadamard(n)));
    }
    for (what, n, a) in cases {
        let reference = cpu::jacobi_eigh(&a, n, &opts).unwrap();
        let want = reference.vectors(0).unwrap();
        let fast = cpu::tridiagonal_eigh(&a, n, &opts).unwrap();
        let mut paths: Vec<(String, Vec<f64>)> =
            vec![("cpu fast".into(), fast.vectors(0).unwrap().to_vec())];
        for (kernel, ctx) in gpu_kernels() {
            if runs(ctx, kernel, n) {
                let g = ctx.eigh(&to_f32(&a), n, &opts, Vectors::Yes).unwrap();
                let v = g.vectors(0).unwrap().iter().map(|&x| x as f64).collect();
                paths.push((format!("{kernel:?}"), v));
            }
        }
        for (name, v) in paths {
            for j in 0..n {
                let dot: f64 = (0..n).map(|i| v[i * n + j] * want[i * n + j]).sum();
                assert!(
                    dot > 0.99,
                    "{what}, {name}: eigenvector {j} signed apart (dot {dot})"
                );
            }
        }
    }
}

#[test]
fn auto_takes_the_kernels_that_fit_a_device_with_the_default_limits() {
    let Some(ctx) = gpu_default_limits() else {
        return;
    };
    let ctx = &ctx;
    // At n = 60 the one-sided kernel needs more than 16 KiB, the two-sided one does not.
    let n = 60;
    let fam = Family {
        name: "random",
        data: round_f32(&samples::random_symmetric(&mut Rng::new(60), n, 2)),
    };
    assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::TwoSided);
    check_family(ctx, n, &fam);
    // The register kernel needs no workgroup memory: Auto's choice at small n there too.
    assert_eq!(ctx.forward_kernel_for(8), ForwardKernel::Registers);
    check_family(ctx, 8, &families(8, 2, 8).swap_remove(0));
    ctx.set_forward_kernel(ForwardKernel::Registers);
    assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::TwoSided);
    ctx.set_forward_kernel(ForwardKernel::OneSided);
    let a = to_f32(&fam.data);
    let err = ctx.eigh(&a, n, &EighOptions::default(), Vectors::Yes);
    ctx.set_forward_kernel(ForwardKernel::Auto);
    assert!(
        matches!(&err, Err(Error::Gpu(m)) if m.contains("workgroup memory")),
        "{err:?}"
    );
    // From n = 62 not even the two-sided kernel's A fits: the tridiagonal kernel, with its
    // eigenvectors passing through the output buffer (no staging fits from n = 60).
    for n in 62..=64 {
        assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::Tridiagonal);
    }
    for fam in families(64, 2, 64).iter().take(4) {
        check_family(ctx, 64, fam);
    }
    // Eigenvalues only: the two-sided kernel's eigenvalues-only variant fits up to n = 61 there,
    // the tridiagonal kernel at every size; `Auto` takes the tridiagonal kernel from n = 16 and
    // so also where the Jacobi kernels would fail.
    assert_eq!(ctx.eigvalsh_kernel_for(8), EigvalshKernel::Jacobi);
    for n in 62..=64 {
        assert_eq!(ctx.eigvalsh_kernel_for(n), EigvalshKernel::Tridiagonal);
    }
    let n = 64;
    let data = round_f32(&samples::random_symmetric(&mut Rng::new(64), n, 2));
    let opts = EighOptions::default();
    let g = ctx.eigh(&to_f32(&data), n, &opts, Vectors::No).unwrap();
    let c = cpu::jacobi_eigvalsh(&data, n, &opts).unwrap();
    for b in 0..2 {
        check_values(
            &format!("default limits, n=64, matrix {b}"),
            g.values(b),
            c.values(b),
        );
    }
    ctx.set_forward_kernel(ForwardKernel::TwoSided);
    ctx.set_eigvalsh_kernel(EigvalshKernel::Jacobi);
    let err = ctx.eigh(&to_f32(&data), n, &opts, Vectors::No);
    ctx.set_forward_kernel(ForwardKernel::Auto);
    ctx.set_eigvalsh_kernel(EigvalshKernel::Auto);
    assert!(
        matches!(&err, Err(Error::Gpu(m)) if m.contains("workgroup memory")),
        "{err:?}"
    );
}

#[test]
fn tridiagonal_output_without_staging_is_bitwise_the_staged_one() {
    // The same kernel staging its eigenvectors in workgroup memory (the shared context's
    // device, Mesa's 32 KiB or more) and passing them through the output buffer (16 KiB, from
    // n = 60): identical arithmetic, so identical results, poisoned matrices and partly filled
    // workgroups included.
    let (Some(staged), Some(unstaged)) =
        (gpu_kernel(ForwardKernel::Tridiagonal), gpu_default_limits())
    else {
        return;
    };
    unstaged.set_forward_kernel(ForwardKernel::Tridiagonal);
    for (n, batch) in [(60usize, 7usize), (64, 9)] {
        if !runs(staged, ForwardKernel::Tridiagonal, n) {
            continue;
        }
        let mut a = to_f32(&samples::random_symmetric(&mut Rng::new(61), n, batch));
        a[2 * n * n + 5] = f32::NAN;
        let opts = EighOptions::default();
        let s = staged.eigh(&a, n, &opts, Vectors::Yes).unwrap();
        let u = unstaged.eigh(&a, n, &opts, Vectors::Yes).unwrap();
        assert_eq!(s.status[2], Status::NonFiniteInput);
        assert_eq!(
            s.status.iter().filter(|&&x| x == Status::Ok).count(),
            batch - 1
        );
        // NaN ≠ NaN: compare bit patterns.
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(s.status, u.status, "n={n}");
        assert_eq!(bits(&s.eigenvalues), bits(&u.eigenvalues), "n={n}");
        assert_eq!(
            bits(s.eigenvectors.as_ref().unwrap()),
            bits(u.eigenvectors.as_ref().unwrap()),
            "n={n}"
        );
    }
}

#[test]
fn auto_eigenvalues_take_the_tridiagonal_kernel_from_n_16() {
    let Some(ctx) = gpu() else { return };
    if std::env::var_os(EigvalshKernel::ENV).is_some() {
        return;
    }
    assert_eq!(ctx.eigvalsh_kernel(), EigvalshKernel::Auto);
    for n in 1..TRIDIAGONAL_EIGVALSH_FROM {
        assert_eq!(ctx.eigvalsh_kernel_for(n), EigvalshKernel::Jacobi, "n={n}");
    }
    for n in TRIDIAGONAL_EIGVALSH_FROM..=64 {
        assert_eq!(
            ctx.eigvalsh_kernel_for(n),
            EigvalshKernel::Tridiagonal,
            "n={n}"
        );
    }
}

#[test]
fn auto_takes_the_register_kernel_up_to_its_largest_size() {
    let Some(ctx) = gpu() else { return };
    if std::env::var_os(ForwardKernel::ENV).is_some() {
        return;
    }
    assert_eq!(ctx.forward_kernel(), ForwardKernel::Auto);
    for n in 1..=REGISTERS_MAX_N {
        assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::Registers, "n={n}");
    }
    for n in REGISTERS_MAX_N + 1..=64 {
        assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::OneSided, "n={n}");
    }
    // Asked for where it does not run, the register kernel hands over to Auto's choice.
    let registers = gpu_kernel(ForwardKernel::Registers).unwrap();
    assert_eq!(
        registers.forward_kernel_for(REGISTERS_MAX_N + 1),
        ForwardKernel::OneSided
    );
    let n = REGISTERS_MAX_N + 1;
    let a = to_f32(&samples::random_symmetric(&mut Rng::new(9), n, 3));
    let opts = EighOptions::default();
    assert_eq!(
        registers.eigh(&a, n, &opts, Vectors::Yes).unwrap(),
        gpu_kernels()[0].1.eigh(&a, n, &opts, Vectors::Yes).unwrap()
    );
}

#[test]
fn tuning_makes_auto_take_the_fastest_measured_kernels() {
    // A context of its own, with Auto's choices whatever the environment says: tuning changes
    // what its Auto takes.
    let Some(ctx) = gpu_auto() else { return };
    assert!(matches!(ctx.tune(0, 4), Err(Error::UnsupportedSize { .. })));
    assert!(matches!(ctx.tune(4, 0), Err(Error::InvalidArgument(_))));
    let opts = EighOptions::default();
    let entry = |k: ForwardKernel| match k {
        ForwardKernel::Registers => "registers_eigh",
        ForwardKernel::OneSided | ForwardKernel::OneSidedSubgroup => "hestenes_eigh",
        ForwardKernel::TwoSided => "jacobi_eigh",
        ForwardKernel::Tridiagonal => "tridiagonal_eigh",
        ForwardKernel::Auto => unreachable!(),
    };
    for (n, batch) in [(5usize, 70usize), (20, 9)] {
        let before = ctx.kernels_for(n);
        assert_eq!(ctx.tuned(n), None);
        let report = ctx.tune(n, batch).unwrap();
        assert_eq!((report.n, report.batch), (n, batch));
        // Every kernel that runs at n was timed, eigendecompositions first: the register kernel
        // up to n = 8, the one-sided kernel (and its subgroup variant where the device has
        // fixed-size subgroups), the two-sided one, and the tridiagonal one at each workgroup
        // size giving a different number of matrices per workgroup (n = 5: 51, 25, 12; n = 20:
        // 12, 6, 3).
        let timed: Vec<(ForwardKernel, Vectors)> = (report.timings.iter())
            .map(|t| (t.choice.forward, t.vectors))
            .filter(|&t| t != (ForwardKernel::OneSidedSubgroup, Vectors::Yes))
            .collect();
        let mut want = vec![];
        if n <= REGISTERS_MAX_N {
            want.push(ForwardKernel::Registers);
        }
        want.extend([ForwardKernel::OneSided, ForwardKernel::TwoSided]);
        want.extend([ForwardKernel::Tridiagonal; 3]);
        let mut want: Vec<_> = want.into_iter().map(|k| (k, Vectors::Yes)).collect();
        let eigh: Vec<_> = report
            .timings
            .iter()
            .filter(|t| t.vectors == Vectors::Yes)
            .collect();
        let workgroups: Vec<u32> = (eigh.iter())
            .filter(|t| t.choice.forward == ForwardKernel::Tridiagonal)
            .map(|t| t.choice.tridiagonal_workgroup)
            .collect();
        assert_eq!(workgroups, [256, 128, 64], "n={n}");
        // The chosen eigendecomposition is the fastest one timed, none of them failed.
        assert!(report
            .timings
            .iter()
            .all(|t| t.seconds.is_some_and(|s| s > 0.0)));
        let best = (eigh.iter())
            .min_by(|x, y| x.seconds.unwrap().total_cmp(&y.seconds.unwrap()))
            .unwrap();
        let chosen = report.chosen;
        assert_eq!(chosen.forward, best.choice.forward, "n={n}");
        assert_eq!(
            chosen.tridiagonal_workgroup, best.choice.tridiagonal_workgroup,
            "n={n}"
        );
        // Then eigenvalues only beside it: its own variant and the tridiagonal kernel (none
        // when it is the tridiagonal kernel, whose eigenvalues-only variant that is).
        if chosen.forward == ForwardKernel::Tridiagonal {
            assert_eq!(chosen.eigvalsh, EigvalshKernel::Tridiagonal);
        } else {
            want.push((chosen.forward, Vectors::No));
            want.push((chosen.forward, Vectors::No));
            let values: Vec<_> = (report.timings.iter())
                .filter(|t| t.vectors == Vectors::No)
                .collect();
            let kinds: Vec<_> = values.iter().map(|t| t.choice.eigvalsh).collect();
            assert_eq!(kinds, [EigvalshKernel::Jacobi, EigvalshKernel::Tridiagonal]);
            let best = (values.iter())
                .min_by(|x, y| x.seconds.unwrap().total_cmp(&y.seconds.unwrap()))
                .unwrap();
            assert_eq!(chosen.eigvalsh, best.choice.eigvalsh, "n={n}");
        }
        assert_eq!(timed, want, "n={n}");
        assert_eq!(ctx.tuned(n), Some(chosen));
        assert_eq!(ctx.kernels_for(n), chosen);
        assert_eq!(ctx.forward_kernel_for(n), chosen.forward);
        assert_eq!(ctx.eigvalsh_kernel_for(n), chosen.eigvalsh);
        // Only this n is tuned.
        assert_eq!(ctx.tuned(n + 1), None);
        // Calls run the chosen kernels, and agree with the CPU reference.
        let a = round_f32(&samples::random_symmetric(
            &mut Rng::new(40 + n as u64),
            n,
            6,
        ));
        let (g, times) = ctx
            .profile(|| ctx.eigh(&to_f32(&a), n, &opts, Vectors::Yes))
            .unwrap();
        assert_eq!(times[0].kernel, entry(chosen.forward), "n={n}");
        let c = cpu::jacobi_eigh(&a, n, &opts).unwrap();
        assert!(g.all_ok());
        for b in 0..6 {
            let scale = c.values(b).iter().fold(0f64, |m, x| m.max(x.abs()));
            for (&x, &y) in g.values(b).iter().zip(c.values(b)) {
                assert!(
                    (x as f64 - y).abs() <= 8.0 * n as f64 * EPS * scale,
                    "n={n}"
                );
            }
        }
        // An explicit choice takes precedence; clearing the tuning restores Auto's mapping.
        ctx.set_forward_kernel(ForwardKernel::TwoSided);
        assert_eq!(ctx.forward_kernel_for(n), ForwardKernel::TwoSided);
        ctx.set_forward_kernel(ForwardKernel::Auto);
        ctx.set_eigvalsh_kernel(EigvalshKernel::Jacobi);
        if chosen.forward != ForwardKernel::Tridiagonal {
            assert_eq!(ctx.eigvalsh_kernel_for(n), EigvalshKernel::Jacobi);
        }
        ctx.set_eigvalsh_kernel(EigvalshKernel::Auto);
        assert_eq!(ctx.kernels_for(n), chosen);
        if n == 20 {
            ctx.clear_tuning();
            assert_eq!(ctx.kernels_for(n), before);
            assert_eq!(ctx.tuned(5), None);
        }
    }
}

#[test]
fn two_sided_kernels_keep_graded_eigenvalues_to_high_relative_accuracy() {
    // A = D R D with D spanning 1e-3..1e3 and R's spectrum in [0.5, 1.5] (κ(R) ≤ 3): eigenvalues
    // over about 1e±6. Two-sided Jacobi with the relative threshold keeps each of them to
    // relative accuracy 4·n·eps·κ(R) (Demmel–Veselić), as the CPU reference does in f64; the
    // one-sided kernel is normwise accurate only (A + σI), so it is not held to this.
    for (kernel, ctx) in gpu_kernels() {
        if !matches!(kernel, ForwardKernel::TwoSided | ForwardKernel::Registers) {
            continue;
        }
        for n in [4usize, 8] {
            let a = round_f32(&samples::graded(&mut Rng::new(30 + n as u64), n, 6, 3.0));
            let opts = EighOptions::default();
            let g = ctx.eigh(&to_f32(&a), n, &opts, Vectors::Yes).unwrap();
            let c = cpu::jacobi_eigh(&a, n, &opts).unwrap();
            let tol = 4.0 * n as f64 * EPS * 3.0;
            for b in 0..6 {
                for (i, (&x, &y)) in g.values(b).iter().zip(c.values(b)).enumerate() {
                    let rel = (x as f64 - y).abs() / y.abs();
                    assert!(
                        rel <= tol,
                        "{kernel:?} n={n} matrix {b} eigenvalue {i}: {x} against {y}, relative {rel:e} > {tol:e}"
                    );
                }
            }
        }
    }
}

#[test]
fn profiling_times_every_kernel_dispatch_on_the_device() {
    // A context of its own: profiling records every dispatch of the context.
    let Some(ctx) = gpu_auto() else { return };
    let opts = EighOptions::default();
    let n = 64;
    let a = to_f32(&samples::random_symmetric(&mut Rng::new(1), n, 130));
    let run = || ctx.eigh(&a, n, &opts, Vectors::Yes);
    if !ctx.has_timestamps() {
        let err = ctx.profile(run);
        assert!(
            matches!(&err, Err(Error::Gpu(m)) if m.contains("timestamp")),
            "{err:?}"
        );
        eprintln!(
            "{}: no timestamp queries; profiling not tested",
            ctx.adapter_name()
        );
        return;
    }
    let t = std::time::Instant::now();
    let (r, times) = ctx.profile(run).unwrap();
    let wall = t.elapsed().as_secs_f64();
    assert!(r.all_ok());
    // The one-sided kernel and its refinement above n = 48, in submission order.
    let names: Vec<&str> = times.iter().map(|k| k.kernel).collect();
    assert_eq!(names, ["hestenes_eigh", "eigh_refine"]);
    for k in &times {
        assert!(k.seconds > 0.0 && k.seconds < wall, "{k:?} (wall {wall} s)");
    }
    // One entry per chunk; the register kernels at small n; nothing recorded afterwards.
    ctx.set_max_chunk(64);
    let (_, times) = ctx.profile(run).unwrap();
    ctx.set_max_chunk(0);
    let names: Vec<&str> = times.iter().map(|k| k.kernel).collect();
    assert_eq!(names, [["hestenes_eigh"; 3], ["eigh_refine"; 3]].concat());
    let small = to_f32(&samples::random_symmetric(&mut Rng::new(2), 4, 10));
    let (g, times) = ctx
        .profile(|| ctx.eigh(&small, 4, &opts, Vectors::Yes))
        .unwrap();
    let gv = vec![1f32; 10 * 16];
    let (_, vjp) = ctx
        .profile(|| ctx.eigh_vjp(&g, None, Some(&gv), eigrad::Degeneracy::default()))
        .unwrap();
    let names: Vec<&str> = times.iter().chain(&vjp).map(|k| k.kernel).collect();
    assert_eq!(names, ["registers_eigh", "registers_vjp"]);
    // A failing call still ends the recording and reports its error.
    let err = ctx.profile(|| ctx.eigh(&small, 5, &opts, Vectors::Yes));
    assert!(matches!(err, Err(Error::Shape(_))), "{err:?}");
    let (_, none) = ctx.profile(|| Ok(())).unwrap();
    assert!(none.is_empty());
    // Calls nest: the inner call returns its own dispatches, the outer one all of them.
    let ((inner, g), outer) = ctx
        .profile(|| {
            let g = ctx.eigh(&small, 4, &opts, Vectors::Yes)?;
            let (_, inner) =
                ctx.profile(|| ctx.eigh_vjp(&g, None, Some(&gv), eigrad::Degeneracy::default()))?;
            let g = ctx.eigh(&small, 4, &opts, Vectors::No)?;
            Ok((inner, g))
        })
        .unwrap();
    assert!(g.all_ok());
    let names = |t: &[eigrad::gpu::KernelTime]| t.iter().map(|k| k.kernel).collect::<Vec<_>>();
    assert_eq!(names(&inner), ["registers_vjp"]);
    assert_eq!(
        names(&outer),
        ["registers_eigh", "registers_vjp", "registers_eigvalsh"]
    );
    assert_eq!(outer[1].seconds, inner[0].seconds);
    // And the recording ends with the outermost call.
    ctx.eigh(&small, 4, &opts, Vectors::Yes).unwrap();
    let (_, none) = ctx.profile(|| Ok(())).unwrap();
    assert!(none.is_empty());
}
