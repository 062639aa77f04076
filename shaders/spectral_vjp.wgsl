// The Daleckii–Krein reverse rule of a spectral function:
// Ā = V (L∘(Vᵀ sym(Ḡ) V)) Vᵀ, L_ij = divided difference of f at (λ_i, λ_j), L_ii = f′(λ_i);
// exactly symmetric, NaN where the spectral status is not ok. Layout in dense.wgsl.

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// Ḡ [batch][N][N], the cotangent of f(A) (symmetrised here).
@group(0) @binding(2) var<storage, read> grad: array<f32>;
// Status of f(A) [batch].
@group(0) @binding(3) var<storage, read> status_in: array<u32>;
// Ā [batch][N][N] (also the work matrix when M_SHARED is false).
@group(0) @binding(4) var<storage, read_write> grad_out: array<f32>;
// Dispatch parameters (tol: the exponent of pow; extra: the projector's k).
@group(0) @binding(5) var<uniform> params: Params;

fn m_get(mi: u32, g: u32, r: u32, c: u32) -> f32 {
    if (M_SHARED) {
        return m_sh[sh_idx(mi, r, c)];
    }
    return grad_out[(g * N + r) * N + c];
}

fn m_set(mi: u32, g: u32, r: u32, c: u32, x: f32) {
    if (M_SHARED) {
        m_sh[sh_idx(mi, r, c)] = x;
    } else {
        grad_out[(g * N + r) * N + c] = x;
    }
}

@compute @workgroup_size(WG)
fn spectral_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let own = live && t < N;
    let base = g * N * N;
    load_eigh(mi, t, g, live);
    workgroupBarrier();
    // Only projectors use a policy (for pairs tied across the cut).
    let thr = mask_threshold(mi, params.tol);

    // W = sym(Ḡ) V, row t.
    var row: array<f32, MAX_N>;
    if (own) {
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                let d = 0.5 * grad[base + t * N + k] + 0.5 * grad[base + k * N + t];
                s += d * v_at(mi, k, j);
            }
            row[j] = s;
        }
        for (var j = 0u; j < N; j++) {
            m_set(mi, g, t, j, row[j]);
        }
    }
    sync_dense();
    // Row t of L∘(VᵀW).
    if (own) {
        let lt = lam_sh[mi * N + t];
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                s += v_at(mi, k, t) * m_get(mi, g, k, j);
            }
            row[j] = s * divided_difference(lt, lam_sh[mi * N + j], t, j, thr);
        }
    }
    sync_dense();
    if (own) {
        for (var j = 0u; j < N; j++) {
            m_set(mi, g, t, j, row[j]);
        }
    }
    sync_dense();
    // Row t of V·M·Vᵀ.
    var o_row: array<f32, MAX_N>;
    if (own) {
        for (var l = 0u; l < N; l++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                s += v_at(mi, t, k) * m_get(mi, g, k, l);
            }
            row[l] = s;
        }
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var l = 0u; l < N; l++) {
                s += row[l] * v_at(mi, j, l);
            }
            o_row[j] = s;
        }
    }
    sync_dense();
    if (own) {
        for (var j = 0u; j < N; j++) {
            m_set(mi, g, t, j, o_row[j]);
        }
    }
    sync_dense();
    if (live) {
        let ok = status_in[g] == 0u;
        let nan = bitcast<f32>(params.nan_bits);
        for (var e = t; e < N * N; e += TPM) {
            let i = e / N;
            let j = e % N;
            if (i <= j) {
                let s = 0.5 * (m_get(mi, g, i, j) + m_get(mi, g, j, i));
                let x = select(nan, s, ok);
                grad_out[base + i * N + j] = x;
                grad_out[base + j * N + i] = x;
            }
        }
    }
}
