//! Differentiable batched eigendecompositions and spectral functions on [burn] tensors
//! (feature `burn`).
//!
//! [`eigh`], [`eigvalsh`] and [`spectral`] take a batch `a` of shape `[B, n, n]` and follow the
//! crate's conventions (DESIGN §1): the input is symmetrised (`(A + Aᵀ)/2`), eigenvalues are
//! ascending (`[B, n]`), `vectors[b][i][j]` is component `i` of eigenvector `j` (`[B, n, n]`),
//! each eigenvector is signed so that its component of largest magnitude is positive (the first
//! within [`crate::GAUGE_TIE`] of it). A matrix
//! that cannot be decomposed (a non-finite entry, no convergence, or for [`spectral`] an input
//! outside the function's domain) gets NaN outputs; the `*_with_status` variants also return
//! the per-matrix [`Status`] codes as a `[B]` int tensor (i32: `0` ok, `1` non-finite input,
//! `2` not converged, `3` out of domain). The other matrices of the batch are unaffected.
//!
//! # Gradients
//!
//! On a device with autodiff (`device.autodiff()`) the three functions are autodiff operations
//! with hand-written backward steps (burn-autodiff's [`Backward`] trait; the saved state is
//! exactly λ, V and the status, plus the function for [`spectral`]):
//!
//! - the eigenvalues of [`eigh`] and [`eigvalsh`]: `Ā = V diag(λ̄) Vᵀ` ([`cpu::eigvalsh_vjp`]);
//! - the eigenvectors of [`eigh`]: `Ā = V (F∘skew(VᵀV̄)) Vᵀ` under the default
//!   [`Degeneracy::Mask`] policy in the precision of the computation, or the policy given to
//!   [`eigh_with`] in its [`Options`] ([`cpu::eigh_vjp`]); the
//!   two contributions are summed by autodiff when both outputs are used, so a loss of the
//!   eigenvalues alone never touches `1/(λ_j − λ_i)`;
//! - [`spectral`]: the Daleckii–Krein rule `Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ`
//!   ([`cpu::spectral_vjp`]), finite and accurate at repeated eigenvalues.
//!
//! Every `Ā` is symmetric. As DESIGN §2 warns, a loss that depends on the basis chosen inside a
//! degenerate eigenspace has no meaningful eigenvector gradient; the eigenvalues, projectors and
//! [`spectral`] are safe.
//!
//! # Where it runs
//!
//! - **burn's wgpu backend, on a device made by [`wgpu_device`] or [`share_wgpu_setup`]**:
//!   eigrad's WGSL kernels run on burn's own wgpu device and queue ([`GpuContext::from_device`]).
//!   The `wgpu::Buffer` behind each input tensor (A, and in the backward λ, V, the status and the
//!   cotangents) is bound in place through [`GpuTensor::from_buffer`], without a copy, and the
//!   kernels write their results straight into tensors burn allocates (the `*_resident_into`
//!   calls of [`GpuContext`]; when burn's memory pool puts an output in the same buffer as an
//!   input, eigrad binds both writable). Forward and backward stay on the device: no host round
//!   trip, no device copy. Computation is in f32 (other float dtypes are cast; an f16 or bf16
//!   result beyond that dtype's range is cast unchecked, to ±inf with status 0, where the
//!   host fallback gives status 3).
//! - **everything else** (burn's Flex CPU backend, a wgpu device burn created by itself, the
//!   other CubeCL runtimes, burn built with its `fusion` feature, `n > 64`): the host fallback.
//!   (A wgpu runtime burn started by itself keeps its `wgpu::Device` private to CubeCL, so
//!   eigrad has no device to compile its kernels on; make the device with [`wgpu_device`].)
//!   The tensor is read back, eigrad's f64 CPU reference ([`crate::cpu`]) computes, and the
//!   results are uploaded in the tensor's dtype; a matrix whose results that dtype cannot hold
//!   (an eigenvalue or `f(A)` beyond f32, say) gets status 3 and NaN outputs, as on the GPU.
//!   The `Mask` tolerance follows the tensor's precision (f64 tensors get f64's, every other
//!   dtype f32's).
//!
//! The routing goes through burn's backend-extension mechanism ([`EigradOps`], implemented for
//! burn's `Cube` and `Flex` backends and for `Autodiff` over them); a tensor on a backend that
//! is not compiled into this crate's dependency graph (for example the deprecated NdArray)
//! panics when routed, as burn documents for extensions.
//!
//! # Example
//!
//! ```
//! use burn::tensor::{Device, Tensor, TensorData};
//! use eigrad::spectral::SpectralFn;
//!
//! let device = Device::flex().autodiff();
//! // Two 2×2 symmetric positive definite matrices.
//! let a = Tensor::<3>::from_data(
//!     TensorData::new(vec![4.0f32, 1.0, 1.0, 3.0, 2.0, 0.0, 0.0, 5.0], [2, 2, 2]),
//!     &device,
//! )
//! .require_grad();
//! // A log-Euclidean loss: ‖log A‖² summed over the batch.
//! let log_a = eigrad::burn::spectral(a.clone(), SpectralFn::Log);
//! let loss = (log_a.clone() * log_a).sum();
//! let grads = loss.backward();
//! let grad = a.grad(&grads).expect("A requires grad");
//! assert_eq!(grad.dims(), [2, 2, 2]);
//! let (values, vectors) = eigrad::burn::eigh(a.detach());
//! assert_eq!((values.dims(), vectors.dims()), ([2, 2], [2, 2, 2]));
//! ```
//!
//! # Use in a training loop
//!
//! Make burn's wgpu device through [`wgpu_device`] (before any tensor is created on it) so
//! eigrad's kernels run on burn's buffers; everything else is plain burn. Here a linear map `W`
//! is trained so that the covariance of `X·W` over each group of samples (thousands of small
//! SPD matrices per step) is the identity, with the log-Euclidean loss `‖log C‖²`:
//!
//! ```
//! use burn::tensor::{Device, Distribution, Tensor};
//! use eigrad::spectral::SpectralFn;
//!
//! // eigrad's GPU kernels on burn's wgpu device when there is an adapter, else burn's CPU.
//! let device = eigrad::burn::wgpu_device(Device::wgpu_options())
//!     .unwrap_or_else(|_| Device::flex())
//!     .autodiff();
//! device.seed(0);
//! let (groups, samples, d, k) = (1024, 16, 6, 4);
//! let x = Tensor::<3>::random([groups, samples, d], Distribution::Normal(0.0, 1.0), &device);
//! let mut w = Tensor::<2>::random([d, k], Distribution::Normal(0.0, 0.5), &device).require_grad();
//! let mut losses = Vec::new();
//! for _step in 0..30 {
//!     let y = x.clone().matmul(w.clone().unsqueeze::<3>()); // [groups, samples, k]
//!     let c = y.clone().swap_dims(1, 2).matmul(y) / samples as f32; // [groups, k, k]
//!     let log_c = eigrad::burn::spectral(c, SpectralFn::Log);
//!     let loss = (log_c.clone() * log_c).sum() / groups as f32;
//!     let grads = loss.backward();
//!     let grad = w.grad(&grads).expect("W requires grad");
//!     losses.push(loss.into_scalar::<f32>());
//!     w = Tensor::from_inner(w.inner() - grad * 0.05).require_grad();
//! }
//! assert!(losses[29] < 0.5 * losses[0], "{losses:?}");
//! ```

use crate::gpu::{GpuContext, GpuEigh, GpuSpectral, GpuTensor, MAX_N};
use crate::spectral::{Spectral, SpectralFn};
use crate::{cpu, Degeneracy, Eigh, EighOptions, Error, Precision, Result, Status, Vectors};
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{CubeBackend, CubeTensor, WgpuDevice, WgpuSetup};
use burn::backend::{
    backend_extension, Autodiff, Backend, Cube, CubeDevice, Dispatch, DispatchDevice, Flex,
    TensorMetadata,
};
use burn::cubecl::wgpu::{AutoCompiler, WgpuServer};
use burn::tensor::{DType, Device, FloatDType, Int, IntDType, Shape, Tensor, TensorData};
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

// ---------------------------------------------------------------------------------------------
// The user-facing functions.
// ---------------------------------------------------------------------------------------------

/// Options of the burn operations: the forward decomposition's options (symmetry, sweep cap,
/// rotation threshold) and the degeneracy policy of the eigenvector gradient of [`eigh_with`].
/// The default is the crate's default for both; a `Mask` without a tolerance masks at the
/// default of the computation's precision (f64 for f64 tensors on the host path, f32
/// otherwise).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Options {
    /// Options of the forward decomposition.
    pub eigh: EighOptions,
    /// What the eigenvector gradient does with `1/(λ_j − λ_i)` at (near) ties. The eigenvalue
    /// gradients and the spectral functions' Daleckii–Krein rule need no policy.
    pub degeneracy: Degeneracy,
}

impl Options {
    /// Checks both parts.
    pub fn validate(&self) -> Result<()> {
        self.eigh.validate()?;
        self.degeneracy.validate()
    }
}

/// Fails, naming the shape, unless `a` is a batch of square matrices `[B, n, n]`.
fn check_square(a: &Tensor<3>) -> Result<()> {
    let [batch, rows, cols] = a.dims();
    if rows != cols {
        return Err(Error::Shape(format!(
            "expected a batch of square matrices [B, n, n], got [{batch}, {rows}, {cols}]"
        )));
    }
    Ok(())
}

/// Unwraps the result of a `*_with` function for the panicking convenience function `op`.
fn or_panic<T>(op: &str, r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("eigrad::burn::{op}: {e}"))
}

/// Batched symmetric eigendecomposition of `a` (`[B, n, n]`): ascending eigenvalues `[B, n]`
/// and eigenvectors `[B, n, n]` (columns, sign gauge). Differentiable in both outputs; see the
/// [module documentation](self) for the rules, the devices and the NaN outputs of bad matrices.
///
/// # Panics
///
/// When `a` is not a batch of square matrices ([`eigh_with`] returns that as an error).
pub fn eigh(a: Tensor<3>) -> (Tensor<2>, Tensor<3>) {
    let (values, vectors, _) = eigh_with_status(a);
    (values, vectors)
}

/// [`eigh`] with the per-matrix status codes (`[B]`, see [`Status`]).
///
/// # Panics
///
/// When `a` is not a batch of square matrices.
pub fn eigh_with_status(a: Tensor<3>) -> (Tensor<2>, Tensor<3>, Tensor<1, Int>) {
    or_panic("eigh", eigh_with(a, &Options::default()))
}

/// [`eigh_with_status`] under `options`: eigenvalues `[B, n]`, eigenvectors `[B, n, n]` and
/// status codes `[B]`.
///
/// # Errors
///
/// [`Error::Shape`] when `a` is not a batch of square matrices, [`Error::InvalidArgument`]
/// for invalid options.
pub fn eigh_with(
    a: Tensor<3>,
    options: &Options,
) -> Result<(Tensor<2>, Tensor<3>, Tensor<1, Int>)> {
    check_square(&a)?;
    options.validate()?;
    let (values, vectors, status) = <Dispatch as EigradOps>::eigh(a.into_dispatch(), *options);
    Ok((
        Tensor::from_dispatch(values),
        Tensor::from_dispatch(vectors),
        Tensor::from_dispatch(status),
    ))
}

/// Ascending eigenvalues `[B, n]` of the batch `a` (`[B, n, n]`), differentiable with
/// `Ā = V diag(λ̄) Vᵀ` (the eigenvectors are computed only when a gradient is needed).
///
/// # Panics
///
/// When `a` is not a batch of square matrices ([`eigvalsh_with`] returns that as an error).
pub fn eigvalsh(a: Tensor<3>) -> Tensor<2> {
    eigvalsh_with_status(a).0
}

/// [`eigvalsh`] with the per-matrix status codes (`[B]`, see [`Status`]).
///
/// # Panics
///
/// When `a` is not a batch of square matrices.
pub fn eigvalsh_with_status(a: Tensor<3>) -> (Tensor<2>, Tensor<1, Int>) {
    or_panic("eigvalsh", eigvalsh_with(a, &Options::default()))
}

/// [`eigvalsh_with_status`] under `options` (its `degeneracy` is not used: the eigenvalue
/// gradient has no `1/(λ_j − λ_i)` factor).
///
/// # Errors
///
/// As [`eigh_with`].
pub fn eigvalsh_with(a: Tensor<3>, options: &Options) -> Result<(Tensor<2>, Tensor<1, Int>)> {
    check_square(&a)?;
    options.validate()?;
    let (values, status) = <Dispatch as EigradOps>::eigvalsh(a.into_dispatch(), *options);
    Ok((Tensor::from_dispatch(values), Tensor::from_dispatch(status)))
}

/// The spectral function `f(A) = V diag(f(λ)) Vᵀ` of each matrix of `a` (`[B, n, n]`), with
/// the Daleckii–Krein gradient. sqrt, log, inv and pow need positive definite matrices; any
/// other gets NaN outputs (status `3`, out of domain).
///
/// # Panics
///
/// When `a` is not a batch of square matrices, or `function` is `Pow` with a non-finite
/// exponent ([`spectral_with`] returns these as errors).
pub fn spectral(a: Tensor<3>, function: SpectralFn) -> Tensor<3> {
    spectral_with_status(a, function).0
}

/// [`spectral`] with the per-matrix status codes (`[B]`, see [`Status`]).
///
/// # Panics
///
/// As [`spectral`].
pub fn spectral_with_status(a: Tensor<3>, function: SpectralFn) -> (Tensor<3>, Tensor<1, Int>) {
    or_panic("spectral", spectral_with(a, function, &Options::default()))
}

/// [`spectral_with_status`] under `options` (its `degeneracy` is not used: the Daleckii–Krein
/// rule is finite at ties).
///
/// # Errors
///
/// As [`eigh_with`], and [`Error::InvalidArgument`] for `Pow` with a non-finite exponent.
pub fn spectral_with(
    a: Tensor<3>,
    function: SpectralFn,
    options: &Options,
) -> Result<(Tensor<3>, Tensor<1, Int>)> {
    check_square(&a)?;
    options.validate()?;
    function.validate()?;
    let (values, status) = <Dispatch as EigradOps>::spectral(a.into_dispatch(), function, *options);
    Ok((Tensor::from_dispatch(values), Tensor::from_dispatch(status)))
}

// ---------------------------------------------------------------------------------------------
// Sharing burn's wgpu device.
// ---------------------------------------------------------------------------------------------

/// eigrad contexts on the wgpu devices burn and eigrad share, by burn's device id.
fn shared() -> &'static Mutex<HashMap<WgpuDevice, Arc<GpuContext>>> {
    static SHARED: OnceLock<Mutex<HashMap<WgpuDevice, Arc<GpuContext>>>> = OnceLock::new();
    SHARED.get_or_init(Default::default)
}

/// The wgpu selector inside a burn device (autodiff or not), if it is one.
fn wgpu_selector(device: &Device) -> Option<WgpuDevice> {
    match device.clone().without_autodiff().as_dispatch() {
        DispatchDevice::Cube(CubeDevice::Wgpu(w)) => Some(w.clone()),
        _ => None,
    }
}

/// Records that `device` runs on `setup`'s wgpu device and queue.
fn register(device: Device, setup: WgpuSetup) -> Result<Device> {
    let selector = wgpu_selector(&device)
        .ok_or_else(|| Error::InvalidArgument(format!("{device:?} is not a wgpu device")))?;
    let context = GpuContext::from_device(setup.device, setup.queue)?;
    log::info!(
        "eigrad shares burn's wgpu device {selector:?} ({})",
        setup.adapter.get_info().name
    );
    shared().lock().unwrap().insert(selector, Arc::new(context));
    Ok(device)
}

/// Initialises burn's wgpu runtime with `options` (for example
/// `Device::wgpu_options().device_kind(..)`, or `Device::wgpu_options()` for the default
/// adapter) and shares its device and queue with eigrad, so [`eigh`], [`eigvalsh`] and
/// [`spectral`] run eigrad's kernels on burn's buffers. Call it before any tensor is created on
/// that selector (burn initialises a runtime only once); use the returned device, with
/// `.autodiff()` for training.
///
/// # Errors
///
/// [`Error::RequestDevice`] when burn cannot initialise the runtime (no adapter, already
/// initialised, invalid options).
pub fn wgpu_device(options: burn::tensor::wgpu::WgpuOptions) -> Result<Device> {
    let (device, setup) = options
        .init_with_setup()
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
    register(device, setup)
}

/// Registers an application's existing wgpu setup with burn (a new burn device on those
/// handles) and shares it with eigrad. Register a setup once and clone the returned device.
///
/// # Errors
///
/// [`Error::RequestDevice`] when burn refuses the setup.
pub fn share_wgpu_setup(setup: WgpuSetup) -> Result<Device> {
    let device = Device::wgpu_options()
        .setup(setup.clone())
        .init()
        .map_err(|e| Error::RequestDevice(e.to_string()))?;
    register(device, setup)
}

/// How many eigrad kernel calls (forward or backward) the current thread ran on each path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathCounts {
    /// Calls served by eigrad's GPU kernels on burn's buffers (a shared wgpu device).
    pub gpu: u64,
    /// Calls served by the host fallback (the f64 CPU reference).
    pub host: u64,
}

thread_local! {
    static COUNTS: std::cell::Cell<PathCounts> = Default::default();
}

fn count(gpu: bool) {
    COUNTS.with(|c| {
        let mut v = c.get();
        if gpu {
            v.gpu += 1;
        } else {
            v.host += 1;
        }
        c.set(v);
    });
}

/// The calls the current thread has made so far, by path: a diagnostic to confirm that a
/// training step stays on the device (a growing `host` count on a wgpu device means the device
/// was not made by [`wgpu_device`]/[`share_wgpu_setup`], or burn's `fusion` feature is on).
pub fn path_counts() -> PathCounts {
    COUNTS.with(|c| c.get())
}

/// The eigrad context sharing `device`'s wgpu device and queue, when `device` was made by
/// [`wgpu_device`] or [`share_wgpu_setup`]: for calling eigrad's device-resident API directly.
pub fn gpu_context(device: &Device) -> Option<Arc<GpuContext>> {
    let selector = wgpu_selector(device)?;
    shared().lock().unwrap().get(&selector).cloned()
}

// ---------------------------------------------------------------------------------------------
// The backend extension: routing through burn's `Dispatch`.
// ---------------------------------------------------------------------------------------------

/// The operations behind [`eigh`], [`eigvalsh`] and [`spectral`] as a burn backend extension:
/// burn's `Dispatch` routes them to the implementation for the tensor's backend (`Cube`,
/// `Flex`, or `Autodiff` over either). Users call the functions above instead.
#[backend_extension(Cube, Flex, Autodiff)]
pub trait EigradOps: Backend {
    /// Eigenvalues `[B, n]`, eigenvectors `[B, n, n]` and status codes `[B]` of `a`.
    fn eigh(
        a: FloatTensor<Self>,
        options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, IntTensor<Self>);

    /// Eigenvalues `[B, n]` and status codes `[B]` of `a`.
    fn eigvalsh(a: FloatTensor<Self>, options: Options) -> (FloatTensor<Self>, IntTensor<Self>);

    /// `f(A)` `[B, n, n]` and status codes `[B]` of `a`.
    fn spectral(
        a: FloatTensor<Self>,
        function: SpectralFn,
        options: Options,
    ) -> (FloatTensor<Self>, IntTensor<Self>);
}

/// A forward decomposition on a concrete backend: what the backward steps save.
#[derive(Clone, Debug)]
pub struct Forward<B: Backend> {
    /// Eigenvalues `[B, n]`, ascending (NaN where the status is not ok).
    pub values: FloatTensor<B>,
    /// Eigenvectors `[B, n, n]`, when they were asked for.
    pub vectors: Option<FloatTensor<B>>,
    /// Status codes `[B]` ([`Status::code`]).
    pub status: IntTensor<B>,
}

/// `f(A)`, its status and, when asked for, the decomposition its backward needs.
pub type SpectralForward<B> = (FloatTensor<B>, IntTensor<B>, Option<Forward<B>>);

/// The forward and reverse kernels a concrete backend supplies to [`EigradOps`] and its
/// autodiff implementation. The default methods are the host fallback (read back, compute with
/// the f64 CPU reference, upload); burn's `Cube` backend overrides them with eigrad's GPU
/// kernels on a shared wgpu device.
pub trait EigradKernels: Backend {
    /// The decomposition of `a` (`[B, n, n]`) under `opts`, with eigenvectors when `vectors`
    /// says so.
    fn eigh_forward(a: FloatTensor<Self>, vectors: Vectors, opts: &EighOptions) -> Forward<Self> {
        host::eigh_forward::<Self>(a, vectors, opts)
    }

    /// `f(A)` (`[B, n, n]`) and its status (`[B]`) for the batch `a`, with the decomposition
    /// the backward needs when `saved` is [`Vectors::Yes`].
    fn spectral_forward(
        a: FloatTensor<Self>,
        function: SpectralFn,
        saved: Vectors,
        opts: &EighOptions,
    ) -> SpectralForward<Self> {
        host::spectral_forward::<Self>(a, function, saved, opts)
    }

    /// `Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ` for the forward `fwd` (with eigenvectors), each
    /// cotangent optional, under `policy`.
    fn eigh_vjp(
        fwd: &Forward<Self>,
        grad_values: Option<FloatTensor<Self>>,
        grad_vectors: Option<FloatTensor<Self>>,
        policy: Degeneracy,
    ) -> FloatTensor<Self> {
        host::eigh_vjp::<Self>(fwd, grad_values, grad_vectors, policy)
    }

    /// The Daleckii–Krein VJP `Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ` of `function` for the forward `fwd`.
    fn spectral_vjp(
        fwd: &Forward<Self>,
        function: SpectralFn,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        host::spectral_vjp::<Self>(fwd, function, grad)
    }
}

impl EigradKernels for Flex {}

/// Moves `t` into type `U` when `T` and `U` are the same type, else gives it back: the
/// type-level test of whether burn's `Cube` is the plain `CubeBackend` (it is wrapped in
/// `Fusion` when burn's `fusion` feature is on).
fn same_type<T: 'static, U: 'static>(t: T) -> std::result::Result<U, T> {
    let boxed: Box<dyn Any> = Box::new(t);
    match boxed.downcast::<U>() {
        Ok(u) => Ok(*u),
        Err(boxed) => Err(*boxed.downcast::<T>().expect("a value keeps its own type")),
    }
}

/// Runs `gpu` on the `CubeBackend` primitive when `Cube` is `CubeBackend` and the GPU path
/// applies (it returns `None` otherwise), else `host`.
fn cube_or_host<I: 'static, O: 'static, OC: 'static>(
    input: I,
    gpu: impl FnOnce(&I) -> Option<OC>,
    host: impl FnOnce(I) -> O,
) -> O {
    match gpu(&input).map(same_type::<OC, O>) {
        Some(Ok(out)) => {
            count(true);
            out
        }
        _ => {
            log::debug!("eigrad::burn: host fallback");
            host(input)
        }
    }
}

impl EigradKernels for Cube {
    fn eigh_forward(a: FloatTensor<Self>, vectors: Vectors, opts: &EighOptions) -> Forward<Self> {
        cube_or_host(
            a,
            |a| wgpu_path::eigh_forward(as_cube(a)?, vectors, opts),
            |a| host::eigh_forward::<Self>(a, vectors, opts),
        )
    }

    fn spectral_forward(
        a: FloatTensor<Self>,
        function: SpectralFn,
        saved: Vectors,
        opts: &EighOptions,
    ) -> SpectralForward<Self> {
        cube_or_host(
            a,
            |a| wgpu_path::spectral_forward(as_cube(a)?, function, saved, opts),
            |a| host::spectral_forward::<Self>(a, function, saved, opts),
        )
    }

    fn eigh_vjp(
        fwd: &Forward<Self>,
        grad_values: Option<FloatTensor<Self>>,
        grad_vectors: Option<FloatTensor<Self>>,
        policy: Degeneracy,
    ) -> FloatTensor<Self> {
        cube_or_host(
            (grad_values, grad_vectors),
            |(gl, gv)| {
                let fwd: &Forward<CubeBackend> = (fwd as &dyn Any).downcast_ref()?;
                let gl = match gl {
                    Some(g) => Some(as_cube(g)?),
                    None => None,
                };
                let gv = match gv {
                    Some(g) => Some(as_cube(g)?),
                    None => None,
                };
                wgpu_path::eigh_vjp(fwd, gl, gv, policy)
            },
            |(gl, gv)| host::eigh_vjp::<Self>(fwd, gl, gv, policy),
        )
    }

    fn spectral_vjp(
        fwd: &Forward<Self>,
        function: SpectralFn,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cube_or_host(
            grad,
            |g| {
                let fwd: &Forward<CubeBackend> = (fwd as &dyn Any).downcast_ref()?;
                wgpu_path::spectral_vjp(fwd, function, as_cube(g)?)
            },
            |g| host::spectral_vjp::<Self>(fwd, function, g),
        )
    }
}

/// The `CubeBackend` primitive behind a `Cube` tensor (a cheap handle clone), when `Cube` is
/// `CubeBackend`.
fn as_cube<T: 'static>(t: &T) -> Option<CubeTensor> {
    (t as &dyn Any).downcast_ref::<CubeTensor>().cloned()
}

/// The non-differentiable operations of a concrete backend.
macro_rules! plain_ops {
    ($backend:ty) => {
        impl EigradOps for $backend {
            fn eigh(
                a: FloatTensor<Self>,
                options: Options,
            ) -> (FloatTensor<Self>, FloatTensor<Self>, IntTensor<Self>) {
                let f = <Self as EigradKernels>::eigh_forward(a, Vectors::Yes, &options.eigh);
                let vectors = f.vectors.expect("asked for eigenvectors");
                (f.values, vectors, f.status)
            }

            fn eigvalsh(
                a: FloatTensor<Self>,
                options: Options,
            ) -> (FloatTensor<Self>, IntTensor<Self>) {
                let f = <Self as EigradKernels>::eigh_forward(a, Vectors::No, &options.eigh);
                (f.values, f.status)
            }

            fn spectral(
                a: FloatTensor<Self>,
                function: SpectralFn,
                options: Options,
            ) -> (FloatTensor<Self>, IntTensor<Self>) {
                let (values, status, _) = <Self as EigradKernels>::spectral_forward(
                    a,
                    function,
                    Vectors::No,
                    &options.eigh,
                );
                (values, status)
            }
        }
    };
}

plain_ops!(Cube);
plain_ops!(Flex);

// ---------------------------------------------------------------------------------------------
// Autodiff: the backward steps.
// ---------------------------------------------------------------------------------------------

/// The backward step of the eigenvalues (of [`eigh`] and [`eigvalsh`]): `Ā = V diag(λ̄) Vᵀ`.
#[derive(Debug)]
struct EigenvaluesBackward;

impl<B: EigradKernels> Backward<B, 1> for EigenvaluesBackward {
    type State = Forward<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_values = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(parent) = parent {
            // No 1/(λ_j − λ_i) factor here: the policy does not matter.
            let grad = B::eigh_vjp(&ops.state, Some(grad_values), None, Degeneracy::default());
            grads.register::<B>(parent.id, grad);
        }
    }
}

/// The backward step of the eigenvectors of [`eigh`]: `Ā = V (F∘skew(VᵀV̄)) Vᵀ`.
#[derive(Debug)]
struct EigenvectorsBackward;

impl<B: EigradKernels> Backward<B, 1> for EigenvectorsBackward {
    type State = (Forward<B>, Degeneracy);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_vectors = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(parent) = parent {
            let (fwd, policy) = &ops.state;
            let grad = B::eigh_vjp(fwd, None, Some(grad_vectors), *policy);
            grads.register::<B>(parent.id, grad);
        }
    }
}

/// The backward step of [`spectral`]: the Daleckii–Krein rule of the saved function.
#[derive(Debug)]
struct SpectralBackward;

impl<B: EigradKernels> Backward<B, 1> for SpectralBackward {
    type State = (Forward<B>, SpectralFn);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let [parent] = ops.parents;
        if let Some(parent) = parent {
            let (fwd, function) = &ops.state;
            let grad = B::spectral_vjp(fwd, *function, grad);
            grads.register::<B>(parent.id, grad);
        }
    }
}

impl<B: EigradKernels, C: CheckpointStrategy> EigradOps for Autodiff<B, C> {
    fn eigh(
        a: FloatTensor<Self>,
        options: Options,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, IntTensor<Self>) {
        let (values_guard, vectors_guard) = (a.node(), a.node());
        let fwd = B::eigh_forward(a.into_primitive(), Vectors::Yes, &options.eigh);
        let vectors = fwd.vectors.clone().expect("asked for eigenvectors");
        let values = match EigenvaluesBackward
            .prepare::<C>([values_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(fwd.clone(), fwd.values.clone()),
            OpsKind::UnTracked(prep) => prep.finish(fwd.values.clone()),
        };
        let status = fwd.status.clone();
        let vectors = match EigenvectorsBackward
            .prepare::<C>([vectors_guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((fwd, options.degeneracy), vectors),
            OpsKind::UnTracked(prep) => prep.finish(vectors),
        };
        (values, vectors, status)
    }

    fn eigvalsh(a: FloatTensor<Self>, options: Options) -> (FloatTensor<Self>, IntTensor<Self>) {
        let guard = a.node();
        let a = a.into_primitive();
        match EigenvaluesBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                // The backward needs the eigenvectors.
                let fwd = B::eigh_forward(a, Vectors::Yes, &options.eigh);
                let (values, status) = (fwd.values.clone(), fwd.status.clone());
                (prep.finish(fwd, values), status)
            }
            OpsKind::UnTracked(prep) => {
                let fwd = B::eigh_forward(a, Vectors::No, &options.eigh);
                (prep.finish(fwd.values), fwd.status)
            }
        }
    }

    fn spectral(
        a: FloatTensor<Self>,
        function: SpectralFn,
        options: Options,
    ) -> (FloatTensor<Self>, IntTensor<Self>) {
        let guard = a.node();
        let a = a.into_primitive();
        match SpectralBackward
            .prepare::<C>([guard])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (values, status, fwd) =
                    B::spectral_forward(a, function, Vectors::Yes, &options.eigh);
                let fwd = fwd.expect("asked for the decomposition");
                (prep.finish((fwd, function), values), status)
            }
            OpsKind::UnTracked(prep) => {
                let (values, status, _) =
                    B::spectral_forward(a, function, Vectors::No, &options.eigh);
                (prep.finish(values), status)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The host fallback: any backend, through the f64 CPU reference.
// ---------------------------------------------------------------------------------------------

mod host {
    use super::*;

    /// Blocks on a backend's readback.
    fn read<
        F: std::future::Future<Output = std::result::Result<TensorData, E>>,
        E: std::fmt::Debug,
    >(
        future: F,
        what: &str,
    ) -> TensorData {
        pollster::block_on(future)
            .unwrap_or_else(|e| panic!("eigrad::burn: reading {what} back failed: {e:?}"))
    }

    /// A float tensor's values, widened to f64.
    fn floats<B: Backend>(t: FloatTensor<B>, what: &str) -> Vec<f64> {
        read(B::float_into_data(t), what)
            .try_into_vec_as::<f64>()
            .unwrap_or_else(|e| panic!("eigrad::burn: {what}: {e:?}"))
    }

    /// A status tensor's codes.
    fn statuses<B: Backend>(t: &IntTensor<B>) -> Vec<Status> {
        read(B::int_into_data(t.clone()), "the status")
            .try_into_vec_as::<i64>()
            .unwrap_or_else(|e| panic!("eigrad::burn: the status: {e:?}"))
            .into_iter()
            .map(|c| Status::from_code(c as u32).unwrap_or(Status::NotConverged))
            .collect()
    }

    /// Uploads f64 values as a float tensor of `dtype`.
    fn upload<B: Backend>(
        values: Vec<f64>,
        shape: Shape,
        dtype: DType,
        device: &B::Device,
    ) -> FloatTensor<B> {
        B::float_from_data(TensorData::new(values, shape).convert_dtype(dtype), device)
    }

    /// Whether the finite f64 `x` becomes infinite in `dtype`.
    fn beyond(x: f64, dtype: DType) -> bool {
        x.is_finite()
            && match dtype {
                DType::F32 | DType::Flex32 => (x as f32).is_infinite(),
                DType::F16 => half::f16::from_f64(x).is_infinite(),
                DType::BF16 => half::bf16::from_f64(x).is_infinite(),
                _ => false,
            }
    }

    /// Gives each matrix of an ok status whose results `dtype` cannot hold (computed in f64: an
    /// eigenvalue or f(A) beyond f32, say) status 3 and NaN results, as the GPU kernels do in
    /// f32, instead of ±inf with status ok. `outputs` are each result's `(values, values per
    /// matrix)`.
    fn guard_range(dtype: DType, status: &mut [Status], outputs: &mut [(&mut [f64], usize)]) {
        let checked = outputs.len();
        cpu::fail_where(status, outputs, checked, |x| beyond(x, dtype));
    }

    /// Uploads status codes as an i32 tensor.
    fn upload_status<B: Backend>(status: &[Status], device: &B::Device) -> IntTensor<B> {
        let codes: Vec<i32> = status.iter().map(|s| s.code() as i32).collect();
        let len = codes.len();
        B::int_from_data(TensorData::new(codes, [len]), device)
    }

    /// `policy` with a default `Mask` tolerance made that of `dtype`'s precision (f64's for
    /// f64, f32's otherwise): the CPU computes in f64 whatever the tensor's dtype.
    fn in_precision(policy: Degeneracy, dtype: DType) -> Degeneracy {
        let precision = if dtype == DType::F64 {
            Precision::F64
        } else {
            Precision::F32
        };
        match policy {
            Degeneracy::Mask { rel_tol: None } => Degeneracy::Mask {
                rel_tol: Some(precision.default_mask_rel_tol()),
            },
            p => p,
        }
    }

    /// `(B, n)` of a `[B, n, n]` primitive.
    fn dims<B: Backend>(a: &FloatTensor<B>) -> (usize, usize) {
        let [batch, n, _] = a.shape().dims::<3>();
        (batch, n)
    }

    /// The CPU decomposition of `a`, `None` for an empty batch or `n = 0`.
    fn decompose<B: Backend>(
        a: FloatTensor<B>,
        vectors: Vectors,
        opts: &EighOptions,
    ) -> (Option<Eigh<f64>>, usize, usize) {
        let (batch, n) = dims::<B>(&a);
        if batch == 0 || n == 0 {
            return (None, batch, n);
        }
        let data = floats::<B>(a, "the input");
        let eig = cpu::jacobi(&data, n, opts, vectors)
            .unwrap_or_else(|e| panic!("eigrad::burn::eigh: {e}"));
        (Some(eig), batch, n)
    }

    pub(super) fn eigh_forward<B: Backend>(
        a: FloatTensor<B>,
        vectors: Vectors,
        opts: &EighOptions,
    ) -> Forward<B> {
        count(false);
        let (device, dtype) = (a.device(), a.dtype());
        let (eig, batch, n) = decompose::<B>(a, vectors, opts);
        let mut eig = eig.unwrap_or(Eigh {
            n,
            batch,
            eigenvalues: Vec::new(),
            eigenvectors: (vectors == Vectors::Yes).then(Vec::new),
            status: vec![Status::Ok; batch],
        });
        let mut outputs = vec![(&mut eig.eigenvalues[..], n)];
        outputs.extend(eig.eigenvectors.as_deref_mut().map(|v| (v, n * n)));
        guard_range(dtype, &mut eig.status, &mut outputs);
        Forward {
            values: upload::<B>(eig.eigenvalues, Shape::new([batch, n]), dtype, &device),
            vectors: eig
                .eigenvectors
                .map(|v| upload::<B>(v, Shape::new([batch, n, n]), dtype, &device)),
            status: upload_status::<B>(&eig.status, &device),
        }
    }

    pub(super) fn spectral_forward<B: Backend>(
        a: FloatTensor<B>,
        function: SpectralFn,
        saved: Vectors,
        opts: &EighOptions,
    ) -> SpectralForward<B> {
        count(false);
        let (device, dtype) = (a.device(), a.dtype());
        let (batch, n) = dims::<B>(&a);
        let mut s = if batch == 0 || n == 0 {
            Spectral {
                function,
                values: Vec::new(),
                eig: Eigh {
                    n,
                    batch,
                    eigenvalues: Vec::new(),
                    eigenvectors: Some(Vec::new()),
                    status: vec![Status::Ok; batch],
                },
            }
        } else {
            let data = floats::<B>(a, "the input");
            cpu::spectral(&data, n, function, opts)
                .unwrap_or_else(|e| panic!("eigrad::burn::spectral: {e}"))
        };
        let mut outputs = vec![(&mut s.values[..], n * n), (&mut s.eig.eigenvalues[..], n)];
        outputs.extend(s.eig.eigenvectors.as_deref_mut().map(|v| (v, n * n)));
        guard_range(dtype, &mut s.eig.status, &mut outputs);
        let values = upload::<B>(s.values, Shape::new([batch, n, n]), dtype, &device);
        let status = upload_status::<B>(&s.eig.status, &device);
        let fwd = (saved == Vectors::Yes).then(|| Forward {
            values: upload::<B>(s.eig.eigenvalues, Shape::new([batch, n]), dtype, &device),
            vectors: s
                .eig
                .eigenvectors
                .map(|v| upload::<B>(v, Shape::new([batch, n, n]), dtype, &device)),
            status: status.clone(),
        });
        (values, status, fwd)
    }

    /// The saved decomposition back on the host.
    fn saved<B: Backend>(fwd: &Forward<B>) -> Eigh<f64> {
        let [batch, n] = fwd.values.shape().dims::<2>();
        let vectors = fwd
            .vectors
            .clone()
            .expect("the backward saves the eigenvectors");
        Eigh {
            n,
            batch,
            eigenvalues: floats::<B>(fwd.values.clone(), "the eigenvalues"),
            eigenvectors: Some(floats::<B>(vectors, "the eigenvectors")),
            status: statuses::<B>(&fwd.status),
        }
    }

    pub(super) fn eigh_vjp<B: Backend>(
        fwd: &Forward<B>,
        grad_values: Option<FloatTensor<B>>,
        grad_vectors: Option<FloatTensor<B>>,
        policy: Degeneracy,
    ) -> FloatTensor<B> {
        count(false);
        let (device, dtype) = (fwd.values.device(), fwd.values.dtype());
        let [batch, n] = fwd.values.shape().dims::<2>();
        let shape = Shape::new([batch, n, n]);
        if batch == 0 || n == 0 {
            return B::float_zeros(shape, &device, FloatDType::from(dtype));
        }
        let eig = saved::<B>(fwd);
        let gl = grad_values.map(|g| floats::<B>(g, "the eigenvalue cotangent"));
        let gv = grad_vectors.map(|g| floats::<B>(g, "the eigenvector cotangent"));
        let grad = match (&gl, &gv) {
            (Some(gl), None) => cpu::eigvalsh_vjp(&eig, gl),
            _ => cpu::eigh_vjp(
                &eig,
                gl.as_deref(),
                gv.as_deref(),
                in_precision(policy, dtype),
            ),
        }
        .unwrap_or_else(|e| panic!("eigrad::burn::eigh backward: {e}"));
        upload::<B>(grad, shape, dtype, &device)
    }

    pub(super) fn spectral_vjp<B: Backend>(
        fwd: &Forward<B>,
        function: SpectralFn,
        grad: FloatTensor<B>,
    ) -> FloatTensor<B> {
        count(false);
        let (device, dtype) = (fwd.values.device(), fwd.values.dtype());
        let [batch, n] = fwd.values.shape().dims::<2>();
        let shape = Shape::new([batch, n, n]);
        if batch == 0 || n == 0 {
            return B::float_zeros(shape, &device, FloatDType::from(dtype));
        }
        // `values` (f(A)) is not needed by the VJP; it only has to have its shape.
        let s = Spectral {
            function,
            values: vec![0.0; batch * n * n],
            eig: saved::<B>(fwd),
        };
        let g = floats::<B>(grad, "the cotangent");
        let out = cpu::spectral_vjp(&s, &g)
            .unwrap_or_else(|e| panic!("eigrad::burn::spectral backward: {e}"));
        upload::<B>(out, shape, dtype, &device)
    }
}

// ---------------------------------------------------------------------------------------------
// The GPU path: eigrad's kernels on burn's wgpu buffers.
// ---------------------------------------------------------------------------------------------

mod wgpu_path {
    use super::*;

    /// Logs once that a wgpu tensor lives on a device eigrad does not share.
    fn warn_unshared(device: &WgpuDevice) {
        static WARNED: AtomicBool = AtomicBool::new(false);
        if !WARNED.swap(true, Ordering::Relaxed) {
            log::warn!(
                "eigrad::burn: the wgpu device {device:?} was not created through \
                 eigrad::burn::wgpu_device or share_wgpu_setup; eigrad falls back to the CPU \
                 reference (read back, compute, upload)"
            );
        }
    }

    /// The eigrad context sharing this tensor's wgpu device, if any.
    fn context(device: &CubeDevice) -> Option<Arc<GpuContext>> {
        let CubeDevice::Wgpu(selector) = device else {
            return None;
        };
        let context = shared().lock().unwrap().get(selector).cloned();
        if context.is_none() {
            warn_unshared(selector);
        }
        context
    }

    /// A burn tensor whose buffer region eigrad binds in place.
    struct Bound {
        /// Keeps burn's allocation alive.
        _tensor: CubeTensor,
        /// Pins the allocation in place while eigrad uses it (cubecl's `ManagedResource`).
        _pin: Box<dyn Any>,
        /// The same region as an eigrad tensor.
        gpu: GpuTensor,
    }

    /// Binds the buffer behind a contiguous 4-byte tensor (f32, or the i32 status) in place.
    /// `None` when cubecl cannot hand out the buffer or its offset is not a valid storage
    /// binding offset.
    fn bind(context: &GpuContext, t: CubeTensor) -> Option<Bound> {
        let len = t.meta.shape().num_elements();
        // The handle may be padded past the data; the data start at its first byte.
        let fits = t.handle.size() >= (len * 4) as u64;
        if !(t.is_contiguous() && t.dtype.size() == 4 && fits) || len == 0 {
            log::debug!(
                "eigrad::burn: a {:?} tensor of shape {:?} is not a contiguous 4-byte buffer",
                t.dtype,
                t.meta.shape()
            );
            return None;
        }
        let pin = t
            .client
            .get_resource::<WgpuServer<AutoCompiler>>(t.handle.clone())
            .map_err(|e| log::debug!("eigrad::burn: no wgpu resource for a tensor: {e}"))
            .ok()?;
        let resource = pin.resource();
        let align = context
            .device()
            .limits()
            .min_storage_buffer_offset_alignment as u64;
        if !resource.offset.is_multiple_of(align) {
            log::debug!(
                "eigrad::burn: tensor at byte {} is not bindable",
                resource.offset
            );
            return None;
        }
        let gpu = GpuTensor::from_buffer(resource.buffer.clone(), resource.offset, len)
            .map_err(|e| log::debug!("eigrad::burn: {e}"))
            .ok()?;
        Some(Bound {
            _tensor: t,
            _pin: Box::new(pin),
            gpu,
        })
    }

    /// A float input as a flat contiguous f32 tensor bound in place (copied once on the device
    /// when it is strided, tiled, of another dtype or misaligned).
    fn bind_input(context: &GpuContext, t: CubeTensor) -> Option<Bound> {
        let len = t.meta.shape().num_elements();
        let mut t = t;
        if t.dtype != DType::F32 {
            t = CubeBackend::float_cast(t, FloatDType::F32);
        }
        let flat = CubeBackend::float_reshape(t, Shape::new([len]));
        match bind(context, flat.clone()) {
            Some(b) => Some(b),
            // A fresh allocation is contiguous and aligned.
            None => bind(context, flat.copy()),
        }
    }

    /// A new f32 (or i32 for the status) tensor for a result, bound in place.
    fn bind_output(
        context: &GpuContext,
        device: &CubeDevice,
        shape: Shape,
        int: bool,
    ) -> Option<(CubeTensor, Bound)> {
        let t = if int {
            CubeBackend::int_empty(shape, device, IntDType::I32)
        } else {
            CubeBackend::float_empty(shape, device, FloatDType::F32)
        };
        let b = bind(context, t.clone())?;
        Some((t, b))
    }

    /// Submits burn's pending work on `t`'s device, so eigrad's submissions on the shared
    /// queue see its results (burn documents this for external consumers of its buffers).
    fn flush(t: &CubeTensor) -> Option<()> {
        t.client
            .flush()
            .map_err(|e| log::warn!("eigrad::burn: flushing burn's work failed: {e}"))
            .ok()
    }

    /// The dtype the caller's tensor had, for casting results back.
    fn restore(t: CubeTensor, dtype: DType) -> CubeTensor {
        if dtype == DType::F32 {
            t
        } else {
            CubeBackend::float_cast(t, FloatDType::from(dtype))
        }
    }

    /// `(context, B, n)` when the GPU path applies to `a`.
    fn applies(a: &CubeTensor) -> Option<(Arc<GpuContext>, usize, usize)> {
        let shape = a.meta.shape();
        if shape.num_dims() != 3 {
            return None;
        }
        let [batch, n, _] = shape.dims::<3>();
        if batch == 0 || n == 0 || n > MAX_N {
            return None;
        }
        Some((context(&a.device)?, batch, n))
    }

    pub(super) fn eigh_forward(
        a: CubeTensor,
        vectors: Vectors,
        opts: &EighOptions,
    ) -> Option<Forward<CubeBackend>> {
        let (context, batch, n) = applies(&a)?;
        let (device, dtype) = (a.device.clone(), a.dtype);
        let input = bind_input(&context, a)?;
        let (values, values_out) = bind_output(&context, &device, Shape::new([batch, n]), false)?;
        let (status, status_out) = bind_output(&context, &device, Shape::new([batch]), true)?;
        let vecs = match vectors {
            Vectors::Yes => Some(bind_output(
                &context,
                &device,
                Shape::new([batch, n, n]),
                false,
            )?),
            Vectors::No => None,
        };
        flush(&input._tensor)?;
        // The kernel writes straight into burn's tensors.
        let out = GpuEigh {
            n,
            batch,
            eigenvalues: values_out.gpu.clone(),
            eigenvectors: vecs.as_ref().map(|(_, b)| b.gpu.clone()),
            status: status_out.gpu.clone(),
        };
        context
            .eigh_resident_into(&input.gpu, opts, &out)
            .map_err(|e| log::warn!("eigrad::burn: eigh on the GPU failed: {e}"))
            .ok()?;
        Some(Forward {
            values: restore(values, dtype),
            vectors: vecs.map(|(v, _)| restore(v, dtype)),
            status,
        })
    }

    pub(super) fn spectral_forward(
        a: CubeTensor,
        function: SpectralFn,
        saved: Vectors,
        opts: &EighOptions,
    ) -> Option<SpectralForward<CubeBackend>> {
        let (context, batch, n) = applies(&a)?;
        let (device, dtype) = (a.device.clone(), a.dtype);
        let input = bind_input(&context, a)?;
        let (fa, fa_out) = bind_output(&context, &device, Shape::new([batch, n, n]), false)?;
        let (status, status_out) = bind_output(&context, &device, Shape::new([batch]), true)?;
        // The decomposition lands in burn tensors too; they are dropped when the backward does
        // not need them.
        let (values, values_out) = bind_output(&context, &device, Shape::new([batch, n]), false)?;
        let (vecs, vecs_out) = bind_output(&context, &device, Shape::new([batch, n, n]), false)?;
        flush(&input._tensor)?;
        let out = GpuSpectral {
            function,
            values: fa_out.gpu.clone(),
            eig: GpuEigh {
                n,
                batch,
                eigenvalues: values_out.gpu.clone(),
                eigenvectors: Some(vecs_out.gpu.clone()),
                status: status_out.gpu.clone(),
            },
        };
        context
            .spectral_resident_into(&input.gpu, opts, &out)
            .map_err(|e| log::warn!("eigrad::burn: spectral on the GPU failed: {e}"))
            .ok()?;
        let fwd = (saved == Vectors::Yes).then(|| Forward {
            values: restore(values, dtype),
            vectors: Some(restore(vecs, dtype)),
            status: status.clone(),
        });
        Some((restore(fa, dtype), status, fwd))
    }

    /// The saved forward bound in place, as eigrad's device-resident decomposition.
    fn bind_forward(
        context: &GpuContext,
        fwd: &Forward<CubeBackend>,
    ) -> Option<(GpuEigh, Vec<Bound>)> {
        let [batch, n] = fwd.values.meta.shape().dims::<2>();
        let values = bind_input(context, fwd.values.clone())?;
        let vectors = bind_input(context, fwd.vectors.clone()?)?;
        let status = bind(context, fwd.status.clone())?;
        let eig = GpuEigh {
            n,
            batch,
            eigenvalues: values.gpu.clone(),
            eigenvectors: Some(vectors.gpu.clone()),
            status: status.gpu.clone(),
        };
        Some((eig, vec![values, vectors, status]))
    }

    pub(super) fn eigh_vjp(
        fwd: &Forward<CubeBackend>,
        grad_values: Option<CubeTensor>,
        grad_vectors: Option<CubeTensor>,
        policy: Degeneracy,
    ) -> Option<CubeTensor> {
        let (context, batch, n) = applies(fwd.vectors.as_ref()?)?;
        let (device, dtype) = (fwd.values.device.clone(), fwd.values.dtype);
        let (eig, _saved) = bind_forward(&context, fwd)?;
        let gl = match grad_values {
            Some(g) => Some(bind_input(&context, g)?),
            None => None,
        };
        let gv = match grad_vectors {
            Some(g) => Some(bind_input(&context, g)?),
            None => None,
        };
        let (grad, grad_out) = bind_output(&context, &device, Shape::new([batch, n, n]), false)?;
        flush(&grad)?;
        context
            .eigh_vjp_resident_into(
                &eig,
                gl.as_ref().map(|b| &b.gpu),
                gv.as_ref().map(|b| &b.gpu),
                policy,
                &grad_out.gpu,
            )
            .map_err(|e| log::warn!("eigrad::burn: the eigh VJP on the GPU failed: {e}"))
            .ok()?;
        Some(restore(grad, dtype))
    }

    pub(super) fn spectral_vjp(
        fwd: &Forward<CubeBackend>,
        function: SpectralFn,
        grad: CubeTensor,
    ) -> Option<CubeTensor> {
        let (context, batch, n) = applies(fwd.vectors.as_ref()?)?;
        let (device, dtype) = (fwd.values.device.clone(), fwd.values.dtype);
        let (eig, _saved) = bind_forward(&context, fwd)?;
        let g = bind_input(&context, grad)?;
        let (out, out_bound) = bind_output(&context, &device, Shape::new([batch, n, n]), false)?;
        flush(&out)?;
        let s = GpuSpectral {
            function,
            values: eig.eigenvalues.clone(),
            eig,
        };
        context
            .spectral_vjp_resident_into(&s, &g.gpu, &out_bound.gpu)
            .map_err(|e| log::warn!("eigrad::burn: the spectral VJP on the GPU failed: {e}"))
            .ok()?;
        Some(restore(out, dtype))
    }
}
