// Reading the input matrices `a_in` [batch][N][N] that a kernel declares, as the symmetric
// matrices they stand for (the forward kernels and eigh_refine.wgsl).

override LOWER: bool;  // read only the lower triangle (else symmetrise)

// Entry (r, c) of the symmetric matrix stored from `base`: (A + Aᵀ)/2 without overflow
// (`mean_of`), or the lower triangle. A diagonal entry is returned as stored.
fn stored_entry(base: u32, r: u32, c: u32) -> f32 {
    let upper = a_in[base + c * N + r];
    let lower = a_in[base + r * N + c];
    if (LOWER) {
        return select(upper, lower, r >= c);
    }
    return select(mean_of(lower, upper), lower, r == c);
}
