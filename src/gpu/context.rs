//! Device setup, the pipeline cache, the buffer pool, chunked dispatch, upload and readback.

use super::plan::Plan;
use super::shaders::Kernel;
use crate::{Error, Result};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes per element on the device (f32 and u32).
pub(crate) const WORD: u64 = 4;
/// Sub-chunks start at multiples of this many matrices, so binding offsets stay aligned to 256
/// bytes (the largest `min_storage_buffer_offset_alignment` wgpu allows) for any words-per-matrix.
pub(crate) const CHUNK_QUANTUM: usize = 64;
/// Free buffers the pool keeps at most.
const POOL_CAPACITY: usize = 48;

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
    },
    Placeholder,
}

/// The device state shared by every call.
pub(crate) struct Inner {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_name: String,
    pipelines: Mutex<HashMap<String, Arc<Pipeline>>>,
    pool: Mutex<Vec<wgpu::Buffer>>,
    placeholder: wgpu::Buffer,
    /// Forced cap on matrices per dispatch (0 = none): tests use it to exercise chunking.
    pub chunk_cap: AtomicUsize,
}

impl Inner {
    pub fn new(device: wgpu::Device, queue: wgpu::Queue, adapter_name: String) -> Self {
        let placeholder = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eigrad placeholder"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Inner {
            device,
            queue,
            adapter_name,
            pipelines: Mutex::new(HashMap::new()),
            pool: Mutex::new(Vec::new()),
            placeholder,
            chunk_cap: AtomicUsize::new(0),
        }
    }

    pub fn limits(&self) -> wgpu::Limits {
        self.device.limits()
    }

    /// The compiled pipeline for a plan (compiled once, then cached by kernel and constants).
    pub fn pipeline(&self, plan: Plan) -> Result<Arc<Pipeline>> {
        let key = format!("{:?}{:?}", plan.kernel, plan.constants);
        if let Some(p) = self.pipelines.lock().unwrap().get(&key) {
            return Ok(p.clone());
        }
        let kernel = plan.kernel;
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.entry_point()),
                source: wgpu::ShaderSource::Wgsl(kernel.source(plan.n).into()),
            });
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings(kernel)
            .iter()
            .enumerate()
            .map(|(i, access)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *access == Access::Read,
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
            "compiled {} n={} ({} matrices × {} invocations per workgroup, {} bytes of workgroup memory)",
            kernel.entry_point(),
            plan.n,
            plan.mats,
            plan.tpm,
            plan.workgroup_bytes
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
        let mut pool = self.pool.lock().unwrap();
        if let Some(i) = pool
            .iter()
            .position(|b| b.usage() == usage && b.size() >= size && b.size() <= 2 * size)
        {
            return pool.swap_remove(i);
        }
        drop(pool);
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("eigrad"),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// Returns a buffer to the pool for later calls.
    pub fn give(&self, buffer: wgpu::Buffer) {
        let mut pool = self.pool.lock().unwrap();
        if pool.len() >= POOL_CAPACITY {
            pool.remove(0);
        }
        pool.push(buffer);
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
            if let Slot::Batch { offset, .. } = slot {
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
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&pipe.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(gx as u32, gy as u32, 1);
            }
            uniforms.push(uniform);
        }
        self.queue.submit([encoder.finish()]);
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

    /// A new storage buffer holding `data`.
    pub fn upload_words<T: bytemuck::Pod>(
        &self,
        data: &[T],
        extra_usage: wgpu::BufferUsages,
    ) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buffer = self.take(
            bytes.len() as u64,
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC
                | extra_usage,
        );
        if !bytes.is_empty() {
            self.queue.write_buffer(&buffer, 0, bytes);
        }
        buffer
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

    /// Copies `words` words from each `(buffer, byte offset)` back to host memory (one
    /// submission, one wait).
    pub fn read_words<T: bytemuck::Pod>(
        &self,
        regions: &[(&wgpu::Buffer, u64, u64)],
    ) -> Result<Vec<Vec<T>>> {
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let mut staging = Vec::with_capacity(regions.len());
        for &(buffer, offset, words) in regions {
            let size = words * WORD;
            let s = self.take(
                size,
                wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            );
            if size > 0 {
                encoder.copy_buffer_to_buffer(buffer, offset, &s, 0, size);
            }
            staging.push((s, size));
        }
        self.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, (s, size)) in staging.iter().enumerate() {
            if *size == 0 {
                continue;
            }
            let tx = tx.clone();
            s.map_async(wgpu::MapMode::Read, 0..*size, move |r| {
                let _ = tx.send((i, r));
            });
        }
        drop(tx);
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device: {e}")))?;
        let mut failed = None;
        for (_, r) in rx.iter() {
            if let Err(e) = r {
                failed = Some(e);
            }
        }
        let mut out = Vec::with_capacity(staging.len());
        for (s, size) in staging {
            let mut v = Vec::new();
            if size > 0 && failed.is_none() {
                let view = s
                    .get_mapped_range(0..size)
                    .map_err(|e| Error::Gpu(format!("reading back: {e}")))?;
                v = bytemuck::cast_slice::<u8, T>(&view).to_vec();
                drop(view);
                s.unmap();
            }
            self.give(s);
            out.push(v);
        }
        if let Some(e) = failed {
            return Err(Error::Gpu(format!("mapping a readback buffer: {e}")));
        }
        Ok(out)
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
        | Kernel::HestenesEigvalsh => &[Read, ReadWrite, ReadWrite, ReadWrite, ReadWrite],
        // values_in, vectors_in, grad_values, grad_vectors, status_in, grad_out
        Kernel::EighVjp => &[Read, Read, Read, Read, Read, ReadWrite],
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
