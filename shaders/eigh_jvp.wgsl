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
// V̇ [batch][N][N] (also the work matrix when M_SHARED is false).
@group(0) @binding(5) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: mask relative tolerance or Lorentzian eps).
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn eigh_jvp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    let own = live && t < N;
    load_eigh(mi, t, g, live);
    workgroupBarrier();
    let thr = mask_threshold(mi, params.tol);

    // P = Vᵀ sym(Ȧ) V, row t; λ̇_t = P_tt; G = F∘P, row t.
    var row = project_row(mi, g, t, own);
    var lambda_dot = 0.0;
    if (own) {
        lambda_dot = row[t];
        for (var j = 0u; j < N; j++) {
            row[j] = select(factor(mi, t, j, thr) * row[j], 0.0, j == t);
            m_set(mi, g, t, j, row[j]);
        }
    }
    sync_dense();
    // V̇ = V G, row t.
    if (own) {
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var i = 0u; i < N; i++) {
                s += v_at(mi, t, i) * m_get(mi, g, i, j);
            }
            row[j] = s;
        }
    }
    sync_dense();
    if (own) {
        let ok = status_in[g] == 0u;
        let nan = bitcast<f32>(params.nan_bits);
        values_dot[g * N + t] = select(nan, lambda_dot, ok);
        for (var j = 0u; j < N; j++) {
            nn_out[base + t * N + j] = select(nan, row[j], ok);
        }
    }
}
