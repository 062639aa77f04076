// Shared layout of the power-iteration kernels: MATS matrices per workgroup, TPM invocations
// per matrix, the n×n matrix in workgroup memory with an odd row stride (A_SHARED; where not
// even one matrix fits, n ≥ 63 under 16 KiB, in the kernel's N×N output buffer instead, read
// through `a_global`, which each kernel defines), two n-vectors.

override N: u32;          // matrix size, 1..=MAX_N
override MATS: u32;       // matrices per workgroup
override TPM: u32;        // invocations per matrix
override WG: u32;         // MATS * TPM
override STRIDE: u32;     // row stride of the matrix (odd, ≥ N)
override A_SHARED: bool;  // the matrix in workgroup memory (else in global memory)
override A_LEN: u32;      // MATS * N * STRIDE (1 without A_SHARED)
override MN_LEN: u32;     // MATS * N
// The fixed start vector 1 + fract((i + 1)·START_STEP)/2 (spectral::POWER_START_STEP): of the
// iteration, and of the VJP's inverse iteration.
override START_STEP: f32;

var<workgroup> a_sh: array<f32, A_LEN>;
var<workgroup> v_sh: array<f32, MN_LEN>;
var<workgroup> y_sh: array<f32, MN_LEN>;

fn pa(mi: u32, r: u32, c: u32) -> u32 {
    return (mi * N + r) * STRIDE + c;
}

// Entry (r, c) of matrix mi (global index g) of the workgroup.
fn a_get(mi: u32, g: u32, r: u32, c: u32) -> f32 {
    if (A_SHARED) {
        return a_sh[pa(mi, r, c)];
    }
    return a_global(mi, g, r, c);
}

// A barrier after the matrix is written, before other invocations read it.
fn sync_a() {
    if (!A_SHARED) {
        storageBarrier();
    }
    workgroupBarrier();
}
