// The Daleckii–Krein reverse rule of a spectral function:
// Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ, L_ij = divided difference of f at (λ_i, λ_j), L_ii = f′(λ_i);
// exactly symmetric, NaN where the spectral status is not ok. Layout in dense.wgsl.

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// Ḡ [batch][N][N], the cotangent of f(A) (symmetrised here; read by project.wgsl).
@group(0) @binding(2) var<storage, read> nn_in: array<f32>;
// Status of f(A) [batch].
@group(0) @binding(3) var<storage, read> status_in: array<u32>;
// Ā [batch][N][N] (also the work matrix W when W_SHARED is false).
@group(0) @binding(4) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: the exponent of pow; extra: the projector's k).
@group(0) @binding(5) var<uniform> params: Params;

// M_ij = L_ij · P_ij.
fn weigh(x: Ctx, i: u32, j: u32, p: f32, thr: f32) -> f32 {
    return p * divided_difference(lam(x, i), lam(x, j), i, j, thr);
}

@compute @workgroup_size(WG)
fn spectral_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = context(lid, wid);
    // P = sym(Vᵀ Ḡ V) (project.wgsl).
    let p = begin_projected(x);
    // Only projectors use a policy (for pairs tied across the cut).
    let thr = mask_threshold(x, params.tol);
    // M = L∘P in W, then Ā = (V M) Vᵀ, symmetrised.
    weigh_projected(x, p, thr);
    store_w(x, gemm(x, SRC_V, false, SRC_W, false, false));
    write_tile(x, gemm(x, SRC_W, false, SRC_V, true, false), true);
}
