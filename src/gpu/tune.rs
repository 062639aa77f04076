//! Kernel choices measured on the device at hand: [`GpuContext::tune`] times every kernel that
//! can decompose `n×n` matrices here and lets `Auto` take the fastest.
//!
//! Which kernel is fastest depends on the GPU (its compiler, registers, workgroup memory and
//! scheduling), which `Auto`'s fixed mapping cannot know; a training loop that decomposes
//! batches of one size many times can pay for a few timed calls once, up front.

use super::{
    check_n, EigvalshKernel, ForwardKernel, GpuContext, GpuEigh, GpuTensor, KernelChoice,
    REGISTERS_MAX_N,
};
use crate::eigh::batch_len;
use crate::samples::{random_symmetric, Rng};
use crate::{EighOptions, Error, Result, Status, Vectors};
use std::time::Instant;

/// Timed calls per candidate after the untimed first one (which compiles its pipeline); the
/// fastest counts.
const TUNE_REPS: usize = 3;

/// Invocations per workgroup the tridiagonal eigendecomposition is timed with (those giving
/// the same matrices per workgroup at a size are timed once).
const TUNE_WORKGROUPS: [u32; 3] = [256, 128, 64];

/// Distinct random matrices in the timed batch; larger batches repeat them.
const TUNE_DISTINCT: usize = 1024;

/// One candidate's time in [`GpuContext::tune`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TuneTiming {
    /// The kernels the candidate runs: [`KernelChoice::forward`] and its tridiagonal workgroup
    /// for eigendecompositions, [`KernelChoice::eigvalsh`] for eigenvalues only.
    pub choice: KernelChoice,
    /// [`Vectors::Yes`] for an eigendecomposition, [`Vectors::No`] for eigenvalues only.
    pub vectors: Vectors,
    /// The fastest of the timed calls, in seconds from submission until the device finished;
    /// `None` where the candidate failed (an error, or a matrix of the batch not decomposed),
    /// which is then never chosen.
    pub seconds: Option<f64>,
}

/// What [`GpuContext::tune`] measured and chose for one matrix size.
#[derive(Clone, Debug, PartialEq)]
pub struct TuneReport {
    /// The matrix size.
    pub n: usize,
    /// The matrices per timed call: the batch asked for, or one storage binding's worth of
    /// matrices where that is fewer (larger batches are split into chunks of at most that).
    pub batch: usize,
    /// Every candidate, eigendecompositions first, in the order timed.
    pub timings: Vec<TuneTiming>,
    /// What `Auto` now takes at this n: the fastest eigendecomposition kernel, and beside it
    /// the fastest eigenvalues-only kernel.
    pub chosen: KernelChoice,
}

impl GpuContext {
    /// Times every kernel that can decompose `n×n` matrices on this device, on `batch` random
    /// symmetric matrices, and makes the fastest what [`ForwardKernel::Auto`] and
    /// [`EigvalshKernel::Auto`] take at this n from now on ([`GpuContext::kernels_for`]).
    ///
    /// Candidates: the register kernel (n ≤ [`REGISTERS_MAX_N`]), the one-sided kernel (and
    /// its subgroup variant where the device has fixed-size subgroups) and the two-sided
    /// kernel where they fit the device's workgroup memory, and the tridiagonal kernel with
    /// 256, 128 and 64 invocations per workgroup; then, beside the fastest, the
    /// eigenvalues-only kernels (that eigendecomposition kernel's own variant, and the
    /// tridiagonal one). Each is called once untimed (compiling its pipeline), then three
    /// times, each call timed from submission until the device has finished; the fastest call
    /// counts. A candidate that fails, or leaves a matrix of the random batch undecomposed, is
    /// reported and never chosen.
    ///
    /// Every choice gives the same contract within the same accuracy bounds, but results
    /// differ between kernels at rounding level, so results of calls before and after tuning
    /// (or on two machines) need not be bitwise equal. The choice is timing-dependent; for
    /// bitwise reproducible runs pick the kernels explicitly
    /// ([`GpuContext::set_forward_kernel`]) or do not tune. Explicit choices take precedence
    /// over tuned ones. Use the batch size of the calls that will follow: the fastest kernel
    /// depends on how well a batch fills the device.
    pub fn tune(&self, n: usize, batch: usize) -> Result<TuneReport> {
        check_n(n)?;
        if batch == 0 {
            return Err(Error::InvalidArgument(
                "tuning needs a batch of at least one matrix".into(),
            ));
        }
        // Larger batches run in chunks of at most one storage binding, each like this one.
        let binding = self.inner.limits().max_storage_buffer_binding_size;
        let batch = batch.min((binding / (4 * n * n) as u64).max(1) as usize);
        let len = batch_len(batch, n * n)?;
        let distinct = batch.min(TUNE_DISTINCT);
        let sample = random_symmetric(&mut Rng::new(0x7E57_u64 ^ n as u64), n, distinct);
        let data: Vec<f32> = (sample.iter().map(|&x| x as f32))
            .cycle()
            .take(len)
            .collect();
        let a = self.try_upload(&data)?;
        drop(data);
        let result = self.tune_on(&a, n, batch);
        self.recycle(a);
        let report = result?;
        self.tuned.lock().unwrap().insert(n, report.chosen);
        Ok(report)
    }

    /// The kernels [`GpuContext::tune`] chose for n, if it has tuned n.
    pub fn tuned(&self, n: usize) -> Option<KernelChoice> {
        self.tuned.lock().unwrap().get(&n).copied()
    }

    /// Forgets every tuned choice: `Auto` goes back to its fixed mapping.
    pub fn clear_tuning(&self) {
        self.tuned.lock().unwrap().clear();
    }

    fn tune_on(&self, a: &GpuTensor, n: usize, batch: usize) -> Result<TuneReport> {
        let choice = |forward, tridiagonal_workgroup| KernelChoice {
            forward,
            eigvalsh: EigvalshKernel::Jacobi,
            tridiagonal_workgroup,
        };
        let wg = self.tridiagonal_workgroup();
        let mut candidates = Vec::new();
        if n <= REGISTERS_MAX_N {
            candidates.push(choice(ForwardKernel::Registers, wg));
        }
        if n <= self.one_sided_max_n {
            candidates.push(choice(ForwardKernel::OneSided, wg));
            if self.subgroup_size != 0 {
                candidates.push(choice(ForwardKernel::OneSidedSubgroup, wg));
            }
        }
        if n <= self.two_sided_max_n {
            candidates.push(choice(ForwardKernel::TwoSided, wg));
        }
        if n <= self.tridiagonal_eigh_max_n {
            let mut mats = Vec::new();
            for w in TUNE_WORKGROUPS {
                let m = (w as usize / n).max(1);
                if !mats.contains(&m) {
                    mats.push(m);
                    candidates.push(choice(ForwardKernel::Tridiagonal, w));
                }
            }
        }
        let mut timings = Vec::new();
        for c in candidates {
            let seconds = self.time_call(a, n, batch, c, Vectors::Yes)?;
            timings.push(TuneTiming {
                choice: c,
                vectors: Vectors::Yes,
                seconds,
            });
        }
        let mut chosen = fastest(&timings).ok_or_else(|| {
            Error::Gpu(format!(
                "no eigendecomposition kernel decomposed the random {n}×{n} batch"
            ))
        })?;
        // Eigenvalues only, beside that kernel (the tridiagonal eigendecomposition's
        // eigenvalues-only variant is the tridiagonal eigenvalues-only kernel itself).
        let mut values = Vec::new();
        if chosen.forward == ForwardKernel::Tridiagonal {
            chosen.eigvalsh = EigvalshKernel::Tridiagonal;
        } else {
            if n <= self.jacobi_values_max_n(chosen.forward) {
                values.push(EigvalshKernel::Jacobi);
            }
            if n <= self.tridiagonal_max_n {
                values.push(EigvalshKernel::Tridiagonal);
            }
        }
        let first = timings.len();
        for eigvalsh in values {
            let c = KernelChoice { eigvalsh, ..chosen };
            let seconds = self.time_call(a, n, batch, c, Vectors::No)?;
            timings.push(TuneTiming {
                choice: c,
                vectors: Vectors::No,
                seconds,
            });
        }
        if timings.len() > first {
            chosen.eigvalsh = fastest(&timings[first..])
                .ok_or_else(|| {
                    Error::Gpu(format!(
                        "no eigenvalues-only kernel decomposed the random {n}×{n} batch"
                    ))
                })?
                .eigvalsh;
        }
        Ok(TuneReport {
            n,
            batch,
            timings,
            chosen,
        })
    }

    /// The fastest of [`TUNE_REPS`] timed calls of `choice` on `a` after an untimed one;
    /// `None` when a call fails or a matrix is not decomposed. Errors only where the device
    /// itself fails (a wait or a readback).
    fn time_call(
        &self,
        a: &GpuTensor,
        n: usize,
        batch: usize,
        choice: KernelChoice,
        vectors: Vectors,
    ) -> Result<Option<f64>> {
        let opts = EighOptions::default();
        let out = GpuEigh {
            n,
            batch,
            eigenvalues: self.new_tensor(batch * n),
            eigenvectors: (vectors == Vectors::Yes).then(|| self.new_tensor(batch * n * n)),
            status: self.new_tensor(batch),
        };
        let mut best: Option<f64> = None;
        let mut run = || -> Result<Option<f64>> {
            if let Err(e) = self.eigh_resident_as(a, &opts, &out, Some(choice)) {
                log::warn!("tuning n = {n}: {choice:?} failed: {e}");
                return Ok(None);
            }
            self.wait()?;
            let status = self.download_status(&out.status)?;
            if let Some(s) = status.iter().find(|&&s| s != Status::Ok) {
                log::warn!("tuning n = {n}: {choice:?} gave status {s:?} on a random matrix");
                return Ok(None);
            }
            for _ in 0..TUNE_REPS {
                let t = Instant::now();
                self.eigh_resident_as(a, &opts, &out, Some(choice))?;
                self.wait()?;
                let s = t.elapsed().as_secs_f64();
                best = Some(best.map_or(s, |b| b.min(s)));
            }
            Ok(best)
        };
        let result = run();
        self.recycle_eigh(out);
        result
    }
}

/// The choice of the fastest timing that did not fail.
fn fastest(timings: &[TuneTiming]) -> Option<KernelChoice> {
    (timings.iter())
        .filter_map(|t| t.seconds.map(|s| (s, t.choice)))
        .min_by(|x, y| x.0.total_cmp(&y.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fastest_timing_that_did_not_fail_is_chosen() {
        let timing = |forward, seconds| TuneTiming {
            choice: KernelChoice {
                forward,
                eigvalsh: EigvalshKernel::Jacobi,
                tridiagonal_workgroup: 256,
            },
            vectors: Vectors::Yes,
            seconds,
        };
        let timings = [
            timing(ForwardKernel::OneSided, Some(2.0)),
            timing(ForwardKernel::TwoSided, None),
            timing(ForwardKernel::Tridiagonal, Some(1.5)),
            timing(ForwardKernel::Registers, Some(1.5)),
        ];
        // Ties go to the first timed.
        assert_eq!(
            fastest(&timings).map(|c| c.forward),
            Some(ForwardKernel::Tridiagonal)
        );
        assert_eq!(
            fastest(&timings[..2]).map(|c| c.forward),
            Some(ForwardKernel::OneSided)
        );
        assert_eq!(fastest(&timings[1..2]), None);
        assert_eq!(fastest(&[]), None);
    }
}
