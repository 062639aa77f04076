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
// Ā [batch][N][N] (also the work matrix when M_SHARED is false).
@group(0) @binding(4) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: the exponent of pow; extra: the projector's k).
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn spectral_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let own = live && t < N;
    load_eigh(mi, t, g, live);
    workgroupBarrier();
    // Only projectors use a policy (for pairs tied across the cut).
    let thr = mask_threshold(mi, params.tol);

    // Row t of L∘(Vᵀ sym(Ḡ) V).
    var row = project_row(mi, g, t, own);
    if (own) {
        let lt = lam_sh[mi * N + t];
        for (var j = 0u; j < N; j++) {
            m_set(mi, g, t, j, row[j] * divided_difference(lt, lam_sh[mi * N + j], t, j, thr));
        }
    }
    sync_dense();
    congruence_in_place(mi, g, t, own);
    if (live) {
        write_symmetric(mi, g, t, status_in[g] == 0u);
    }
}
