//! Criterion benches of the GPU path: forward eigh, eigenvalues only, and the VJP, per n, both
//! device-resident (data stays on the GPU, each call timed until the GPU has finished, outputs
//! returned to the buffer pool) and end to end from host memory.
//!
//! Batch size: `EIGRAD_BENCH_BATCH` (default 4096; a eighth of it for n = 64). Skips with a
//! message when there is no adapter. Numbers from a software adapter (llvmpipe) say nothing
//! about GPU speed. The forward kernel is the context's default, which `EIGRAD_GPU_FORWARD`
//! overrides (`auto`, `one-sided`, `one-sided-subgroup`, `two-sided`, `registers`,
//! `tridiagonal`); eigenvalues only are
//! timed with each eigenvalues-only kernel (`eigvalsh-jacobi`, `eigvalsh-tridiagonal`) besides
//! the default (`eigvalsh`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eigrad::gpu::{EigvalshKernel, GpuContext, GpuTensor};
use eigrad::samples::{random_symmetric, Rng};
use eigrad::{Degeneracy, EighOptions, Vectors};
use std::time::Duration;

fn batch_for(n: usize) -> usize {
    let b = std::env::var("EIGRAD_BENCH_BATCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4096usize);
    if n >= 64 {
        (b / 8).max(1)
    } else {
        b
    }
}

/// One device-resident decomposition, waited for, its outputs back to the pool (steady state
/// creates no buffers).
fn resident(ctx: &GpuContext, a: &GpuTensor, n: usize, opts: &EighOptions, vectors: Vectors) {
    let r = ctx.eigh_resident(a, n, opts, vectors).unwrap();
    ctx.wait().unwrap();
    ctx.recycle_eigh(r);
}

fn gpu(c: &mut Criterion) {
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping GPU benches: {e}");
            return;
        }
    };
    eprintln!("GPU benches on {}", ctx.adapter_name());
    let opts = EighOptions::default();
    let mut group = c.benchmark_group(format!("gpu[{}]", ctx.adapter_name()));
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [4usize, 8, 16, 32, 64] {
        let batch = batch_for(n);
        let a: Vec<f32> = random_symmetric(&mut Rng::new(n as u64), n, batch)
            .iter()
            .map(|&x| x as f32)
            .collect();
        let gv: Vec<f32> = random_symmetric(&mut Rng::new(1 + n as u64), n, batch)
            .iter()
            .map(|&x| x as f32)
            .collect();
        group.throughput(Throughput::Elements(batch as u64));
        let a_dev = ctx.upload(&a);
        let gv_dev = ctx.upload(&gv);
        let fwd = ctx.eigh_resident(&a_dev, n, &opts, Vectors::Yes).unwrap();
        for (name, vectors) in [("eigh", Vectors::Yes), ("eigvalsh", Vectors::No)] {
            group.bench_with_input(
                BenchmarkId::new(format!("{name}/resident"), n),
                &n,
                |b, &n| b.iter(|| resident(&ctx, &a_dev, n, &opts, vectors)),
            );
            group.bench_with_input(BenchmarkId::new(format!("{name}/host"), n), &n, |b, &n| {
                b.iter(|| ctx.eigh(&a, n, &opts, vectors).unwrap())
            });
        }
        let default = ctx.eigvalsh_kernel();
        for kernel in [EigvalshKernel::Jacobi, EigvalshKernel::Tridiagonal] {
            ctx.set_eigvalsh_kernel(kernel);
            let id = BenchmarkId::new(format!("eigvalsh-{}/resident", kernel.name()), n);
            group.bench_with_input(id, &n, |b, &n| {
                b.iter(|| resident(&ctx, &a_dev, n, &opts, Vectors::No))
            });
        }
        ctx.set_eigvalsh_kernel(default);
        group.bench_with_input(BenchmarkId::new("eigh+vjp/resident", n), &n, |b, &n| {
            b.iter(|| {
                let f = ctx.eigh_resident(&a_dev, n, &opts, Vectors::Yes).unwrap();
                let g = ctx
                    .eigh_vjp_resident(&f, None, Some(&gv_dev), Degeneracy::default())
                    .unwrap();
                ctx.wait().unwrap();
                ctx.recycle(g);
                ctx.recycle_eigh(f);
            })
        });
        group.bench_with_input(BenchmarkId::new("vjp/resident", n), &n, |b, _| {
            b.iter(|| {
                let g = ctx
                    .eigh_vjp_resident(&fwd, None, Some(&gv_dev), Degeneracy::default())
                    .unwrap();
                ctx.wait().unwrap();
                ctx.recycle(g);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, gpu);
criterion_main!(benches);
