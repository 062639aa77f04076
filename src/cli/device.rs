//! Where the work runs: `--device auto|gpu|cpu`, the fallback rules, and one [`Engine`] type that
//! puts the CPU reference (f64) and the GPU path (f32) behind the same calls.
//!
//! `auto` uses the GPU when an adapter exists and the matrices fit (`n ≤ 64`), otherwise the CPU,
//! and says which on stderr (`device: …`). `gpu` without an adapter, or with `n > 64`, is an error.

use super::error::{fail, CliError, CliResult};
use super::npy::{with_slice, Dtype, Floats};
use eigrad::gpu::{GpuContext, MAX_N};
use eigrad::spectral::{Spectral, SpectralFn};
use eigrad::{cpu, Degeneracy, Eigh, EighOptions, Status, Vectors};
use rayon::prelude::*;
use std::borrow::Cow;

/// The `--device` option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceChoice {
    /// The GPU when an adapter exists (and `n ≤ 64`), else the CPU.
    #[default]
    Auto,
    /// The GPU; an error when there is no adapter or `n > 64`.
    Gpu,
    /// The CPU reference (f64).
    Cpu,
}

/// The devices a command may use, opened once: the GPU context when it is wanted and available.
pub struct Devices {
    /// What the user asked for.
    choice: DeviceChoice,
    /// The GPU, when it will be used for at least one size.
    gpu: Option<GpuContext>,
}

impl Devices {
    /// Opens what `choice` needs for matrices of the given sizes and prints `device: …` to stderr.
    ///
    /// `gpu` fails (exit 2) without an adapter or with a size above [`MAX_N`]; `auto` falls back
    /// to the CPU, saying why, for sizes above [`MAX_N`] or when no GPU can be opened.
    pub fn open(choice: DeviceChoice, sizes: &[usize]) -> CliResult<Devices> {
        let too_big: Vec<usize> = sizes.iter().copied().filter(|&n| n > MAX_N).collect();
        let gpu = match choice {
            DeviceChoice::Cpu => {
                eprintln!("device: cpu");
                None
            }
            DeviceChoice::Gpu => {
                if let Some(n) = too_big.first() {
                    fail!("--device gpu: n = {n} is larger than the GPU limit of {MAX_N}; use --device cpu or auto");
                }
                let ctx = GpuContext::new().map_err(|e| CliError(format!("--device gpu: {e}")))?;
                eprintln!("device: gpu ({})", ctx.adapter_name());
                Some(ctx)
            }
            DeviceChoice::Auto if !sizes.is_empty() && too_big.len() == sizes.len() => {
                eprintln!(
                    "device: cpu (n = {} is larger than the GPU limit of {MAX_N})",
                    list(&too_big)
                );
                None
            }
            DeviceChoice::Auto => match GpuContext::new() {
                Ok(ctx) => {
                    if too_big.is_empty() {
                        eprintln!("device: gpu ({})", ctx.adapter_name());
                    } else {
                        eprintln!(
                            "device: gpu ({}); n = {} (larger than the GPU limit of {MAX_N}) runs on the cpu",
                            ctx.adapter_name(),
                            list(&too_big)
                        );
                    }
                    Some(ctx)
                }
                // A misconfiguration (e.g. a bad EIGRAD_GPU_FORWARD) is an error, not a reason
                // to fall back to the CPU.
                Err(e @ eigrad::Error::InvalidArgument(_)) => {
                    fail!("--device auto: {e}");
                }
                Err(e) => {
                    eprintln!("device: cpu ({e})");
                    None
                }
            },
        };
        Ok(Devices { choice, gpu })
    }

    /// The engine for matrices of size `n`.
    pub fn engine(&self, n: usize) -> Engine<'_> {
        match &self.gpu {
            Some(ctx) if n <= MAX_N => Engine::Gpu(ctx),
            _ => Engine::Cpu,
        }
    }

    /// The GPU, when one is open.
    pub fn gpu(&self) -> Option<&GpuContext> {
        self.gpu.as_ref()
    }

    /// Whether the CPU is wanted as a device in its own right (`auto` or `cpu`; `bench` runs it
    /// next to the GPU under `auto`).
    pub fn cpu_wanted(&self) -> bool {
        self.choice != DeviceChoice::Gpu
    }
}

/// `1, 2, 3`.
fn list(xs: &[usize]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One device behind the library's calls.
#[derive(Clone, Copy)]
pub enum Engine<'a> {
    /// The f64 CPU reference.
    Cpu,
    /// The f32 GPU path.
    Gpu(&'a GpuContext),
}

/// A forward result of either precision.
#[derive(Clone, Debug)]
pub enum Eig {
    /// From the GPU.
    F32(Eigh<f32>),
    /// From the CPU.
    F64(Eigh<f64>),
}

/// A spectral-function result of either precision.
#[derive(Clone, Debug)]
pub enum Spec {
    /// From the GPU.
    F32(Spectral<f32>),
    /// From the CPU.
    F64(Spectral<f64>),
}

/// Converts every element of an [`Eigh`] with `f`.
fn map_eigh<S: Copy, T>(e: &Eigh<S>, f: impl Fn(S) -> T + Copy) -> Eigh<T> {
    Eigh {
        n: e.n,
        batch: e.batch,
        eigenvalues: e.eigenvalues.iter().map(|&x| f(x)).collect(),
        eigenvectors: e
            .eigenvectors
            .as_ref()
            .map(|v| v.iter().map(|&x| f(x)).collect()),
        status: e.status.clone(),
    }
}

impl Eig {
    /// The eigenvalues, `[B][n]`.
    pub fn eigenvalues(&self) -> Floats {
        match self {
            Eig::F32(e) => Floats::from(e.eigenvalues.clone()),
            Eig::F64(e) => Floats::from(e.eigenvalues.clone()),
        }
    }

    /// The eigenvectors, `[B][n][n]`, when computed.
    pub fn eigenvectors(&self) -> Option<Floats> {
        match self {
            Eig::F32(e) => e.eigenvectors.clone().map(Floats::from),
            Eig::F64(e) => e.eigenvectors.clone().map(Floats::from),
        }
    }

    /// One status per matrix.
    pub fn status(&self) -> &[Status] {
        match self {
            Eig::F32(e) => &e.status,
            Eig::F64(e) => &e.status,
        }
    }

    /// The result in f64 (exact widening of GPU results).
    pub fn to_f64(&self) -> Cow<'_, Eigh<f64>> {
        match self {
            Eig::F32(e) => Cow::Owned(map_eigh(e, |x| x as f64)),
            Eig::F64(e) => Cow::Borrowed(e),
        }
    }

    /// The result in f32 (rounded from CPU results): what f32 outputs hold.
    pub fn to_f32(&self) -> Cow<'_, Eigh<f32>> {
        match self {
            Eig::F32(e) => Cow::Borrowed(e),
            Eig::F64(e) => Cow::Owned(map_eigh(e, |x| x as f32)),
        }
    }
}

impl Spec {
    /// `f(A)`, `[B][n][n]`.
    pub fn values(&self) -> Floats {
        match self {
            Spec::F32(s) => Floats::from(s.values.clone()),
            Spec::F64(s) => Floats::from(s.values.clone()),
        }
    }

    /// One status per matrix.
    pub fn status(&self) -> &[Status] {
        match self {
            Spec::F32(s) => &s.eig.status,
            Spec::F64(s) => &s.eig.status,
        }
    }
}

impl Engine<'_> {
    /// `cpu` or `gpu (<adapter name>)`.
    pub fn name(&self) -> String {
        match self {
            Engine::Cpu => "cpu".into(),
            Engine::Gpu(ctx) => format!("gpu ({})", ctx.adapter_name()),
        }
    }

    /// `cpu` or `gpu`.
    pub fn kind(&self) -> &'static str {
        match self {
            Engine::Cpu => "cpu",
            Engine::Gpu(_) => "gpu",
        }
    }

    /// The precision results come in: f32 from the GPU, f64 from the CPU (the default output
    /// dtype).
    pub fn native_dtype(&self) -> Dtype {
        match self {
            Engine::Cpu => Dtype::F64,
            Engine::Gpu(_) => Dtype::F32,
        }
    }

    /// Batched eigendecomposition of `a` (`[B][n][n]`).
    pub fn eigh(
        &self,
        a: &Floats,
        n: usize,
        opts: &EighOptions,
        vectors: Vectors,
    ) -> CliResult<Eig> {
        let eig = match self {
            Engine::Cpu => Eig::F64(with_slice!(a, s => cpu::jacobi(s, n, opts, vectors))?),
            Engine::Gpu(ctx) => {
                warn_f32_range(a);
                Eig::F32(with_slice!(a, s => ctx.eigh(s, n, opts, vectors))?)
            }
        };
        // Guards the GPU path's contract, so that a wrong-sized result is an error, not a panic.
        let batch = a.len() / (n * n);
        let (values, vecs, status) = match &eig {
            Eig::F32(e) => (
                e.eigenvalues.len(),
                e.eigenvectors.as_ref().map(Vec::len),
                e.status.len(),
            ),
            Eig::F64(e) => (
                e.eigenvalues.len(),
                e.eigenvectors.as_ref().map(Vec::len),
                e.status.len(),
            ),
        };
        let vectors_ok = vectors == Vectors::No || vecs == Some(batch * n * n);
        if values != batch * n || status != batch || !vectors_ok {
            fail!(
                "internal error: the {} returned a decomposition of the wrong size for {batch} matrices of size {n}",
                self.kind()
            );
        }
        Ok(eig)
    }

    /// The VJP `Ā` of the eigendecomposition `eig` (which must hold eigenvectors) for the
    /// cotangents `λ̄` (`[B][n]`) and `V̄` (`[B][n][n]`), at least one given.
    pub fn vjp(
        &self,
        eig: &Eig,
        grad_values: Option<&Floats>,
        grad_vectors: Option<&Floats>,
        policy: Degeneracy,
    ) -> CliResult<Floats> {
        Ok(match self {
            Engine::Cpu => {
                let e = eig.to_f64();
                let gw = grad_values.map(Floats::to_f64);
                let gv = grad_vectors.map(Floats::to_f64);
                Floats::from(match (&gw, &gv) {
                    (Some(gw), None) => cpu::eigvalsh_vjp(&e, gw)?,
                    _ => cpu::eigh_vjp(&e, gw.as_deref(), gv.as_deref(), policy)?,
                })
            }
            Engine::Gpu(ctx) => {
                let e = eig.to_f32();
                let gw = grad_values.map(Floats::to_f32);
                let gv = grad_vectors.map(Floats::to_f32);
                Floats::from(match (&gw, &gv) {
                    (Some(gw), None) => ctx.eigvalsh_vjp(&e, gw)?,
                    _ => ctx.eigh_vjp(&e, gw.as_deref(), gv.as_deref(), policy)?,
                })
            }
        })
    }

    /// The JVP `(λ̇, V̇)` of the eigendecomposition `eig` for the tangent `Ȧ` (`[B][n][n]`).
    pub fn jvp(
        &self,
        eig: &Eig,
        tangent: &Floats,
        policy: Degeneracy,
    ) -> CliResult<(Floats, Floats)> {
        Ok(match self {
            Engine::Cpu => {
                let j = cpu::eigh_jvp(&eig.to_f64(), &tangent.to_f64(), policy)?;
                (Floats::from(j.values_dot), Floats::from(j.vectors_dot))
            }
            Engine::Gpu(ctx) => {
                let j = ctx.eigh_jvp(&eig.to_f32(), &tangent.to_f32(), policy)?;
                (Floats::from(j.values_dot), Floats::from(j.vectors_dot))
            }
        })
    }

    /// The spectral function `f(A) = V f(Λ) Vᵀ` of `a` (`[B][n][n]`).
    pub fn spectral(
        &self,
        a: &Floats,
        n: usize,
        function: SpectralFn,
        opts: &EighOptions,
    ) -> CliResult<Spec> {
        Ok(match self {
            Engine::Cpu => Spec::F64(with_slice!(a, s => cpu::spectral(s, n, function, opts))?),
            Engine::Gpu(ctx) => Spec::F32(with_slice!(a, s => ctx.spectral(s, n, function, opts))?),
        })
    }

    /// The Daleckii–Krein VJP of `spec` for the cotangent `Ḡ` (`[B][n][n]`).
    pub fn spectral_vjp(&self, spec: &Spec, grad: &Floats) -> CliResult<Floats> {
        Ok(match (self, spec) {
            (Engine::Cpu, Spec::F64(s)) => Floats::from(cpu::spectral_vjp(s, &grad.to_f64())?),
            (Engine::Gpu(ctx), Spec::F32(s)) => Floats::from(ctx.spectral_vjp(s, &grad.to_f32())?),
            // A result is only ever handed back to the engine that produced it.
            _ => fail!("internal error: spectral result from another device"),
        })
    }
}

/// `None` when every matrix is ok, else a sentence counting the others by status.
pub fn status_summary(status: &[Status]) -> Option<String> {
    let count = |s: Status| status.iter().filter(|&&x| x == s).count();
    let bad = status.iter().filter(|s| !s.is_ok()).count();
    if bad == 0 {
        return None;
    }
    let parts: Vec<String> = [
        (Status::NonFiniteInput, "non-finite input"),
        (Status::NotConverged, "not converged"),
        (Status::OutOfDomain, "out of domain or range"),
    ]
    .iter()
    .filter_map(|&(s, what)| match count(s) {
        0 => None,
        k => Some(format!("{k} {what}")),
    })
    .collect();
    Some(format!(
        "{bad} of {} matrices have a non-ok status ({}); their outputs are NaN",
        status.len(),
        parts.join(", ")
    ))
}

/// Warns when float64 input has finite entries outside the float32 range, which the GPU reads
/// as ±inf (so their matrices get status 1, "non-finite input"), or non-zero entries below it,
/// which it reads as 0 (a matrix of such entries is then the zero matrix, with status 0).
fn warn_f32_range(a: &Floats) {
    if let Floats::F64(x) = a {
        let (outside, vanish) = x
            .par_iter()
            .map(|&v| {
                let f = v as f32;
                (v.is_finite() && !f.is_finite(), v != 0.0 && f == 0.0)
            })
            .fold(
                || (0usize, 0usize),
                |(o, z), (a, b)| (o + a as usize, z + b as usize),
            )
            .reduce(|| (0, 0), |(o, z), (a, b)| (o + a, z + b));
        if outside > 0 {
            eprintln!(
                "warning: {outside} finite float64 entries are outside the float32 range and read \
                 as ±inf on the GPU (their matrices get status 1); --device cpu computes in float64"
            );
        }
        if vanish > 0 {
            eprintln!(
                "warning: {vanish} non-zero float64 entries are below the float32 range and read \
                 as 0 on the GPU; --device cpu computes in float64"
            );
        }
    }
}

/// Prints [`status_summary`] as a warning on stderr, if there is anything to say.
pub fn warn_status(status: &[Status]) {
    if let Some(s) = status_summary(status) {
        eprintln!("warning: {s}");
    }
}
