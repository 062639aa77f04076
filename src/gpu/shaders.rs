//! WGSL sources: one file per entry point under `shaders/`, shared helpers in their own files,
//! assembled here by concatenation (WGSL has no includes). The generated text: the `MAX_N`
//! constant, so that the largest size is defined once, in Rust; for the GEMM-tiled kernels
//! (dense.wgsl) their tile count and buffer row stride; for the kernels that keep
//! vectors in named registers `R4 = ⌈n/4⌉` and the `//@for q` blocks repeated R4 times; and for
//! the register kernel of the smallest sizes its written-out rotations (src/gpu/registers.rs).

use super::{registers, MAX_N};

const COMMON: &str = include_str!("../../shaders/common.wgsl");
const ADMIT: &str = include_str!("../../shaders/admit.wgsl");
const STORED: &str = include_str!("../../shaders/stored.wgsl");
const JACOBI: &str = include_str!("../../shaders/jacobi.wgsl");
const HESTENES: &str = include_str!("../../shaders/hestenes.wgsl");
const SWEEPS: &str = include_str!("../../shaders/sweeps.wgsl");
const DENSE: &str = include_str!("../../shaders/dense.wgsl");
const SPECTRAL: &str = include_str!("../../shaders/spectral.wgsl");
const POWER: &str = include_str!("../../shaders/power.wgsl");
const PROJECT: &str = include_str!("../../shaders/project.wgsl");
const REGISTERS: &str = include_str!("../../shaders/registers.wgsl");
const VJP_BINDINGS: &str = include_str!("../../shaders/vjp_bindings.wgsl");
const FORWARD_BINDINGS: &str = include_str!("../../shaders/forward_bindings.wgsl");
const TRIDIAGONAL: &str = include_str!("../../shaders/tridiagonal.wgsl");

/// The kernels (one WGSL entry point each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Eigenvalues, eigenvectors and status (`shaders/jacobi_eigh.wgsl`).
    JacobiEigh,
    /// Eigenvalues and status only (`shaders/jacobi_eigvalsh.wgsl`).
    JacobiEigvalsh,
    /// Eigenvalues, eigenvectors and status by one-sided Jacobi (`shaders/hestenes_eigh.wgsl`).
    HestenesEigh,
    /// Eigenvalues and status only by one-sided Jacobi (`shaders/hestenes_eigvalsh.wgsl`).
    HestenesEigvalsh,
    /// Eigenvalues, eigenvectors and status of the smallest matrices, one invocation per matrix
    /// with the matrix in registers (`shaders/registers_eigh.wgsl`).
    RegistersEigh,
    /// Eigenvalues and status only, one invocation per matrix (`shaders/registers_eigvalsh.wgsl`).
    RegistersEigvalsh,
    /// The reverse rule of the smallest matrices, one invocation per matrix
    /// (`shaders/registers_vjp.wgsl`).
    RegistersVjp,
    /// Eigenvalues and status only by Householder tridiagonalisation and bisection
    /// (`shaders/tridiagonal_eigvalsh.wgsl`).
    TridiagonalEigvalsh,
    /// Eigenvalues, eigenvectors and status by Householder tridiagonalisation and implicit QL
    /// (`shaders/tridiagonal_eigh.wgsl`).
    TridiagonalEigh,
    /// First-order refinement of the one-sided kernel's eigenvectors with the original matrix
    /// (`shaders/eigh_refine.wgsl`).
    EighRefine,
    /// The reverse rule (`shaders/eigh_vjp.wgsl`).
    EighVjp,
    /// The forward rule (`shaders/eigh_jvp.wgsl`).
    EighJvp,
    /// `f(A) = V f(Λ) Vᵀ` from a decomposition (`shaders/spectral_apply.wgsl`).
    SpectralApply,
    /// The Daleckii–Krein reverse rule (`shaders/spectral_vjp.wgsl`).
    SpectralVjp,
    /// The dominant eigenpair by power iteration (`shaders/power_iteration.wgsl`).
    PowerIteration,
    /// Its implicit VJP (`shaders/power_iteration_vjp.wgsl`).
    PowerIterationVjp,
}

impl Kernel {
    /// Every kernel, for validation tests.
    pub const ALL: [Kernel; 16] = [
        Kernel::JacobiEigh,
        Kernel::JacobiEigvalsh,
        Kernel::HestenesEigh,
        Kernel::HestenesEigvalsh,
        Kernel::RegistersEigh,
        Kernel::RegistersEigvalsh,
        Kernel::RegistersVjp,
        Kernel::TridiagonalEigvalsh,
        Kernel::TridiagonalEigh,
        Kernel::EighRefine,
        Kernel::EighVjp,
        Kernel::EighJvp,
        Kernel::SpectralApply,
        Kernel::SpectralVjp,
        Kernel::PowerIteration,
        Kernel::PowerIterationVjp,
    ];

    /// The entry point's name (also the file's stem).
    pub fn entry_point(self) -> &'static str {
        match self {
            Kernel::JacobiEigh => "jacobi_eigh",
            Kernel::JacobiEigvalsh => "jacobi_eigvalsh",
            Kernel::HestenesEigh => "hestenes_eigh",
            Kernel::HestenesEigvalsh => "hestenes_eigvalsh",
            Kernel::RegistersEigh => "registers_eigh",
            Kernel::RegistersEigvalsh => "registers_eigvalsh",
            Kernel::RegistersVjp => "registers_vjp",
            Kernel::TridiagonalEigvalsh => "tridiagonal_eigvalsh",
            Kernel::TridiagonalEigh => "tridiagonal_eigh",
            Kernel::EighRefine => "eigh_refine",
            Kernel::EighVjp => "eigh_vjp",
            Kernel::EighJvp => "eigh_jvp",
            Kernel::SpectralApply => "spectral_apply",
            Kernel::SpectralVjp => "spectral_vjp",
            Kernel::PowerIteration => "power_iteration",
            Kernel::PowerIterationVjp => "power_iteration_vjp",
        }
    }

    /// The shared helper files and the entry file, in order.
    fn parts(self) -> &'static [&'static str] {
        match self {
            Kernel::JacobiEigh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                SWEEPS,
                JACOBI,
                include_str!("../../shaders/jacobi_eigh.wgsl"),
            ],
            Kernel::JacobiEigvalsh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                SWEEPS,
                JACOBI,
                include_str!("../../shaders/jacobi_eigvalsh.wgsl"),
            ],
            Kernel::HestenesEigh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                SWEEPS,
                HESTENES,
                include_str!("../../shaders/hestenes_eigh.wgsl"),
            ],
            Kernel::HestenesEigvalsh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                SWEEPS,
                HESTENES,
                include_str!("../../shaders/hestenes_eigvalsh.wgsl"),
            ],
            Kernel::RegistersEigh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                REGISTERS,
                include_str!("../../shaders/registers_eigh.wgsl"),
            ],
            Kernel::RegistersEigvalsh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                REGISTERS,
                include_str!("../../shaders/registers_eigvalsh.wgsl"),
            ],
            Kernel::RegistersVjp => &[
                COMMON,
                VJP_BINDINGS,
                include_str!("../../shaders/registers_vjp.wgsl"),
            ],
            Kernel::TridiagonalEigvalsh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                TRIDIAGONAL,
                include_str!("../../shaders/tridiagonal_eigvalsh.wgsl"),
            ],
            Kernel::TridiagonalEigh => &[
                COMMON,
                FORWARD_BINDINGS,
                STORED,
                ADMIT,
                TRIDIAGONAL,
                include_str!("../../shaders/tridiagonal_eigh.wgsl"),
            ],
            Kernel::EighRefine => &[
                COMMON,
                STORED,
                DENSE,
                include_str!("../../shaders/eigh_refine.wgsl"),
            ],
            Kernel::EighVjp => &[
                COMMON,
                VJP_BINDINGS,
                DENSE,
                include_str!("../../shaders/eigh_vjp.wgsl"),
            ],
            Kernel::EighJvp => &[
                COMMON,
                DENSE,
                PROJECT,
                include_str!("../../shaders/eigh_jvp.wgsl"),
            ],
            Kernel::SpectralApply => &[
                COMMON,
                DENSE,
                SPECTRAL,
                include_str!("../../shaders/spectral_apply.wgsl"),
            ],
            Kernel::SpectralVjp => &[
                COMMON,
                DENSE,
                SPECTRAL,
                PROJECT,
                include_str!("../../shaders/spectral_vjp.wgsl"),
            ],
            Kernel::PowerIteration => &[
                COMMON,
                POWER,
                STORED,
                ADMIT,
                include_str!("../../shaders/power_iteration.wgsl"),
            ],
            Kernel::PowerIterationVjp => &[
                COMMON,
                POWER,
                include_str!("../../shaders/power_iteration_vjp.wgsl"),
            ],
        }
    }

    /// The assembled WGSL module of this kernel for matrix size `n`, exchanging data through
    /// subgroup operations (`subgroups`, one-sided kernels only) or workgroup memory; the
    /// derivative kernels' (dense.wgsl's) workgroup array sized for their N×N buffers when
    /// `dense_shared`, else to one vec4 per matrix (no buffer lives there).
    pub fn source(self, n: u32, subgroups: bool, dense_shared: bool) -> String {
        let one_sided = matches!(self, Kernel::HestenesEigh | Kernel::HestenesEigvalsh);
        let subgroups = subgroups && one_sided;
        // The kernels that keep vectors in named vec4 registers, written out by `unroll`.
        let unrolled = one_sided
            || matches!(
                self,
                Kernel::TridiagonalEigvalsh | Kernel::TridiagonalEigh | Kernel::PowerIteration
            );
        // (naga 30 takes the subgroup built-ins without an `enable subgroups;` directive, which
        // it rejects; the device needs wgpu::Features::SUBGROUP.)
        let mut s = format!("const MAX_N: u32 = {MAX_N}u;\n");
        let r4 = n.div_ceil(4);
        if unrolled {
            s.push_str(&format!("const R4: u32 = {r4}u;\n"));
        }
        if self.parts().contains(&DENSE) {
            // dense.wgsl's tiles per dimension and the row stride of its buffers, in vec4s.
            let sv = super::plan::odd_stride(r4);
            s.push_str(&format!("const T: u32 = {r4}u;\nconst SV: u32 = {sv}u;\n"));
            let (sh_t, sh_sv) = if dense_shared { (r4, sv) } else { (1, 1) };
            s.push_str(&format!(
                "const SH_T: u32 = {sh_t}u;\nconst SH_SV: u32 = {sh_sv}u;\n"
            ));
        }
        let registers = matches!(
            self,
            Kernel::RegistersEigh | Kernel::RegistersEigvalsh | Kernel::RegistersVjp
        );
        for part in self.parts() {
            if registers {
                s.push_str(&registers::expand(part, n, self == Kernel::RegistersEigh));
            } else if unrolled {
                let part = unroll_rotations(part, n);
                s.push_str(&unroll(&select_branches(&part, subgroups), r4));
            } else {
                s.push_str(part);
            }
            s.push('\n');
        }
        s
    }
}

/// Keeps the lines of `//@if sg` … `//@else` … `//@fi` blocks that apply: the first branch when
/// `sg` (subgroup exchange), the second otherwise (blocks do not nest).
fn select_branches(src: &str, sg: bool) -> String {
    let mut out = String::with_capacity(src.len());
    // None outside a block, Some(keep) inside one.
    let mut keep: Option<bool> = None;
    for line in src.lines() {
        match (line.trim(), keep) {
            ("//@if sg", None) => keep = Some(sg),
            ("//@else", Some(k)) => keep = Some(!k),
            ("//@fi", Some(_)) => keep = None,
            (_, Some(false)) => {}
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Repeats each block of lines between a `marker` line and an `//@end` line (blocks do not nest)
/// once per item of `items`, with every `(pattern, text)` pair that `subst` gives for the item
/// replaced in its lines.
fn repeat_blocks<I: Copy>(
    src: &str,
    marker: &str,
    items: impl Iterator<Item = I> + Clone,
    subst: impl Fn(I) -> Vec<(&'static str, String)>,
) -> String {
    let mut out = String::with_capacity(src.len() * 2);
    let mut block: Option<Vec<&str>> = None;
    for line in src.lines() {
        match (line.trim(), block.as_mut()) {
            (m, None) if m == marker => block = Some(Vec::new()),
            ("//@end", Some(lines)) => {
                for item in items.clone() {
                    let pairs = subst(item);
                    for l in lines.iter() {
                        let l = pairs
                            .iter()
                            .fold(l.to_string(), |l, (p, t)| l.replace(p, t));
                        out.push_str(&l);
                        out.push('\n');
                    }
                }
                block = None;
            }
            (_, Some(lines)) => lines.push(line),
            (_, None) => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Repeats each block of lines between a `//@for q` line and an `//@end` line `count` times,
/// with `$q` replaced by 0, 1, …, `count − 1` (blocks do not nest).
fn unroll(src: &str, count: u32) -> String {
    repeat_blocks(src, "//@for q", 0..count, |q| vec![("$q", q.to_string())])
}

/// Rotations per guard of [`unroll_rotations`]: the tridiagonal kernel skips a group of logged
/// rotations wholly outside the QL iteration's block. Per the QL statistics of the notebook
/// ("v5g"), groups of 8 leave about 0.92 / 0.80 / 0.74 of the application's instructions at
/// n = 16 / 32 / 64 (a guard costs about six), groups of 4 about 0.97 / 0.89 / 0.86.
const ROTATION_GROUP: u32 = 8;

/// Repeats each block of lines between a `//@for j desc` line and an `//@end` line once per
/// pair of neighbouring components of an `n`-vector held as named vec4s `q0`, `q1`, …: for
/// j = n − 2 down to 0, with `$j` replaced by j, `$a` by component j (`q{j/4}.x` …) and `$b` by
/// component j + 1 (blocks do not nest). The j are visited in groups of [`ROTATION_GROUP`]
/// (equal j / `ROTATION_GROUP`): `$lo` and `$hi` are the lowest and highest j of j's group, a
/// line starting with `//@first ` is kept (the marker removed) only for the group's first j
/// (its highest) and one starting with `//@last ` only for its last, so that a group's
/// rotations can share a guard.
fn unroll_rotations(src: &str, n: u32) -> String {
    const COMPONENTS: [&str; 4] = ["x", "y", "z", "w"];
    const DROP: &str = "//@drop ";
    let component = |j: u32| format!("q{}.{}", j / 4, COMPONENTS[(j % 4) as usize]);
    let pairs = (0..n.saturating_sub(1)).rev();
    let top = n.saturating_sub(2);
    let out = repeat_blocks(src, "//@for j desc", pairs, |j| {
        let lo = j / ROTATION_GROUP * ROTATION_GROUP;
        let hi = (lo + ROTATION_GROUP - 1).min(top);
        let keep = |yes: bool| if yes { String::new() } else { DROP.to_string() };
        vec![
            ("$j", j.to_string()),
            ("$a", component(j)),
            ("$b", component(j + 1)),
            ("$lo", lo.to_string()),
            ("$hi", hi.to_string()),
            ("//@first ", keep(j == hi)),
            ("//@last ", keep(j == lo)),
        ]
    });
    let mut kept = String::with_capacity(out.len());
    for line in out.lines().filter(|l| !l.trim_start().starts_with(DROP)) {
        kept.push_str(line);
        kept.push('\n');
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unroll_repeats_marked_blocks_with_the_index() {
        let src = "a\n  //@for q\n  x$q = $qu;\n//@end\nb\n";
        assert_eq!(unroll(src, 3), "a\n  x0 = 0u;\n  x1 = 1u;\n  x2 = 2u;\nb\n");
        assert_eq!(unroll(src, 0), "a\nb\n");
    }

    #[test]
    fn rotation_blocks_visit_neighbouring_components_downwards() {
        let src = "a\n//@for j desc\nr($ju, $a, $b);\n//@end\n//@for q\nb$q\n//@end\n";
        assert_eq!(
            unroll_rotations(src, 6),
            "a\nr(4u, q1.x, q1.y);\nr(3u, q0.w, q1.x);\nr(2u, q0.z, q0.w);\n\
             r(1u, q0.y, q0.z);\nr(0u, q0.x, q0.y);\n//@for q\nb$q\n//@end\n"
        );
        assert_eq!(unroll_rotations(src, 1), "a\n//@for q\nb$q\n//@end\n");
    }

    #[test]
    fn rotation_groups_share_their_first_and_last_lines() {
        let src = "//@for j desc\n  //@first if g($lou, $hiu) {\nr($ju);\n  //@last }\n//@end\nz\n";
        let rs =
            |js: std::ops::Range<u32>| js.rev().map(|j| format!("r({j}u);\n")).collect::<String>();
        assert_eq!(
            unroll_rotations(src, 11),
            format!(
                "  if g(8u, 9u) {{\n{}  }}\n  if g(0u, 7u) {{\n{}  }}\nz\n",
                rs(8..10),
                rs(0..8)
            )
        );
        assert_eq!(
            unroll_rotations(src, 2),
            "  if g(0u, 0u) {\nr(0u);\n  }\nz\n"
        );
    }

    #[test]
    fn conditional_blocks_keep_one_branch() {
        let src = "a\n//@if sg\nb\n//@else\nc\n//@fi\nd\n";
        assert_eq!(select_branches(src, true), "a\nb\nd\n");
        assert_eq!(select_branches(src, false), "a\nc\nd\n");
    }

    #[test]
    fn every_unrolled_source_is_fully_expanded() {
        for (n, sg) in (1..=MAX_N as u32).flat_map(|n| [(n, false), (n, true)]) {
            for k in [
                Kernel::HestenesEigh,
                Kernel::HestenesEigvalsh,
                Kernel::TridiagonalEigvalsh,
                Kernel::TridiagonalEigh,
                Kernel::PowerIteration,
            ] {
                let s = k.source(n, sg, true);
                for l in s.lines().map(str::trim) {
                    assert!(!l.starts_with("//@"), "n={n}: marker line {l}");
                    assert!(l.starts_with("//") || !l.contains('$'), "n={n}: {l}");
                }
            }
        }
    }
}
