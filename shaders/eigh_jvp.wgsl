// The forward rule: P = Vᵀ sym(Ȧ) V, λ̇ = diag(P), V̇ = V (F∘P); NaN where the forward status is
// not ok. Layout in dense.wgsl.

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// Tangent Ȧ [batch][N][N] (symmetrised here; read by project.wgsl).
@group(0) @binding(2) var<storage, read> nn_in: array<f32>;
// Forward status [batch].
@group(0) @binding(3) var<storage, read> status_in: array<u32>;
// λ̇ [batch][N].
@group(0) @binding(4) var<storage, read_write> values_dot: array<f32>;
// V̇ [batch][N][N] (also the work matrix W when W_SHARED is false).
@group(0) @binding(5) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: mask relative tolerance or Lorentzian eps).
@group(0) @binding(6) var<uniform> params: Params;

// G_ij = F_ij · P_ij off the diagonal, G_ii = 0.
fn weigh(x: Ctx, i: u32, j: u32, p: f32, thr: f32) -> f32 {
    return select(factor(x, i, j, thr) * p, 0.0, i == j);
}

@compute @workgroup_size(WG)
fn eigh_jvp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = context(lid, wid);
    // P = sym(Vᵀ Ȧ V) (project.wgsl).
    let p = begin_projected(x);
    let thr = mask_threshold(x, params.tol);
    // λ̇ = diag(P): the diagonal tiles (ti = tj) hold it at r = c.
    let nan = bitcast<f32>(params.nan_bits);
    let ok = x.live && ok_sh[x.mi] != 0u;
    for (var r = 0u; r < 4u; r++) {
        let i = tile_i(x, r);
        if (x.ti == x.tj && x.live && i < N) {
            values_dot[x.g * N + i] = select(nan, tile_row(p, r)[r], ok);
        }
    }
    // G = F∘P in W, then V̇ = V G.
    weigh_projected(x, p, thr);
    write_tile(x, gemm(x, SRC_V, false, SRC_W, false, false), false);
}
