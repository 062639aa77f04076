// Batched two-sided Jacobi with one invocation per matrix and the whole matrix in registers, for
// the smallest sizes (n ≤ gpu::REGISTERS_MAX_N): the forward kernels' v4 body.
//
// Every entry of A (its upper triangle: a{i}_{j}, i ≤ j) and of V (v{i}_{j}: component i of
// vector j) is a named variable, and the host writes every rotation of a sweep out with fixed
// indices (the `//@gen` lines, expanded by src/gpu/registers.rs), so nothing is indexed at run
// time: no workgroup memory, no barrier, no local memory, and each matrix sweeps on its own.
// Ordering: round-robin as in jacobi.wgsl (M_PAD − 1 steps of disjoint pairs, so the rotations
// of a step are independent instructions), with its rotation thresholds. A matrix sweeps until a
// sweep performs no rotation, or MAX_SWEEPS; one still rotating in the last allowed sweep gets
// status 2 and NaN outputs.
// As in jacobi.wgsl: the input is prescaled by an exact power of two so its largest entry lies in
// [0.5, 1); eigenvalues ascend (ties by index); each eigenvector's largest component (the first
// within GAUGE_FLOOR of it) is positive; a diagonal input performs no rotation and is returned
// exactly.

override N: u32;             // matrix size, 1..=REGISTERS_MAX_N (the generated code fixes it)
override WG: u32;            // invocations (matrices) per workgroup
override MAX_SWEEPS: u32;    // sweep cap
override REL_THRESHOLD: f32; // rotate while |a_pq| > REL_THRESHOLD·√(|a_pp a_qq|) ...
override ROT_FLOOR: f32;     // ... and |a_pq| > ROT_FLOOR (relative to the scaled max entry)

// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

// |x|, or 0 when x is not finite.
fn finite_abs(x: f32) -> f32 {
    return select(0.0, abs(x), is_finite_f32(x));
}

// Whether the pair with diagonal entries (app, aqq) and off-diagonal apq is rotated.
fn rotates(app: f32, aqq: f32, apq: f32) -> bool {
    return abs(apq) > max(REL_THRESHOLD * sqrt(abs(app) * abs(aqq)), ROT_FLOOR);
}

// 1 when `before` ranks ahead of `x` (ascending; `tie` when equal values rank ahead by index).
fn ahead(before: f32, x: f32, tie: bool) -> u32 {
    return select(0u, 1u, before < x || (tie && before == x));
}

fn registers_main(lid: u32, wid: vec3<u32>) {
    let g = workgroup_index(wid, params.groups_x) * WG + lid;
    if (g >= params.batch) {
        return;
    }
    let base = g * N * N;
    let nan = bitcast<f32>(params.nan_bits);
    // Load (symmetrised or lower triangle), with the largest finite magnitude and whether an
    // entry was not finite (the matrix is then zeroed: no rotation, status 1).
    var big = 0.0;
    var bad = false;
    //@gen load
    let scale_exp = exponent_of(big);
    //@gen scale
    var rotated = false;
    for (var sweep = 0u; sweep < MAX_SWEEPS; sweep++) {
        var rot = false;
        //@gen sweep
        rotated = rot;
        if (!rot) {
            break;
        }
    }
    // An eigenvalue beyond the f32 range (up to n times the largest entry) gives status 3.
    var beyond = false;
    //@gen beyond
    var status = 0u;
    if (bad) {
        status = 1u;
    } else if (rotated) {
        status = 2u;
    } else if (beyond) {
        status = 3u;
    }
    let ok = status == 0u;
    status_out[g] = status;
    // Each eigenvalue's rank, then the outputs at their ranks.
    //@gen finish
}
