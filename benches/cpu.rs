//! Criterion benchmarks of the f64 CPU reference (`eigrad::cpu`): the forward decomposition with
//! and without eigenvectors (Jacobi, and the fast tridiagonal QL solver the CLI's `eigh` uses,
//! also in place), and the forward pass followed by the reverse rule (VJP), for
//! `n ∈ {4, 8, 16, 32, 64}` on a batch of sample covariance matrices (the demo's workload).
//!
//! Throughput is reported in matrices per second (`Throughput::Elements` = batch size). Run with
//! `cargo bench --bench cpu`; a single size with e.g. `cargo bench --bench cpu -- /16`.

use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use eigrad::samples::{self, Rng};
use eigrad::{cpu, Degeneracy, EighOptions};
use std::hint::black_box;
use std::time::Duration;

/// Matrix sizes benchmarked.
const SIZES: [usize; 5] = [4, 8, 16, 32, 64];

/// The batch for size `n`: 4096 matrices, 512 for n = 64 (same order of work per iteration).
fn batch_for(n: usize) -> usize {
    if n >= 64 {
        512
    } else {
        4096
    }
}

/// One benchmark input: a batch of covariance matrices and cotangents for the VJP.
struct Input {
    n: usize,
    a: Vec<f64>,
    grad_values: Vec<f64>,
    grad_vectors: Vec<f64>,
}

fn input(n: usize) -> Input {
    let batch = batch_for(n);
    let mut rng = Rng::new(0xBE7C_0000 + n as u64);
    // Twice as many observations as features: full rank, realistically spread spectra.
    let a = samples::covariances(&mut rng, n, batch, 2 * n);
    let grad_values = (0..batch * n).map(|_| rng.normal()).collect();
    let grad_vectors = (0..batch * n * n).map(|_| rng.normal()).collect();
    Input {
        n,
        a,
        grad_values,
        grad_vectors,
    }
}

fn bench_cpu(c: &mut Criterion) {
    let opts = EighOptions::default();
    let mut group = c.benchmark_group("cpu");
    group
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    for n in SIZES {
        let inp = input(n);
        group.throughput(Throughput::Elements(batch_for(n) as u64));
        // Large sizes take long per iteration: flat sampling keeps the sample count affordable.
        group.sampling_mode(if n >= 32 {
            SamplingMode::Flat
        } else {
            SamplingMode::Auto
        });

        group.bench_with_input(BenchmarkId::new("eigh", n), &inp, |b, inp| {
            b.iter(|| cpu::jacobi_eigh(black_box(&inp.a), inp.n, &opts).unwrap())
        });

        group.bench_with_input(BenchmarkId::new("eigvalsh", n), &inp, |b, inp| {
            b.iter(|| cpu::jacobi_eigvalsh(black_box(&inp.a), inp.n, &opts).unwrap())
        });

        group.bench_with_input(BenchmarkId::new("tridiagonal_eigh", n), &inp, |b, inp| {
            b.iter(|| cpu::tridiagonal_eigh(black_box(&inp.a), inp.n, &opts).unwrap())
        });

        group.bench_with_input(
            BenchmarkId::new("tridiagonal_eigvalsh", n),
            &inp,
            |b, inp| b.iter(|| cpu::tridiagonal_eigvalsh(black_box(&inp.a), inp.n, &opts).unwrap()),
        );

        group.bench_with_input(
            BenchmarkId::new("tridiagonal_in_place", n),
            &inp,
            |b, inp| {
                b.iter_batched_ref(
                    || inp.a.clone(),
                    |a| cpu::tridiagonal_eigh_in_place(black_box(a), inp.n, &opts).unwrap(),
                    criterion::BatchSize::LargeInput,
                )
            },
        );

        group.bench_with_input(BenchmarkId::new("eigh_vjp", n), &inp, |b, inp| {
            b.iter(|| {
                let eig = cpu::jacobi_eigh(black_box(&inp.a), inp.n, &opts).unwrap();
                cpu::eigh_vjp(
                    &eig,
                    Some(&inp.grad_values),
                    Some(&inp.grad_vectors),
                    Degeneracy::default(),
                )
                .unwrap()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_cpu);
criterion_main!(benches);
