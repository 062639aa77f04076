//! The GPU path: WGSL compute kernels run through wgpu, driven from here.
//!
//! [`GpuContext`] owns the device, queue, compiled pipelines (compiled once per kernel and size,
//! then cached) and a pool of reusable buffers. Host-memory calls ([`GpuContext::eigh`],
//! [`GpuContext::eigh_vjp`], …) upload, run and read back; device-resident calls
//! ([`GpuContext::eigh_resident`], [`GpuContext::eigh_vjp_resident`], …) keep everything in
//! [`GpuTensor`]s so a training step needs no host round trip. Batches larger than one storage
//! binding or the dispatch limits are split into chunks automatically. Computation is f32
//! whatever the host type.

mod context;
mod objectives;
pub mod plan;
mod registers;
pub mod shaders;
mod tune;

use crate::eigh::{batch_len, check_len};
use crate::{
    Degeneracy, Eigh, EighOptions, Error, Jvp, Precision, Result, Scalar, Status, Vectors,
};
use context::{
    par_copy, par_write, write_map, Inner, Params, Phases, Readback, Slot, CHUNK_QUANTUM, WORD,
};
use plan::{plan, JacobiKnobs};
use shaders::Kernel;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Instant;

/// Largest matrix size the GPU kernels support.
pub const MAX_N: usize = 64;

pub use objectives::GpuSpectral;
pub use registers::REGISTERS_MAX_N;
pub use tune::{TuneReport, TuneTiming};

/// Host memory handled per upload–run–readback round of the host-memory calls, in bytes per
/// buffer: bounds device memory for arbitrarily large batches.
const HOST_CHUNK_BYTES: u64 = 256 << 20;
/// The host-memory calls split a batch into about this many rounds, pipelined: the host writes
/// round k's inputs and copies round k − 2's results out while the device runs round k − 1.
const PIPELINE_ROUNDS: usize = 4;
/// Smallest round, in matrices and in bytes of its largest buffer (smaller rounds would leave
/// the device underused or cost more in per-round overhead than the overlap saves).
const MIN_ROUND_MATRICES: usize = 4096;
const MIN_ROUND_BYTES: u64 = 4 << 20;

/// A GPU device with eigrad's pipelines and buffers.
pub struct GpuContext {
    inner: Inner,
    forward: AtomicU8,
    /// The adapter's subgroup size when the device has subgroup operations of one fixed size
    /// (0 otherwise, and for devices eigrad did not create).
    subgroup_size: u32,
    /// The largest n up to which the one-sided kernel fits the device's workgroup memory.
    one_sided_max_n: usize,
    /// The eigenvalues-only kernel choice (an [`EigvalshKernel`] as its discriminant).
    eigvalsh: AtomicU8,
    /// The largest n up to which the tridiagonal eigenvalues-only kernel fits.
    tridiagonal_max_n: usize,
    /// The largest n up to which the tridiagonal eigendecomposition kernel fits.
    tridiagonal_eigh_max_n: usize,
    /// The largest n up to which the two-sided kernel fits.
    two_sided_max_n: usize,
    /// The largest n up to which the two-sided kernel's eigenvalues-only variant fits.
    two_sided_values_max_n: usize,
    /// Invocations a tridiagonal eigendecomposition workgroup aims for.
    tridiagonal_workgroup: AtomicU32,
    /// The kernels [`GpuContext::tune`] measured fastest, per n.
    tuned: std::sync::Mutex<std::collections::HashMap<usize, KernelChoice>>,
}

/// The environment variable that sets [`GpuContext::set_tridiagonal_workgroup`] for new
/// contexts (1 to 256).
pub const TRIDIAGONAL_WORKGROUP_ENV: &str = "EIGRAD_GPU_TRIDIAGONAL_WG";

/// The largest workgroup [`GpuContext::set_tridiagonal_workgroup`] takes, and its default.
pub const TRIDIAGONAL_WORKGROUP_MAX: u32 = plan::MAX_WORKGROUP;

/// A tridiagonal workgroup size, checked: 1 to [`TRIDIAGONAL_WORKGROUP_MAX`].
fn check_tridiagonal_workgroup(invocations: u32) -> Result<u32> {
    if (1..=TRIDIAGONAL_WORKGROUP_MAX).contains(&invocations) {
        Ok(invocations)
    } else {
        Err(Error::InvalidArgument(format!(
            "tridiagonal workgroup of {invocations} invocations: expected 1 to \
             {TRIDIAGONAL_WORKGROUP_MAX}"
        )))
    }
}

/// [`TRIDIAGONAL_WORKGROUP_ENV`]'s value ([`TRIDIAGONAL_WORKGROUP_MAX`] when unset).
fn tridiagonal_workgroup_from_env() -> Result<u32> {
    let env = TRIDIAGONAL_WORKGROUP_ENV;
    match std::env::var(env) {
        Err(_) => Ok(TRIDIAGONAL_WORKGROUP_MAX),
        Ok(v) => v
            .parse::<u32>()
            .ok()
            .and_then(|w| check_tridiagonal_workgroup(w).ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{env}={v:?}: expected a number of invocations from 1 to \
                     {TRIDIAGONAL_WORKGROUP_MAX}"
                ))
            }),
    }
}

/// The kernels an eigendecomposition of `n×n` matrices runs ([`GpuContext::kernels_for`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelChoice {
    /// The eigendecomposition kernel (never [`ForwardKernel::Auto`]).
    pub forward: ForwardKernel,
    /// The eigenvalues-only kernel (never [`EigvalshKernel::Auto`]).
    pub eigvalsh: EigvalshKernel,
    /// The invocations a workgroup of [`ForwardKernel::Tridiagonal`] aims for.
    pub tridiagonal_workgroup: u32,
}

/// The device time of one kernel dispatch, from [`GpuContext::profile`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KernelTime {
    /// The kernel's entry point (`hestenes_eigh`, `registers_vjp`, …; the file names under
    /// `shaders/`).
    pub kernel: &'static str,
    /// Seconds between the start and the end of its compute pass on the device.
    pub seconds: f64,
}

/// Matrix sizes above which the one-sided kernel's eigenvectors get one step of first-order
/// refinement with the original matrix (`shaders/eigh_refine.wgsl`): there the shift σ of its
/// `A + σI` would otherwise cost the derivative check its tolerance.
pub const ONE_SIDED_REFINE_ABOVE: usize = 48;

/// The algorithm of the GPU eigendecomposition kernels (`eigh_resident` and everything built on
/// it). Both give the same contract (ascending eigenvalues, sign gauge, status, NaN outputs);
/// they differ in speed and in rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardKernel {
    /// [`ForwardKernel::Registers`] up to n = [`REGISTERS_MAX_N`] (chosen from an instruction
    /// model and Mesa's llvmpipe, where it ran 7–9× faster than the one-sided kernel; not yet
    /// measured on a GPU); above it the kernel that measured fastest on an NVIDIA H200 there
    /// (benches/README.md): one-sided, except on a
    /// device whose workgroup memory is too small for it (n ≥ 59 under wgpu's default 16 KiB),
    /// where the two-sided kernel runs instead, and the tridiagonal kernel where neither fits
    /// (n ≥ 62 there). The default.
    Auto,
    /// One-sided (Hestenes) Jacobi on `A + σI` (`shaders/hestenes.wgsl`): each invocation keeps
    /// two columns in registers and passes one on per round through workgroup memory, with one
    /// barrier per round. Its eigenvalues (Rayleigh quotients) and orthogonality are more
    /// accurate than the two-sided kernel's; its eigenvectors' residual is about 3× larger up to
    /// n = [`ONE_SIDED_REFINE_ABOVE`] (the shift σ scales their rounding), and above that one
    /// step of refinement with the original matrix brings it to the two-sided kernel's (and
    /// the derivatives' error below it).
    OneSided,
    /// The one-sided kernel passing columns on by subgroup shuffles instead (no barrier), where
    /// the device has subgroup operations of one fixed size that the invocations per matrix
    /// (⌈n/2⌉) divide; elsewhere the same as [`ForwardKernel::OneSided`]. Slower than
    /// workgroup memory on the H200 (one shuffle per float against one 16-byte load per four).
    OneSidedSubgroup,
    /// Two-sided round-robin Jacobi with `A` and `Vᵀ` in workgroup memory and three barriers
    /// per round (`shaders/jacobi.wgsl`, the first kernel version).
    TwoSided,
    /// Two-sided round-robin Jacobi with one invocation per matrix, `A` and `V` in named
    /// registers and every rotation written out (`shaders/registers.wgsl`): no workgroup
    /// memory and no barrier, for n ≤ [`REGISTERS_MAX_N`]; above that the same as
    /// [`ForwardKernel::Auto`]. Its eigenvalues-only variant does the same sweeps, and where it
    /// runs, the reverse rule ([`GpuContext::eigh_vjp_resident`]) also runs one invocation per
    /// matrix in registers (`shaders/registers_vjp.wgsl`) instead of the register-tile GEMMs.
    Registers,
    /// Householder reduction to tridiagonal form with the basis accumulated in registers (one
    /// invocation per row), then implicit QL iterations with Wilkinson shifts
    /// (`shaders/tridiagonal.wgsl`): one invocation per matrix runs each iteration's scalar
    /// chain and logs its rotations, then every invocation applies them to its row of the
    /// basis, in registers, skipping groups of rotations outside the iteration's block; up to
    /// 256/n matrices share a workgroup ([`GpuContext::set_tridiagonal_workgroup`] changes
    /// that), so their chains run side by side. No sweeps: its iterations are bounded by
    /// `max_sweeps` times a Jacobi sweep's n(n − 1)/2 rotations. Its modelled instruction count
    /// per matrix is about 1.75× (n = 16, 32) to 2.1× (n = 64) below the one-sided kernel's,
    /// with fewer registers; on Mesa's llvmpipe it ran slower at n = 16 and 32 and faster at 64
    /// (benches/README.md, "v5" to "v5g"; not yet measured on a GPU, so not `Auto`'s choice).
    /// Its eigenvalues-only calls take [`EigvalshKernel::Tridiagonal`] whatever the
    /// eigenvalues-only choice. Where not even one matrix's eigenvectors fit the workgroup
    /// memory for the coalesced output (n ≥ 60 under wgpu's default 16 KiB), they pass through
    /// the output buffer instead (same results, uncoalesced stores); the kernel fits every
    /// size on every device.
    Tridiagonal,
}

impl ForwardKernel {
    /// The environment variable that picks the kernel of new contexts: `auto`, `one-sided`,
    /// `one-sided-subgroup`, `two-sided`, `registers` or `tridiagonal`.
    pub const ENV: &'static str = "EIGRAD_GPU_FORWARD";

    const ALL: [ForwardKernel; 6] = [
        ForwardKernel::Auto,
        ForwardKernel::OneSided,
        ForwardKernel::OneSidedSubgroup,
        ForwardKernel::TwoSided,
        ForwardKernel::Registers,
        ForwardKernel::Tridiagonal,
    ];

    fn from_env() -> Result<Self> {
        choice_from_env(Self::ENV, &Self::ALL, Self::name)
    }

    /// The name `EIGRAD_GPU_FORWARD` takes for this choice (`auto`, `one-sided`, …).
    pub fn name(self) -> &'static str {
        match self {
            ForwardKernel::Auto => "auto",
            ForwardKernel::OneSided => "one-sided",
            ForwardKernel::OneSidedSubgroup => "one-sided-subgroup",
            ForwardKernel::TwoSided => "two-sided",
            ForwardKernel::Registers => "registers",
            ForwardKernel::Tridiagonal => "tridiagonal",
        }
    }
}

/// Matrix sizes from which [`EigvalshKernel::Auto`] takes the tridiagonal kernel: there its
/// instruction count is 1.7× (n = 16) to 3.4× (n = 64) below the one-sided sweeps', and on Mesa's
/// llvmpipe it ran 1.8–2.6× faster (benches/README.md, "v3"; not yet measured on a GPU).
pub const TRIDIAGONAL_EIGVALSH_FROM: usize = 16;

/// The algorithm of the GPU eigenvalues-only calls ([`GpuContext::eigh_resident`] with
/// [`Vectors::No`], and everything built on it). Every choice gives ascending eigenvalues, a
/// status per matrix and NaN outputs for a non-finite input, within the same accuracy bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EigvalshKernel {
    /// [`EigvalshKernel::Tridiagonal`] from n = [`TRIDIAGONAL_EIGVALSH_FROM`] and wherever the
    /// Jacobi kernel does not fit the device's workgroup memory (n ≥ 62 under wgpu's default
    /// 16 KiB), [`EigvalshKernel::Jacobi`] below. The default.
    Auto,
    /// The eigenvalues-only variant of the eigendecomposition kernel in use
    /// ([`GpuContext::forward_kernel_for`]): the same sweeps as the full decomposition, so its
    /// eigenvalues are bitwise those the full decomposition returns.
    Jacobi,
    /// Householder reduction to tridiagonal form (one invocation per row, the row in
    /// registers), then bisection on Sturm counts, one eigenvalue per invocation
    /// (`shaders/tridiagonal_eigvalsh.wgsl`): fewer operations than Jacobi sweeps from n ≈ 16
    /// on, and little workgroup memory (it fits every size on every device). Its eigenvalues
    /// agree with the full decomposition's to rounding (within the same bound against the f64
    /// reference), not bitwise. It has no sweeps: `max_sweeps` does not apply and its status is
    /// never [`Status::NotConverged`].
    Tridiagonal,
}

impl EigvalshKernel {
    /// The environment variable that picks the eigenvalues-only kernel of new contexts:
    /// `auto`, `jacobi` or `tridiagonal`.
    pub const ENV: &'static str = "EIGRAD_GPU_EIGVALSH";

    const ALL: [EigvalshKernel; 3] = [
        EigvalshKernel::Auto,
        EigvalshKernel::Jacobi,
        EigvalshKernel::Tridiagonal,
    ];

    fn from_env() -> Result<Self> {
        choice_from_env(Self::ENV, &Self::ALL, Self::name)
    }

    /// The name `EIGRAD_GPU_EIGVALSH` takes for this choice.
    pub fn name(self) -> &'static str {
        match self {
            EigvalshKernel::Auto => "auto",
            EigvalshKernel::Jacobi => "jacobi",
            EigvalshKernel::Tridiagonal => "tridiagonal",
        }
    }
}

/// The choice among `all` (the first is the default) that the environment variable `env`
/// names, by `name`; an error listing the names when it names none.
fn choice_from_env<K: Copy>(env: &str, all: &[K], name: fn(K) -> &'static str) -> Result<K> {
    match std::env::var(env) {
        Err(_) => Ok(all[0]),
        Ok(v) => all.iter().copied().find(|&k| name(k) == v).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|&k| name(k)).collect();
            Error::InvalidArgument(format!("{env}={v:?}: expected one of {}", names.join(", ")))
        }),
    }
}

/// The choice among `all` whose discriminant is `code` (the first when none is).
fn choice_from_code<K: Copy>(code: u8, all: &[K], code_of: fn(K) -> u8) -> K {
    all.iter()
        .copied()
        .find(|&k| code_of(k) == code)
        .unwrap_or(all[0])
}

/// A region of a device buffer holding f32 (or u32) elements: `len` elements from byte `offset`.
///
/// Tensors made by eigrad own their buffer; [`GpuTensor::from_buffer`] wraps a caller's buffer
/// (for example one a training framework shares on the same device) without a copy.
#[derive(Clone, Debug)]
pub struct GpuTensor {
    buffer: wgpu::Buffer,
    offset: u64,
    len: usize,
    /// The context that made it (its number; 0 for [`GpuTensor::from_buffer`]): a tensor of
    /// one context passed to another is an error, not a wgpu panic or a wrong answer.
    owner: u64,
}

impl GpuTensor {
    /// Wraps `len` elements of `buffer` starting at byte `offset`. The buffer needs `STORAGE`
    /// usage (and `COPY_SRC` to be read back); `offset` must be a multiple of the device's
    /// `min_storage_buffer_offset_alignment` (256 bytes at most).
    ///
    /// The buffer must belong to the device of the context it is used with: wgpu gives a
    /// buffer no way to ask for its device, so a buffer of another device is not detected
    /// here, and wgpu itself may panic when it is bound.
    pub fn from_buffer(buffer: wgpu::Buffer, offset: u64, len: usize) -> Result<Self> {
        if !offset.is_multiple_of(WORD) {
            return Err(Error::InvalidArgument(format!(
                "a tensor's offset must be a multiple of {WORD} bytes, got {offset}"
            )));
        }
        let end = (len as u64)
            .checked_mul(WORD)
            .and_then(|bytes| bytes.checked_add(offset));
        if end.is_none_or(|end| end > buffer.size()) {
            return Err(Error::Shape(format!(
                "tensor of {len} elements at byte {offset} exceeds its buffer of {} bytes",
                buffer.size()
            )));
        }
        if !buffer.usage().contains(wgpu::BufferUsages::STORAGE) {
            return Err(Error::InvalidArgument(
                "a tensor's buffer needs STORAGE usage".into(),
            ));
        }
        Ok(GpuTensor {
            buffer,
            offset,
            len,
            owner: 0,
        })
    }

    /// The buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Byte offset of the first element.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn slot(&self, words_per_matrix: usize) -> Slot<'_> {
        Slot::Batch {
            buffer: &self.buffer,
            offset: self.offset,
            words_per_matrix: words_per_matrix as u64,
            owner: self.owner,
        }
    }
}

/// A device-resident eigendecomposition: what the backward needs, kept on the GPU.
#[derive(Clone, Debug)]
pub struct GpuEigh {
    /// Matrix size.
    pub n: usize,
    /// Number of matrices.
    pub batch: usize,
    /// Eigenvalues `[batch][n]`, f32.
    pub eigenvalues: GpuTensor,
    /// Eigenvectors `[batch][n][n]`, f32 (None for the eigenvalues-only kernel).
    pub eigenvectors: Option<GpuTensor>,
    /// Status codes `[batch]`, u32.
    pub status: GpuTensor,
}

impl GpuEigh {
    /// Checks that the tensors agree with `n` and `batch` (the derivatives check the forward
    /// result they are given, whose fields are public): `n` in 1..=[`MAX_N`], `batch·n`
    /// eigenvalues, `batch` statuses and, when present, `batch·n²` eigenvector entries.
    pub fn check(&self) -> Result<()> {
        check_n(self.n)?;
        check_len(
            self.eigenvalues.len,
            batch_len(self.batch, self.n)?,
            "eigenvalues",
        )?;
        check_len(self.status.len, self.batch, "status")?;
        if let Some(v) = &self.eigenvectors {
            let entries = batch_len(self.batch, self.n * self.n)?;
            check_len(v.len, entries, "eigenvectors")?;
        }
        Ok(())
    }

    /// The decomposition's tensors, named, as the inputs of a derivative.
    fn inputs(&self) -> Vec<(&'static str, &GpuTensor)> {
        let mut v = vec![("eigenvalues", &self.eigenvalues), ("status", &self.status)];
        v.extend(self.eigenvectors.iter().map(|t| ("eigenvectors", t)));
        v
    }
}

/// Device-resident tangents of the eigendecomposition.
#[derive(Clone, Debug)]
pub struct GpuJvp {
    /// `λ̇` `[batch][n]`.
    pub values_dot: GpuTensor,
    /// `V̇` `[batch][n][n]`.
    pub vectors_dot: GpuTensor,
}

fn check_n(n: usize) -> Result<()> {
    if n == 0 || n > MAX_N {
        return Err(Error::UnsupportedSize { n, max: MAX_N });
    }
    Ok(())
}

/// Kept inside the f32 range, so that the kernels see what the f64 policy means: a mask
/// tolerance above f32::MAX (masking every pair of a non-zero matrix) stays finite, where inf
/// would make the zero matrix's threshold inf·0 = NaN, and a Lorentzian eps below the smallest
/// normal f32 stays positive (GPUs may flush subnormals), where 0 would make a tie's 0/0.
fn policy_tol(policy: Degeneracy) -> f32 {
    match policy {
        Degeneracy::Mask { rel_tol } => {
            let tol = rel_tol.unwrap_or_else(|| Precision::F32.default_mask_rel_tol());
            tol.min(f32::MAX as f64) as f32
        }
        Degeneracy::Lorentzian { eps } => (eps as f32).max(f32::MIN_POSITIVE),
        Degeneracy::Propagate => 0.0,
    }
}

/// Checks that no destination overlaps an input or another destination of one dispatch, and
/// says whether a destination shares a buffer with an input (the dispatch then needs the
/// all-`read_write` pipeline: wgpu forbids binding one buffer read-only and writable at once).
fn check_outputs(inputs: &[(&str, &GpuTensor)], outputs: &[(&str, &GpuTensor)]) -> Result<bool> {
    let bytes = |t: &GpuTensor| t.offset..t.offset + t.len as u64 * WORD;
    let mut shares_input = false;
    for (i, (name, out)) in outputs.iter().enumerate() {
        let earlier = outputs[..i].iter().map(|&(o, t)| (o, t, false));
        for (other, t, is_input) in inputs.iter().map(|&(o, t)| (o, t, true)).chain(earlier) {
            // Tensors of two different contexts never overlap (their buffers can compare equal
            // across devices); the dispatch reports the foreign one. (A caller's tensor, owner
            // 0, may wrap a buffer of this context's.)
            let foreign = out.owner != 0 && t.owner != 0 && out.owner != t.owner;
            if out.buffer != t.buffer || foreign {
                continue;
            }
            let (a, b) = (bytes(out), bytes(t));
            if a.start < b.end && b.start < a.end && !out.is_empty() && !t.is_empty() {
                return Err(Error::InvalidArgument(format!(
                    "the {name} (bytes {}..{} of its buffer) overlaps the {other} (bytes {}..{})",
                    a.start, a.end, b.start, b.end
                )));
            }
            shares_input |= is_input;
        }
    }
    Ok(shares_input)
}

/// The largest n (up to [`MAX_N`]) such that `kernel`'s plan (a forward kernel) fits the
/// device's workgroup memory at every size up to it; 0 when none does.
fn max_fitting_n(inner: &Inner, kernel: Kernel) -> usize {
    let limit = inner.limits().max_compute_workgroup_storage_size;
    // The workgroup memory a plan needs does not depend on these knobs.
    let knobs = JacobiKnobs {
        max_sweeps: 1,
        rel_threshold: f32::EPSILON,
        rot_floor: 0.0,
        lower: false,
        subgroup_size: 0,
        workgroup: 0,
    };
    (1..=MAX_N)
        .take_while(|&n| plan(kernel, n as u32, limit, Some(knobs), 0, 0).is_ok())
        .last()
        .unwrap_or(0)
}

/// Writes host data as f32 into `dst` (mapped staging memory): one bulk copy when it already is
/// f32, else a blockwise conversion.
fn fill_f32<S: Scalar>(dst: wgpu::WriteOnly<'_, [u8]>, src: &[S]) {
    if S::NAME == f32::NAME {
        par_write(dst, bytemuck::cast_slice(src));
    } else {
        write_map(dst, src, |x| x.to_f32());
    }
}

/// Copies f32 words out of mapped memory into `dst`.
fn copy_f32(dst: &mut [f32], src: &[u32]) {
    par_copy(dst, bytemuck::cast_slice(src));
}

/// The subgroup size the one-sided kernel may rely on: the adapter's, when it has subgroup
/// operations and one fixed subgroup size for compute (0 otherwise).
fn subgroup_size(features: wgpu::Features, info: &wgpu::AdapterInfo) -> u32 {
    if features.contains(wgpu::Features::SUBGROUP)
        && info.subgroup_min_size == info.subgroup_max_size
        && info.subgroup_min_size.is_power_of_two()
    {
        info.subgroup_min_size
    } else {
        0
    }
}

impl GpuContext {
    /// Creates a context on the adapter wgpu picks, honouring wgpu's usual environment
    /// variables (`WGPU_BACKEND`, `WGPU_POWER_PREF`, and `WGPU_ADAPTER_NAME`, a case-insensitive
    /// substring of the adapter's name). The adapter's name is logged. No adapter is
    /// [`Error::NoAdapter`]; callers such as the command line's `--device auto` then use the CPU.
    ///
    /// The device is created with the adapter's own limits, so kernels can use all the
    /// workgroup memory and binding size it offers.
    pub fn new() -> Result<Self> {
        // A bad EIGRAD_GPU_FORWARD or EIGRAD_GPU_EIGVALSH is reported whether or not there is
        // an adapter.
        let forward = ForwardKernel::from_env()?;
        let eigvalsh = EigvalshKernel::from_env()?;
        let tridiagonal_workgroup = tridiagonal_workgroup_from_env()?;
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(pick_adapter(&instance))?;
        let info = adapter.get_info();
        log::info!(
            "GPU adapter: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("eigrad"),
            required_features: adapter.features()
                & (wgpu::Features::SUBGROUP | wgpu::Features::TIMESTAMP_QUERY),
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::default(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| Error::RequestDevice(format!("{}: {e}", info.name)))?;
        // A kernel error must come back as an Error from the call that caused it (error scopes);
        // anything that still escapes is logged rather than aborting the process. Only a device
        // eigrad created gets this handler: a shared device keeps its owner's.
        device.on_uncaptured_error(std::sync::Arc::new(|e| {
            log::error!("uncaptured wgpu error: {e}")
        }));
        let subgroup_size = subgroup_size(adapter.features(), &info);
        let inner = Inner::new(device, queue, info.name);
        Ok(GpuContext {
            subgroup_size,
            one_sided_max_n: max_fitting_n(&inner, Kernel::HestenesEigh),
            tridiagonal_max_n: max_fitting_n(&inner, Kernel::TridiagonalEigvalsh),
            tridiagonal_eigh_max_n: max_fitting_n(&inner, Kernel::TridiagonalEigh),
            two_sided_max_n: max_fitting_n(&inner, Kernel::JacobiEigh),
            two_sided_values_max_n: max_fitting_n(&inner, Kernel::JacobiEigvalsh),
            inner,
            forward: AtomicU8::new(forward as u8),
            eigvalsh: AtomicU8::new(eigvalsh as u8),
            tridiagonal_workgroup: AtomicU32::new(tridiagonal_workgroup),
            tuned: Default::default(),
        })
    }

    /// Wraps an existing device and queue (a host application or a training framework on the
    /// same device), so buffers can be shared without copies. Kernels are planned within the
    /// device's limits. The device's uncaptured-error handler is left to its owner; eigrad's
    /// own errors come back through error scopes.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let inner = Inner::new(device, queue, "external wgpu device".into());
        Ok(GpuContext {
            forward: AtomicU8::new(ForwardKernel::from_env()? as u8),
            eigvalsh: AtomicU8::new(EigvalshKernel::from_env()? as u8),
            tridiagonal_workgroup: AtomicU32::new(tridiagonal_workgroup_from_env()?),
            tuned: Default::default(),
            subgroup_size: 0,
            one_sided_max_n: max_fitting_n(&inner, Kernel::HestenesEigh),
            tridiagonal_max_n: max_fitting_n(&inner, Kernel::TridiagonalEigvalsh),
            tridiagonal_eigh_max_n: max_fitting_n(&inner, Kernel::TridiagonalEigh),
            two_sided_max_n: max_fitting_n(&inner, Kernel::JacobiEigh),
            two_sided_values_max_n: max_fitting_n(&inner, Kernel::JacobiEigvalsh),
            inner,
        })
    }

    /// Whether the device can time eigrad's kernels ([`GpuContext::profile`]): it has
    /// `wgpu::Features::TIMESTAMP_QUERY` (requested by [`GpuContext::new`] where the adapter
    /// offers it).
    pub fn has_timestamps(&self) -> bool {
        self.inner.has_timestamps()
    }

    /// Runs `f` and returns its result with the device time of every kernel dispatch it made
    /// through this context, measured by timestamp queries around each compute pass (in
    /// submission order; chunked batches give one entry per chunk). Separates the time the GPU
    /// spends in the kernels from submission, synchronisation and host work, which wall-clock
    /// timings include. Waits for the device before returning. Dispatches made by other
    /// threads on this context while `f` runs are recorded too. Calls nest: a `profile` inside
    /// `f` returns its own dispatches, and they are in this call's list as well. An error when
    /// the device has no timestamp queries ([`GpuContext::has_timestamps`]).
    pub fn profile<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<(T, Vec<KernelTime>)> {
        if !self.has_timestamps() {
            return Err(Error::Gpu(format!(
                "{} offers no timestamp queries (wgpu::Features::TIMESTAMP_QUERY) to time kernels",
                self.adapter_name()
            )));
        }
        let from = self.inner.start_profile();
        let result = f();
        let times = self.inner.finish_profile(from);
        let times = times?
            .into_iter()
            .map(|(kernel, seconds)| KernelTime { kernel, seconds })
            .collect();
        Ok((result?, times))
    }

    /// The adapter's name (e.g. "NVIDIA H200", "llvmpipe (LLVM 15.0.6, 256 bits)").
    pub fn adapter_name(&self) -> &str {
        &self.inner.adapter_name
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// Caps the matrices per dispatch (rounded up to a multiple of 64; 0 removes the cap). The
    /// default is what the device's binding and dispatch limits allow; tests use a small cap to
    /// exercise chunking.
    pub fn set_max_chunk(&self, matrices: usize) {
        self.inner.chunk_cap.store(matrices, Ordering::Relaxed);
    }

    /// Picks the eigendecomposition kernel for later calls (the default is
    /// [`ForwardKernel::Auto`], or what `EIGRAD_GPU_FORWARD` named when the context was made).
    pub fn set_forward_kernel(&self, kernel: ForwardKernel) {
        self.forward.store(kernel as u8, Ordering::Relaxed);
    }

    /// Sets the invocations a workgroup of [`ForwardKernel::Tridiagonal`] aims for, 1 to
    /// [`TRIDIAGONAL_WORKGROUP_MAX`] (the default, or what [`TRIDIAGONAL_WORKGROUP_ENV`] said
    /// when the context was made); ⌊invocations / n⌋ matrices share a workgroup, at least one.
    /// A tuning knob: large workgroups run many matrices' QL chains in one warp, small ones let
    /// more workgroups share a compute unit, each in its own phase. Results do not depend on
    /// it. Anything outside 1 to 256 is [`Error::InvalidArgument`].
    pub fn set_tridiagonal_workgroup(&self, invocations: u32) -> Result<()> {
        let w = check_tridiagonal_workgroup(invocations)?;
        self.tridiagonal_workgroup.store(w, Ordering::Relaxed);
        Ok(())
    }

    /// The invocations a workgroup of [`ForwardKernel::Tridiagonal`] aims for
    /// ([`GpuContext::set_tridiagonal_workgroup`]; [`TRIDIAGONAL_WORKGROUP_MAX`] by default).
    pub fn tridiagonal_workgroup(&self) -> u32 {
        self.tridiagonal_workgroup.load(Ordering::Relaxed)
    }

    /// The eigendecomposition kernel choice in use.
    pub fn forward_kernel(&self) -> ForwardKernel {
        let code = self.forward.load(Ordering::Relaxed);
        choice_from_code(code, &ForwardKernel::ALL, |k| k as u8)
    }

    /// The kernel the eigendecomposition of `n×n` matrices runs on this device (never
    /// [`ForwardKernel::Auto`]): the choice in use, with `Auto` resolved (and
    /// [`ForwardKernel::Registers`] above [`REGISTERS_MAX_N`] resolved as `Auto`). `Auto` takes
    /// what [`GpuContext::tune`] measured fastest where it has tuned n, and otherwise: the
    /// register kernel up to n = [`REGISTERS_MAX_N`], the one-sided kernel above. The one-sided
    /// kernel needs more workgroup memory than the two-sided one at the largest sizes; on a
    /// device that cannot give it (n ≥ 59 under wgpu's default 16 KiB) `Auto` takes the
    /// two-sided kernel, and where that does not fit either (n ≥ 62 there) the tridiagonal
    /// kernel, which fits every size.
    pub fn forward_kernel_for(&self, n: usize) -> ForwardKernel {
        self.kernels_for(n).forward
    }

    /// The kernels an eigendecomposition of `n×n` matrices runs on this device: the choices
    /// in use ([`GpuContext::forward_kernel_for`], [`GpuContext::eigvalsh_kernel_for`], and
    /// the tridiagonal workgroup: [`GpuContext::tridiagonal_workgroup`], or where `Auto` took
    /// a tuned tridiagonal kernel, the workgroup [`GpuContext::tune`] measured fastest).
    pub fn kernels_for(&self, n: usize) -> KernelChoice {
        let auto = |n: usize| {
            if n <= REGISTERS_MAX_N {
                ForwardKernel::Registers
            } else if n <= self.one_sided_max_n {
                ForwardKernel::OneSided
            } else if n <= self.two_sided_max_n || n > self.tridiagonal_eigh_max_n {
                ForwardKernel::TwoSided
            } else {
                ForwardKernel::Tridiagonal
            }
        };
        let tuned = self.tuned.lock().unwrap().get(&n).copied();
        let forward = match self.forward_kernel() {
            ForwardKernel::Registers if n <= REGISTERS_MAX_N => ForwardKernel::Registers,
            ForwardKernel::Auto | ForwardKernel::Registers => match tuned {
                Some(t) => return self.tuned_choice(n, t),
                None => auto(n),
            },
            ForwardKernel::Tridiagonal if n > self.tridiagonal_eigh_max_n => auto(n),
            k => k,
        };
        KernelChoice {
            forward,
            eigvalsh: self.eigvalsh_for(n, forward, None),
            tridiagonal_workgroup: self.tridiagonal_workgroup(),
        }
    }

    /// A tuned choice, with the eigenvalues-only kernel as the choice in use says.
    fn tuned_choice(&self, n: usize, tuned: KernelChoice) -> KernelChoice {
        KernelChoice {
            eigvalsh: self.eigvalsh_for(n, tuned.forward, Some(tuned.eigvalsh)),
            ..tuned
        }
    }

    /// Picks the eigenvalues-only kernel for later calls (the default is
    /// [`EigvalshKernel::Auto`], or what `EIGRAD_GPU_EIGVALSH` named when the context was made).
    pub fn set_eigvalsh_kernel(&self, kernel: EigvalshKernel) {
        self.eigvalsh.store(kernel as u8, Ordering::Relaxed);
    }

    /// The eigenvalues-only kernel choice in use.
    pub fn eigvalsh_kernel(&self) -> EigvalshKernel {
        let code = self.eigvalsh.load(Ordering::Relaxed);
        choice_from_code(code, &EigvalshKernel::ALL, |k| k as u8)
    }

    /// The kernel the eigenvalues of `n×n` matrices run on this device (never
    /// [`EigvalshKernel::Auto`]): the choice in use, with `Auto` resolved (what
    /// [`GpuContext::tune`] measured fastest where `Auto` took a tuned eigendecomposition
    /// kernel; otherwise the tridiagonal kernel from n = [`TRIDIAGONAL_EIGVALSH_FROM`] and
    /// where the Jacobi kernel does not fit the device's workgroup memory, the Jacobi kernel's
    /// eigenvalues-only variant elsewhere); always the tridiagonal kernel where
    /// [`ForwardKernel::Tridiagonal`] runs, whose eigenvalues-only variant it is.
    pub fn eigvalsh_kernel_for(&self, n: usize) -> EigvalshKernel {
        self.kernels_for(n).eigvalsh
    }

    /// The eigenvalues-only kernel beside the eigendecomposition kernel `forward`, with `Auto`
    /// taking `tuned` where given.
    fn eigvalsh_for(
        &self,
        n: usize,
        forward: ForwardKernel,
        tuned: Option<EigvalshKernel>,
    ) -> EigvalshKernel {
        if forward == ForwardKernel::Tridiagonal {
            return EigvalshKernel::Tridiagonal;
        }
        match (self.eigvalsh_kernel(), tuned) {
            (EigvalshKernel::Auto, Some(t)) => t,
            (EigvalshKernel::Auto, None) => {
                let wanted =
                    n >= TRIDIAGONAL_EIGVALSH_FROM || n > self.jacobi_values_max_n(forward);
                if wanted && n <= self.tridiagonal_max_n {
                    EigvalshKernel::Tridiagonal
                } else {
                    EigvalshKernel::Jacobi
                }
            }
            (k, _) => k,
        }
    }

    /// The largest n up to which the eigenvalues-only variant of `forward` (a Jacobi kernel)
    /// fits the device.
    fn jacobi_values_max_n(&self, forward: ForwardKernel) -> usize {
        match forward {
            ForwardKernel::TwoSided => self.two_sided_values_max_n,
            ForwardKernel::Registers => REGISTERS_MAX_N,
            _ => self.one_sided_max_n,
        }
    }

    /// Uploads host data (any [`Scalar`], converted to f32) into a new device tensor.
    ///
    /// The data is written (converted) straight into a pooled staging buffer and its copy to the
    /// device submitted at once. Panics if the device cannot map the staging buffer (a lost
    /// device); [`GpuContext::eigh`] and the other host-memory calls report that as an error.
    pub fn upload<S: Scalar>(&self, data: &[S]) -> GpuTensor {
        self.try_upload(data)
            .unwrap_or_else(|e| panic!("eigrad upload of {} elements: {e}", data.len()))
    }

    fn try_upload<S: Scalar>(&self, data: &[S]) -> Result<GpuTensor> {
        let buffer = self.inner.upload_with(
            data.len() as u64 * WORD,
            wgpu::BufferUsages::empty(),
            |dst| fill_f32(dst, data),
        )?;
        Ok(self.tensor(buffer, data.len()))
    }

    /// Reads an f32 tensor back into `out` (which must have the tensor's length), without
    /// allocating host memory: one copy to a pooled staging buffer, one wait, one bulk copy.
    pub fn download_into(&self, t: &GpuTensor, out: &mut [f32]) -> Result<()> {
        self.inner.check_owner(t.owner)?;
        check_len(out.len(), t.len, "download destination")?;
        let rb = self
            .inner
            .start_read(&[(&t.buffer, t.offset, t.len as u64)])?;
        self.inner.finish_read(rb, &mut Phases::default(), |w| {
            copy_f32(out, w[0]);
            Ok(())
        })
    }

    /// Reads an f32 tensor back to host memory.
    pub fn download(&self, t: &GpuTensor) -> Result<Vec<f32>> {
        self.inner.check_owner(t.owner)?;
        let mut v = self
            .inner
            .read_words::<f32>(&[(&t.buffer, t.offset, t.len as u64)])?;
        Ok(v.pop().unwrap_or_default())
    }

    /// Reads a status tensor back to host memory.
    pub fn download_status(&self, t: &GpuTensor) -> Result<Vec<Status>> {
        self.inner.check_owner(t.owner)?;
        let mut v = self
            .inner
            .read_words::<u32>(&[(&t.buffer, t.offset, t.len as u64)])?;
        decode_status(&v.pop().unwrap_or_default())
    }

    /// Blocks until every operation submitted to the queue so far (including pending uploads)
    /// has finished on the device. Device-resident calls return as soon as their work is
    /// submitted; benchmarks call this to time the work itself.
    pub fn wait(&self) -> Result<()> {
        // An empty submission flushes uploads staged by `write_buffer`.
        self.inner.queue.submit(std::iter::empty());
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(drop)
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }

    /// Hands a tensor's buffer back to the context's pool, so later calls reuse it instead of
    /// creating a new buffer (repeated calls in a loop then allocate nothing in steady state).
    ///
    /// Pass only tensors that eigrad returned ([`GpuContext::upload`] or a `*_resident` call)
    /// and that nothing still uses, clones included: a later call may overwrite the buffer at
    /// any time. Work already submitted that reads or writes the buffer is unaffected (the
    /// queue runs in order). A tensor made by [`GpuTensor::from_buffer`] must not be passed
    /// unless the caller gives its buffer up to eigrad for good.
    pub fn recycle(&self, tensor: GpuTensor) {
        // Another context's buffer cannot serve this one's calls: it is dropped instead.
        if tensor.owner == self.inner.id || tensor.owner == 0 {
            self.inner.give(tensor.buffer);
        }
    }

    /// [`GpuContext::recycle`] for every tensor of a device-resident eigendecomposition.
    pub fn recycle_eigh(&self, r: GpuEigh) {
        self.recycle(r.eigenvalues);
        self.recycle(r.status);
        if let Some(v) = r.eigenvectors {
            self.recycle(v);
        }
    }

    /// Copies each `(source, destination)` pair on the device, in one submission and without a
    /// host round trip: for example a result of a `*_resident` call into a buffer a training
    /// framework owns. The pairs must have equal lengths.
    pub fn copy(&self, pairs: &[(&GpuTensor, &GpuTensor)]) -> Result<()> {
        let mut regions = Vec::with_capacity(pairs.len());
        for (src, dst) in pairs {
            self.inner.check_owner(src.owner)?;
            self.inner.check_owner(dst.owner)?;
            check_len(dst.len, src.len, "copy destination")?;
            regions.push((
                &src.buffer,
                src.offset,
                &dst.buffer,
                dst.offset,
                src.len as u64,
            ));
        }
        self.inner.copy_words(&regions)
    }

    fn new_tensor(&self, len: usize) -> GpuTensor {
        self.tensor(self.inner.output(len as u64), len)
    }

    /// A tensor of this context: `len` elements of `buffer` from its start.
    fn tensor(&self, buffer: wgpu::Buffer, len: usize) -> GpuTensor {
        GpuTensor {
            buffer,
            offset: 0,
            len,
            owner: self.inner.id,
        }
    }

    /// Device-resident batched eigendecomposition of `a` (`[B][n][n]` f32 on the device):
    /// ascending eigenvalues, eigenvectors (columns, sign gauge; when `vectors` is
    /// [`Vectors::Yes`]) and a status per matrix, all left on the device in new tensors.
    /// [`GpuContext::eigh_resident_into`] writes into the caller's tensors instead.
    pub fn eigh_resident(
        &self,
        a: &GpuTensor,
        n: usize,
        opts: &EighOptions,
        vectors: Vectors,
    ) -> Result<GpuEigh> {
        opts.validate()?;
        check_n(n)?;
        let nn = n * n;
        let batch = crate::cpu::batch_of(a.len, n, "input")?;
        let out = GpuEigh {
            n,
            batch,
            eigenvalues: self.new_tensor(batch * n),
            eigenvectors: (vectors == Vectors::Yes).then(|| self.new_tensor(batch * nn)),
            status: self.new_tensor(batch),
        };
        match self.eigh_resident_into(a, opts, &out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.recycle_eigh(out);
                Err(e)
            }
        }
    }

    /// [`GpuContext::eigh_resident`] into the caller's tensors: decomposes `a` (`out.batch`
    /// matrices of size `out.n`) into `out.eigenvalues`, `out.eigenvectors` (computed only when
    /// present) and `out.status`. The destinations may be regions of any buffers with
    /// `STORAGE` usage, the input's buffer included, at offsets that are multiples of the
    /// device's `min_storage_buffer_offset_alignment`; they must not overlap each other or the
    /// input (an [`Error::InvalidArgument`] says which do).
    pub fn eigh_resident_into(
        &self,
        a: &GpuTensor,
        opts: &EighOptions,
        out: &GpuEigh,
    ) -> Result<()> {
        self.eigh_resident_as(a, opts, out, None)
    }

    /// [`GpuContext::eigh_resident_into`] with the kernels `choice` names, or the context's
    /// ([`GpuContext::kernels_for`]) for `None`.
    fn eigh_resident_as(
        &self,
        a: &GpuTensor,
        opts: &EighOptions,
        out: &GpuEigh,
        choice: Option<KernelChoice>,
    ) -> Result<()> {
        opts.validate()?;
        let (n, batch) = (out.n, out.batch);
        check_n(n)?;
        let nn = n * n;
        check_len(a.len, batch * nn, "input")?;
        check_len(out.eigenvalues.len, batch * n, "eigenvalues destination")?;
        check_len(out.status.len, batch, "status destination")?;
        if let Some(v) = &out.eigenvectors {
            check_len(v.len, batch * nn, "eigenvectors destination")?;
        }
        let mut outputs = vec![
            ("eigenvalues destination", &out.eigenvalues),
            ("status destination", &out.status),
        ];
        outputs.extend(
            out.eigenvectors
                .iter()
                .map(|v| ("eigenvectors destination", v)),
        );
        let writable = check_outputs(&[("input", a)], &outputs)?;
        let vectors = if out.eigenvectors.is_some() {
            Vectors::Yes
        } else {
            Vectors::No
        };
        let choice = choice.unwrap_or_else(|| self.kernels_for(n));
        let forward = choice.forward;
        let eps = Precision::F32.eps() as f32;
        let knobs = JacobiKnobs {
            max_sweeps: opts.max_sweeps,
            rel_threshold: opts.threshold(Precision::F32) as f32,
            rot_floor: eps * eps,
            lower: opts.symmetry == crate::Symmetry::Lower,
            subgroup_size: match forward {
                ForwardKernel::OneSidedSubgroup => self.subgroup_size,
                _ => 0,
            },
            workgroup: choice.tridiagonal_workgroup,
        };
        let tridiagonal = vectors == Vectors::No && choice.eigvalsh == EigvalshKernel::Tridiagonal;
        let kernel = match (forward, vectors) {
            _ if tridiagonal => Kernel::TridiagonalEigvalsh,
            (ForwardKernel::Tridiagonal, Vectors::Yes) => Kernel::TridiagonalEigh,
            (ForwardKernel::Tridiagonal, Vectors::No) => Kernel::TridiagonalEigvalsh,
            (ForwardKernel::OneSided | ForwardKernel::OneSidedSubgroup, Vectors::Yes) => {
                Kernel::HestenesEigh
            }
            (ForwardKernel::OneSided | ForwardKernel::OneSidedSubgroup, Vectors::No) => {
                Kernel::HestenesEigvalsh
            }
            (ForwardKernel::Registers, Vectors::Yes) => Kernel::RegistersEigh,
            (ForwardKernel::Registers, Vectors::No) => Kernel::RegistersEigvalsh,
            (_, Vectors::Yes) => Kernel::JacobiEigh,
            (_, Vectors::No) => Kernel::JacobiEigvalsh,
        };
        let pipe = self.pipeline(kernel, n, Some(knobs), (0, 0), writable)?;
        // Vᵀ scratch when it does not fit in workgroup memory: one chunk's worth, reused.
        let scratch = (vectors == Vectors::Yes && !pipe.plan.second_shared).then(|| {
            let chunk = self
                .inner
                .chunk_matrices(&pipe.plan, nn as u64)
                .unwrap_or(CHUNK_QUANTUM)
                .min(batch.next_multiple_of(CHUNK_QUANTUM));
            let padded = chunk.next_multiple_of(pipe.plan.mats as usize);
            self.inner.output((padded * nn) as u64)
        });
        let slots = [
            a.slot(nn),
            out.eigenvalues.slot(n),
            out.eigenvectors
                .as_ref()
                .map_or(Slot::Placeholder, |v| v.slot(nn)),
            out.status.slot(1),
            match &scratch {
                // The scratch is indexed from each dispatch's first matrix, so it is bound
                // whole at offset 0 for every chunk.
                Some(s) => Slot::Batch {
                    buffer: s,
                    offset: 0,
                    words_per_matrix: 0,
                    owner: self.inner.id,
                },
                None => Slot::Placeholder,
            },
        ];
        let mut result = self.inner.dispatch(&pipe, batch, &slots, Params::default());
        if let Some(s) = scratch {
            self.inner.give(s);
        }
        // Above ONE_SIDED_REFINE_ABOVE the one-sided kernel's eigenvectors are refined in place.
        if let Some(v) = &out.eigenvectors {
            if result.is_ok() && kernel == Kernel::HestenesEigh && n > ONE_SIDED_REFINE_ABOVE {
                result = self.refine(a, out, v, knobs);
            }
        }
        result
    }

    /// Dispatches `shaders/eigh_refine.wgsl`: from the input `a` and the one-sided kernel's
    /// results in `out`, refines the eigenvectors `vectors` in place. The tensor is bound twice,
    /// as the kernel's input and its output, so every binding is `read_write` (the writable
    /// variant); each workgroup stages its matrices' eigenvectors before it writes any of them.
    fn refine(
        &self,
        a: &GpuTensor,
        out: &GpuEigh,
        vectors: &GpuTensor,
        knobs: JacobiKnobs,
    ) -> Result<()> {
        let (n, nn) = (out.n, out.n * out.n);
        let pipe = self.pipeline(Kernel::EighRefine, n, Some(knobs), (0, 0), true)?;
        let slots = [
            a.slot(nn),
            out.eigenvalues.slot(n),
            vectors.slot(nn),
            out.status.slot(1),
            vectors.slot(nn),
        ];
        self.inner
            .dispatch(&pipe, out.batch, &slots, Params::default())
    }

    /// The pipeline of `kernel` for size `n` (`codes`: the plan's two function/policy codes),
    /// in its all-`read_write` variant when `writable`.
    fn pipeline(
        &self,
        kernel: Kernel,
        n: usize,
        knobs: Option<JacobiKnobs>,
        codes: (u32, u32),
        writable: bool,
    ) -> Result<std::sync::Arc<context::Pipeline>> {
        let limit = self.inner.limits().max_compute_workgroup_storage_size;
        let mut p = plan(kernel, n as u32, limit, knobs, codes.0, codes.1)?;
        p.writable = writable;
        self.inner.pipeline(p)
    }

    /// Device-resident reverse rule: `Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ` for the forward `fwd`
    /// (which must hold eigenvectors), with `λ̄` (`[B][n]`) and `V̄` (`[B][n][n]`) each optional.
    /// Returns `Ā` (`[B][n][n]`, symmetric) on the device; NaN where the forward status is not ok.
    pub fn eigh_vjp_resident(
        &self,
        fwd: &GpuEigh,
        grad_values: Option<&GpuTensor>,
        grad_vectors: Option<&GpuTensor>,
        policy: Degeneracy,
    ) -> Result<GpuTensor> {
        fwd.check()?;
        let out = self.new_tensor(fwd.batch * fwd.n * fwd.n);
        match self.eigh_vjp_resident_into(fwd, grad_values, grad_vectors, policy, &out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.recycle(out);
                Err(e)
            }
        }
    }

    /// [`GpuContext::eigh_vjp_resident`] into the caller's tensor `out` (`[B][n][n]`), under the
    /// rules of [`GpuContext::eigh_resident_into`]: `out` must not overlap the forward's tensors
    /// or the cotangents.
    pub fn eigh_vjp_resident_into(
        &self,
        fwd: &GpuEigh,
        grad_values: Option<&GpuTensor>,
        grad_vectors: Option<&GpuTensor>,
        policy: Degeneracy,
        out: &GpuTensor,
    ) -> Result<()> {
        policy.validate()?;
        fwd.check()?;
        let (n, batch) = (fwd.n, fwd.batch);
        let nn = n * n;
        let vecs = fwd.eigenvectors.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the VJP needs the eigenvectors (use Vectors::Yes)".into())
        })?;
        if let Some(g) = grad_values {
            check_len(g.len, batch * n, "grad_values")?;
        }
        if let Some(g) = grad_vectors {
            check_len(g.len, batch * nn, "grad_vectors")?;
        }
        check_len(out.len, batch * nn, "gradient destination")?;
        let mut inputs = fwd.inputs();
        inputs.extend(grad_values.map(|g| ("grad_values", g)));
        inputs.extend(grad_vectors.map(|g| ("grad_vectors", g)));
        let writable = check_outputs(&inputs, &[("gradient destination", out)])?;
        // With the register kernel the reverse rule runs in registers too.
        let kernel = if self.forward_kernel_for(n) == ForwardKernel::Registers {
            Kernel::RegistersVjp
        } else {
            Kernel::EighVjp
        };
        let pipe = self.pipeline(kernel, n, None, (0, policy.code()), writable)?;
        let slots = [
            fwd.eigenvalues.slot(n),
            vecs.slot(nn),
            grad_values.map_or(Slot::Placeholder, |g| g.slot(n)),
            grad_vectors.map_or(Slot::Placeholder, |g| g.slot(nn)),
            fwd.status.slot(1),
            out.slot(nn),
        ];
        let params = Params {
            tol: policy_tol(policy),
            flags: grad_values.is_some() as u32 | (grad_vectors.is_some() as u32) << 1,
            ..Params::default()
        };
        self.inner.dispatch(&pipe, batch, &slots, params)
    }

    /// Device-resident forward rule: for the tangent `Ȧ` (`[B][n][n]`, symmetrised),
    /// `λ̇ = diag(VᵀȦV)`, `V̇ = V (F∘(VᵀȦV))`; NaN where the forward status is not ok.
    pub fn eigh_jvp_resident(
        &self,
        fwd: &GpuEigh,
        tangent: &GpuTensor,
        policy: Degeneracy,
    ) -> Result<GpuJvp> {
        fwd.check()?;
        let (n, batch) = (fwd.n, fwd.batch);
        let out = GpuJvp {
            values_dot: self.new_tensor(batch * n),
            vectors_dot: self.new_tensor(batch * n * n),
        };
        match self.eigh_jvp_resident_into(fwd, tangent, policy, &out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.recycle(out.values_dot);
                self.recycle(out.vectors_dot);
                Err(e)
            }
        }
    }

    /// [`GpuContext::eigh_jvp_resident`] into the caller's tensors, under the rules of
    /// [`GpuContext::eigh_resident_into`].
    pub fn eigh_jvp_resident_into(
        &self,
        fwd: &GpuEigh,
        tangent: &GpuTensor,
        policy: Degeneracy,
        out: &GpuJvp,
    ) -> Result<()> {
        policy.validate()?;
        fwd.check()?;
        let (n, batch) = (fwd.n, fwd.batch);
        let nn = n * n;
        let vecs = fwd.eigenvectors.as_ref().ok_or_else(|| {
            Error::InvalidArgument("the JVP needs the eigenvectors (use Vectors::Yes)".into())
        })?;
        check_len(tangent.len, batch * nn, "tangent")?;
        check_len(out.values_dot.len, batch * n, "values_dot destination")?;
        check_len(out.vectors_dot.len, batch * nn, "vectors_dot destination")?;
        let mut inputs = fwd.inputs();
        inputs.push(("tangent", tangent));
        let writable = check_outputs(
            &inputs,
            &[
                ("values_dot destination", &out.values_dot),
                ("vectors_dot destination", &out.vectors_dot),
            ],
        )?;
        let pipe = self.pipeline(Kernel::EighJvp, n, None, (0, policy.code()), writable)?;
        let slots = [
            fwd.eigenvalues.slot(n),
            vecs.slot(nn),
            tangent.slot(nn),
            fwd.status.slot(1),
            out.values_dot.slot(n),
            out.vectors_dot.slot(nn),
        ];
        let params = Params {
            tol: policy_tol(policy),
            ..Params::default()
        };
        self.inner.dispatch(&pipe, batch, &slots, params)
    }

    /// Matrices per upload–run–readback round of the host-memory calls.
    fn host_chunk(&self, words_per_matrix: usize) -> usize {
        let limits = self.inner.limits();
        let bytes = HOST_CHUNK_BYTES.min(limits.max_buffer_size);
        let mut chunk = (bytes / (words_per_matrix as u64 * WORD)).max(1) as usize;
        let cap = self.inner.chunk_cap.load(Ordering::Relaxed);
        if cap > 0 {
            // A forced cap also splits the host rounds (into a few dispatches each).
            chunk = chunk.min(3 * cap.max(CHUNK_QUANTUM));
        }
        chunk
    }

    /// Matrices per pipelined round of a host-memory call over `batch` matrices whose largest
    /// buffer holds `words_per_matrix` words per matrix: about a [`PIPELINE_ROUNDS`]th of the
    /// batch, at least [`MIN_ROUND_MATRICES`] and [`MIN_ROUND_BYTES`], at most
    /// [`GpuContext::host_chunk`]; a multiple of [`CHUNK_QUANTUM`] unless that is the cap.
    fn round_matrices(&self, batch: usize, words_per_matrix: usize) -> usize {
        let floor = MIN_ROUND_MATRICES
            .max((MIN_ROUND_BYTES / (words_per_matrix.max(1) as u64 * WORD)) as usize);
        batch
            .div_ceil(PIPELINE_ROUNDS)
            .max(floor)
            .next_multiple_of(CHUNK_QUANTUM)
            .min(self.host_chunk(words_per_matrix))
            .max(1)
    }

    /// Runs a host-memory call as pipelined rounds over `0..batch`: for each round, `launch`
    /// uploads its inputs, submits its kernels and starts its readback; `land` finishes a
    /// readback (wait, copy out). Two rounds are in flight: while the device runs round k − 1,
    /// one thread launches round k (writing its inputs into staging memory) and another lands
    /// round k − 2 (copying its results out), so the host's two copies overlap each other as
    /// well as the device's work. Logs the phase times at debug level.
    fn pipelined(
        &self,
        what: &str,
        n: usize,
        batch: usize,
        round: usize,
        bytes: (u64, u64),
        mut launch: impl FnMut(Range<usize>, &mut Phases) -> Result<Readback> + Send,
        mut land: impl FnMut(Range<usize>, &[&[u32]], &mut Phases) -> Result<()> + Send,
    ) -> Result<()> {
        let t0 = Instant::now();
        let mut launched = Phases::default();
        let mut landed = Phases::default();
        let mut in_flight: std::collections::VecDeque<(Range<usize>, Readback)> =
            Default::default();
        let mut rounds = 0;
        let mut finish = |(range, rb): (Range<usize>, Readback), phases: &mut Phases| {
            let mut inner_phases = Phases::default();
            let r = self
                .inner
                .finish_read(rb, &mut inner_phases, |w| land(range, w, phases));
            phases.wait += inner_phases.wait;
            // The copy-out and post-processing times come from `land`.
            r
        };
        for start in (0..batch).step_by(round.max(1)) {
            let range = start..(start + round).min(batch);
            let oldest = if in_flight.len() >= 2 {
                in_flight.pop_front()
            } else {
                None
            };
            let (rb, done) = match oldest {
                Some(old) => rayon::join(
                    || launch(range.clone(), &mut launched),
                    || finish(old, &mut landed),
                ),
                None => (launch(range.clone(), &mut launched), Ok(())),
            };
            done?;
            in_flight.push_back((range, rb?));
            rounds += 1;
        }
        for old in in_flight {
            finish(old, &mut landed)?;
        }
        launched.add(&landed);
        launched.log(what, n, batch, rounds, bytes, t0.elapsed());
        Ok(())
    }

    /// Batched eigendecomposition of `a` (`[B][n][n]`, any [`Scalar`]), `1 ≤ n ≤ 64`, in f32:
    /// the same conventions as [`crate::cpu::jacobi`] (ascending eigenvalues, eigenvectors as
    /// columns with the sign gauge, a status per matrix and NaN outputs for bad matrices).
    ///
    /// Large batches run as pipelined rounds, two in flight: while the device works on one
    /// round, the upload of the next and the copy-out of the one before run on two threads.
    pub fn eigh<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        opts: &EighOptions,
        vectors: Vectors,
    ) -> Result<Eigh<f32>> {
        opts.validate()?;
        check_n(n)?;
        let batch = crate::cpu::batch_of(a.len(), n, "input")?;
        let nn = n * n;
        let want = vectors == Vectors::Yes;
        // Zeroed allocations are lazy (untouched pages), so the copy-out touches them first.
        let mut eigenvalues = vec![0f32; batch * n];
        let mut eigenvectors = want.then(|| vec![0f32; batch * nn]);
        let mut status = Vec::with_capacity(batch);
        let down = batch * (n + 1 + if want { nn } else { 0 });
        let bytes = ((batch * nn) as u64 * WORD, down as u64 * WORD);
        let what = if want { "eigh" } else { "eigvalsh" };
        self.pipelined(
            what,
            n,
            batch,
            self.round_matrices(batch, nn),
            bytes,
            |range, ph| {
                let t = Instant::now();
                let input = self.try_upload(&a[range.start * nn..range.end * nn])?;
                ph.upload += t.elapsed();
                let t = Instant::now();
                let r = self.eigh_resident(&input, n, opts, vectors);
                self.inner.give(input.buffer);
                let r = r?;
                // One readback for status, eigenvalues and eigenvectors: all 4-byte words.
                let mut regions = vec![
                    (&r.status.buffer, 0, r.status.len as u64),
                    (&r.eigenvalues.buffer, 0, r.eigenvalues.len as u64),
                ];
                if let Some(v) = &r.eigenvectors {
                    regions.push((&v.buffer, 0, v.len as u64));
                }
                let rb = self.inner.start_read(&regions);
                // The queue runs in order: later calls may reuse these buffers.
                self.recycle_eigh(r);
                ph.submit += t.elapsed();
                rb
            },
            |range, words, ph| {
                let t = Instant::now();
                copy_f32(&mut eigenvalues[range.start * n..range.end * n], words[1]);
                if let (Some(v), Some(w)) = (eigenvectors.as_mut(), words.get(2)) {
                    copy_f32(&mut v[range.start * nn..range.end * nn], w);
                }
                ph.copy_out += t.elapsed();
                let t = Instant::now();
                decode_status_into(&mut status, words[0])?;
                ph.post += t.elapsed();
                Ok(())
            },
        )?;
        Ok(Eigh {
            n,
            batch,
            eigenvalues,
            eigenvectors,
            status,
        })
    }

    /// Uploads the forward results of matrices `range` of `eig` (which must hold eigenvectors).
    fn upload_forward(&self, eig: &Eigh<f32>, range: std::ops::Range<usize>) -> Result<GpuEigh> {
        let (n, nn) = (eig.n, eig.n * eig.n);
        let vecs = eig.eigenvectors.as_ref().ok_or_else(|| {
            Error::InvalidArgument(
                "this derivative needs the eigenvectors (use Vectors::Yes)".into(),
            )
        })?;
        let status = &eig.status[range.clone()];
        let status_buffer = self.inner.upload_with(
            status.len() as u64 * WORD,
            wgpu::BufferUsages::empty(),
            |dst| write_map(dst, status, |s| s.code()),
        )?;
        Ok(GpuEigh {
            n,
            batch: range.len(),
            eigenvalues: self.try_upload(&eig.eigenvalues[range.start * n..range.end * n])?,
            eigenvectors: Some(self.try_upload(&vecs[range.start * nn..range.end * nn])?),
            status: self.tensor(status_buffer, status.len()),
        })
    }

    /// The reverse rule on the GPU for host data: the contract of [`crate::cpu::eigh_vjp`]
    /// (the `Mask` default tolerance is the f32 one, `eps^(3/4)·max|λ|`).
    pub fn eigh_vjp(
        &self,
        eig: &Eigh<f32>,
        grad_values: Option<&[f32]>,
        grad_vectors: Option<&[f32]>,
        policy: Degeneracy,
    ) -> Result<Vec<f32>> {
        policy.validate()?;
        check_n(eig.n)?;
        eig.check()?;
        let (n, nn, batch) = (eig.n, eig.n * eig.n, eig.batch);
        if let Some(g) = grad_values {
            check_len(g.len(), batch * n, "grad_values")?;
        }
        if let Some(g) = grad_vectors {
            check_len(g.len(), batch * nn, "grad_vectors")?;
        }
        let mut out = vec![0f32; batch * nn];
        let up = batch * (2 * n + 1 + nn * (1 + grad_vectors.is_some() as usize))
            - if grad_values.is_none() { batch * n } else { 0 };
        let bytes = (up as u64 * WORD, (batch * nn) as u64 * WORD);
        self.pipelined(
            "eigh_vjp",
            n,
            batch,
            self.round_matrices(batch, nn),
            bytes,
            |range, ph| {
                let t = Instant::now();
                let (start, end) = (range.start, range.end);
                let fwd = self.upload_forward(eig, range)?;
                let gl = grad_values
                    .map(|g| self.try_upload(&g[start * n..end * n]))
                    .transpose()?;
                let gv = grad_vectors
                    .map(|g| self.try_upload(&g[start * nn..end * nn]))
                    .transpose()?;
                ph.upload += t.elapsed();
                let t = Instant::now();
                let r = self.eigh_vjp_resident(&fwd, gl.as_ref(), gv.as_ref(), policy);
                for t in gl.into_iter().chain(gv) {
                    self.inner.give(t.buffer);
                }
                self.recycle_eigh(fwd);
                let r = r?;
                let rb = self
                    .inner
                    .start_read(&[(&r.buffer, r.offset, r.len as u64)]);
                self.inner.give(r.buffer);
                ph.submit += t.elapsed();
                rb
            },
            |range, words, ph| {
                let t = Instant::now();
                copy_f32(&mut out[range.start * nn..range.end * nn], words[0]);
                ph.copy_out += t.elapsed();
                Ok(())
            },
        )?;
        Ok(out)
    }

    /// `Ā = V diag(λ̄) Vᵀ` on the GPU, the contract of [`crate::cpu::eigvalsh_vjp`].
    pub fn eigvalsh_vjp(&self, eig: &Eigh<f32>, grad_values: &[f32]) -> Result<Vec<f32>> {
        self.eigh_vjp(eig, Some(grad_values), None, Degeneracy::Propagate)
    }

    /// The forward rule on the GPU for host data, the contract of [`crate::cpu::eigh_jvp`].
    pub fn eigh_jvp(
        &self,
        eig: &Eigh<f32>,
        tangent: &[f32],
        policy: Degeneracy,
    ) -> Result<Jvp<f32>> {
        policy.validate()?;
        check_n(eig.n)?;
        eig.check()?;
        let (n, nn, batch) = (eig.n, eig.n * eig.n, eig.batch);
        check_len(tangent.len(), batch * nn, "tangent")?;
        let mut values_dot = vec![0f32; batch * n];
        let mut vectors_dot = vec![0f32; batch * nn];
        let bytes = (
            (batch * (n + 1 + 2 * nn)) as u64 * WORD,
            (batch * (n + nn)) as u64 * WORD,
        );
        self.pipelined(
            "eigh_jvp",
            n,
            batch,
            self.round_matrices(batch, nn),
            bytes,
            |range, ph| {
                let t = Instant::now();
                let (start, end) = (range.start, range.end);
                let fwd = self.upload_forward(eig, range)?;
                let da = self.try_upload(&tangent[start * nn..end * nn])?;
                ph.upload += t.elapsed();
                let t = Instant::now();
                let r = self.eigh_jvp_resident(&fwd, &da, policy);
                self.inner.give(da.buffer);
                self.recycle_eigh(fwd);
                let r = r?;
                let rb = self.inner.start_read(&[
                    (&r.values_dot.buffer, 0, r.values_dot.len as u64),
                    (&r.vectors_dot.buffer, 0, r.vectors_dot.len as u64),
                ]);
                self.inner.give(r.values_dot.buffer);
                self.inner.give(r.vectors_dot.buffer);
                ph.submit += t.elapsed();
                rb
            },
            |range, words, ph| {
                let t = Instant::now();
                copy_f32(&mut values_dot[range.start * n..range.end * n], words[0]);
                copy_f32(&mut vectors_dot[range.start * nn..range.end * nn], words[1]);
                ph.copy_out += t.elapsed();
                Ok(())
            },
        )?;
        Ok(Jvp {
            values_dot,
            vectors_dot,
        })
    }
}

fn decode_status(codes: &[u32]) -> Result<Vec<Status>> {
    let mut out = Vec::with_capacity(codes.len());
    decode_status_into(&mut out, codes)?;
    Ok(out)
}

/// Appends the statuses of `codes` to `out`.
fn decode_status_into(out: &mut Vec<Status>, codes: &[u32]) -> Result<()> {
    for &c in codes {
        out.push(
            Status::from_code(c)
                .ok_or_else(|| Error::Gpu(format!("kernel wrote an unknown status code {c}")))?,
        );
    }
    Ok(())
}

/// The adapter named by `WGPU_ADAPTER_NAME` (a case-insensitive substring), else wgpu's choice
/// under `WGPU_POWER_PREF` (high performance by default).
async fn pick_adapter(instance: &wgpu::Instance) -> Result<wgpu::Adapter> {
    if let Ok(wanted) = std::env::var("WGPU_ADAPTER_NAME") {
        let wanted_lc = wanted.to_lowercase();
        let adapters = instance.enumerate_adapters(wgpu::Backends::all()).await;
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&wanted_lc))
            .ok_or_else(|| {
                Error::NoAdapter(format!(
                    "WGPU_ADAPTER_NAME={wanted} matches none of the adapters {names:?}"
                ))
            });
    }
    instance
        .request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::from_env()
                .unwrap_or(wgpu::PowerPreference::HighPerformance),
            ..Default::default()
        })
        .await
        .map_err(|e| Error::NoAdapter(e.to_string()))
}
