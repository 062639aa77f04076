//! Stable objectives on the GPU: spectral functions and projectors (`spectral_apply.wgsl`,
//! `spectral_vjp.wgsl`), extreme eigenvalues (the decomposition plus a weighted congruence), and
//! power iteration with its implicit VJP (`power_iteration*.wgsl`). Same contracts as the CPU
//! functions in [`crate::cpu`], in f32.

use super::context::{Params, Slot};
use super::plan::{plan, JacobiKnobs};
use super::shaders::Kernel;
use super::{check_len, check_n, decode_status, GpuContext, GpuEigh, GpuTensor};
use crate::spectral::{
    Extreme, ExtremeEigenvalue, PowerIteration, PowerIterationOptions, Projection, Projector,
    Spectral, SpectralFn,
};
use crate::{Degeneracy, Eigh, EighOptions, Error, Precision, Result, Scalar, Status, Vectors};

/// A device-resident spectral function: `f(A)` and the decomposition its VJP needs.
#[derive(Clone, Debug)]
pub struct GpuSpectral {
    /// The function.
    pub function: SpectralFn,
    /// `f(A)` `[batch][n][n]`.
    pub values: GpuTensor,
    /// The decomposition of `A`; its status is the status of `f(A)`.
    pub eig: GpuEigh,
}

/// What `spectral_apply`/`spectral_vjp` evaluate: a function code of spectral.wgsl, its real
/// parameter (pow's exponent, or the projector VJP's policy parameter) and integer parameter
/// (the projector's k).
#[derive(Clone, Copy, Debug)]
struct Func {
    code: u32,
    param: f32,
    k: u32,
}

impl Func {
    fn spectral(f: SpectralFn) -> Self {
        let (code, param) = match f {
            SpectralFn::Sqrt => (0, 0.0),
            SpectralFn::Log => (1, 0.0),
            SpectralFn::Exp => (2, 0.0),
            SpectralFn::Inv => (3, 0.0),
            SpectralFn::Pow(p) => (4, p as f32),
        };
        Func { code, param, k: 0 }
    }

    fn projector(p: Projector) -> Self {
        let (code, k) = match p {
            Projector::Lowest(k) => (5, k),
            Projector::Highest(k) => (6, k),
        };
        Func {
            code,
            param: 0.0,
            k: k as u32,
        }
    }
}

impl GpuContext {
    /// Decomposes `a` and applies `func` to its spectrum; returns `f(A)` and the decomposition
    /// (with the function's status) on the device, in new tensors.
    fn apply_resident(
        &self,
        a: &GpuTensor,
        n: usize,
        func: Func,
        opts: &EighOptions,
    ) -> Result<(GpuTensor, GpuEigh)> {
        check_n(n)?;
        let nn = n * n;
        let batch = crate::cpu::batch_of(a.len, n, "input")?;
        let values = self.new_tensor(batch * nn);
        let eig = GpuEigh {
            n,
            batch,
            eigenvalues: self.new_tensor(batch * n),
            eigenvectors: Some(self.new_tensor(batch * nn)),
            status: self.new_tensor(batch),
        };
        match self.apply_resident_into(a, func, opts, &values, &eig) {
            Ok(()) => Ok((values, eig)),
            Err(e) => {
                self.recycle(values);
                self.recycle_eigh(eig);
                Err(e)
            }
        }
    }

    /// [`GpuContext::apply_resident`] into the caller's tensors: `f(A)` into `values`, the
    /// decomposition into `eig` (which needs eigenvectors), the function's status into
    /// `eig.status`.
    fn apply_resident_into(
        &self,
        a: &GpuTensor,
        func: Func,
        opts: &EighOptions,
        values: &GpuTensor,
        eig: &GpuEigh,
    ) -> Result<()> {
        let (n, batch) = (eig.n, eig.batch);
        check_n(n)?;
        let nn = n * n;
        check_len(values.len, batch * nn, "function destination")?;
        let vecs = eig.eigenvectors.as_ref().ok_or_else(|| {
            Error::InvalidArgument("a spectral function keeps the eigenvectors".into())
        })?;
        // The decomposition's own status goes to scratch: the function's status replaces it
        // (it adds out-of-domain).
        let forward_status = self.new_tensor(batch);
        let decomposition = GpuEigh {
            status: forward_status.clone(),
            ..eig.clone()
        };
        let result = self
            .eigh_resident_into(a, opts, &decomposition)
            .and_then(|()| {
                let writable = super::check_outputs(
                    &decomposition.inputs(),
                    &[
                        ("function destination", values),
                        ("status destination", &eig.status),
                    ],
                )?;
                let pipe =
                    self.pipeline(Kernel::SpectralApply, n, None, (func.code, 0), writable)?;
                let slots = [
                    eig.eigenvalues.slot(n),
                    vecs.slot(nn),
                    forward_status.slot(1),
                    values.slot(nn),
                    eig.status.slot(1),
                ];
                let params = Params {
                    tol: func.param,
                    extra: func.k,
                    ..Params::default()
                };
                self.inner.dispatch(&pipe, batch, &slots, params)
            });
        self.recycle(forward_status);
        result
    }

    /// `Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ` on the device for `func` into `out`; `policy` applies to
    /// projector pairs tied across the cut.
    fn apply_vjp_resident_into(
        &self,
        eig: &GpuEigh,
        grad: &GpuTensor,
        func: Func,
        policy: Degeneracy,
        out: &GpuTensor,
    ) -> Result<()> {
        policy.validate()?;
        eig.check()?;
        let (n, batch) = (eig.n, eig.batch);
        let nn = n * n;
        check_len(grad.len, batch * nn, "grad")?;
        check_len(out.len, batch * nn, "gradient destination")?;
        let vecs = eig
            .eigenvectors
            .as_ref()
            .ok_or_else(|| Error::InvalidArgument("this VJP needs the eigenvectors".into()))?;
        let mut inputs = eig.inputs();
        inputs.push(("grad", grad));
        let writable = super::check_outputs(&inputs, &[("gradient destination", out)])?;
        let pipe = self.pipeline(
            Kernel::SpectralVjp,
            n,
            None,
            (func.code, policy.code()),
            writable,
        )?;
        let slots = [
            eig.eigenvalues.slot(n),
            vecs.slot(nn),
            grad.slot(nn),
            eig.status.slot(1),
            out.slot(nn),
        ];
        let tol = if func.code >= 5 {
            super::policy_tol(policy)
        } else {
            func.param
        };
        let params = Params {
            tol,
            extra: func.k,
            ..Params::default()
        };
        self.inner.dispatch(&pipe, batch, &slots, params)
    }

    /// [`GpuContext::apply_vjp_resident_into`] into a new tensor.
    fn apply_vjp_resident(
        &self,
        eig: &GpuEigh,
        grad: &GpuTensor,
        func: Func,
        policy: Degeneracy,
    ) -> Result<GpuTensor> {
        eig.check()?;
        let out = self.new_tensor(eig.batch * eig.n * eig.n);
        match self.apply_vjp_resident_into(eig, grad, func, policy, &out) {
            Ok(()) => Ok(out),
            Err(e) => {
                self.recycle(out);
                Err(e)
            }
        }
    }

    /// [`GpuContext::apply_resident`] for host data, in rounds of bounded size.
    fn apply_host<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        func: Func,
        opts: &EighOptions,
    ) -> Result<(Vec<f32>, Eigh<f32>)> {
        opts.validate()?;
        check_n(n)?;
        let batch = crate::cpu::batch_of(a.len(), n, "input")?;
        let nn = n * n;
        let mut values = Vec::with_capacity(batch * nn);
        let mut eig = Eigh {
            n,
            batch,
            eigenvalues: Vec::with_capacity(batch * n),
            eigenvectors: Some(Vec::with_capacity(batch * nn)),
            status: Vec::with_capacity(batch),
        };
        let chunk = self.host_chunk(nn);
        for part in a.chunks((chunk * nn).max(1)) {
            let input = self.upload(part);
            let r = self.apply_resident(&input, n, func, opts);
            self.inner.give(input.buffer);
            let (f, e) = r?;
            let vecs = e.eigenvectors.as_ref().expect("computed with vectors");
            let mut data = self.inner.read_words::<f32>(&[
                (&f.buffer, 0, f.len as u64),
                (&e.eigenvalues.buffer, 0, e.eigenvalues.len as u64),
                (&vecs.buffer, 0, vecs.len as u64),
            ])?;
            let status = self.download_status(&e.status)?;
            let all_vecs = eig.eigenvectors.as_mut().expect("allocated above");
            all_vecs.extend(data.pop().unwrap_or_default());
            eig.eigenvalues.extend(data.pop().unwrap_or_default());
            values.extend(data.pop().unwrap_or_default());
            eig.status.extend(status);
            self.inner.give(f.buffer);
            self.recycle_eigh(e);
        }
        Ok((values, eig))
    }

    /// [`GpuContext::apply_vjp_resident`] for host data, in rounds of bounded size.
    fn apply_vjp_host(
        &self,
        eig: &Eigh<f32>,
        grad: &[f32],
        func: Func,
        policy: Degeneracy,
    ) -> Result<Vec<f32>> {
        check_n(eig.n)?;
        eig.check()?;
        let (nn, batch) = (eig.n * eig.n, eig.batch);
        check_len(grad.len(), batch * nn, "grad")?;
        let mut out = Vec::with_capacity(batch * nn);
        let chunk = self.host_chunk(nn);
        for start in (0..batch).step_by(chunk.max(1)) {
            let end = (start + chunk).min(batch);
            let fwd = self.upload_forward(eig, start..end)?;
            let g = self.upload(&grad[start * nn..end * nn]);
            let r = self.apply_vjp_resident(&fwd, &g, func, policy);
            self.inner.give(g.buffer);
            self.recycle_eigh(fwd);
            let r = r?;
            out.extend(self.download(&r)?);
            self.inner.give(r.buffer);
        }
        Ok(out)
    }

    /// Device-resident spectral function `f(A) = V diag(f(λ)) Vᵀ` of `a` (`[B][n][n]` f32 on
    /// the device): decomposes on the GPU, then applies `f`; the decomposition stays on the
    /// device for [`GpuContext::spectral_vjp_resident`]. The status is
    /// [`Status::OutOfDomain`] where `f` needs positive eigenvalues and one is ≤ 0.
    pub fn spectral_resident(
        &self,
        a: &GpuTensor,
        n: usize,
        function: SpectralFn,
        opts: &EighOptions,
    ) -> Result<GpuSpectral> {
        function.validate()?;
        let (values, eig) = self.apply_resident(a, n, Func::spectral(function), opts)?;
        Ok(GpuSpectral {
            function,
            values,
            eig,
        })
    }

    /// [`GpuContext::spectral_resident`] into the caller's tensors: evaluates `out.function`
    /// of `a` into `out.values`, and keeps the decomposition in `out.eig` (which needs
    /// eigenvectors; its status is the function's). Same rules for the destinations as
    /// [`GpuContext::eigh_resident_into`].
    pub fn spectral_resident_into(
        &self,
        a: &GpuTensor,
        opts: &EighOptions,
        out: &GpuSpectral,
    ) -> Result<()> {
        out.function.validate()?;
        opts.validate()?;
        self.apply_resident_into(a, Func::spectral(out.function), opts, &out.values, &out.eig)
    }

    /// Device-resident Daleckii–Krein VJP: `Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ` with the divided
    /// differences `L` of the spectral function, evaluated without cancellation near ties so
    /// it stays finite and accurate at repeated eigenvalues. NaN where the status is not ok.
    pub fn spectral_vjp_resident(&self, s: &GpuSpectral, grad: &GpuTensor) -> Result<GpuTensor> {
        s.function.validate()?;
        let func = Func::spectral(s.function);
        self.apply_vjp_resident(&s.eig, grad, func, Degeneracy::default())
    }

    /// [`GpuContext::spectral_vjp_resident`] into the caller's tensor `out` (`[B][n][n]`),
    /// which must not overlap the decomposition or `grad`.
    pub fn spectral_vjp_resident_into(
        &self,
        s: &GpuSpectral,
        grad: &GpuTensor,
        out: &GpuTensor,
    ) -> Result<()> {
        s.function.validate()?;
        let func = Func::spectral(s.function);
        self.apply_vjp_resident_into(&s.eig, grad, func, Degeneracy::default(), out)
    }

    /// Batched spectral function on the GPU for host data, the contract of
    /// [`crate::cpu::spectral`] in f32.
    pub fn spectral<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        function: SpectralFn,
        opts: &EighOptions,
    ) -> Result<Spectral<f32>> {
        function.validate()?;
        let (values, eig) = self.apply_host(a, n, Func::spectral(function), opts)?;
        Ok(Spectral {
            function,
            values,
            eig,
        })
    }

    /// The Daleckii–Krein VJP on the GPU for host data, the contract of
    /// [`crate::cpu::spectral_vjp`] in f32.
    pub fn spectral_vjp(&self, s: &Spectral<f32>, grad: &[f32]) -> Result<Vec<f32>> {
        s.function.validate()?;
        let func = Func::spectral(s.function);
        self.apply_vjp_host(&s.eig, grad, func, Degeneracy::default())
    }

    /// Batched projector `P = V_k V_kᵀ` on the GPU, the contract of [`crate::cpu::projector`]
    /// in f32 (`cut_in_cluster` uses the f32 `Mask` tolerance, `eps^(3/4)·max|λ|` of f32).
    pub fn projector<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        selection: Projector,
        opts: &EighOptions,
    ) -> Result<Projection<f32>> {
        selection.validate(n)?;
        let (values, eig) = self.apply_host(a, n, Func::projector(selection), opts)?;
        let cut = selection.cut(n);
        let mask = Degeneracy::default();
        let mut cut_gap = Vec::with_capacity(eig.batch);
        let mut cut_in_cluster = Vec::with_capacity(eig.batch);
        for b in 0..eig.batch {
            let lambda = eig.values(b);
            let (gap, tied) = match (eig.status[b].is_ok(), cut) {
                (false, _) => (f32::NAN, false),
                (true, None) => (f32::INFINITY, false),
                (true, Some((below, above))) => {
                    let gap = lambda[above] - lambda[below];
                    let biggest = lambda.iter().fold(0.0f64, |m, x| m.max(x.abs() as f64));
                    let thr = mask.abs_threshold(biggest, Precision::F32);
                    (gap, gap as f64 <= thr)
                }
            };
            cut_gap.push(gap);
            cut_in_cluster.push(tied);
        }
        Ok(Projection {
            selection,
            values,
            eig,
            cut_gap,
            cut_in_cluster,
        })
    }

    /// The projector VJP on the GPU, the contract of [`crate::cpu::projector_vjp`]: only gaps
    /// across the cut appear; `policy` applies to pairs tied across it.
    pub fn projector_vjp(
        &self,
        p: &Projection<f32>,
        grad: &[f32],
        policy: Degeneracy,
    ) -> Result<Vec<f32>> {
        p.selection.validate(p.eig.n)?;
        self.apply_vjp_host(&p.eig, grad, Func::projector(p.selection), policy)
    }

    /// Batched extreme eigenvalue (`λ_max`, `λ_min`) or spectral norm with its gradient on the
    /// GPU, the contract of [`crate::cpu::extreme_eigenvalue`] in f32: the decomposition runs on
    /// the GPU, the cluster weights are chosen from the eigenvalues (within `rel_tol·max|λ|`,
    /// default the f32 `Mask` tolerance), and the gradient `V diag(w) Vᵀ` is formed on the GPU.
    pub fn extreme_eigenvalue<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        which: Extreme,
        opts: &EighOptions,
        rel_tol: Option<f64>,
    ) -> Result<ExtremeEigenvalue<f32>> {
        let mask = Degeneracy::Mask { rel_tol };
        mask.validate()?;
        let eig = self.eigh(a, n, opts, Vectors::Yes)?;
        let batch = eig.batch;
        let mut values = vec![f32::NAN; batch];
        let mut multiplicity = vec![0u32; batch];
        let mut weights = vec![0f32; batch * n];
        let mut w64 = vec![0f64; n];
        for b in 0..batch {
            if !eig.status[b].is_ok() {
                continue;
            }
            let lambda: Vec<f64> = eig.values(b).iter().map(|&x| x as f64).collect();
            let (extreme, m) = which.cluster_weights(&lambda, mask, Precision::F32, &mut w64);
            for (w, &x) in weights[b * n..(b + 1) * n].iter_mut().zip(&w64) {
                *w = x as f32;
            }
            values[b] = extreme as f32;
            multiplicity[b] = m;
        }
        // G = V diag(w) Vᵀ: the eigenvalues-only reverse rule with λ̄ = w.
        let grads = self.eigvalsh_vjp(&eig, &weights)?;
        Ok(ExtremeEigenvalue {
            which,
            n,
            batch,
            values,
            grads,
            multiplicity,
            status: eig.status,
        })
    }

    /// The VJP of [`GpuContext::extreme_eigenvalue`]: `Ā_b = ḡ_b · G_b` (a scaling, done on the
    /// host). NaN where the status is not ok.
    pub fn extreme_eigenvalue_vjp(
        &self,
        e: &ExtremeEigenvalue<f32>,
        grad_values: &[f32],
    ) -> Result<Vec<f32>> {
        e.check_vjp_inputs(grad_values.len())?;
        let nn = e.n * e.n;
        let mut out = e.grads.clone();
        for (b, chunk) in out.chunks_mut(nn.max(1)).enumerate() {
            let s = if e.status[b].is_ok() {
                grad_values[b]
            } else {
                f32::NAN
            };
            chunk.iter_mut().for_each(|x| *x *= s);
        }
        Ok(out)
    }

    /// The dominant eigenpair (largest `|λ|`) by power iteration on the GPU, the contract of
    /// [`crate::cpu::power_iteration`] in f32. f32 cannot reach the CPU's default tolerance, so
    /// the GPU stops at `max(opts.tol, 32·eps_f32·√n)`.
    pub fn power_iteration<S: Scalar>(
        &self,
        a: &[S],
        n: usize,
        opts: &PowerIterationOptions,
    ) -> Result<PowerIteration<f32>> {
        opts.validate()?;
        check_n(n)?;
        let batch = crate::cpu::batch_of(a.len(), n, "input")?;
        let nn = n * n;
        let knobs = JacobiKnobs {
            max_sweeps: 1,
            rel_threshold: 0.0,
            rot_floor: 0.0,
            lower: opts.symmetry == crate::Symmetry::Lower,
            subgroup_size: 0,
            workgroup: 0,
        };
        let limit = self.inner.limits().max_compute_workgroup_storage_size;
        let pipe = self.inner.pipeline(plan(
            Kernel::PowerIteration,
            n as u32,
            limit,
            Some(knobs),
            0,
            0,
        )?)?;
        let tol = opts
            .tol
            .max(32.0 * Precision::F32.eps() * (n as f64).sqrt()) as f32;
        let input = self.upload(a);
        let value = self.new_tensor(batch);
        let vector = self.new_tensor(batch * n);
        let iterations = self.new_tensor(batch);
        let status = self.new_tensor(batch);
        let matrix = self.new_tensor(batch * nn);
        let slots = [
            input.slot(nn),
            value.slot(1),
            vector.slot(n),
            iterations.slot(1),
            status.slot(1),
            matrix.slot(nn),
        ];
        let params = Params {
            tol,
            extra: opts.max_iterations,
            ..Params::default()
        };
        let r = self.inner.dispatch(&pipe, batch, &slots, params);
        self.inner.give(input.buffer);
        r?;
        let mut floats = self.inner.read_words::<f32>(&[
            (&value.buffer, 0, batch as u64),
            (&vector.buffer, 0, (batch * n) as u64),
            (&matrix.buffer, 0, (batch * nn) as u64),
        ])?;
        let mut words = self.inner.read_words::<u32>(&[
            (&iterations.buffer, 0, batch as u64),
            (&status.buffer, 0, batch as u64),
        ])?;
        for t in [value, vector, iterations, status, matrix] {
            self.inner.give(t.buffer);
        }
        let status = decode_status(&words.pop().unwrap_or_default())?;
        let iterations = words.pop().unwrap_or_default();
        let matrix = floats.pop().unwrap_or_default();
        let vector = floats.pop().unwrap_or_default();
        let value = floats.pop().unwrap_or_default();
        Ok(PowerIteration {
            n,
            batch,
            value,
            vector,
            iterations,
            status,
            matrix,
        })
    }

    /// The implicit VJP of power iteration on the GPU, the contract of
    /// [`crate::cpu::power_iteration_vjp`]: `Ā = λ̄vvᵀ + sym(w vᵀ)` with `(λI − A)w = (I − vvᵀ)v̄`
    /// solved by Cholesky on the device; NaN for a dominant eigenvalue that is not numerically
    /// simple (`M`'s smallest eigenvalue `≤ (eps^(3/4) + 4·n·eps)·|λ|` of f32, by its pivots or
    /// two steps of inverse iteration) when `v̄` is given, and where the status is not ok.
    pub fn power_iteration_vjp(
        &self,
        p: &PowerIteration<f32>,
        grad_value: Option<&[f32]>,
        grad_vector: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let (n, batch) = (p.n, p.batch);
        check_n(n)?;
        let nn = n * n;
        p.check_vjp_inputs(grad_value.map(<[f32]>::len), grad_vector.map(<[f32]>::len))?;
        let limit = self.inner.limits().max_compute_workgroup_storage_size;
        let pipe = self.inner.pipeline(plan(
            Kernel::PowerIterationVjp,
            n as u32,
            limit,
            None,
            0,
            0,
        )?)?;
        let codes: Vec<u32> = p.status.iter().map(|s: &Status| s.code()).collect();
        let value = self.upload(&p.value);
        let vector = self.upload(&p.vector);
        let matrix = self.upload(&p.matrix);
        let status = self.tensor(
            self.inner.upload_words(&codes, wgpu::BufferUsages::empty()),
            batch,
        );
        let gl = grad_value.map(|g| self.upload(g));
        let gv = grad_vector.map(|g| self.upload(g));
        let out = self.new_tensor(batch * nn);
        let slots = [
            value.slot(1),
            vector.slot(n),
            matrix.slot(nn),
            status.slot(1),
            gl.as_ref().map_or(Slot::Placeholder, |g| g.slot(1)),
            gv.as_ref().map_or(Slot::Placeholder, |g| g.slot(n)),
            out.slot(nn),
        ];
        let params = Params {
            tol: Precision::F32.default_mask_rel_tol() as f32,
            flags: grad_value.is_some() as u32 | (grad_vector.is_some() as u32) << 1,
            ..Params::default()
        };
        let r = self.inner.dispatch(&pipe, batch, &slots, params);
        for t in [
            Some(value),
            Some(vector),
            Some(matrix),
            Some(status),
            gl,
            gv,
        ]
        .into_iter()
        .flatten()
        {
            self.inner.give(t.buffer);
        }
        r?;
        let result = self.download(&out);
        self.inner.give(out.buffer);
        result
    }
}
