// Admitting the input matrices of the forward kernels (jacobi.wgsl, hestenes.wgsl,
// power_iteration.wgsl; entries read through stored.wgsl): each matrix's largest magnitude (for
// exact power-of-two prescaling) and whether it had a non-finite entry.

var<workgroup> max_bits: array<atomic<u32>, MATS>;   // max |a| per matrix, as bits
var<workgroup> bad_input: array<atomic<u32>, MATS>;  // non-finite entry seen

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
