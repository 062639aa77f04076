// Reading the input matrices of the forward kernels (jacobi.wgsl, power_iteration.wgsl), which
// declare `a_in` [batch][N][N]: the symmetric form of each matrix, its largest magnitude (for
// exact power-of-two prescaling) and whether it had a non-finite entry.

override LOWER: bool;  // read only the lower triangle (else symmetrise)

var<workgroup> max_bits: array<atomic<u32>, MATS>;   // max |a| per matrix, as bits
var<workgroup> bad_input: array<atomic<u32>, MATS>;  // non-finite entry seen

// Entry (r, c) of the symmetric matrix stored from `base`: (A + Aᵀ)/2, or the lower triangle.
fn stored_entry(base: u32, r: u32, c: u32) -> f32 {
    let upper = a_in[base + c * N + r];
    let lower = a_in[base + r * N + c];
    if (LOWER) {
        return select(upper, lower, r >= c);
    }
    return 0.5 * lower + 0.5 * upper;
}

// Clears matrix mi's record (before a barrier and the first `admit`).
fn admit_reset(mi: u32) {
    atomicStore(&max_bits[mi], 0u);
    atomicStore(&bad_input[mi], 0u);
}

// Records entry x of matrix mi and returns it, or 0 when it is not finite.
fn admit(mi: u32, x: f32) -> f32 {
    if (!is_finite_f32(x)) {
        atomicOr(&bad_input[mi], 1u);
        return 0.0;
    }
    atomicMax(&max_bits[mi], bitcast<u32>(abs(x)));
    return x;
}

// After a barrier: whether matrix mi had a non-finite entry.
fn admitted_bad(mi: u32) -> bool {
    return atomicLoad(&bad_input[mi]) != 0u;
}

// After a barrier: the exponent e with max |a| = f·2^e, f in [0.5, 1).
fn admitted_exponent(mi: u32) -> i32 {
    return exponent_of(bitcast<f32>(atomicLoad(&max_bits[mi])));
}
