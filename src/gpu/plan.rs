//! Kernel mapping per matrix size and device: how many matrices share a workgroup, how many
//! invocations work on one matrix, row strides, and what fits in workgroup memory. The plan is
//! handed to WGSL as pipeline-overridable constants, so every number is decided here, once.

use std::sync::OnceLock;

use super::shaders::Kernel;
use crate::{Error, Result};

/// Invocations a workgroup aims for when several small matrices share it.
const TARGET_WORKGROUP: u32 = 64;
/// The largest workgroup the kernels use (wgpu's default `max_compute_invocations_per_workgroup`).
pub(super) const MAX_WORKGROUP: u32 = 256;
/// Bytes of one f32 or u32.
const WORD: u32 = 4;
/// Bytes of one vec4<f32>.
const VEC4: u32 = 16;
/// Room for aligning a kernel's vec4 workgroup arrays after its word arrays: a driver that lays
/// the variables out in declaration order pads up to 12 bytes before each vec4 array (counted
/// once: the kernels that need it declare their vec4 arrays together).
const ALIGN_SLACK: u32 = 16;
/// The one-sided Jacobi's cosine threshold is at least this many `√m·eps` (m: columns).
const ONE_SIDED_TOL_FACTOR: f32 = 2.0;

/// The launch plan of one kernel for one matrix size on one device.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The kernel.
    pub kernel: Kernel,
    /// Matrix size.
    pub n: u32,
    /// Matrices per workgroup.
    pub mats: u32,
    /// Invocations per matrix.
    pub tpm: u32,
    /// Whether the first N×N matrix (A for Jacobi, V for the derivatives) lives in workgroup
    /// memory; otherwise the derivatives read V where it is, in global memory.
    pub first_shared: bool,
    /// Whether the second N×N matrix (Vᵀ for Jacobi, the work matrix for the derivatives)
    /// lives in workgroup memory; otherwise it lives in a global buffer.
    pub second_shared: bool,
    /// The pipeline-overridable constants, by name.
    pub constants: Vec<(&'static str, f64)>,
    /// Workgroup memory the plan uses, in bytes.
    pub workgroup_bytes: u32,
    /// Whether the kernel exchanges data through subgroup operations (one-sided Jacobi).
    pub subgroups: bool,
    /// Whether every storage binding is declared `read_write`, inputs included: needed when an
    /// output lives in the same buffer as an input (wgpu forbids binding one buffer both
    /// read-only and writable in a dispatch), for example in a framework's memory pool.
    pub writable: bool,
}

impl Plan {
    /// The kernel's WGSL source for this plan.
    pub fn source(&self) -> String {
        let source = self
            .kernel
            .source(self.n, self.subgroups, self.first_shared);
        if self.writable {
            source.replace("var<storage, read>", "var<storage, read_write>")
        } else {
            source
        }
    }

    /// Invocations per workgroup.
    pub fn workgroup_size(&self) -> u32 {
        self.mats * self.tpm
    }
}

/// Options that change the Jacobi pipelines (part of the pipeline cache key).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct JacobiKnobs {
    /// Sweep cap.
    pub max_sweeps: u32,
    /// Relative rotation threshold.
    pub rel_threshold: f32,
    /// Rotation floor (relative to the scaled largest entry).
    pub rot_floor: f32,
    /// Read only the lower triangle.
    pub lower: bool,
    /// The device's fixed subgroup size when the one-sided kernel may exchange columns through
    /// subgroup operations (0: through workgroup memory).
    pub subgroup_size: u32,
    /// Invocations a tridiagonal eigendecomposition workgroup aims for, 1 to 256 (0 or more
    /// than 256: 256); matrices per workgroup are this over n, at least one.
    pub workgroup: u32,
}

impl JacobiKnobs {
    /// The constants of the two-sided kernels (jacobi.wgsl, registers.wgsl): the sweep cap,
    /// the rotation thresholds and the triangle read.
    fn two_sided_constants(&self) -> [(&'static str, f64); 4] {
        [
            ("MAX_SWEEPS", self.max_sweeps as f64),
            ("REL_THRESHOLD", self.rel_threshold as f64),
            ("ROT_FLOOR", self.rot_floor as f64),
            ("LOWER", if self.lower { 1.0 } else { 0.0 }),
        ]
    }
}

/// An error when a plan needs more workgroup memory than the device offers.
fn fits(n: u32, bytes: u32, workgroup_limit: u32) -> Result<()> {
    if bytes > workgroup_limit {
        return Err(Error::Gpu(format!(
            "n = {n} needs {bytes} bytes of workgroup memory; the device offers {workgroup_limit}"
        )));
    }
    Ok(())
}

/// An error above the largest size the register kernels are written out for.
fn registers_fit(n: u32) -> Result<()> {
    if n as usize > super::REGISTERS_MAX_N {
        return Err(Error::UnsupportedSize {
            n: n as usize,
            max: super::REGISTERS_MAX_N,
        });
    }
    Ok(())
}

/// Invocations a one-sided Jacobi workgroup aims for: [`TARGET_WORKGROUP`], or the value of
/// the environment variable `EIGRAD_GPU_WG_TARGET` (a tuning knob for benchmarks: 1 to 256).
fn one_sided_target_workgroup() -> u32 {
    static TARGET: OnceLock<u32> = OnceLock::new();
    *TARGET.get_or_init(|| {
        std::env::var("EIGRAD_GPU_WG_TARGET")
            .ok()
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|&t| (1..=MAX_WORKGROUP).contains(&t))
            .unwrap_or(TARGET_WORKGROUP)
    })
}

/// The smallest odd number ≥ n: a row stride that spreads a column over distinct banks.
pub(super) fn odd_stride(n: u32) -> u32 {
    n | 1
}

/// Plans `kernel` for size `n` on a device that offers `workgroup_limit` bytes of workgroup
/// memory. `knobs` is required for the Jacobi kernels; `func` is the function code of the
/// spectral kernels and `policy` the degeneracy policy of the derivative kernels.
pub fn plan(
    kernel: Kernel,
    n: u32,
    workgroup_limit: u32,
    knobs: Option<JacobiKnobs>,
    func: u32,
    policy: u32,
) -> Result<Plan> {
    if n == 0 || n as usize > super::MAX_N {
        return Err(Error::UnsupportedSize {
            n: n as usize,
            max: super::MAX_N,
        });
    }
    match kernel {
        Kernel::JacobiEigh | Kernel::JacobiEigvalsh => {
            let knobs = knobs.expect("Jacobi kernels need their knobs");
            let want_vectors = kernel == Kernel::JacobiEigh;
            let m_pad = n + (n & 1);
            let half = m_pad / 2;
            // Enough invocations that each pass over half·n items takes a step or a few.
            let tpm = (half * n).next_power_of_two().clamp(1, MAX_WORKGROUP);
            let mats = (TARGET_WORKGROUP / tpm).max(1);
            let a_len = mats * n * odd_stride(n);
            let small = mats * (5 * half + 2 * n + 4) + 2;
            let vt_len = mats * n * n;
            let bytes_without = WORD * (a_len + small + 1);
            let shared = want_vectors && bytes_without + WORD * vt_len <= workgroup_limit;
            let bytes = if shared {
                WORD * (a_len + small + vt_len)
            } else {
                bytes_without
            };
            fits(n, bytes, workgroup_limit)?;
            let mut constants = vec![
                ("N", n as f64),
                ("M_PAD", m_pad as f64),
                ("MATS", mats as f64),
                ("TPM", tpm as f64),
                ("WG", (mats * tpm) as f64),
                ("A_STRIDE", odd_stride(n) as f64),
                ("A_LEN", a_len as f64),
                ("VT_SHARED", if shared { 1.0 } else { 0.0 }),
                ("VT_LEN", if shared { vt_len as f64 } else { 1.0 }),
                ("PAIRS_LEN", (mats * half) as f64),
                ("MN_LEN", (mats * n) as f64),
            ];
            constants.extend(knobs.two_sided_constants());
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm,
                first_shared: true,
                second_shared: shared,
                constants,
                workgroup_bytes: bytes,
                subgroups: false,
                writable: false,
            })
        }
        Kernel::HestenesEigh | Kernel::HestenesEigvalsh => {
            let knobs = knobs.expect("Jacobi kernels need their knobs");
            let m_pad = n + (n & 1);
            let h = m_pad / 2;
            // Subgroup exchange needs each matrix's h invocations inside one subgroup, which
            // workgroups of a whole number of subgroups give when h divides the subgroup size.
            let sg = knobs.subgroup_size;
            let subgroups = sg > 0 && sg.is_multiple_of(h);
            // Exchange slot: the column as ⌈n/4⌉ vec4s, then its norm; an odd number of vec4s
            // so that the slots of consecutive invocations start in distinct bank groups (the
            // same formula as `SLOT` in hestenes.wgsl).
            let slot = (n.div_ceil(4) + 1) | 1;
            // Per matrix: two exchange buffers of h slots (16-byte vec4s), the ranking keys and
            // tie indices, and six per-matrix flags; per workgroup two more words.
            let per_matrix = 16 * 2 * h * slot + WORD * (2 * m_pad + 6);
            let mut mats = (one_sided_target_workgroup().max(sg) / h).max(1);
            if subgroups {
                mats = mats.next_multiple_of(sg / h);
            }
            let step = if subgroups { sg / h } else { 1 };
            let fixed = 2 * WORD + ALIGN_SLACK;
            while mats > step && per_matrix * mats + fixed > workgroup_limit {
                mats -= step;
            }
            let bytes = per_matrix * mats + fixed;
            fits(n, bytes, workgroup_limit)?;
            // The computed x·y of orthogonal columns carries rounding noise of about eps·‖x‖‖y‖:
            // rotations go down to the relative threshold (the final columns are then as
            // orthogonal as f32 allows), but only cosines clear of that noise keep the sweeps
            // going, or they might never end.
            let stop = knobs
                .rel_threshold
                .max(ONE_SIDED_TOL_FACTOR * (m_pad as f32).sqrt() * f32::EPSILON);
            let constants = vec![
                ("N", n as f64),
                ("M_PAD", m_pad as f64),
                ("H", h as f64),
                ("MATS", mats as f64),
                ("WG", (mats * h) as f64),
                ("X_ROWS", (2 * mats * h) as f64),
                ("MN_LEN", (mats * m_pad) as f64),
                ("MAX_SWEEPS", knobs.max_sweeps as f64),
                ("ROT_TOL", knobs.rel_threshold as f64),
                ("STOP_TOL", stop as f64),
                ("LOWER", if knobs.lower { 1.0 } else { 0.0 }),
            ];
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm: h,
                first_shared: true,
                second_shared: true,
                constants,
                workgroup_bytes: bytes,
                subgroups,
                writable: false,
            })
        }
        Kernel::RegistersEigh | Kernel::RegistersEigvalsh | Kernel::RegistersVjp => {
            registers_fit(n)?;
            // One invocation per matrix and no workgroup memory.
            let mats = TARGET_WORKGROUP;
            let mut constants = vec![("N", n as f64), ("WG", mats as f64)];
            if kernel == Kernel::RegistersVjp {
                constants.push(("POLICY", policy as f64));
            } else {
                let knobs = knobs.expect("Jacobi kernels need their knobs");
                constants.extend(knobs.two_sided_constants());
            }
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm: 1,
                first_shared: true,
                second_shared: true,
                constants,
                workgroup_bytes: 0,
                subgroups: false,
                writable: false,
            })
        }
        Kernel::TridiagonalEigvalsh | Kernel::TridiagonalEigh => {
            // One invocation per row (and then per eigenvalue), rows in registers. Per matrix:
            // three vectors of ⌈n/4⌉ vec4s, three flags, the QL's block and failure flag and the
            // multisection's n counts; with eigenvectors also T's d and e and the rotation log
            // (vec2s), ⌈n/4⌉ vec4s' worth each, and per staged matrix its eigenvectors with an
            // odd column stride. Per workgroup one word, and with eigenvalues only the QL
            // arrays of one matrix and a word of staging (declared, never used).
            let vectors = kernel == Kernel::TridiagonalEigh;
            let r4 = n.div_ceil(4);
            let np = odd_stride(n);
            let ql = 4 * r4;
            let per_matrix = WORD * (3 * 4 * r4 + 6 + n + if vectors { 4 * ql } else { 0 });
            let staged = if vectors { WORD * n * np } else { WORD };
            let fixed = ALIGN_SLACK + WORD * if vectors { 1 } else { 1 + 4 * ql };
            // Stage 0: no staging (UNSTAGED, the one word of qsh still declared).
            let bytes_for = |mats: u32, stage: u32| {
                per_matrix * mats + if stage == 0 { WORD } else { staged * stage } + fixed
            };
            // With eigenvectors up to 256 invocations by default (`JacobiKnobs::workgroup`), so
            // that the chains of as many matrices as fit share one warp (the chains are the
            // QL's sequential part); the staging takes as many of them per pass as then fit,
            // and where not even one matrix's staging fits (n ≥ 60 under 16 KiB), none.
            let target = match knobs.map_or(0, |k| k.workgroup) {
                0 => MAX_WORKGROUP,
                w => w.min(MAX_WORKGROUP),
            };
            let most = if vectors {
                (target / n).max(1)
            } else {
                (TARGET_WORKGROUP / n).max(1)
            };
            let unstaged = vectors && bytes_for(1, 1) > workgroup_limit;
            let least_stage = u32::from(!unstaged);
            let mut mats = most;
            while mats > 1 && bytes_for(mats, least_stage) > workgroup_limit {
                mats -= 1;
            }
            let mut stage = if vectors && !unstaged {
                mats
            } else {
                least_stage
            };
            while stage > 1 && bytes_for(mats, stage) > workgroup_limit {
                stage -= 1;
            }
            let bytes = bytes_for(mats, stage);
            fits(n, bytes, workgroup_limit)?;
            let lower = knobs.is_some_and(|k| k.lower);
            let mut constants = vec![
                ("N", n as f64),
                ("MATS", mats as f64),
                ("WG", (mats * n) as f64),
                ("MN_LEN", (mats * n) as f64),
                ("LOWER", if lower { 1.0 } else { 0.0 }),
            ];
            if vectors {
                let knobs = knobs.expect("the tridiagonal eigh kernel needs the Jacobi knobs");
                // The rotation budget: the sweep cap times a Jacobi sweep's n(n − 1)/2.
                let budget = u64::from(knobs.max_sweeps) * u64::from(n * (n - 1) / 2);
                constants.extend([
                    ("NP", np as f64),
                    ("UNSTAGED", if unstaged { 1.0 } else { 0.0 }),
                    ("STAGE", stage.max(1) as f64),
                    ("PASSES", mats.div_ceil(stage.max(1)) as f64),
                    ("Q_LEN", (stage * n * np).max(1) as f64),
                    ("QL_MATS", mats as f64),
                    ("MAX_ROT", budget.min(u64::from(u32::MAX)) as f64),
                    ("TOL", knobs.rel_threshold as f64),
                    ("FLOOR", knobs.rot_floor as f64),
                ]);
            }
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm: n,
                first_shared: true,
                second_shared: true,
                constants,
                workgroup_bytes: bytes,
                subgroups: false,
                writable: false,
            })
        }
        Kernel::EighRefine
        | Kernel::EighVjp
        | Kernel::EighJvp
        | Kernel::SpectralApply
        | Kernel::SpectralVjp => {
            // T×T invocations per matrix, each owning a 4×4 register tile of every product
            // (shaders/dense.wgsl); several matrices per workgroup at small n. Each N×N buffer
            // is 4T rows of SV vec4s (SV odd; T and SV are generated constants of the source).
            let tiles = n.div_ceil(4);
            let tpm = tiles * tiles;
            let per_buffer = VEC4 * 4 * tiles * odd_stride(tiles);
            // V and W in workgroup memory with as many matrices per workgroup as fit (up to
            // the target); spectral_apply needs no second buffer. Where not even one matrix's
            // V fits (n ≥ 61 under 16 KiB), V is read from global memory and W lives there
            // too, except for the refinement, which rewrites V in place (the workgroup array
            // then shrinks to four vec4s).
            let second = kernel != Kernel::SpectralApply;
            // Per matrix: λ, the ok flag, and the refinement's prescaling exponent.
            let small = n + 1 + u32::from(kernel == Kernel::EighRefine);
            let bytes_for = |mats: u32, buffers: u32| {
                buffers * mats * per_buffer
                    + WORD * mats * small
                    + 4 * VEC4 * u32::from(buffers == 0)
            };
            let mut mats = (TARGET_WORKGROUP / tpm).max(1);
            let v_shared = kernel == Kernel::EighRefine || bytes_for(1, 1) <= workgroup_limit;
            while v_shared && mats > 1 && bytes_for(mats, 1 + u32::from(second)) > workgroup_limit {
                mats /= 2;
            }
            let shared = v_shared && second && bytes_for(mats, 2) <= workgroup_limit;
            let buffers = u32::from(v_shared) + u32::from(shared);
            let bytes = bytes_for(mats, buffers);
            fits(n, bytes, workgroup_limit)?;
            let spectral = matches!(kernel, Kernel::SpectralApply | Kernel::SpectralVjp);
            let mut constants = vec![
                ("N", n as f64),
                ("MATS", mats as f64),
                ("TPM", tpm as f64),
                ("WG", (mats * tpm) as f64),
                ("V_SHARED", if v_shared { 1.0 } else { 0.0 }),
                ("W_SHARED", if shared { 1.0 } else { 0.0 }),
                ("SH_MATS", (buffers.max(1) * mats) as f64),
                ("POLICY", policy as f64),
                ("MN_LEN", (mats * n) as f64),
            ];
            if spectral {
                constants.push(("FUNC", func as f64));
            }
            if kernel == Kernel::EighRefine {
                let lower = knobs.is_some_and(|k| k.lower);
                constants.push(("LOWER", if lower { 1.0 } else { 0.0 }));
            }
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm,
                first_shared: v_shared,
                second_shared: shared,
                constants,
                workgroup_bytes: bytes,
                subgroups: false,
                writable: false,
            })
        }
        Kernel::PowerIteration | Kernel::PowerIterationVjp => {
            let tpm = n.next_power_of_two();
            let mats = (TARGET_WORKGROUP / tpm).max(1);
            // The matrix in workgroup memory where it fits (else in global memory: power.wgsl).
            let bytes_for = |a_len: u32| WORD * (a_len + 2 * mats * n + 8 * mats + 2);
            let shared = bytes_for(mats * n * odd_stride(n)) <= workgroup_limit;
            let a_len = if shared { mats * n * odd_stride(n) } else { 1 };
            let bytes = bytes_for(a_len);
            fits(n, bytes, workgroup_limit)?;
            let mut constants = vec![
                ("N", n as f64),
                ("MATS", mats as f64),
                ("TPM", tpm as f64),
                ("WG", (mats * tpm) as f64),
                ("STRIDE", odd_stride(n) as f64),
                ("A_SHARED", if shared { 1.0 } else { 0.0 }),
                ("A_LEN", a_len as f64),
                ("MN_LEN", (mats * n) as f64),
                ("START_STEP", crate::spectral::POWER_START_STEP),
            ];
            if kernel == Kernel::PowerIteration {
                let lower = knobs.is_some_and(|k| k.lower);
                constants.push(("LOWER", if lower { 1.0 } else { 0.0 }));
            }
            Ok(Plan {
                kernel,
                n,
                mats,
                tpm,
                first_shared: shared,
                second_shared: false,
                constants,
                workgroup_bytes: bytes,
                subgroups: false,
                writable: false,
            })
        }
    }
}
