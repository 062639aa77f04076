// The reverse rule: Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ, symmetric, NaN where the forward status
// is not ok. λ̄ and V̄ are optional (params.flags bits 0 and 1); without V̄ this is the
// eigenvalues-only rule V diag(λ̄) Vᵀ. Layout in dense.wgsl.

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// λ̄ [batch][N] (a placeholder when absent).
@group(0) @binding(2) var<storage, read> grad_values: array<f32>;
// V̄ [batch][N][N] (a placeholder when absent).
@group(0) @binding(3) var<storage, read> grad_vectors: array<f32>;
// Forward status [batch].
@group(0) @binding(4) var<storage, read> status_in: array<u32>;
// Ā [batch][N][N] (also the work matrix when M_SHARED is false).
@group(0) @binding(5) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: mask relative tolerance or Lorentzian eps).
@group(0) @binding(6) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn eigh_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let has_gl = (params.flags & 1u) != 0u;
    let has_gv = (params.flags & 2u) != 0u;
    let base = g * N * N;
    load_eigh(mi, t, g, live);
    workgroupBarrier();
    let thr = mask_threshold(mi, params.tol);

    // M = diag(λ̄) + F∘skew(VᵀV̄); symmetric, each unordered pair written by one invocation.
    if (live) {
        for (var e = t; e < N * N; e += TPM) {
            let i = e / N;
            let j = e % N;
            if (i == j) {
                m_set(mi, g, i, i, select(0.0, grad_values[g * N + i], has_gl));
            } else if (i < j) {
                var m = 0.0;
                if (has_gv) {
                    var xij = 0.0;
                    var xji = 0.0;
                    for (var k = 0u; k < N; k++) {
                        xij += v_at(mi, k, i) * grad_vectors[base + k * N + j];
                        xji += v_at(mi, k, j) * grad_vectors[base + k * N + i];
                    }
                    m = factor(mi, i, j, thr) * (0.5 * (xij - xji));
                }
                m_set(mi, g, i, j, m);
                m_set(mi, g, j, i, m);
            }
        }
    }
    sync_dense();

    congruence_in_place(mi, g, t, live && t < N);
    if (live) {
        write_symmetric(mi, g, t, status_in[g] == 0u);
    }
}
