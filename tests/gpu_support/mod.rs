//! GPU test support: the shared context (or a skip), f32 rounding of test inputs, and the
//! accuracy measures the GPU is held to against the f64 CPU reference.
#![allow(dead_code)]

use eigrad::gpu::{EigvalshKernel, ForwardKernel, GpuContext};
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
/// with subgroup exchange where the adapter has it, two-sided, the register kernel, which
/// runs only up to `REGISTERS_MAX_N`, and the tridiagonal kernel, which runs where its
/// workgroup memory fits: see [`runs`]), each set explicitly whatever
/// `EIGRAD_GPU_FORWARD` says, and each computing eigenvalues only through that kernel's
/// eigenvalues-only variant ([`EigvalshKernel::Jacobi`]); empty (after `gpu()`'s skip or
/// failure) without an adapter. They are contexts of their own: [`gpu`]'s keeps the defaults.
pub fn gpu_kernels() -> Vec<(ForwardKernel, &'static GpuContext)> {
    static CTXS: OnceLock<Vec<(ForwardKernel, GpuContext)>> = OnceLock::new();
    if gpu().is_none() {
        return Vec::new();
    }
    CTXS.get_or_init(|| {
        [
            ForwardKernel::OneSided,
            ForwardKernel::OneSidedSubgroup,
            ForwardKernel::TwoSided,
            ForwardKernel::Registers,
            ForwardKernel::Tridiagonal,
        ]
        .into_iter()
        .map(|k| {
            let c = GpuContext::new().expect("another context on the same adapter");
            c.set_forward_kernel(k);
            c.set_eigvalsh_kernel(EigvalshKernel::Jacobi);
            (k, c)
        })
        .collect()
    })
    .iter()
    .map(|(k, c)| (*k, c))
    .collect()
}

/// Whether the context set to `kernel` runs that kernel at size `n` (the register kernel hands
/// larger sizes to `Auto`'s choice, which the other contexts test already).
pub fn runs(ctx: &GpuContext, kernel: ForwardKernel, n: usize) -> bool {
    ctx.forward_kernel_for(n) == kernel
}

/// One context per concrete eigenvalues-only kernel: the one-sided kernel's eigenvalues-only
/// variant (`gpu_kernels()`'s one-sided context) and the tridiagonal kernel, each set
/// explicitly whatever `EIGRAD_GPU_EIGVALSH` says; empty without an adapter.
pub fn gpu_eigvalsh_kernels() -> Vec<(EigvalshKernel, &'static GpuContext)> {
    static TRIDIAGONAL: OnceLock<GpuContext> = OnceLock::new();
    let Some(&(_, jacobi)) = gpu_kernels().first() else {
        return Vec::new();
    };
    let tridiagonal = TRIDIAGONAL.get_or_init(|| {
        let c = GpuContext::new().expect("another context on the same adapter");
        c.set_forward_kernel(ForwardKernel::OneSided);
        c.set_eigvalsh_kernel(EigvalshKernel::Tridiagonal);
        c
    });
    vec![
        (EigvalshKernel::Jacobi, jacobi),
        (EigvalshKernel::Tridiagonal, tridiagonal),
    ]
}

/// [`gpu_kernels`]'s context for `kernel` (`None` without an adapter).
pub fn gpu_kernel(kernel: ForwardKernel) -> Option<&'static GpuContext> {
    let found = gpu_kernels().into_iter().find(|&(k, _)| k == kernel);
    found.map(|(_, c)| c)
}

/// [`gpu_eigvalsh_kernels`]'s context for `kernel` (`None` without an adapter).
pub fn gpu_eigvalsh_kernel(kernel: EigvalshKernel) -> Option<&'static GpuContext> {
    let found = gpu_eigvalsh_kernels()
        .into_iter()
        .find(|&(k, _)| k == kernel);
    found.map(|(_, c)| c)
}

/// A new context (each test its own, so that its kernel choices are its own) on a device with
/// wgpu's default limits (16 KiB of workgroup memory), as an application that shares its own
/// device might make, on the adapter `gpu()` found; its kernel choices are the defaults
/// (`Auto`) whatever the environment says. `None` (after `gpu()`'s skip or failure) without an
/// adapter.
pub fn gpu_default_limits() -> Option<GpuContext> {
    gpu()?;
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let adapter =
        pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions::default()))
            .expect("the adapter gpu() found");
    let (device, queue) =
        pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor::default()))
            .expect("a device with the default limits");
    assert_eq!(
        device.limits().max_compute_workgroup_storage_size,
        16 * 1024
    );
    let ctx = GpuContext::from_device(device, queue).expect("a context on that device");
    Some(auto_choices(ctx))
}

/// A new context of its own (what it records and tunes is its own) on the adapter `gpu()`
/// found, with `Auto`'s kernel choices whatever the environment says; `None` (after `gpu()`'s
/// skip or failure) without an adapter.
pub fn gpu_auto() -> Option<GpuContext> {
    gpu()?;
    Some(auto_choices(
        GpuContext::new().expect("another context on the same adapter"),
    ))
}

/// `ctx` with both kernel choices set to `Auto`.
fn auto_choices(ctx: GpuContext) -> GpuContext {
    ctx.set_forward_kernel(ForwardKernel::Auto);
    ctx.set_eigvalsh_kernel(EigvalshKernel::Auto);
    ctx
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
