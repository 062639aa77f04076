//! The GPU spectral functions and their Daleckii–Krein VJP against the f64 CPU reference, on
//! well separated, repeated and 1e-9-clustered spectra. Skips without an adapter unless
//! `EIGRAD_REQUIRE_GPU=1`.

mod gpu_support;

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
