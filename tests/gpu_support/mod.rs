//! GPU test support: the shared context (or a skip), f32 rounding of test inputs, and the
//! accuracy measures the GPU is held to against the f64 CPU reference.
#![allow(dead_code)]

use eigrad::gpu::{ForwardKernel, GpuContext};
use std::sync::OnceLock;

/// The process-wide GPU context, or `None` (with a printed reason) when there is no adapter and
/// `EIGRAD_REQUIRE_GPU` is not `1`. With `EIGRAD_REQUIRE_GPU=1` a missing adapter fails the test.
pub fn gpu() -> Option<&'static GpuContext> {
    static CTX: OnceLock<Option<GpuContext>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| match GpuContext::new() {
        Ok(c) => {
            eprintln!("GPU tests run on: {}", c.adapter_name());
            Some(c)
        }
        Err(e) => {
            if std::env::var("EIGRAD_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("EIGRAD_REQUIRE_GPU=1 but no GPU is usable: {e}");
            }
            eprintln!("skipping GPU test: {e} (set EIGRAD_REQUIRE_GPU=1 to make this fail)");
            None
        }
    });
    ctx.as_ref()
}

/// One context per concrete forward kernel (one-sided through workgroup memory, one-sided
/// with subgroup exchange where the adapter has it, two-sided), each set explicitly whatever
/// `EIGRAD_GPU_FORWARD` says; empty (after `gpu()`'s skip or failure) without an adapter.
pub fn gpu_kernels() -> Vec<(ForwardKernel, &'static GpuContext)> {
    static OTHERS: OnceLock<Vec<(ForwardKernel, GpuContext)>> = OnceLock::new();
    let Some(one) = gpu() else { return Vec::new() };
    one.set_forward_kernel(ForwardKernel::OneSided);
    let others = OTHERS.get_or_init(|| {
        [ForwardKernel::OneSidedSubgroup, ForwardKernel::TwoSided]
            .into_iter()
            .map(|k| {
                let c = GpuContext::new().expect("another context on the same adapter");
                c.set_forward_kernel(k);
                (k, c)
            })
            .collect()
    });
    std::iter::once((ForwardKernel::OneSided, one))
        .chain(others.iter().map(|(k, c)| (*k, c)))
        .collect()
}

/// Rounds test data to f32 (what the GPU sees), kept in f64 for the CPU reference.
pub fn round_f32(a: &[f64]) -> Vec<f64> {
    a.iter().map(|&x| x as f32 as f64).collect()
}

/// f32 copy of test data.
pub fn to_f32(a: &[f64]) -> Vec<f32> {
    a.iter().map(|&x| x as f32).collect()
}

/// Frobenius norm.
pub fn fro(x: impl IntoIterator<Item = f64>) -> f64 {
    x.into_iter().map(|v| v * v).sum::<f64>().sqrt()
}

/// `‖x − y‖_F / ‖y‖_F` (absolute when `y` is zero).
pub fn rel_err(x: &[f32], y: &[f64]) -> f64 {
    let num = fro(x.iter().zip(y).map(|(&a, &b)| a as f64 - b));
    let den = fro(y.iter().copied());
    if den > 0.0 {
        num / den
    } else {
        num
    }
}

/// `‖AV − VΛ‖_F / ‖A‖_F` for one matrix (A symmetric, f64; V and Λ from the GPU).
pub fn residual(n: usize, a: &[f64], w: &[f32], v: &[f32]) -> f64 {
    let mut r = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let av: f64 = (0..n).map(|k| a[i * n + k] * v[k * n + j] as f64).sum();
            r.push(av - v[i * n + j] as f64 * w[j] as f64);
        }
    }
    let an = fro(a.iter().copied());
    if an > 0.0 {
        fro(r) / an
    } else {
        fro(r)
    }
}

/// `‖VᵀV − I‖_F`.
pub fn orthogonality(n: usize, v: &[f32]) -> f64 {
    let mut e = Vec::with_capacity(n * n);
    for i in 0..n {
        for j in 0..n {
            let d: f64 = (0..n)
                .map(|k| v[k * n + i] as f64 * v[k * n + j] as f64)
                .sum();
            e.push(d - if i == j { 1.0 } else { 0.0 });
        }
    }
    fro(e)
}

/// `max |λ|` of a matrix's reference eigenvalues: its 2-norm.
pub fn norm2(w: &[f64]) -> f64 {
    w.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// Overwrites the strict upper triangle of each `n×n` matrix of the batch `a` with `value(i, j)`
/// (garbage a lower-triangle read must ignore).
pub fn fill_upper<T>(a: &mut [T], n: usize, value: impl Fn(usize, usize) -> T) {
    for m in a.chunks_exact_mut(n * n) {
        for i in 0..n {
            for j in i + 1..n {
                m[i * n + j] = value(i, j);
            }
        }
    }
}
