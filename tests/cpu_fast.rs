//! Tests of the fast CPU solver (`eigrad::cpu::tridiagonal*`: Householder tridiagonalisation and
//! implicit QL) against the output contract of DESIGN §1 and against the Jacobi reference.
//!
//! Tolerances (stated here, none tuned per case):
//! - decomposition: `‖AV − VΛ‖_F/‖A‖_F ≤ 16·n·eps` and `‖VᵀV − I‖_F ≤ 16·n·eps` (the reference's
//!   own tolerance, [`decomposition_tol`]);
//! - eigenvalues against the Jacobi reference: `4·n·eps·‖A‖_F` ([`value_tol`]; both solvers are
//!   backward stable, so each is within about `n·eps·‖A‖` of the exact spectrum by Weyl);
//! - eigenvectors against the reference for separated spectra (gaps ≥ 0.5): `value_tol / gap`
//!   per component (Davis–Kahan);
//! - properties that hold exactly in floating point (diagonal inputs, zero and identity,
//!   eigenvalues-only path, in-place path, power-of-two scaling, widening of f16/f32, neighbours
//!   of a bad matrix) are checked bitwise.

mod common;

use common::*;
use eigrad::cpu;
use eigrad::samples::{self, Rng};
use eigrad::{Eigh, EighOptions, Error, Status, Symmetry};
use half::f16;

/// Decomposition tolerance for size `n`: `16·n·eps`.
fn decomposition_tol(n: usize) -> f64 {
    16.0 * n as f64 * EPS
}

/// Eigenvalue tolerance against the reference for a matrix of Frobenius norm `norm_a`:
/// `4·n·eps·‖A‖_F`.
fn value_tol(n: usize, norm_a: f64) -> f64 {
    4.0 * n as f64 * EPS * norm_a
}

fn fast(a: &[f64], n: usize) -> Eigh<f64> {
    cpu::tridiagonal_eigh(a, n, &EighOptions::default()).expect("valid shape and options")
}

fn reference(a: &[f64], n: usize) -> Eigh<f64> {
    cpu::jacobi_eigh(a, n, &EighOptions::default()).expect("valid shape and options")
}

fn mat(a: &[f64], n: usize, b: usize) -> &[f64] {
    &a[b * n * n..(b + 1) * n * n]
}

/// Checks every matrix of the batch `a` (symmetric): a valid decomposition (residual,
/// orthogonality, order, gauge), eigenvalues within [`value_tol`] of the Jacobi reference, the
/// eigenvalues-only path bitwise equal and the in-place path bitwise equal.
#[track_caller]
fn assert_matches_reference(a: &[f64], n: usize, what: &str) {
    let opts = EighOptions::default();
    let eig = fast(a, n);
    let want = reference(a, n);
    let values_only = cpu::tridiagonal_eigvalsh(a, n, &opts).unwrap();
    let mut in_place = a.to_vec();
    let (w, s) = cpu::tridiagonal_eigh_in_place(&mut in_place, n, &opts).unwrap();
    assert_bitwise_eq(&values_only.eigenvalues, &eig.eigenvalues, "values only");
    assert_bitwise_eq(&w, &eig.eigenvalues, "in place: eigenvalues");
    assert_bitwise_eq(&in_place, eig.eigenvectors.as_ref().unwrap(), "in place");
    assert_eq!(s, eig.status, "in place: status");
    assert_eq!(values_only.status, eig.status, "values only: status");
    for b in 0..eig.batch {
        let m = mat(a, n, b);
        let what = format!("{what}, n = {n}, matrix {b}");
        assert_eq!(eig.status[b], Status::Ok, "{what}: status");
        assert_eq!(want.status[b], Status::Ok, "{what}: reference status");
        let v = eig.vectors(b).unwrap();
        assert_valid_decomposition(m, eig.values(b), v, n, decomposition_tol(n), &what);
        let tol = value_tol(n, frobenius(m));
        assert_all_close(eig.values(b), want.values(b), tol, &format!("{what}: λ"));
    }
}

#[test]
fn random_matrices_match_the_reference_for_every_n_up_to_64() {
    for n in 1..=64 {
        let mut rng = Rng::new(7000 + n as u64);
        let batch = if n <= 16 { 8 } else { 3 };
        let a = samples::random_symmetric(&mut rng, n, batch);
        assert_matches_reference(&a, n, "random symmetric");
    }
}

#[test]
fn separated_spectra_give_the_reference_eigenvectors_in_the_same_gauge() {
    for n in 1..=64 {
        let mut rng = Rng::new(7100 + n as u64);
        let spectrum: Vec<f64> = (0..n)
            .map(|i| i as f64 - (n / 2) as f64 + 0.5 * rng.uniform())
            .collect();
        let a = samples::with_spectrum(&mut rng, &spectrum);
        assert_matches_reference(&a, n, "separated spectrum");
        let eig = fast(&a, n);
        let tol = value_tol(n, frobenius(&a));
        assert_all_close(eig.values(0), &spectrum, 4.0 * tol, "prescribed spectrum");
        // Gaps ≥ 0.5: each eigenvector is determined to tol/0.5 (Davis–Kahan), sign by the gauge.
        assert_all_close(
            eig.vectors(0).unwrap(),
            reference(&a, n).vectors(0).unwrap(),
            2.0 * tol / 0.5,
            &format!("n = {n}: eigenvectors"),
        );
    }
}

#[test]
fn repeated_clustered_graded_and_covariance_families_match_the_reference() {
    for n in [2, 3, 4, 6, 8, 9, 16, 17, 31, 32, 33, 64] {
        let mut rng = Rng::new(7200 + n as u64);
        let spectrum = samples::repeated_spectrum(&mut rng, n);
        let repeated = samples::with_spectrum(&mut rng, &spectrum);
        assert_matches_reference(&repeated, n, "repeated spectrum");
        let spectrum = samples::clustered_spectrum(&mut rng, n, 1e-6);
        let clustered = samples::with_spectrum(&mut rng, &spectrum);
        assert_matches_reference(&clustered, n, "clustered spectrum");
        let graded = samples::graded(&mut rng, n, 4, 6.0);
        assert_matches_reference(&graded, n, "graded");
        let cov = samples::covariances(&mut rng, n, 4, 2 * n);
        assert_matches_reference(&cov, n, "covariances");
        // A rank-one matrix: n − 1 exact zeros.
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let rank_one: Vec<f64> = (0..n * n).map(|k| x[k / n] * x[k % n]).collect();
        assert_matches_reference(&rank_one, n, "rank one");
    }
}

#[test]
fn scaled_inputs_near_1e_plus_minus_300_neither_overflow_nor_underflow() {
    for n in [3, 8, 24, 64] {
        let mut rng = Rng::new(7300 + n as u64);
        let a = samples::random_symmetric(&mut rng, n, 1);
        let base = fast(&a, n);
        for s in [1e300, 1e-300, 1e30, 1e-30] {
            let sa = scaled(&a, s);
            assert_matches_reference(&sa, n, &format!("scaled by {s:e}"));
            let eig = fast(&sa, n);
            assert!(eig.eigenvalues.iter().all(|x| x.is_finite() && *x != 0.0));
            let tol = value_tol(n, frobenius(&a)) * s;
            assert_all_close(eig.values(0), &scaled(base.values(0), s), tol, "scaled");
        }
        // A power of two scales the eigenvalues exactly and leaves the eigenvectors bitwise.
        let eig = fast(&scaled(&a, 2f64.powi(-700)), n);
        assert_bitwise_eq(
            &eig.eigenvalues,
            &scaled(&base.eigenvalues, 2f64.powi(-700)),
            "2^-700",
        );
        assert_bitwise_eq(
            eig.eigenvectors.as_ref().unwrap(),
            base.eigenvectors.as_ref().unwrap(),
            "2^-700: eigenvectors",
        );
    }
}

#[test]
fn diagonal_zero_and_identity_inputs_give_exact_results_with_ties_in_index_order() {
    let d = [3.0, -1.0, 2.0, -1.0, 0.0, 5.0, -7.5, -0.0, 0.25];
    let n = d.len();
    let eig = fast(&diagonal(&d), n);
    let want = reference(&diagonal(&d), n);
    assert_bitwise_eq(&eig.eigenvalues, &want.eigenvalues, "diagonal: eigenvalues");
    assert_bitwise_eq(
        eig.eigenvectors.as_ref().unwrap(),
        want.eigenvectors.as_ref().unwrap(),
        "diagonal: eigenvectors",
    );
    // Sorted: −7.5, −1, −1 (indices 1 then 3), 0 and −0 (total order: −0 first), ...
    assert_bitwise_eq(
        eig.values(0),
        &[-7.5, -1.0, -1.0, -0.0, 0.0, 0.25, 2.0, 3.0, 5.0],
        "diagonal: sorted",
    );
    let v = eig.vectors(0).unwrap();
    for (j, &i) in [6, 1, 3, 7, 4, 8, 2, 0, 5].iter().enumerate() {
        assert_eq!(v[i * n + j], 1.0, "diagonal: column {j} is e_{i}");
    }
    for n in [1, 2, 3, 7, 8, 32, 64] {
        for (what, a, value) in [
            ("zero", vec![0.0; n * n], 0.0),
            ("identity", identity(n), 1.0),
        ] {
            let eig = fast(&a, n);
            assert_eq!(eig.status, vec![Status::Ok], "{what}");
            assert_bitwise_eq(eig.values(0), &vec![value; n], what);
            assert_bitwise_eq(eig.vectors(0).unwrap(), &identity(n), what);
        }
    }
}

#[test]
fn non_finite_entries_give_status_1_and_nan_outputs_without_disturbing_neighbours() {
    for n in [1, 5, 8, 32] {
        let nn = n * n;
        let mut rng = Rng::new(7400 + n as u64);
        let mut a = samples::random_symmetric(&mut rng, n, 7);
        a[nn] = f64::NAN;
        a[4 * nn - 1] = f64::INFINITY;
        a[5 * nn + nn / 2] = f64::NEG_INFINITY;
        let opts = EighOptions::default();
        let eig = fast(&a, n);
        let values_only = cpu::tridiagonal_eigvalsh(&a, n, &opts).unwrap();
        let mut in_place = a.clone();
        let (w, s) = cpu::tridiagonal_eigh_in_place(&mut in_place, n, &opts).unwrap();
        for b in 0..7 {
            let what = format!("n = {n}, matrix {b}");
            if [1, 3, 5].contains(&b) {
                for status in [eig.status[b], values_only.status[b], s[b]] {
                    assert_eq!(status, Status::NonFiniteInput, "{what}");
                }
                assert!(eig.values(b).iter().all(|x| x.is_nan()), "{what}");
                assert!(eig.vectors(b).unwrap().iter().all(|x| x.is_nan()), "{what}");
                assert!(values_only.values(b).iter().all(|x| x.is_nan()), "{what}");
                assert!(w[b * n..b * n + n].iter().all(|x| x.is_nan()), "{what}");
                assert!(mat(&in_place, n, b).iter().all(|x| x.is_nan()), "{what}");
                continue;
            }
            let alone = fast(mat(&a, n, b), n);
            assert_eq!(eig.status[b], Status::Ok, "{what}");
            assert_bitwise_eq(eig.values(b), alone.values(0), &what);
            assert_bitwise_eq(eig.vectors(b).unwrap(), alone.vectors(0).unwrap(), &what);
            assert_bitwise_eq(mat(&in_place, n, b), alone.vectors(0).unwrap(), &what);
        }
    }
    let a16 = [f16::ONE, f16::ZERO, f16::ZERO, f16::NAN];
    let eig = cpu::tridiagonal_eigh(&a16, 2, &EighOptions::default()).unwrap();
    assert_eq!(eig.status, vec![Status::NonFiniteInput]);
}

#[test]
fn the_iteration_cap_gives_not_converged_and_nan_outputs_without_disturbing_neighbours() {
    let n = 16;
    let mut rng = Rng::new(7500);
    let mut a = samples::random_symmetric(&mut rng, n, 1);
    let d: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
    a.extend(diagonal(&d)); // needs no iteration at all
                            // One "sweep" allows n QL iterations; a random 16×16 matrix needs more.
    let capped = EighOptions {
        max_sweeps: 1,
        ..EighOptions::default()
    };
    let eig = cpu::tridiagonal_eigh(&a, n, &capped).unwrap();
    assert_eq!(eig.status, vec![Status::NotConverged, Status::Ok]);
    assert!(eig.values(0).iter().all(|x| x.is_nan()));
    assert!(eig.vectors(0).unwrap().iter().all(|x| x.is_nan()));
    let values_only = cpu::tridiagonal_eigvalsh(&a, n, &capped).unwrap();
    assert_eq!(values_only.status, eig.status);
    let full = fast(&a, n);
    assert_eq!(
        full.status,
        vec![Status::Ok, Status::Ok],
        "converges uncapped"
    );
    assert_bitwise_eq(eig.values(1), full.values(1), "diagonal neighbour");
}

#[test]
fn f16_and_f32_inputs_are_widened_exactly_and_lower_reads_only_the_lower_triangle() {
    let n = 6;
    let mut rng = Rng::new(7600);
    let x: Vec<f64> = (0..3 * n * n).map(|_| rng.normal()).collect();
    let opts = EighOptions::default();
    let a32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let a16: Vec<f16> = x.iter().map(|&v| f16::from_f64(v)).collect();
    let w32: Vec<f64> = a32.iter().map(|&v| v as f64).collect();
    let w16: Vec<f64> = a16.iter().map(|v| v.to_f64()).collect();
    for (got, want) in [
        (cpu::tridiagonal_eigh(&a32, n, &opts), fast(&w32, n)),
        (cpu::tridiagonal_eigh(&a16, n, &opts), fast(&w16, n)),
    ] {
        let got = got.unwrap();
        assert_bitwise_eq(&got.eigenvalues, &want.eigenvalues, "widened");
        assert_bitwise_eq(
            got.eigenvectors.as_ref().unwrap(),
            want.eigenvectors.as_ref().unwrap(),
            "widened: eigenvectors",
        );
    }
    // Non-symmetric input: symmetrize decomposes (A + Aᵀ)/2, lower the lower triangle mirrored.
    let lower = EighOptions {
        symmetry: Symmetry::Lower,
        ..EighOptions::default()
    };
    let got = cpu::tridiagonal_eigh(&x, n, &lower).unwrap();
    let mut mirrored = x.clone();
    let mut symmetrized = x.clone();
    for b in 0..3 {
        for i in 0..n {
            for j in 0..n {
                let (lo, hi) = (b * n * n + i.max(j) * n + i.min(j), b * n * n + i * n + j);
                mirrored[hi] = x[lo];
                symmetrized[hi] = 0.5 * x[b * n * n + i * n + j] + 0.5 * x[b * n * n + j * n + i];
            }
        }
    }
    assert_bitwise_eq(&got.eigenvalues, &fast(&mirrored, n).eigenvalues, "lower");
    let sym = fast(&x, n);
    assert_bitwise_eq(
        &sym.eigenvalues,
        &fast(&symmetrized, n).eigenvalues,
        "symmetrize",
    );
    assert_matches_reference(&symmetrized, n, "symmetrized");
}

#[test]
fn bad_shapes_and_options_are_errors() {
    let opts = EighOptions::default();
    let shape = |r: eigrad::Result<Eigh<f64>>| matches!(r, Err(Error::Shape(_)));
    assert!(shape(cpu::tridiagonal_eigh(&[0.0f64; 5], 2, &opts)));
    assert!(shape(cpu::tridiagonal_eigvalsh(&[0.0f64; 4], 0, &opts)));
    assert!(matches!(
        cpu::tridiagonal_eigh_in_place(&mut [0.0; 5], 2, &opts),
        Err(Error::Shape(_))
    ));
    let zero_sweeps = EighOptions {
        max_sweeps: 0,
        ..EighOptions::default()
    };
    assert!(matches!(
        cpu::tridiagonal_eigh(&[1.0f64], 1, &zero_sweeps),
        Err(Error::InvalidArgument(_))
    ));
    let empty = fast(&[], 3);
    assert_eq!(empty.batch, 0);
    assert!(empty.eigenvalues.is_empty() && empty.status.is_empty());
}

#[test]
fn lockstep_batches_equal_the_one_matrix_solver_bitwise_whatever_shares_a_chunk() {
    // Mixed families in one batch, so that lanes of a chunk have blocks, shifts and iteration
    // counts that differ: diagonal, random, repeated, rank one, zero, graded.
    for n in [1, 2, 3, 5, 8, 13, 16, 32, 40] {
        let mut rng = Rng::new(7700 + n as u64);
        let mut a = Vec::new();
        let d: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        a.extend(diagonal(&d));
        a.extend(samples::random_symmetric(&mut rng, n, 2));
        let spectrum = samples::repeated_spectrum(&mut rng, n);
        a.extend(samples::with_spectrum(&mut rng, &spectrum));
        let x: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        a.extend((0..n * n).map(|k| x[k / n] * x[k % n]));
        a.extend(vec![0.0; n * n]);
        a.extend(samples::graded(&mut rng, n, 3, 6.0));
        assert_batch_equals_one_at_a_time(&a, n);
    }
}

#[test]
fn lockstep_reduction_equals_the_one_matrix_solver_bitwise_when_lanes_skip_different_steps() {
    // Chunks of four in which the lanes' columns need no reflection at different steps (already
    // tridiagonal with zero and −0 couplings, block diagonal, diagonal with ties and signed
    // zeros) next to full matrices, in two different arrangements.
    for n in [3, 4, 6, 8, 11, 16] {
        let mut rng = Rng::new(7800 + n as u64);
        let mut tri = vec![0.0; n * n];
        for i in 0..n {
            tri[i * n + i] = rng.normal();
            if i + 1 < n {
                let x = [rng.normal(), 0.0, -0.0][i % 3];
                tri[i * n + i + 1] = x;
                tri[(i + 1) * n + i] = x;
            }
        }
        let mut block = samples::random_symmetric(&mut rng, n, 1);
        for i in 0..n {
            for j in 0..n {
                if (i < n / 2) != (j < n / 2) {
                    block[i * n + j] = 0.0;
                }
            }
        }
        let ties = diagonal(
            &(0..n)
                .map(|i| [1.0, -0.0, 0.0, 1.0, -2.0][i % 5])
                .collect::<Vec<_>>(),
        );
        let full = samples::random_symmetric(&mut rng, n, 2);
        let mut a = Vec::new();
        for m in [
            &tri,
            mat(&full, n, 0),
            &block,
            &ties,
            &ties,
            &block,
            mat(&full, n, 1),
            &tri,
        ] {
            a.extend_from_slice(m);
        }
        assert_batch_equals_one_at_a_time(&a, n);
    }
}

/// Checks that the batched solvers (full, eigenvalues only) give every matrix of `a` bitwise what
/// [`cpu::tridiagonal_eigh_one`] and [`cpu::tridiagonal_eigh_one_in_place`] give it alone.
#[track_caller]
fn assert_batch_equals_one_at_a_time(a: &[f64], n: usize) {
    let batch = a.len() / (n * n);
    let opts = EighOptions::default();
    let eig = fast(a, n);
    let values_only = cpu::tridiagonal_eigvalsh(a, n, &opts).unwrap();
    let mut ws = cpu::TridiagonalWorkspace::new(n);
    for b in 0..batch {
        let m = mat(a, n, b);
        let (mut w, mut v) = (vec![0.0; n], vec![0.0; n * n]);
        let s = cpu::tridiagonal_eigh_one(
            |i| m[i],
            n,
            Symmetry::Symmetrize,
            opts.max_sweeps,
            &mut ws,
            &mut w,
            Some(&mut v),
        );
        let what = format!("n = {n}, matrix {b}");
        assert_eq!((s, eig.status[b]), (Status::Ok, Status::Ok), "{what}");
        assert_bitwise_eq(eig.values(b), &w, &what);
        assert_bitwise_eq(eig.vectors(b).unwrap(), &v, &what);
        assert_bitwise_eq(values_only.values(b), &w, &what);
        let mut in_place = m.to_vec();
        let mut w2 = vec![0.0; n];
        let s = cpu::tridiagonal_eigh_one_in_place(
            &mut in_place,
            n,
            Symmetry::Symmetrize,
            opts.max_sweeps,
            &mut ws,
            &mut w2,
        );
        assert_eq!(s, Status::Ok, "{what}");
        assert_bitwise_eq(&w2, &w, &what);
        assert_bitwise_eq(&in_place, &v, &what);
    }
}

#[test]
fn eigenvalues_beyond_the_f64_range_are_status_3_not_infinity() {
    // x·J (all entries x) has eigenvalues 0 and n·x: beyond f64::MAX for x = 0.6·f64::MAX and
    // n = 2, within it for the diagonal neighbour; every solver, in place too, and power
    // iteration.
    let x = 0.6 * f64::MAX;
    let a = [x, x, x, x, 2.0, 0.0, 0.0, 1.0];
    let opts = EighOptions::default();
    for (what, e) in [
        ("fast", cpu::tridiagonal_eigh(&a, 2, &opts).unwrap()),
        (
            "fast values",
            cpu::tridiagonal_eigvalsh(&a, 2, &opts).unwrap(),
        ),
        ("reference", cpu::jacobi_eigh(&a, 2, &opts).unwrap()),
        (
            "reference values",
            cpu::jacobi_eigvalsh(&a, 2, &opts).unwrap(),
        ),
    ] {
        assert_eq!(e.status, [Status::OutOfDomain, Status::Ok], "{what}");
        assert!(e.values(0).iter().all(|v| v.is_nan()), "{what}");
        assert_eq!(e.values(1), [1.0, 2.0], "{what}");
        if let Some(v) = &e.eigenvectors {
            assert!(v[..4].iter().all(|v| v.is_nan()), "{what}");
            assert!(v[4..].iter().all(|v| v.is_finite()), "{what}");
        }
    }
    let mut m = a.to_vec();
    let (w, s) = cpu::tridiagonal_eigh_in_place(&mut m, 2, &opts).unwrap();
    assert_eq!(s, [Status::OutOfDomain, Status::Ok]);
    assert!(w[..2].iter().all(|v| v.is_nan()) && m[..4].iter().all(|v| v.is_nan()));
    let p = cpu::power_iteration(&a, 2, &Default::default()).unwrap();
    assert_eq!(p.status, [Status::OutOfDomain, Status::Ok]);
    assert!(p.value[0].is_nan() && p.vector[..2].iter().all(|v| v.is_nan()));
}
