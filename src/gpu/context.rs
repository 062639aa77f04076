//! Device setup, the pipeline cache, the buffer pool, chunked dispatch, upload and readback.
//!
//! Host↔device transfers go through staging buffers kept in the pool: an upload writes (and
//! converts) the host data straight into a mapped `MAP_WRITE` staging buffer and submits one
//! copy; a readback copies every region into one `MAP_READ` staging buffer (host-cached memory),
//! maps it once and copies out in bulk. Large copies in and out of mapped memory are split over
//! rayon's threads. So steady-state calls allocate no device or staging memory (wgpu's own
//! `Queue::write_buffer` would allocate a fresh staging buffer every call, a dedicated
//! allocation for large writes).

use super::plan::Plan;
use super::shaders::Kernel;
use crate::{Error, Result};
use rayon::prelude::*;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes per element on the device (f32 and u32).
pub(crate) const WORD: u64 = 4;
/// Sub-chunks start at multiples of this many matrices, so binding offsets stay aligned to 256
/// bytes (the largest `min_storage_buffer_offset_alignment` wgpu allows) for any words-per-matrix.
pub(crate) const CHUNK_QUANTUM: usize = 64;
/// Free buffers the pool keeps at most.
const POOL_CAPACITY: usize = 48;
/// Elements per task of a parallel copy in or out of mapped memory (1 MiB of words): smaller
/// copies run on the calling thread.
const COPY_GRAIN: usize = 1 << 18;
/// How long a readback waits for its mapping callback after its copy has finished before it
/// reports an error.
const MAP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);
/// Bytes per task of a parallel write into mapped memory (1 MiB).
const WRITE_GRAIN: usize = 1 << 20;
/// Usage of the upload staging buffers.
const UPLOAD_STAGING: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_WRITE.union(wgpu::BufferUsages::COPY_SRC);
/// Usage of the readback staging buffers.
const READ_STAGING: wgpu::BufferUsages =
    wgpu::BufferUsages::MAP_READ.union(wgpu::BufferUsages::COPY_DST);

/// A free buffer of the pool. Upload staging buffers come back while their copy may still run,
/// with a write mapping requested: `ready` is the submission after which the mapping resolves,
/// and `mapping` its state ([`PENDING`], [`MAPPED`] or [`FAILED`], set by the callback).
struct Pooled {
    buffer: wgpu::Buffer,
    ready: Option<wgpu::SubmissionIndex>,
    mapping: Option<Arc<AtomicU8>>,
}

/// Mapping states of a pooled upload staging buffer.
const PENDING: u8 = 0;
const MAPPED: u8 = 1;
const FAILED: u8 = 2;

impl Pooled {
    fn state(&self) -> Option<u8> {
        self.mapping.as_ref().map(|m| m.load(Ordering::Acquire))
    }
}

/// Wall time of the phases of one host-memory call, summed over its rounds (logged at debug
/// level, `RUST_LOG=eigrad=debug`).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Phases {
    /// Writing (and converting) inputs into staging memory and submitting their copies.
    pub upload: Duration,
    /// Planning and submitting the kernels and the copies to the readback staging buffer.
    pub submit: Duration,
    /// Waiting for the device (kernels and copies) and for the readback mapping.
    pub wait: Duration,
    /// Copying results out of mapped memory into the caller's output (includes first touch of
    /// fresh output pages).
    pub copy_out: Duration,
    /// Host-side post-processing (status decoding).
    pub post: Duration,
}

impl Phases {
    /// Adds `other`'s times to these.
    pub fn add(&mut self, other: &Phases) {
        self.upload += other.upload;
        self.submit += other.submit;
        self.wait += other.wait;
        self.copy_out += other.copy_out;
        self.post += other.post;
    }

    /// Logs the phases of a call at debug level. Phases that ran on two threads at once sum to
    /// more than the total: the log then says by how much they overlapped.
    pub fn log(
        &self,
        what: &str,
        n: usize,
        batch: usize,
        rounds: usize,
        bytes: (u64, u64),
        total: Duration,
    ) {
        // Nothing to format when the line would not be written (every host-memory call ends here).
        if !log::log_enabled!(log::Level::Debug) {
            return;
        }
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let sum = self.upload + self.submit + self.wait + self.copy_out + self.post;
        let rest = if sum <= total {
            format!("+ {:.3} other", ms(total - sum))
        } else {
            format!("{:.3} overlapped", ms(sum - total))
        };
        log::debug!(
            "{what} n={n} batch={batch}: {rounds} round(s), {:.3} MB up, {:.3} MB down; total {:.3} ms = \
             upload {:.3} + submit {:.3} + wait {:.3} + copy-out {:.3} + post {:.3} ({rest})",
            bytes.0 as f64 / 1e6,
            bytes.1 as f64 / 1e6,
            ms(total),
            ms(self.upload),
            ms(self.submit),
            ms(self.wait),
            ms(self.copy_out),
            ms(self.post),
        );
    }
}

/// What makes two plans the same pipeline: the kernel, its constants (as bits) and its
/// variants. Looked up on every dispatch, so no text is formatted for it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    kernel: Kernel,
    constants: Vec<(&'static str, u64)>,
    subgroups: bool,
    writable: bool,
}

/// A readback in flight: regions copied into one staging buffer whose read mapping resolves
/// after `submission`.
pub(crate) struct Readback {
    staging: Option<wgpu::Buffer>,
    /// Byte offset in the staging buffer and words, per region.
    parts: Vec<(u64, u64)>,
    size: u64,
    submission: wgpu::SubmissionIndex,
    mapped: Arc<Mutex<Option<std::result::Result<(), wgpu::BufferAsyncError>>>>,
}

/// `dst.copy_from_slice(src)`, split over rayon's threads when large.
pub(crate) fn par_copy<T: Copy + Send + Sync>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len(), "par_copy: lengths differ");
    if dst.len() <= 2 * COPY_GRAIN {
        dst.copy_from_slice(src);
    } else {
        dst.par_chunks_mut(COPY_GRAIN)
            .zip(src.par_chunks(COPY_GRAIN))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }
}

/// `dst.copy_from_slice(src)` into mapped memory, split over rayon's threads when large (see
/// [`write_map`]).
pub(crate) fn par_write(dst: wgpu::WriteOnly<'_, [u8]>, src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "par_write: lengths differ");
    for_each_piece(dst, |mut d, at| d.copy_from_slice(&src[at..at + d.len()]));
}

/// Writes `f(x)` for each `x` of `src` into mapped memory `dst` (of exactly that many bytes),
/// converting blocks into a small buffer first so the mapped memory only sees bulk writes; large
/// writes are split over rayon's threads (mapped staging memory may be write-combined, where one
/// thread's stores fall well short of what the memory takes).
pub(crate) fn write_map<T: Sync, W: bytemuck::Pod>(
    dst: wgpu::WriteOnly<'_, [u8]>,
    src: &[T],
    f: impl Fn(&T) -> W + Sync,
) {
    let size = std::mem::size_of::<W>();
    assert_eq!(dst.len(), src.len() * size, "write_map: lengths differ");
    assert_eq!(WRITE_GRAIN % size, 0, "write_map: element size");
    for_each_piece(dst, |d, at| {
        let (from, len) = (at / size, d.len() / size);
        write_map_serial(d, &src[from..from + len], &f)
    });
}

/// Calls `f(piece, byte offset)` on consecutive pieces of `dst` of [`WRITE_GRAIN`] bytes (the
/// last shorter), on rayon's threads when there are several.
fn for_each_piece(
    dst: wgpu::WriteOnly<'_, [u8]>,
    f: impl Fn(wgpu::WriteOnly<'_, [u8]>, usize) + Sync,
) {
    if dst.len() <= 2 * WRITE_GRAIN {
        f(dst, 0);
        return;
    }
    // Whole pieces as fixed-size arrays (a `WriteOnly` of an array can cross threads, one of a
    // slice cannot), the remainder on this thread.
    let (whole, rest) = dst.into_chunks::<WRITE_GRAIN>();
    let pieces: Vec<wgpu::WriteOnly<'_, [u8; WRITE_GRAIN]>> = whole.into_iter().collect();
    let at = pieces.len() * WRITE_GRAIN;
    pieces
        .into_par_iter()
        .enumerate()
        .for_each(|(i, d)| f(d.into(), i * WRITE_GRAIN));
    if !rest.is_empty() {
        f(rest, at);
    }
}

/// [`write_map`] on the calling thread.
fn write_map_serial<T, W: bytemuck::Pod>(
    mut dst: wgpu::WriteOnly<'_, [u8]>,
    src: &[T],
    f: &impl Fn(&T) -> W,
) {
    const BLOCK: usize = 1024;
    let size = std::mem::size_of::<W>();
    assert_eq!(dst.len(), src.len() * size, "write_map: lengths differ");
    let mut tmp = [W::zeroed(); BLOCK];
    for (i, block) in src.chunks(BLOCK).enumerate() {
        for (t, x) in tmp.iter_mut().zip(block) {
            *t = f(x);
        }
        let at = i * BLOCK * size;
        dst.slice(at..at + block.len() * size)
            .copy_from_slice(bytemuck::cast_slice(&tmp[..block.len()]));
    }
}

/// How a kernel binds a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    ReadWrite,
}

/// The per-dispatch uniform block (`Params` in shaders/common.wgsl).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
    pub batch: u32,
    pub groups_x: u32,
    pub tol: f32,
    pub flags: u32,
    pub nan_bits: u32,
    pub inf_bits: u32,
    pub extra: u32,
    pub pad: u32,
}

/// A compiled pipeline with its bind group layout and plan.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    pub plan: Plan,
}

/// One storage binding of a dispatch: a buffer region holding `words_per_matrix` words for each
/// matrix of the batch, from byte `offset`; or a placeholder for an absent optional input.
pub(crate) enum Slot<'a> {
    Batch {
        buffer: &'a wgpu::Buffer,
        offset: u64,
        words_per_matrix: u64,
        /// The context that made the buffer ([`Inner::id`]; 0: a caller's buffer).
        owner: u64,
    },
    Placeholder,
}

/// The device state shared by every call.
pub(crate) struct Inner {
    /// This context's number, distinct among the process's contexts: the owner of the tensors
    /// it makes.
    pub id: u64,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_name: String,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    pool: Mutex<Vec<Pooled>>,
    placeholder: wgpu::Buffer,
    /// Forced cap on matrices per dispatch (0 = none): tests use it to exercise chunking.
    pub chunk_cap: AtomicUsize,
    /// While profiling: the timestamp queries of the compute passes recorded so far.
    profile: Mutex<Option<Recording>>,
}

/// The state of [`GpuContext::profile`](super::GpuContext::profile) calls in progress: how many
/// are open (they nest), and every pass recorded since the outermost began.
struct Recording {
    open: usize,
    stamps: Vec<Arc<Stamp>>,
}

/// The timestamp queries around one compute pass (while profiling), resolved into `resolve`
/// (two u64 ticks: the pass's start and end).
struct Stamp {
    kernel: &'static str,
    _set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
}

impl Inner {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, adapter_name: String) -> Self {
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eigrad placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Inner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            device,
            queue,
            adapter_name,
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            placeholder,
            chunk_cap: AtomicUsize::new(0),
            profile: Mutex::new(None),
        }
    }

    /// An error unless a tensor made by the context `owner` (0: a caller's buffer, whose device
    /// is the caller's to match) may be used here.
    pub fn check_owner(&self, owner: u64) -> Result<()> {
        if owner != 0 && owner != self.id {
            return Err(Error::InvalidArgument(
                "a tensor made by another GpuContext (its buffer belongs to that context's \
                 device)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether the device writes timestamps around compute passes.
    pub fn has_timestamps(&self) -> bool {
        self.device
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Starts recording the device time of every compute pass (the device must have
    /// timestamps), or goes on recording inside a recording already open; returns where this
    /// call's passes begin, for [`Inner::finish_profile`], which ends it.
    pub fn start_profile(&self) -> usize {
        let mut profile = self.profile.lock().unwrap();
        let rec = profile.get_or_insert_with(|| Recording {
            open: 0,
            stamps: Vec::new(),
        });
        rec.open += 1;
        rec.stamps.len()
    }

    /// Ends the recording [`Inner::start_profile`] began at `from` (an enclosing one goes on),
    /// waits for the device and returns each pass recorded since then: its kernel (entry
    /// point) and device seconds, in submission order.
    pub fn finish_profile(&self, from: usize) -> Result<Vec<(&'static str, f64)>> {
        let stamps = {
            let mut profile = self.profile.lock().unwrap();
            let Some(rec) = profile.as_mut() else {
                return Ok(Vec::new());
            };
            let stamps = rec.stamps[from.min(rec.stamps.len())..].to_vec();
            rec.open -= 1;
            if rec.open == 0 {
                *profile = None;
            }
            stamps
        };
        let regions: Vec<(&wgpu::Buffer, u64, u64)> =
            stamps.iter().map(|s| (&s.resolve, 0, 4)).collect();
        let words = self.read_words::<u32>(&regions)?;
        let period = f64::from(self.queue.get_timestamp_period()) * 1e-9;
        Ok(stamps
            .iter()
            .zip(words)
            .map(|(s, w)| {
                let tick = |i: usize| u64::from(w[2 * i]) | u64::from(w[2 * i + 1]) << 32;
                (s.kernel, tick(1).saturating_sub(tick(0)) as f64 * period)
            })
            .collect())
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The compiled pipeline for a plan (compiled once, then cached by kernel and constants).
    pub fn pipeline(&self, plan: Plan) -> Result<Arc<Pipeline>> {
        let key = PipelineKey {
            kernel: plan.kernel,
            constants: (plan.constants.iter())
                .map(|&(name, value)| (name, value.to_bits()))
                .collect(),
            subgroups: plan.subgroups,
            writable: plan.writable,
        };
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let kernel = plan.kernel;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.entry_point()),
                source: wgpu::ShaderSource::Wgsl(plan.source().into()),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings(kernel)
            .iter()
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read && !plan.writable,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .chain(std::iter::once(wgpu::BindGroupLayoutEntry {
                binding: bindings(kernel).len() as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }))
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.entry_point()),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.entry_point()),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.entry_point()),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.entry_point()),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &plan.constants,
                    // Every kernel writes workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "compiling {} for n = {}: {e}",
                kernel.entry_point(),
                plan.n
            )));
        }
        log::debug!(
            "compiled {} n={} ({} matrices × {} invocations per workgroup, {} bytes of workgroup memory{})",
            kernel.entry_point(),
            plan.n,
            plan.mats,
            plan.tpm,
            plan.workgroup_bytes,
            if plan.subgroups { ", subgroup exchange" } else { "" }
        );
        let p = Arc::new(Pipeline {
            pipeline,
            layout,
            plan,
        });
        self.pipelines.lock().unwrap().insert(key, p.clone());
        Ok(p)
    }

    /// A buffer of at least `size` bytes with exactly `usage`, from the pool when one fits.
    pub fn take(&self, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        let size = size.max(16).next_multiple_of(256);
        if let Some(p) = self.take_pooled(size, usage) {
            return p.buffer;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eigrad"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// A pooled buffer of `size..=2·size` bytes with exactly `usage` (one whose pending mapping
    /// has resolved first).
    fn take_pooled(&self, size: u64, usage: wgpu::BufferUsages) -> Option<Pooled> {
        let mut pool = self.pool.lock().unwrap();
        let fits = |p: &Pooled| {
            p.buffer.usage() == usage && p.buffer.size() >= size && p.buffer.size() <= 2 * size
        };
        let i = pool
            .iter()
            .position(|p| fits(p) && p.state() != Some(PENDING))
            .or_else(|| pool.iter().position(fits))?;
        Some(pool.swap_remove(i))
    }

    /// Returns a buffer to the pool for later calls.
    pub fn give(&self, buffer: wgpu::Buffer) {
        self.give_pooled(Pooled {
            buffer,
            ready: None,
            mapping: None,
        });
    }

    fn give_pooled(&self, p: Pooled) {
        let mut pool = self.pool.lock().unwrap();
        // A buffer handed back twice (a tensor recycled twice) is kept once, so two later
        // calls cannot be given the same buffer from here.
        if pool.iter().any(|q| q.buffer == p.buffer) {
            return;
        }
        if pool.len() >= POOL_CAPACITY {
            pool.remove(0);
        }
        pool.push(p);
    }

    /// An upload staging buffer of at least `size` bytes, mapped for writing: from the pool
    /// (waiting for its earlier copy if needed), else a new one mapped at creation.
    fn take_upload_staging(&self, size: u64) -> Result<wgpu::Buffer> {
        let size = size.max(16).next_multiple_of(256);
        if let Some(p) = self.take_pooled(size, UPLOAD_STAGING) {
            if p.state() == Some(PENDING) {
                self.poll_until(p.ready.clone())?;
            }
            if p.state() == Some(PENDING) {
                self.poll_until(None)?;
            }
            if p.state() == Some(MAPPED) {
                return Ok(p.buffer);
            }
            // The mapping failed (or never resolved): drop the buffer, make a new one.
        }
        Ok(self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eigrad upload staging"),
            size,
            usage: UPLOAD_STAGING,
            mapped_at_creation: true,
        }))
    }

    /// Blocks until `submission` (or, for `None`, everything submitted) has finished, running
    /// the mapping callbacks that it resolves.
    fn poll_until(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: submission,
                timeout: None,
            })
            .map(drop)
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))
    }

    /// Matrices per dispatch such that every binding stays within the device's storage-binding
    /// and dispatch limits (and the forced cap, if any): a multiple of [`CHUNK_QUANTUM`].
    pub fn chunk_matrices(&self, plan: &Plan, max_words_per_matrix: u64) -> Result<usize> {
        let limits = self.limits();
        let binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let by_binding = (binding / (max_words_per_matrix.max(1) * WORD)) as usize;
        let dim = limits.max_compute_workgroups_per_dimension as usize;
        let by_groups = dim.saturating_mul(dim).saturating_mul(plan.mats as usize);
        let mut chunk = by_binding.min(by_groups);
        let cap = self.chunk_cap.load(Ordering::Relaxed);
        if cap > 0 {
            chunk = chunk.min(cap.max(CHUNK_QUANTUM));
        }
        let chunk = chunk / CHUNK_QUANTUM * CHUNK_QUANTUM;
        if chunk == 0 {
            return Err(Error::Gpu(format!(
                "one chunk of {CHUNK_QUANTUM} matrices of size {} exceeds the device's storage binding limit",
                plan.n
            )));
        }
        Ok(chunk)
    }

    /// Runs `pipe` over `batch` matrices, splitting into dispatches of at most
    /// [`Inner::chunk_matrices`]; `slots` are the storage bindings in binding order. Errors
    /// raised by the device come back as [`Error::Gpu`].
    pub fn dispatch(
        &self,
        pipe: &Pipeline,
        batch: usize,
        slots: &[Slot<'_>],
        mut params: Params,
    ) -> Result<()> {
        if batch == 0 {
            return Ok(());
        }
        let max_words = slots
            .iter()
            .map(|s| match s {
                Slot::Batch {
                    words_per_matrix, ..
                } => *words_per_matrix,
                Slot::Placeholder => 0,
            })
            .max()
            .unwrap_or(1);
        let chunk = self.chunk_matrices(&pipe.plan, max_words)?;
        let limits = self.limits();
        let align = limits.min_storage_buffer_offset_alignment as u64;
        for slot in slots {
            if let Slot::Batch { offset, owner, .. } = slot {
                self.check_owner(*owner)?;
                if offset % align != 0 {
                    return Err(Error::InvalidArgument(format!(
                        "a tensor's byte offset {offset} is not a multiple of the device's storage offset alignment {align}"
                    )));
                }
            }
        }
        let dim = limits.max_compute_workgroups_per_dimension as usize;
        params.nan_bits = f32::NAN.to_bits();
        params.inf_bits = f32::INFINITY.to_bits();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut uniforms = Vec::new();
        // Recording is only ever started on a device with timestamps (GpuContext::profile).
        let profiling = self.profile.lock().unwrap().is_some();
        let mut stamps = Vec::new();
        for start in (0..batch).step_by(chunk) {
            let count = chunk.min(batch - start);
            let groups = count.div_ceil(pipe.plan.mats as usize);
            let gx = groups.min(dim);
            let gy = groups.div_ceil(gx);
            params.batch = count as u32;
            params.groups_x = gx as u32;
            let uniform = self.take(
                std::mem::size_of::<Params>() as u64,
                wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            );
            self.queue
                .write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
            let mut entries = Vec::with_capacity(slots.len() + 1);
            for (i, slot) in slots.iter().enumerate() {
                let resource = match slot {
                    Slot::Batch {
                        buffer,
                        offset,
                        words_per_matrix,
                        ..
                    } => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: offset + (start as u64) * words_per_matrix * WORD,
                        size: NonZeroU64::new(count as u64 * words_per_matrix * WORD),
                    }),
                    Slot::Placeholder => self.placeholder.as_entire_binding(),
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: i as u32,
                    resource,
                });
            }
            entries.push(wgpu::BindGroupEntry {
                binding: slots.len() as u32,
                resource: uniform.as_entire_binding(),
            });
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &pipe.layout,
                entries: &entries,
            });
            let set = profiling.then(|| {
                self.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("eigrad profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2,
                })
            });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: set.as_ref().map(|query_set| {
                        wgpu::ComputePassTimestampWrites {
                            query_set,
                            beginning_of_pass_write_index: Some(0),
                            end_of_pass_write_index: Some(1),
                        }
                    }),
                });
                pass.set_pipeline(&pipe.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(gx as u32, gy as u32, 1);
            }
            if let Some(set) = set {
                let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("eigrad profile resolve"),
                    size: 2 * wgpu::QUERY_SIZE as u64,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                encoder.resolve_query_set(&set, 0..2, &resolve, 0);
                stamps.push(Arc::new(Stamp {
                    kernel: pipe.plan.kernel.entry_point(),
                    _set: set,
                    resolve,
                }));
            }
            uniforms.push(uniform);
        }
        self.queue.submit([encoder.finish()]);
        if let Some(rec) = self.profile.lock().unwrap().as_mut() {
            rec.stamps.extend(stamps);
        }
        let oom = pollster::block_on(oom.pop());
        let err = pollster::block_on(scope.pop());
        for u in uniforms {
            self.give(u);
        }
        if let Some(e) = err.or(oom) {
            return Err(Error::Gpu(format!(
                "{}: {e}",
                pipe.plan.kernel.entry_point()
            )));
        }
        Ok(())
    }

    /// A new storage buffer holding `data` (panics if the device cannot map a staging buffer,
    /// a lost device, like wgpu's own `write_buffer`).
    pub fn upload_words<T: bytemuck::Pod + Send + Sync>(
        &self,
        data: &[T],
        extra_usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.upload_with(bytes.len() as u64, extra_usage, |dst| par_write(dst, bytes))
            .unwrap_or_else(|e| panic!("eigrad upload of {} bytes: {e}", bytes.len()))
    }

    /// A new storage buffer of `bytes` bytes (a multiple of 4) that `fill` writes: `fill` gets
    /// the mapped staging memory (write-only: possibly write-combined), which is then copied to the device in one submission. The
    /// staging buffer goes back to the pool with a write mapping requested for its next use.
    pub fn upload_with(
        &self,
        bytes: u64,
        extra_usage: wgpu::BufferUsages,
        fill: impl FnOnce(wgpu::WriteOnly<'_, [u8]>),
    ) -> Result<wgpu::Buffer> {
        let buffer = self.take(
            bytes,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC
                | extra_usage,
        );
        if bytes == 0 {
            return Ok(buffer);
        }
        let staging = self.take_upload_staging(bytes)?;
        {
            let mut view = staging
                .get_mapped_range_mut(0..bytes)
                .map_err(|e| Error::Gpu(format!("writing an upload staging buffer: {e}")))?;
            fill(view.slice(..));
        }
        staging.unmap();
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&staging, 0, &buffer, 0, bytes);
        let index = self.queue.submit([encoder.finish()]);
        // Mapped again once the copy has run: the next upload finds it ready.
        let mapping = Arc::new(AtomicU8::new(PENDING));
        let m = mapping.clone();
        staging.map_async(wgpu::MapMode::Write, .., move |r| {
            m.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::Release);
        });
        self.give_pooled(Pooled {
            buffer: staging,
            ready: Some(index),
            mapping: Some(mapping),
        });
        Ok(buffer)
    }

    /// A storage buffer for `words` outputs.
    pub fn output(&self, words: u64) -> wgpu::Buffer {
        self.take(
            words * WORD,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
        )
    }

    /// Copies each `(source, source offset, destination, destination offset, words)` region on
    /// the device, in one submission; errors raised by the device come back as [`Error::Gpu`].
    pub fn copy_words(
        &self,
        regions: &[(&wgpu::Buffer, u64, &wgpu::Buffer, u64, u64)],
    ) -> Result<()> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        for &(src, src_offset, dst, dst_offset, words) in regions {
            if words > 0 {
                encoder.copy_buffer_to_buffer(src, src_offset, dst, dst_offset, words * WORD);
            }
        }
        self.queue.submit([encoder.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!("copying on the device: {e}")));
        }
        Ok(())
    }

    /// Starts copying `words` words from each `(buffer, byte offset)` into one pooled readback
    /// staging buffer (one submission) and requests its mapping; [`Inner::finish_read`] waits
    /// and hands the words over. Work submitted meanwhile overlaps the wait.
    pub fn start_read(&self, regions: &[(&wgpu::Buffer, u64, u64)]) -> Result<Readback> {
        // What wgpu would reject in the copy (as a validation error outside any error scope:
        // a panic on a device eigrad did not create), as an error here instead. (A tensor's
        // region lies inside its buffer and is aligned: GpuTensor::from_buffer checks that.)
        for &(buffer, _, _) in regions {
            if !buffer.usage().contains(wgpu::BufferUsages::COPY_SRC) {
                return Err(Error::InvalidArgument(
                    "reading a tensor back needs COPY_SRC usage on its buffer".into(),
                ));
            }
        }
        let mut parts = Vec::with_capacity(regions.len());
        let mut size = 0u64;
        for &(_, _, words) in regions {
            parts.push((size, words));
            size += (words * WORD).next_multiple_of(256);
        }
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let staging = (size > 0).then(|| self.take(size, READ_STAGING));
        if let Some(s) = &staging {
            for (&(buffer, offset, words), &(at, _)) in regions.iter().zip(&parts) {
                if words > 0 {
                    encoder.copy_buffer_to_buffer(buffer, offset, s, at, words * WORD);
                }
            }
        }
        let submission = self.queue.submit([encoder.finish()]);
        let mapped = Arc::new(Mutex::new(None));
        if let Some(s) = &staging {
            let m = mapped.clone();
            s.map_async(wgpu::MapMode::Read, 0..size, move |r| {
                *m.lock().unwrap() = Some(r);
            });
        }
        Ok(Readback {
            staging,
            parts,
            size,
            submission,
            mapped,
        })
    }

    /// Waits for a readback, gives `f` the words of each region (slices of the mapped staging
    /// memory, in region order), then unmaps the staging buffer and returns it to the pool.
    /// Adds the wait and `f`'s time to `phases`.
    pub fn finish_read<R>(
        &self,
        rb: Readback,
        phases: &mut Phases,
        f: impl FnOnce(&[&[u32]]) -> Result<R>,
    ) -> Result<R> {
        let Some(staging) = rb.staging else {
            let empty: Vec<&[u32]> = rb.parts.iter().map(|_| &[][..]).collect();
            return f(&empty);
        };
        let t = Instant::now();
        self.poll_until(Some(rb.submission))?;
        // The mapping callback runs in some thread's poll: when another thread sharing the
        // device polled at the same time, it may have taken the callback and not have run it
        // yet when this poll returns. So poll again (and let that thread run) until the callback
        // has run, within a deadline.
        let deadline = Instant::now() + MAP_DEADLINE;
        let mut state = rb.mapped.lock().unwrap().take();
        while state.is_none() && Instant::now() < deadline {
            self.poll_until(None)?;
            std::thread::yield_now();
            state = rb.mapped.lock().unwrap().take();
        }
        match state {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("mapping a readback buffer: {e}"))),
            None => return Err(Error::Gpu("a readback buffer was never mapped".into())),
        }
        phases.wait += t.elapsed();
        let t = Instant::now();
        let result = {
            let view = staging
                .get_mapped_range(0..rb.size)
                .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
            let words: &[u32] = bytemuck::cast_slice(&view);
            let slices: Vec<&[u32]> = rb
                .parts
                .iter()
                .map(|&(at, n)| {
                    let at = (at / WORD) as usize;
                    &words[at..at + n as usize]
                })
                .collect();
            f(&slices)
        };
        staging.unmap();
        self.give(staging);
        phases.copy_out += t.elapsed();
        result
    }

    /// Copies `words` words from each `(buffer, byte offset)` back to host memory (one
    /// submission, one wait, one bulk copy per region).
    pub fn read_words<T: bytemuck::Pod + Send + Sync>(
        &self,
        regions: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<T>>> {
        let rb = self.start_read(regions)?;
        self.finish_read(rb, &mut Phases::default(), |words| {
            Ok(words
                .iter()
                .map(|w| {
                    let mut v = vec![T::zeroed(); w.len()];
                    par_copy(bytemuck::cast_slice_mut::<T, u32>(&mut v), w);
                    v
                })
                .collect())
        })
    }
}

/// The storage bindings of each kernel, in binding order (the uniform block follows them).
pub(crate) fn bindings(kernel: Kernel) -> &'static [Access] {
    use Access::*;
    match kernel {
        // a_in, values_out, vectors_out, status_out, vt_global
        Kernel::JacobiEigh
        | Kernel::JacobiEigvalsh
        | Kernel::HestenesEigh
        | Kernel::HestenesEigvalsh
        | Kernel::RegistersEigh
        | Kernel::RegistersEigvalsh
        | Kernel::TridiagonalEigvalsh
        | Kernel::TridiagonalEigh => &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        // a_in, values_in, vectors_in, status_in, vectors_out
        Kernel::EighRefine => &[Read, Read, Read, Read, ReadWrite],
        // values_in, vectors_in, grad_values, grad_vectors, status_in, grad_out
        Kernel::EighVjp | Kernel::RegistersVjp => &[Read, Read, Read, Read, Read, ReadWrite],
        // values_in, vectors_in, tangent, status_in, values_dot, vectors_dot
        Kernel::EighJvp => &[Read, Read, Read, Read, ReadWrite, ReadWrite],
        // values_in, vectors_in, status_in, f_out, status_out
        Kernel::SpectralApply => &[Read, Read, Read, ReadWrite, ReadWrite],
        // values_in, vectors_in, grad, status_in, grad_out
        Kernel::SpectralVjp => &[Read, Read, Read, Read, ReadWrite],
        // a_in, value_out, vector_out, iterations_out, status_out, matrix_out
        Kernel::PowerIteration => &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        // value_in, vector_in, matrix_in, status_in, grad_value, grad_vector, grad_out
        Kernel::PowerIterationVjp => &[Read, Read, Read, Read, Read, Read, ReadWrite],
    }
}
