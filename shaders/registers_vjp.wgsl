// The reverse rule of the smallest matrices (n ≤ gpu::REGISTERS_MAX_N), one invocation per
// matrix with everything in named registers (the products written out by the host,
// src/gpu/registers.rs, as for registers.wgsl): Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ, NaN where
// the forward status is not ok; λ̄ and V̄ optional (params.flags bits 0 and 1), as in
// eigh_vjp.wgsl. M = diag(λ̄) + F∘skew(X) is exactly symmetric, so only the upper triangle of
// (V M) Vᵀ is computed and mirrored: Ā is exactly symmetric.

override N: u32;       // matrix size, 1..=REGISTERS_MAX_N (the generated code fixes it)
override WG: u32;      // invocations (matrices) per workgroup
override POLICY: u32;  // degeneracy policy: 0 mask, 1 Lorentzian, 2 propagate

// Bindings in vjp_bindings.wgsl.

@compute @workgroup_size(WG)
fn registers_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let g = workgroup_index(wid, params.groups_x) * WG + lid;
    if (g >= params.batch) {
        return;
    }
    let has_gl = (params.flags & 1u) != 0u;
    let has_gv = (params.flags & 2u) != 0u;
    let base = g * N * N;
    let nan = bitcast<f32>(params.nan_bits);
    let inf = bitcast<f32>(params.inf_bits);
    let ok = status_in[g] == 0u;
    // λ (l{i}), V (v{i}_{j}: component i of vector j), and the mask threshold tol·max|λ|.
    var big = 0.0;
    //@gen vjp_load
    var thr = 0.0;
    if (POLICY == 0u) {
        thr = params.tol * big;
    }
    // M: diagonal λ̄ (m{i}_{i}), upper triangle F∘skew(VᵀV̄) (m{i}_{j}, i < j), X = VᵀV̄
    // accumulated one row of V̄ at a time.
    //@gen vjp_m
    // Row i of P = V M, then Ā_ij = P_i·V_j for j ≥ i, written to (i, j) and (j, i).
    //@gen vjp_out
}
