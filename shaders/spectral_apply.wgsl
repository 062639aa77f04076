// Spectral function f(A) = V diag(f(λ)) Vᵀ from a forward eigendecomposition, exactly
// symmetric; status 3 (out of domain) when the function needs positive eigenvalues and one is
// ≤ 0, and NaN outputs for any status other than ok. Layout in dense.wgsl, functions in
// spectral.wgsl.

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// Forward status [batch].
@group(0) @binding(2) var<storage, read> status_in: array<u32>;
// f(A) [batch][N][N].
@group(0) @binding(3) var<storage, read_write> nn_out: array<f32>;
// Status of f(A) [batch].
@group(0) @binding(4) var<storage, read_write> status_out: array<u32>;
// Dispatch parameters (tol: the exponent of pow; extra: the projector's k).
@group(0) @binding(5) var<uniform> params: Params;

@compute @workgroup_size(WG)
fn spectral_apply(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    load_eigh(mi, t, g, live);
    workgroupBarrier();
    if (!live) {
        return;
    }
    var status = status_in[g];
    if (status == 0u && needs_positive()) {
        for (var i = 0u; i < N; i++) {
            if (!(lam_sh[mi * N + i] > 0.0)) {
                status = 3u;
            }
        }
    }
    if (t == 0u) {
        status_out[g] = status;
    }
    let nan = bitcast<f32>(params.nan_bits);
    let base = g * N * N;
    for (var e = t; e < N * N; e += TPM) {
        let i = e / N;
        let j = e % N;
        if (i <= j) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                s += v_at(mi, i, k) * spectral_value(lam_sh[mi * N + k], k) * v_at(mi, j, k);
            }
            let x = select(nan, s, status == 0u);
            nn_out[base + i * N + j] = x;
            nn_out[base + j * N + i] = x;
        }
    }
}
