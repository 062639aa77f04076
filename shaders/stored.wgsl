// Reading the input matrices `a_in` [batch][N][N] that a kernel declares, as the symmetric
// matrices they stand for (the forward kernels and eigh_refine.wgsl).

override LOWER: bool;  // read only the lower triangle (else symmetrise)

// Entry (r, c) of the symmetric matrix stored from `base`: (A + Aᵀ)/2, or the lower triangle.
// A driver may evaluate 0.5·a + 0.5·b as 0.5·(a + b) (Mesa's llvmpipe does), which overflows
// when a and b have one sign and are both above f32::MAX/2: then a − (a − b)/2, whose
// difference cannot overflow for one sign. A diagonal entry is returned as stored.
fn stored_entry(base: u32, r: u32, c: u32) -> f32 {
    let upper = a_in[base + c * N + r];
    let lower = a_in[base + r * N + c];
    if (LOWER) {
        return select(upper, lower, r >= c);
    }
    let mean = 0.5 * lower + 0.5 * upper;
    let finite = is_finite_f32(lower) && is_finite_f32(upper);
    let safe = select(mean, lower - 0.5 * (lower - upper), finite && !is_finite_f32(mean));
    return select(safe, lower, r == c);
}
