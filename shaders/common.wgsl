// Helpers shared by every eigrad kernel. The host prepends a generated line defining
// `const MAX_N: u32` (the largest supported matrix size, fixed in Rust as gpu::MAX_N).

// Per-dispatch parameters (one uniform buffer per dispatch).
struct Params {
    // Matrices in this dispatch (the chunk); workgroups past it idle.
    batch: u32,
    // Workgroups along x; the linear workgroup index is wid.x + wid.y * groups_x.
    groups_x: u32,
    // Kernel-specific real parameter (the derivative's mask tolerance or Lorentzian eps).
    tol: f32,
    // Kernel-specific flags (bit 0: λ̄ given, bit 1: V̄ given).
    flags: u32,
    // Bit patterns of NaN and +inf, passed at run time so no compiler folds them away.
    nan_bits: u32,
    inf_bits: u32,
    // Kernel-specific integer parameter.
    extra: u32,
    pad: u32,
}

// 1 − GAUGE_TIE (src/eigh.rs): the sign gauge makes the first component whose magnitude is at
// least GAUGE_FLOOR times the largest positive (components tied up to rounding: the first decides).
const GAUGE_FLOOR: f32 = 0.99609375;

// True when x is neither NaN nor ±inf (exponent bits not all ones).
fn is_finite_f32(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u;
}

// Whether x, computed on a matrix prescaled by 2^−e, is beyond the f32 range once scaled back
// (|x|·2^e > f32::MAX): the eigenvalues of a matrix with finite entries can be, by up to a
// factor n. Decided on the prescaled side, where the comparison is exact.
fn beyond_f32(x: f32, e: i32) -> bool {
    return e > 0 && abs(x) > ldexp(bitcast<f32>(0x7f7fffffu), -e);
}

// (a + b)/2 without overflow: a + b overflows only when a and b have one sign and are both
// above f32::MAX/2, and then a − (a − b)/2 is used, whose difference cannot overflow for one
// sign. (A driver may evaluate 0.5·a + 0.5·b as 0.5·(a + b), as Mesa's llvmpipe does, so that
// form is no remedy.)
fn mean_of(a: f32, b: f32) -> f32 {
    let m = 0.5 * (a + b);
    let finite = is_finite_f32(a) && is_finite_f32(b);
    return select(m, a - 0.5 * (a - b), finite && !is_finite_f32(m));
}

// The exponent e with x = f·2^e, f in [0.5, 1), for finite x ≥ 0 (subnormals count as −126).
fn exponent_of(x: f32) -> i32 {
    let e = i32((bitcast<u32>(x) >> 23u) & 0xffu);
    if (e == 0) {
        return -126;
    }
    return e - 126;
}

// v with component c (< 4) replaced by s. Kernels set components this way rather than by
// `v[c] = s` with a run-time c: indexing a function-local variable at run time makes it
// addressable (an OpAccessChain in SPIR-V), which a driver may answer by keeping the variable in
// memory instead of registers (tests/shader_validation.rs checks that no kernel does it).
fn with_component(v: vec4<f32>, c: u32, s: f32) -> vec4<f32> {
    return select(v, vec4<f32>(s), vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(c));
}

// The linear workgroup index of a 2-D dispatch.
fn workgroup_index(wid: vec3<u32>, groups_x: u32) -> u32 {
    return wid.x + wid.y * groups_x;
}

// The derivative factor F for Δ = λ_j − λ_i under a degeneracy policy
// (0: mask with absolute threshold `thr`, 1: Lorentzian with `eps`, 2: propagate),
// antisymmetric in Δ. Division by an exact zero is made explicit (±inf) because Vulkan leaves it
// undefined.
fn degeneracy_factor(policy: u32, delta: f32, thr: f32, eps: f32, inf: f32) -> f32 {
    if (policy == 0u) {
        if (abs(delta) <= thr) {
            return 0.0;
        }
        return 1.0 / delta;
    }
    if (policy == 1u) {
        // Δ/(Δ² + eps), or where Δ² ≥ eps (or overflows) the same as 1/(Δ + eps/Δ), which
        // does not overflow: Δ² is beyond f32 from |Δ| ≈ 1.8e19, and Δ/inf would be 0.
        if (delta * delta < eps) {
            return delta / (delta * delta + eps);
        }
        return 1.0 / (delta + eps / delta);
    }
    if (delta == 0.0) {
        return inf;
    }
    return 1.0 / delta;
}

// The Jacobi rotation (c, s, t = s/c) that zeroes the off-diagonal of the symmetric 2×2 matrix
// [[α, γ], [γ, β]] (γ ≠ 0): Golub & Van Loan sym.schur2 with the overflow-safe t ≈ 1/(2τ) branch,
// and c² + s² = 1 to within rounding. Two-sided Jacobi takes (a_pp, a_qq, a_pq), one-sided the
// Gram entries (‖x‖², ‖y‖², x·y).
fn rotation(alpha: f32, beta: f32, gamma: f32) -> vec3<f32> {
    let tau = (beta - alpha) / (2.0 * gamma);
    var t: f32;
    if (abs(tau) > 1e18) {
        t = 0.5 / tau;
    } else {
        t = sign(tau) / (abs(tau) + sqrt(1.0 + tau * tau));
    }
    if (tau == 0.0) {
        t = 1.0;
    }
    let c = inverseSqrt(1.0 + t * t);
    let s = t * c;
    // One Newton step on c² + s² = 1, added to c and s: inverseSqrt may be a few ulp off on
    // GPUs, and a systematic norm error would otherwise compound over hundreds of rotations.
    // (Added rather than as the factor 1.5 − (c² + s²)/2, which lies on a grid of 2⁻²³ above 1:
    // on llvmpipe the two-sided kernel's ‖VᵀV − I‖ at n = 64 went from 4.2e-5 to 2.4e-5.)
    let h = 0.5 * fma(-c, c, fma(-s, s, 1.0));
    return vec3<f32>(fma(c, h, c), fma(s, h, s), t);
}
