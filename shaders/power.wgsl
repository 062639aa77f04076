// Shared layout of the power-iteration kernels: MATS matrices per workgroup, TPM invocations
// per matrix, the n×n matrix in workgroup memory with an odd row stride, two n-vectors.

override N: u32;          // matrix size, 1..=MAX_N
override MATS: u32;       // matrices per workgroup
override TPM: u32;        // invocations per matrix
override WG: u32;         // MATS * TPM
override STRIDE: u32;     // row stride of the matrix (odd, ≥ N)
override A_LEN: u32;      // MATS * N * STRIDE
override MN_LEN: u32;     // MATS * N

var<workgroup> a_sh: array<f32, A_LEN>;
var<workgroup> v_sh: array<f32, MN_LEN>;
var<workgroup> y_sh: array<f32, MN_LEN>;

fn pa(mi: u32, r: u32, c: u32) -> u32 {
    return (mi * N + r) * STRIDE + c;
}
