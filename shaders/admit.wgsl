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

// What one invocation has seen of its matrix's entries: the largest magnitude and whether one
// was not finite. Kept locally and recorded with `admit_flush`, one atomic each per invocation
// (an atomic per entry would queue n² operations on one workgroup address).
struct Admitted {
    big: f32,
    bad: bool,
}

fn admitted_none() -> Admitted {
    return Admitted(0.0, false);
}

// Notes entry x in `seen` and returns it, or 0 when it is not finite.
fn admit(seen: ptr<function, Admitted>, x: f32) -> f32 {
    if (!is_finite_f32(x)) {
        (*seen).bad = true;
        return 0.0;
    }
    (*seen).big = max((*seen).big, abs(x));
    return x;
}

// Records what the invocation saw into matrix mi's record (before a barrier and the
// `admitted_*` reads).
fn admit_flush(mi: u32, seen: Admitted) {
    atomicMax(&max_bits[mi], bitcast<u32>(seen.big));
    if (seen.bad) {
        atomicOr(&bad_input[mi], 1u);
    }
}

// After a barrier: whether matrix mi had a non-finite entry.
fn admitted_bad(mi: u32) -> bool {
    return atomicLoad(&bad_input[mi]) != 0u;
}

// After a barrier: the exponent e with max |a| = f·2^e, f in [0.5, 1).
fn admitted_exponent(mi: u32) -> i32 {
    return exponent_of(bitcast<f32>(atomicLoad(&max_bits[mi])));
}
