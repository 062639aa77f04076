//! The GPU derivatives (VJP, eigenvalues-only VJP, JVP) against the f64 CPU reference, and the
//! device-resident forward→backward chain. Skips without an adapter unless
//! `EIGRAD_REQUIRE_GPU=1`.

mod gpu_support;

use eigrad::gpu::{ForwardKernel, GpuContext, GpuEigh, GpuJvp, GpuSpectral, REGISTERS_MAX_N};
use eigrad::samples::{self, Rng};
use eigrad::spectral::SpectralFn;
use eigrad::{cpu, Degeneracy, Eigh, EighOptions, Status, Vectors};
use gpu_support::*;

const SIZES: [usize; 14] = [1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 32, 33, 48, 64];
/// The bound for the VJP on well separated spectra, relative to ‖Ā‖.
const DERIVATIVE_TOL: f64 = 1e-4;

/// Matrices with eigenvalues at least 0.5 apart (`k + 0.5·u`, shuffled signs of the scale).
fn separated(n: usize, batch: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::new();
    for _ in 0..batch {
        let s: Vec<f64> = (0..n)
            .map(|k| k as f64 - n as f64 / 2.0 + 0.5 * rng.uniform())
            .collect();
        out.extend(samples::with_spectrum(&mut rng, &s));
    }
    round_f32(&out)
}

fn normal(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len)
        .map(|_| rng.normal())
        .collect::<Vec<_>>()
        .iter()
        .map(|&x| x as f32 as f64)
        .collect()
}

/// The GPU (the default context's forward kernel) and CPU forward results for the same f32
/// input.
fn forward(n: usize, a: &[f64]) -> Option<(Eigh<f32>, Eigh<f64>)> {
    Some(forward_on(gpu()?, n, a))
}

/// [`forward`] on `ctx`.
fn forward_on(ctx: &GpuContext, n: usize, a: &[f64]) -> (Eigh<f32>, Eigh<f64>) {
    let opts = EighOptions::default();
    let g = ctx.eigh(&to_f32(a), n, &opts, Vectors::Yes).unwrap();
    let c = cpu::jacobi_eigh(a, n, &opts).unwrap();
    assert!(g.all_ok() && c.all_ok());
    (g, c)
}

#[test]
fn vjp_matches_cpu_for_every_size_and_policy() {
    let Some(ctx) = gpu() else { return };
    for n in SIZES {
        check_vjp(ctx, "default", n);
    }
    // Up to REGISTERS_MAX_N the default context runs the register VJP; the one-sided context
    // the dense one.
    let one_sided = gpu_kernel(ForwardKernel::OneSided).unwrap();
    for n in SIZES.into_iter().filter(|&n| n <= REGISTERS_MAX_N) {
        check_vjp(one_sided, "one-sided", n);
    }
    // The tridiagonal kernel's eigenvectors (rounding of order eps·‖A‖, like the two-sided
    // kernel's) through the reverse rule, wherever it runs.
    let kernel = ForwardKernel::Tridiagonal;
    let tridiagonal = gpu_kernel(kernel).unwrap();
    for n in SIZES.into_iter().filter(|&n| runs(tridiagonal, kernel, n)) {
        check_vjp(tridiagonal, "tridiagonal", n);
    }
}

/// The VJP (both cotangents, V̄ alone, λ̄ alone) of `ctx` against the CPU's at size `n`, from
/// `ctx`'s own forward result.
fn check_vjp(ctx: &GpuContext, name: &str, n: usize) {
    let batch = if n >= 48 { 3 } else { 5 };
    let a = separated(n, batch, 40 + n as u64);
    let (g, c) = forward_on(ctx, n, &a);
    let mut rng = Rng::new(n as u64);
    let gl = normal(&mut rng, batch * n);
    let gv = normal(&mut rng, batch * n * n);
    for policy in [
        Degeneracy::default(),
        Degeneracy::Lorentzian { eps: 1e-6 },
        Degeneracy::Propagate,
    ] {
        let x = ctx
            .eigh_vjp(&g, Some(&to_f32(&gl)), Some(&to_f32(&gv)), policy)
            .unwrap();
        let y = cpu::eigh_vjp(&c, Some(&gl), Some(&gv), policy).unwrap();
        for b in 0..batch {
            let r = b * n * n..(b + 1) * n * n;
            let e = rel_err(&x[r.clone()], &y[r]);
            assert!(
                e <= DERIVATIVE_TOL,
                "{name} n={n} {policy:?} matrix {b}: rel err {e:e}"
            );
        }
        // Each cotangent alone.
        let x = ctx.eigh_vjp(&g, None, Some(&to_f32(&gv)), policy).unwrap();
        let y = cpu::eigh_vjp(&c, None, Some(&gv), policy).unwrap();
        let e = rel_err(&x, &y);
        assert!(e <= DERIVATIVE_TOL, "{name} n={n} {policy:?} V̄ only: {e:e}");
    }
    let x = ctx.eigvalsh_vjp(&g, &to_f32(&gl)).unwrap();
    let y = cpu::eigvalsh_vjp(&c, &gl).unwrap();
    let e = rel_err(&x, &y);
    assert!(
        e <= DERIVATIVE_TOL,
        "{name} n={n} eigenvalues-only VJP: rel err {e:e}"
    );
    // Ā is exactly symmetric.
    for b in 0..batch {
        for i in 0..n {
            for j in 0..n {
                assert_eq!(x[b * n * n + i * n + j], x[b * n * n + j * n + i]);
            }
        }
    }
}

#[test]
fn derivatives_run_at_every_size_under_the_default_limits() {
    // From n = 61 not even one matrix's V fits wgpu's default 16 KiB of workgroup memory: the
    // derivative kernels read V from global memory, which changes no arithmetic, so from the
    // same forward result they equal those of a device where V fits, bit for bit.
    let (Some(ctx), Some(wide)) = (gpu_default_limits(), gpu()) else {
        return;
    };
    for n in [60usize, 61, 64] {
        check_vjp(&ctx, "default limits", n);
        let batch = 3;
        let a = separated(n, batch, 90 + n as u64);
        let (g, c) = forward_on(wide, n, &a);
        let mut rng = Rng::new(2000 + n as u64);
        let gl = to_f32(&normal(&mut rng, batch * n));
        let gv = to_f32(&normal(&mut rng, batch * n * n));
        let da = normal(&mut rng, batch * n * n);
        let policy = Degeneracy::default();
        let vjp = |x: &GpuContext| x.eigh_vjp(&g, Some(&gl), Some(&gv), policy).unwrap();
        assert_eq!(vjp(&ctx), vjp(wide), "n={n}: VJP");
        let values_only = |x: &GpuContext| x.eigvalsh_vjp(&g, &gl).unwrap();
        assert_eq!(values_only(&ctx), values_only(wide), "n={n}");
        let jvp = |x: &GpuContext| x.eigh_jvp(&g, &to_f32(&da), policy).unwrap();
        let (x, y) = (jvp(&ctx), jvp(wide));
        assert_eq!(x.values_dot, y.values_dot, "n={n}: λ̇");
        assert_eq!(x.vectors_dot, y.vectors_dot, "n={n}: V̇");
        let cy = cpu::eigh_jvp(&c, &da, policy).unwrap();
        let e = rel_err(&x.vectors_dot, &cy.vectors_dot);
        assert!(e <= DERIVATIVE_TOL, "n={n}: V̇ rel err {e:e}");
    }
}

#[test]
fn jvp_matches_cpu_for_every_size() {
    for n in SIZES {
        let batch = if n >= 48 { 3 } else { 5 };
        let a = separated(n, batch, 70 + n as u64);
        let Some((g, c)) = forward(n, &a) else { return };
        let mut rng = Rng::new(1000 + n as u64);
        let da = normal(&mut rng, batch * n * n);
        let ctx = gpu().unwrap();
        let x = ctx
            .eigh_jvp(&g, &to_f32(&da), Degeneracy::default())
            .unwrap();
        let y = cpu::eigh_jvp(&c, &da, Degeneracy::default()).unwrap();
        for b in 0..batch {
            let rv = b * n..(b + 1) * n;
            let rm = b * n * n..(b + 1) * n * n;
            let ev = rel_err(&x.values_dot[rv.clone()], &y.values_dot[rv]);
            let em = rel_err(&x.vectors_dot[rm.clone()], &y.vectors_dot[rm]);
            assert!(ev <= DERIVATIVE_TOL, "n={n} matrix {b}: λ̇ rel err {ev:e}");
            assert!(em <= DERIVATIVE_TOL, "n={n} matrix {b}: V̇ rel err {em:e}");
        }
    }
}

#[test]
fn exact_ties_are_masked_by_default_and_propagate_gives_non_finite() {
    let Some(ctx) = gpu() else { return };
    let n = 4;
    // Identity and diag(1, 1, 2, 3): bitwise-equal eigenvalues.
    let mut a = vec![0f32; 2 * n * n];
    for i in 0..n {
        a[i * n + i] = 1.0;
        a[n * n + i * n + i] = [1.0, 1.0, 2.0, 3.0][i];
    }
    let g = ctx
        .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
        .unwrap();
    let gv: Vec<f32> = (0..2 * n * n).map(|i| (i % 5) as f32 - 2.0).collect();
    let masked = ctx
        .eigh_vjp(&g, None, Some(&gv), Degeneracy::default())
        .unwrap();
    assert!(masked.iter().all(|x| x.is_finite()));
    let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    let gv64: Vec<f64> = gv.iter().map(|&x| x as f64).collect();
    let c = cpu::jacobi_eigh(&a64, n, &EighOptions::default()).unwrap();
    let expect = cpu::eigh_vjp(&c, None, Some(&gv64), Degeneracy::default()).unwrap();
    assert!(rel_err(&masked, &expect) <= DERIVATIVE_TOL);
    let raw = ctx
        .eigh_vjp(&g, None, Some(&gv), Degeneracy::Propagate)
        .unwrap();
    for b in 0..2 {
        assert!(
            raw[b * n * n..(b + 1) * n * n]
                .iter()
                .any(|x| !x.is_finite()),
            "matrix {b}: Propagate gave finite values at an exact tie"
        );
    }
}

#[test]
fn near_ties_inside_the_mask_threshold_are_masked() {
    let Some(ctx) = gpu() else { return };
    // diag(1, 1 + 2⁻²⁰, 2, 3): a gap of 9.5e-7, inside a mask of 1e-5·max|λ| = 3e-5 (and
    // outside a mask of 1e-7·3); every kernel returns a diagonal input's eigenvalues exactly.
    let n = 4;
    let mut a = vec![0f32; n * n];
    for (i, d) in [1.0, 1.0 + 2f32.powi(-20), 2.0, 3.0]
        .into_iter()
        .enumerate()
    {
        a[i * n + i] = d;
    }
    let gv: Vec<f32> = (0..n * n).map(|i| (i % 5) as f32 - 2.0).collect();
    let a64: Vec<f64> = a.iter().map(|&x| x as f64).collect();
    let gv64: Vec<f64> = gv.iter().map(|&x| x as f64).collect();
    let c = cpu::jacobi_eigh(&a64, n, &EighOptions::default()).unwrap();
    let (_, one_sided) = gpu_kernels()[0];
    for (name, ctx) in [("default", ctx), ("one-sided", one_sided)] {
        let g = ctx
            .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        for rel_tol in [1e-5, 1e-7] {
            let policy = Degeneracy::Mask {
                rel_tol: Some(rel_tol),
            };
            let x = ctx.eigh_vjp(&g, None, Some(&gv), policy).unwrap();
            let y = cpu::eigh_vjp(&c, None, Some(&gv64), policy).unwrap();
            let e = rel_err(&x, &y);
            assert!(e <= DERIVATIVE_TOL, "{name} mask {rel_tol}: rel err {e:e}");
        }
    }
}

#[test]
fn device_resident_forward_feeds_backward_without_host_round_trip() {
    let Some(ctx) = gpu() else { return };
    let n = 9;
    let batch = 300;
    let a = to_f32(&separated(n, batch, 5));
    let mut rng = Rng::new(6);
    let gv = to_f32(&normal(&mut rng, batch * n * n));
    let gl = to_f32(&normal(&mut rng, batch * n));
    let opts = EighOptions::default();
    // Host path.
    let host_fwd = ctx.eigh(&a, n, &opts, Vectors::Yes).unwrap();
    let host_bwd = ctx
        .eigh_vjp(&host_fwd, Some(&gl), Some(&gv), Degeneracy::default())
        .unwrap();
    // Device path: only the final Ā is read back.
    let a_dev = ctx.upload(&a);
    let fwd = ctx.eigh_resident(&a_dev, n, &opts, Vectors::Yes).unwrap();
    let (gl_dev, gv_dev) = (ctx.upload(&gl), ctx.upload(&gv));
    let bwd = ctx
        .eigh_vjp_resident(&fwd, Some(&gl_dev), Some(&gv_dev), Degeneracy::default())
        .unwrap();
    assert_eq!(ctx.download(&bwd).unwrap(), host_bwd);
    assert_eq!(
        ctx.download(fwd.eigenvectors.as_ref().unwrap()).unwrap(),
        host_fwd.eigenvectors.unwrap()
    );
    assert_eq!(ctx.download_status(&fwd.status).unwrap(), host_fwd.status);
    // And chunked on the device.
    ctx.set_max_chunk(64);
    let bwd2 = ctx.eigh_vjp_resident(&fwd, Some(&gl_dev), Some(&gv_dev), Degeneracy::default());
    ctx.set_max_chunk(0);
    assert_eq!(ctx.download(&bwd2.unwrap()).unwrap(), host_bwd);
}

#[test]
fn recycled_buffers_are_reused_without_changing_results() {
    let Some(shared) = gpu() else { return };
    let (n, batch) = (6, 130);
    let opts = EighOptions::default();
    let a1 = to_f32(&separated(n, batch, 11));
    let a2 = to_f32(&separated(n, batch, 12));
    let gv = to_f32(&normal(&mut Rng::new(13), batch * n * n));
    let want = shared.eigh(&a2, n, &opts, Vectors::Yes).unwrap();
    let want_bwd = shared
        .eigh_vjp(&want, None, Some(&gv), Degeneracy::default())
        .unwrap();
    // A context of its own, whose pool holds only what this test hands back (the shared
    // context's pool is used by the tests running beside this one).
    let ctx = &eigrad::gpu::GpuContext::new().unwrap();

    // A first forward and backward, finished and handed back to the pool.
    let (d1, gv_dev) = (ctx.upload(&a1), ctx.upload(&gv));
    let r1 = ctx.eigh_resident(&d1, n, &opts, Vectors::Yes).unwrap();
    let g1 = ctx
        .eigh_vjp_resident(&r1, None, Some(&gv_dev), Degeneracy::default())
        .unwrap();
    ctx.wait().unwrap();
    let mut old = vec![d1.buffer().clone(), g1.buffer().clone()];
    old.push(r1.eigenvalues.buffer().clone());
    old.push(r1.status.buffer().clone());
    old.push(r1.eigenvectors.as_ref().unwrap().buffer().clone());
    ctx.recycle(d1);
    ctx.recycle(g1);
    ctx.recycle_eigh(r1);

    // The same shapes again: every buffer comes from the pool, and the results are exact.
    let d2 = ctx.upload(&a2);
    let r2 = ctx.eigh_resident(&d2, n, &opts, Vectors::Yes).unwrap();
    let g2 = ctx
        .eigh_vjp_resident(&r2, None, Some(&gv_dev), Degeneracy::default())
        .unwrap();
    ctx.wait().unwrap();
    let vecs = r2.eigenvectors.as_ref().unwrap();
    for t in [&d2, &g2, &r2.eigenvalues, &r2.status, vecs] {
        assert!(old.contains(t.buffer()), "a new buffer was created");
    }
    assert_eq!(ctx.download(&r2.eigenvalues).unwrap(), want.eigenvalues);
    assert_eq!(
        ctx.download(vecs).unwrap(),
        want.eigenvectors.clone().unwrap()
    );
    assert_eq!(ctx.download_status(&r2.status).unwrap(), want.status);
    assert_eq!(ctx.download(&g2).unwrap(), want_bwd);

    // A tensor recycled twice (a clone handed back too) goes into the pool once: two later
    // uploads of its size get two buffers.
    let t = ctx.upload(&a1);
    ctx.recycle(t.clone());
    ctx.recycle(t.clone());
    let (u1, u2) = (ctx.upload(&a1), ctx.upload(&a2));
    assert_ne!(u1.buffer(), u2.buffer());
    assert!(u1.buffer() == t.buffer() || u2.buffer() == t.buffer());
    assert_eq!(ctx.download(&u1).unwrap(), a1);
    assert_eq!(ctx.download(&u2).unwrap(), a2);
}

#[test]
fn derivatives_of_failed_matrices_are_nan() {
    let Some(ctx) = gpu() else { return };
    let n = 3;
    let mut a = to_f32(&separated(n, 3, 9));
    a[n * n + 1] = f32::NAN;
    let g = ctx
        .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
        .unwrap();
    let gv = vec![1f32; 3 * n * n];
    let x = ctx
        .eigh_vjp(&g, None, Some(&gv), Degeneracy::default())
        .unwrap();
    assert!(x[..n * n].iter().all(|v| v.is_finite()));
    assert!(x[n * n..2 * n * n].iter().all(|v| v.is_nan()));
    assert!(x[2 * n * n..].iter().all(|v| v.is_finite()));
    let j = ctx.eigh_jvp(&g, &gv, Degeneracy::default()).unwrap();
    assert!(j.values_dot[n..2 * n].iter().all(|v| v.is_nan()));
    assert!(j.vectors_dot[n * n..2 * n * n].iter().all(|v| v.is_nan()));
    assert!(j.vectors_dot[..n * n].iter().all(|v| v.is_finite()));
    // The status alone decides: a forward marked failed with finite values and vectors too.
    let mut g = g;
    g.status[1] = Status::Ok;
    g.eigenvalues.copy_within(..n, n);
    let head = g.eigenvectors.as_ref().unwrap()[..n * n].to_vec();
    g.eigenvectors.as_mut().unwrap()[n * n..2 * n * n].copy_from_slice(&head);
    g.status[2] = Status::NotConverged;
    let (_, one_sided) = gpu_kernels()[0];
    for ctx in [ctx, one_sided] {
        let x = ctx
            .eigh_vjp(&g, None, Some(&gv), Degeneracy::default())
            .unwrap();
        assert!(x[..2 * n * n].iter().all(|v| v.is_finite()));
        assert!(x[2 * n * n..].iter().all(|v| v.is_nan()));
    }
}

#[test]
fn tensors_at_offsets_inside_shared_buffers_are_used_in_place() {
    let Some(ctx) = gpu() else { return };
    let n = 5;
    let batch = 70;
    let a = to_f32(&separated(n, batch, 21));
    let align = ctx.device().limits().min_storage_buffer_offset_alignment as u64;
    // One buffer holding padding, then the matrices, as a framework's allocator might lay it out.
    let offset = 2 * align;
    let mut bytes = vec![0u8; offset as usize];
    bytes.extend_from_slice(bytemuck::cast_slice(&a));
    let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: Some("shared"),
        size: bytes.len() as u64,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    ctx.queue().write_buffer(&buffer, 0, &bytes);
    let t = eigrad::gpu::GpuTensor::from_buffer(buffer.clone(), offset, a.len()).unwrap();
    let opts = EighOptions::default();
    let fwd = ctx.eigh_resident(&t, n, &opts, Vectors::Yes).unwrap();
    let host = ctx.eigh(&a, n, &opts, Vectors::Yes).unwrap();
    assert_eq!(ctx.download(&fwd.eigenvalues).unwrap(), host.eigenvalues);
    assert_eq!(ctx.download(&t).unwrap(), a);
    // A misaligned offset is a clear error, not a device fault.
    let bad = eigrad::gpu::GpuTensor::from_buffer(buffer, 4, 3 * n * n).unwrap();
    assert!(matches!(
        ctx.eigh_resident(&bad, n, &opts, Vectors::Yes),
        Err(eigrad::Error::InvalidArgument(_))
    ));
}

/// Regions of one storage buffer, each at an offset aligned for storage bindings, as a
/// framework's memory pool lays tensors out.
struct Arena {
    buffer: wgpu::Buffer,
    next: u64,
    align: u64,
}

impl Arena {
    fn new(ctx: &eigrad::gpu::GpuContext, bytes: u64) -> Self {
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("arena"),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let align = ctx.device().limits().min_storage_buffer_offset_alignment as u64;
        // Start past the first alignment unit, so no region sits at offset 0.
        Arena {
            buffer,
            next: align,
            align,
        }
    }

    /// The next `len` words, filled with NaN so an unwritten result shows.
    fn take(&mut self, ctx: &eigrad::gpu::GpuContext, len: usize) -> eigrad::gpu::GpuTensor {
        let t = eigrad::gpu::GpuTensor::from_buffer(self.buffer.clone(), self.next, len).unwrap();
        ctx.queue().write_buffer(
            &self.buffer,
            self.next,
            bytemuck::cast_slice(&vec![f32::NAN; len]),
        );
        self.next = (self.next + 4 * len as u64).next_multiple_of(self.align);
        t
    }

    /// The next region, holding `data`.
    fn put(&mut self, ctx: &eigrad::gpu::GpuContext, data: &[f32]) -> eigrad::gpu::GpuTensor {
        let t = self.take(ctx, data.len());
        ctx.queue()
            .write_buffer(&self.buffer, t.offset(), bytemuck::cast_slice(data));
        t
    }
}

#[test]
fn results_written_into_the_inputs_buffer_equal_fresh_results() {
    // n = 50 also runs the one-sided kernel's refinement step, into the arena.
    for (n, batch) in [(6, 150), (50, 70)] {
        into_arena_equals_fresh(n, batch);
    }
}

fn into_arena_equals_fresh(n: usize, batch: usize) {
    let Some(ctx) = gpu() else { return };
    let nn = n * n;
    let opts = EighOptions::default();
    let policy = Degeneracy::default();
    let a = to_f32(&separated(n, batch, 31));
    let mut rng = Rng::new(32);
    let gl = to_f32(&normal(&mut rng, batch * n));
    let gv = to_f32(&normal(&mut rng, batch * nn));
    let tangent = to_f32(&normal(&mut rng, batch * nn));

    // The reference: eigrad's own fresh tensors.
    let (a_dev, gl_dev, gv_dev, t_dev) = (
        ctx.upload(&a),
        ctx.upload(&gl),
        ctx.upload(&gv),
        ctx.upload(&tangent),
    );
    let fwd = ctx.eigh_resident(&a_dev, n, &opts, Vectors::Yes).unwrap();
    let bwd = ctx
        .eigh_vjp_resident(&fwd, Some(&gl_dev), Some(&gv_dev), policy)
        .unwrap();
    let jvp = ctx.eigh_jvp_resident(&fwd, &t_dev, policy).unwrap();
    let spec = ctx
        .spectral_resident(&a_dev, n, SpectralFn::Exp, &opts)
        .unwrap();
    let spec_bwd = ctx.spectral_vjp_resident(&spec, &gv_dev).unwrap();
    let values_only = ctx.eigh_resident(&a_dev, n, &opts, Vectors::No).unwrap();

    // Everything, inputs and results, in one buffer: the kernels then bind it writable.
    let mut arena = Arena::new(ctx, 20 * 4 * (batch * nn) as u64 + 64 * 1024);
    let (a_in, gl_in, gv_in, t_in) = (
        arena.put(ctx, &a),
        arena.put(ctx, &gl),
        arena.put(ctx, &gv),
        arena.put(ctx, &tangent),
    );
    let fwd_into = GpuEigh {
        n,
        batch,
        eigenvalues: arena.take(ctx, batch * n),
        eigenvectors: Some(arena.take(ctx, batch * nn)),
        status: arena.take(ctx, batch),
    };
    ctx.eigh_resident_into(&a_in, &opts, &fwd_into).unwrap();
    let bwd_into = arena.take(ctx, batch * nn);
    ctx.eigh_vjp_resident_into(&fwd_into, Some(&gl_in), Some(&gv_in), policy, &bwd_into)
        .unwrap();
    let jvp_into = GpuJvp {
        values_dot: arena.take(ctx, batch * n),
        vectors_dot: arena.take(ctx, batch * nn),
    };
    ctx.eigh_jvp_resident_into(&fwd_into, &t_in, policy, &jvp_into)
        .unwrap();
    let spec_into = GpuSpectral {
        function: SpectralFn::Exp,
        values: arena.take(ctx, batch * nn),
        eig: GpuEigh {
            n,
            batch,
            eigenvalues: arena.take(ctx, batch * n),
            eigenvectors: Some(arena.take(ctx, batch * nn)),
            status: arena.take(ctx, batch),
        },
    };
    ctx.spectral_resident_into(&a_in, &opts, &spec_into)
        .unwrap();
    let spec_bwd_into = arena.take(ctx, batch * nn);
    ctx.spectral_vjp_resident_into(&spec_into, &gv_in, &spec_bwd_into)
        .unwrap();
    let values_only_into = GpuEigh {
        n,
        batch,
        eigenvalues: arena.take(ctx, batch * n),
        eigenvectors: None,
        status: arena.take(ctx, batch),
    };
    ctx.eigh_resident_into(&a_in, &opts, &values_only_into)
        .unwrap();

    let same = |x: &eigrad::gpu::GpuTensor, y: &eigrad::gpu::GpuTensor, what: &str| {
        let (x, y) = (ctx.download(x).unwrap(), ctx.download(y).unwrap());
        assert!(x.iter().all(|v| v.is_finite()), "{what}: not written");
        assert_eq!(x, y, "{what}");
    };
    let vectors = |e: &GpuEigh| e.eigenvectors.clone().unwrap();
    same(&fwd_into.eigenvalues, &fwd.eigenvalues, "eigenvalues");
    same(&vectors(&fwd_into), &vectors(&fwd), "eigenvectors");
    same(&fwd_into.status, &fwd.status, "status");
    same(&bwd_into, &bwd, "VJP");
    same(&jvp_into.values_dot, &jvp.values_dot, "JVP values");
    same(&jvp_into.vectors_dot, &jvp.vectors_dot, "JVP vectors");
    same(&spec_into.values, &spec.values, "exp(A)");
    same(
        &spec_into.eig.eigenvalues,
        &spec.eig.eigenvalues,
        "spectral eigenvalues",
    );
    same(
        &vectors(&spec_into.eig),
        &vectors(&spec.eig),
        "spectral eigenvectors",
    );
    same(&spec_into.eig.status, &spec.eig.status, "spectral status");
    same(&spec_bwd_into, &spec_bwd, "spectral VJP");
    same(
        &values_only_into.eigenvalues,
        &values_only.eigenvalues,
        "eigenvalues only",
    );
    // The inputs are untouched.
    assert_eq!(ctx.download(&a_in).unwrap(), a);
    assert_eq!(ctx.download(&gv_in).unwrap(), gv);
    // Split into dispatches of 64 matrices, each bound at its offset inside the arena.
    let chunked = GpuEigh {
        n,
        batch,
        eigenvalues: arena.take(ctx, batch * n),
        eigenvectors: Some(arena.take(ctx, batch * nn)),
        status: arena.take(ctx, batch),
    };
    let chunked_bwd = arena.take(ctx, batch * nn);
    ctx.set_max_chunk(64);
    let runs = ctx
        .eigh_resident_into(&a_in, &opts, &chunked)
        .and_then(|()| {
            ctx.eigh_vjp_resident_into(&chunked, Some(&gl_in), Some(&gv_in), policy, &chunked_bwd)
        });
    ctx.set_max_chunk(0);
    runs.unwrap();
    same(&vectors(&chunked), &vectors(&fwd), "eigenvectors, chunked");
    same(&chunked_bwd, &bwd, "VJP, chunked");
}

#[test]
fn overlapping_or_missized_destinations_are_clear_errors() {
    let Some(ctx) = gpu() else { return };
    let (n, batch) = (4, 70);
    let opts = EighOptions::default();
    let a = to_f32(&separated(n, batch, 33));
    let mut arena = Arena::new(ctx, 4 * 8 * (batch * n * n) as u64 + 16 * 1024);
    let a_in = arena.put(ctx, &a);
    let values = arena.take(ctx, batch * n);
    let status = arena.take(ctx, batch);
    // Eigenvectors written over the input.
    let over_input = GpuEigh {
        n,
        batch,
        eigenvalues: values.clone(),
        eigenvectors: Some(a_in.clone()),
        status: status.clone(),
    };
    let err = ctx
        .eigh_resident_into(&a_in, &opts, &over_input)
        .unwrap_err();
    assert!(
        matches!(&err, eigrad::Error::InvalidArgument(m) if m.contains("eigenvectors destination") && m.contains("overlaps the input")),
        "{err}"
    );
    // Two destinations sharing bytes.
    let clash =
        eigrad::gpu::GpuTensor::from_buffer(values.buffer().clone(), values.offset(), batch)
            .unwrap();
    let two = GpuEigh {
        n,
        batch,
        eigenvalues: values.clone(),
        eigenvectors: None,
        status: clash,
    };
    let err = ctx.eigh_resident_into(&a_in, &opts, &two).unwrap_err();
    assert!(
        matches!(&err, eigrad::Error::InvalidArgument(m) if m.contains("overlaps the eigenvalues destination")),
        "{err}"
    );
    // A destination of the wrong size.
    let short = GpuEigh {
        n,
        batch,
        eigenvalues: status.clone(),
        eigenvectors: None,
        status: status.clone(),
    };
    let err = ctx.eigh_resident_into(&a_in, &opts, &short).unwrap_err();
    assert!(
        matches!(&err, eigrad::Error::Shape(m) if m.contains("eigenvalues destination")),
        "{err}"
    );
    // A VJP written over its own cotangent.
    let fwd = ctx.eigh_resident(&a_in, n, &opts, Vectors::Yes).unwrap();
    let g = arena.put(ctx, &vec![1.0; batch * n * n]);
    let err = ctx
        .eigh_vjp_resident_into(&fwd, None, Some(&g), Degeneracy::default(), &g)
        .unwrap_err();
    assert!(
        matches!(&err, eigrad::Error::InvalidArgument(m) if m.contains("overlaps the grad_vectors")),
        "{err}"
    );
    // Nothing was written by the failed calls.
    assert!(ctx.download(&values).unwrap().iter().all(|v| v.is_nan()));
    assert_eq!(ctx.download(&a_in).unwrap(), a);
}

#[test]
fn large_uploads_split_over_threads_round_trip_exactly() {
    let Some(ctx) = gpu() else { return };
    // Over 2 MiB, so the write into the staging buffer is split into 1 MiB pieces on several
    // threads: five whole pieces and a remainder of three words.
    let len = 5 * (1 << 18) + 3;
    let exact: Vec<f32> = (0..len)
        .map(|i| (i as f32 * 0.37 - 1000.0) * if i % 3 == 0 { -1.0 } else { 1.0 })
        .collect();
    let t = ctx.upload(&exact);
    assert_eq!(ctx.download(&t).unwrap(), exact);
    ctx.recycle(t);
    // Converted on the way (f64 and f16 to f32), piece by piece.
    let wide: Vec<f64> = (0..len).map(|i| i as f64 / 7.0 - 3e4).collect();
    let t = ctx.upload(&wide);
    let want: Vec<f32> = wide.iter().map(|&x| x as f32).collect();
    assert_eq!(ctx.download(&t).unwrap(), want);
    ctx.recycle(t);
    let narrow: Vec<half::f16> = (0..len)
        .map(|i| half::f16::from_f32((i % 4093) as f32 - 2000.0))
        .collect();
    let t = ctx.upload(&narrow);
    let want: Vec<f32> = narrow.iter().map(|x| x.to_f32()).collect();
    assert_eq!(ctx.download(&t).unwrap(), want);
}

#[test]
fn host_calls_in_many_pipelined_rounds_equal_one_round() {
    let Some(ctx) = gpu() else { return };
    // A chunk cap of 64 makes rounds of 192 matrices: 6 rounds for 1000 matrices, so rounds
    // are launched while earlier ones are copied out on another thread (two in flight).
    let (n, batch) = (5, 1000);
    let nn = n * n;
    let mut rng = Rng::new(21);
    let a = to_f32(&samples::random_symmetric(&mut rng, n, batch));
    let gl = to_f32(&normal(&mut rng, batch * n));
    let gv = to_f32(&normal(&mut rng, batch * nn));
    let tangent = to_f32(&samples::random_symmetric(&mut rng, n, batch));
    let opts = EighOptions::default();
    let run = || -> eigrad::Result<_> {
        let fwd = ctx.eigh(&a, n, &opts, Vectors::Yes)?;
        let values = ctx.eigh(&a, n, &opts, Vectors::No)?;
        let vjp = ctx.eigh_vjp(&fwd, Some(&gl), Some(&gv), Degeneracy::default())?;
        let jvp = ctx.eigh_jvp(&fwd, &tangent, Degeneracy::default())?;
        Ok((fwd, values, vjp, jvp.values_dot, jvp.vectors_dot))
    };
    let whole = run().unwrap();
    ctx.set_max_chunk(64);
    let rounds = run();
    ctx.set_max_chunk(0);
    let rounds = rounds.unwrap();
    assert!(whole.0.all_ok());
    assert_eq!(whole.0, rounds.0, "eigh");
    assert_eq!(whole.1, rounds.1, "eigenvalues only");
    assert_eq!(whole.2, rounds.2, "vjp");
    assert_eq!(whole.3, rounds.3, "jvp values");
    assert_eq!(whole.4, rounds.4, "jvp vectors");
}

#[test]
fn readbacks_from_many_threads_sharing_a_context_all_arrive() {
    let Some(ctx) = gpu() else { return };
    // Each thread's readback waits for a mapping callback that another thread's poll may be
    // running at that moment; every one must still arrive.
    let n = 8;
    let a = to_f32(&samples::random_symmetric(&mut Rng::new(8), n, 64));
    let want = ctx
        .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..6 {
            let (a, want) = (&a, &want);
            s.spawn(move || {
                for i in 0..25 {
                    let got = ctx.eigh(a, n, &EighOptions::default(), Vectors::Yes);
                    let got = got.unwrap_or_else(|e| panic!("thread {t} call {i}: {e}"));
                    assert_eq!(got.eigenvalues, want.eigenvalues, "thread {t} call {i}");
                }
            });
        }
    });
}

#[test]
fn refined_one_sided_eigenvectors_give_derivatives_as_accurate_as_two_sided() {
    // Above ONE_SIDED_REFINE_ABOVE the one-sided kernel's eigenvectors are refined with the
    // original matrix; unrefined, the shift σ made their VJP several times less accurate than
    // the two-sided kernel's (on llvmpipe at n = 64: 8.0e-5 against 1.6e-5; refined 5.2e-6).
    if gpu_kernels().is_empty() {
        return;
    }
    let n = eigrad::gpu::ONE_SIDED_REFINE_ABOVE + 16;
    let batch = 4;
    let a = separated(n, batch, 77);
    let c = cpu::jacobi_eigh(&a, n, &EighOptions::default()).unwrap();
    let mut rng = Rng::new(78);
    let gv = normal(&mut rng, batch * n * n);
    let policy = Degeneracy::default();
    let want = cpu::eigh_vjp(&c, None, Some(&gv), policy).unwrap();
    let error = |kernel: ForwardKernel| {
        let ctx = gpu_kernel(kernel).unwrap();
        let g = ctx
            .eigh(&to_f32(&a), n, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        let x = ctx.eigh_vjp(&g, None, Some(&to_f32(&gv)), policy).unwrap();
        rel_err(&x, &want)
    };
    let (one, two) = (
        error(ForwardKernel::OneSided),
        error(ForwardKernel::TwoSided),
    );
    assert!(one <= two, "one-sided {one:e} against two-sided {two:e}");
    assert!(one <= DERIVATIVE_TOL);
}

#[test]
fn bad_forward_results_tensors_and_f32_policy_limits_are_handled() {
    use eigrad::gpu::GpuTensor;
    use eigrad::Error;
    let Some(ctx) = gpu() else { return };
    let n = 2;
    let a = to_f32(&separated(n, 2, 5));
    let good = ctx
        .eigh(&a, n, &EighOptions::default(), Vectors::Yes)
        .unwrap();
    // Forward results whose fields disagree with n and batch.
    let mut e = good.clone();
    e.status.pop();
    let r = ctx.eigh_vjp(&e, Some(&[1.0; 4]), None, Degeneracy::default());
    assert!(matches!(r, Err(Error::Shape(_))), "{r:?}");
    let mut e = good.clone();
    e.eigenvectors.as_mut().unwrap().pop();
    let r = ctx.eigh_jvp(&e, &[0.0; 8], Degeneracy::default());
    assert!(matches!(r, Err(Error::Shape(_))), "{r:?}");
    let fwd = ctx
        .eigh_resident(&ctx.upload(&a), n, &EighOptions::default(), Vectors::Yes)
        .unwrap();
    let short = GpuEigh {
        eigenvalues: GpuTensor::from_buffer(fwd.eigenvalues.buffer().clone(), 0, 3).unwrap(),
        ..fwd.clone()
    };
    let gl = ctx.upload(&[1f32; 4]);
    let r = ctx.eigh_vjp_resident(&short, Some(&gl), None, Degeneracy::default());
    assert!(matches!(r, Err(Error::Shape(_))), "{r:?}");
    // Tensor regions that overflow or are misaligned, and a buffer that cannot be read back.
    let buf = fwd.eigenvalues.buffer().clone();
    assert!(GpuTensor::from_buffer(buf.clone(), 0, 1 << 62).is_err());
    assert!(GpuTensor::from_buffer(buf.clone(), u64::MAX - 3, 1).is_err());
    assert!(GpuTensor::from_buffer(buf, 2, 1).is_err());
    let storage_only = ctx.device().create_buffer(&wgpu::BufferDescriptor {
        label: None,
        size: 256,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let t = GpuTensor::from_buffer(storage_only, 0, 4).unwrap();
    assert!(matches!(ctx.download(&t), Err(Error::InvalidArgument(_))));
    // Policy parameters outside the f32 range keep their meaning on the GPU: a Lorentzian eps
    // below the smallest normal f32 still gives 0 at an exact tie (not 0/0), and a mask
    // tolerance above f32::MAX still masks every pair of a zero matrix (not inf·0).
    let ties = ctx
        .eigh(
            &[1f32, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            n,
            &EighOptions::default(),
            Vectors::Yes,
        )
        .unwrap();
    let gv = [1f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0];
    for policy in [
        Degeneracy::Lorentzian { eps: 1e-50 },
        Degeneracy::Mask {
            rel_tol: Some(1e300),
        },
    ] {
        let x = ctx.eigh_vjp(&ties, None, Some(&gv), policy).unwrap();
        let y = cpu::eigh_vjp(&forward_f64(&ties), None, Some(&gv.map(f64::from)), policy).unwrap();
        assert_eq!(
            x,
            y.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            "{policy:?}"
        );
        let j = ctx.eigh_jvp(&ties, &gv, policy).unwrap();
        assert!(j.vectors_dot.iter().all(|v| v.is_finite()), "{policy:?}");
    }
}

#[test]
fn lorentzian_derivatives_keep_gaps_whose_square_overflows_f32() {
    // Eigenvalues 0 and 3e19: Δ² = 9e38 is beyond f32, and Δ/(Δ² + eps) gave Δ/inf = 0.
    for (kernel, ctx) in gpu_kernels() {
        let x = 1.5e19f32;
        let g = ctx
            .eigh(&[x, x, x, x], 2, &EighOptions::default(), Vectors::Yes)
            .unwrap();
        assert!(g.all_ok(), "{kernel:?}");
        let gv = [0f32, 1.0, 0.0, 0.0];
        for eps in [1.0, 1e30] {
            let policy = Degeneracy::Lorentzian { eps };
            let want =
                cpu::eigh_vjp(&forward_f64(&g), None, Some(&gv.map(f64::from)), policy).unwrap();
            let got = ctx.eigh_vjp(&g, None, Some(&gv), policy).unwrap();
            let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(scale > 1e-21, "{kernel:?} eps={eps}: {want:?}");
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * scale,
                    "{kernel:?} eps={eps}: {got:?} against {want:?}"
                );
            }
            let tangent = [1f32, 0.0, 0.0, 0.0];
            let j = ctx.eigh_jvp(&g, &tangent, policy).unwrap();
            let k = cpu::eigh_jvp(&forward_f64(&g), &tangent.map(f64::from), policy).unwrap();
            let scale = k.vectors_dot.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(scale > 1e-21, "{kernel:?} eps={eps}: {k:?}");
            for (a, b) in j.vectors_dot.iter().zip(&k.vectors_dot) {
                assert!(
                    (*a as f64 - b).abs() <= 1e-5 * scale,
                    "{kernel:?}: {j:?} {k:?}"
                );
            }
        }
    }
}

/// An f32 forward result widened to f64 (the CPU rule applied to the same decomposition).
fn forward_f64(e: &Eigh<f32>) -> Eigh<f64> {
    let wide = |x: &[f32]| x.iter().map(|&v| v as f64).collect::<Vec<_>>();
    Eigh {
        n: e.n,
        batch: e.batch,
        eigenvalues: wide(&e.eigenvalues),
        eigenvectors: e.eigenvectors.as_deref().map(wide),
        status: e.status.clone(),
    }
}

#[test]
fn tensors_of_another_context_are_errors_not_wrong_answers() {
    use eigrad::Error;
    let (Some(a), Some(b)) = (gpu(), gpu_kernel(ForwardKernel::OneSided)) else {
        return;
    };
    let n = 2;
    let opts = EighOptions::default();
    let x = a.upload(&[1f32, 0.0, 0.0, 2.0]);
    let fwd = a.eigh_resident(&x, n, &opts, Vectors::Yes).unwrap();
    let gl = b.upload(&[1f32, 1.0]);
    let foreign = |r: eigrad::Result<()>| matches!(r, Err(Error::InvalidArgument(m)) if m.contains("another GpuContext"));
    // Used to give zeros (the other device's buffers read as empty) or a wgpu panic.
    assert!(foreign(
        b.eigh_vjp_resident(&fwd, Some(&gl), None, Degeneracy::default())
            .map(drop)
    ));
    assert!(foreign(
        b.eigh_resident(&x, n, &opts, Vectors::Yes).map(drop)
    ));
    assert!(foreign(b.download(&fwd.eigenvalues).map(drop)));
    assert!(foreign(b.download_status(&fwd.status).map(drop)));
    assert!(foreign(b.copy(&[(&x, &gl)])));
    // Handed to the wrong context's pool, a tensor is dropped, not reused there.
    b.recycle(x);
    let y = b.upload(&[5f32, 6.0]);
    assert_eq!(b.download(&y).unwrap(), [5.0, 6.0]);
    // The owner's own calls still work.
    let g = a.upload(&[1f32, 1.0]);
    let r = a
        .eigh_vjp_resident(&fwd, Some(&g), None, Degeneracy::default())
        .unwrap();
    assert_eq!(a.download(&r).unwrap(), [1.0, 0.0, 0.0, 1.0]);
}
