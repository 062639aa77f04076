//! The GPU path: WGSL compute kernels run through wgpu, driven from here.
//!
//! [`GpuContext`] owns the device, queue, compiled pipelines and reusable buffers. Host-memory
//! calls (`eigh`, `eigh_vjp`, ...) upload, run and read back, splitting batches that exceed one
//! storage binding or the dispatch limits into chunks. Computation is f32 whatever the host type.

use crate::{Degeneracy, Eigh, EighOptions, Error, Jvp, Result, Scalar, Vectors};

/// Largest matrix size the GPU kernels support.
pub const MAX_N: usize = 64;

/// A GPU device with eigrad's pipelines and buffers.
pub struct GpuContext {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter_name: String,
}

impl GpuContext {
    /// Creates a context on the adapter wgpu picks (overridable with `WGPU_ADAPTER_NAME`,
    /// `WGPU_BACKEND`, `WGPU_POWER_PREF`). No adapter is [`Error::NoAdapter`].
    pub fn new() -> Result<Self> {
        Err(Error::NoAdapter("GPU path not built yet".into()))
    }

    /// Wraps an existing device and queue (a host application or training framework on the same
    /// device), so buffers can be shared without copies.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        Ok(GpuContext {
            device,
            queue,
            adapter_name: "external device".into(),
        })
    }

    /// The adapter's name (e.g. "NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub fn adapter_name(&self) -> &str {
        &self.adapter_name
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    /// Batched eigendecomposition of `a` (`[B][n][n]`, any [`Scalar`]), `1 ≤ n ≤ 64`, in f32.
    /// Same conventions as [`crate::cpu::jacobi`].
    pub fn eigh<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        opts: &EighOptions,
        vectors: Vectors,
    ) -> Result<Eigh<f32>> {
        let _ = (a, n, opts, vectors);
        Err(Error::Gpu("not built yet".into()))
    }

    /// The reverse rule on the GPU, same contract as [`crate::cpu::eigh_vjp`] (the `Mask`
    /// default tolerance is the f32 one).
    pub fn eigh_vjp(
        &self,
        eig: &Eigh<f32>,
        grad_values: Option<&[f32]>,
        grad_vectors: Option<&[f32]>,
        policy: Degeneracy,
    ) -> Result<Vec<f32>> {
        let _ = (eig, grad_values, grad_vectors, policy);
        Err(Error::Gpu("not built yet".into()))
    }

    /// `Ā = V diag(λ̄) Vᵀ` on the GPU, same contract as [`crate::cpu::eigvalsh_vjp`].
    pub fn eigvalsh_vjp(&self, eig: &Eigh<f32>, grad_values: &[f32]) -> Result<Vec<f32>> {
        self.eigh_vjp(eig, Some(grad_values), None, Degeneracy::Propagate)
    }

    /// The forward rule on the GPU, same contract as [`crate::cpu::eigh_jvp`].
    pub fn eigh_jvp(
        &self,
        eig: &Eigh<f32>,
        tangent: &[f32],
        policy: Degeneracy,
    ) -> Result<Jvp<f32>> {
        let _ = (eig, tangent, policy);
        Err(Error::Gpu("not built yet".into()))
    }

    /// Batched spectral function on the GPU, same contract as [`crate::cpu::spectral`].
    pub fn spectral<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        function: crate::spectral::SpectralFn,
        opts: &EighOptions,
    ) -> Result<crate::spectral::Spectral<f32>> {
        let _ = (a, n, function, opts);
        Err(Error::Gpu("not built yet".into()))
    }

    /// The Daleckii–Krein VJP on the GPU, same contract as [`crate::cpu::spectral_vjp`].
    pub fn spectral_vjp(
        &self,
        s: &crate::spectral::Spectral<f32>,
        grad: &[f32],
    ) -> Result<Vec<f32>> {
        let _ = (s, grad);
        Err(Error::Gpu("not built yet".into()))
    }
}
