// Shared layout of the derivative kernels: MATS matrices per workgroup, TPM ≥ N invocations per
// matrix (invocation t owns row t), V in workgroup memory with an odd row stride, and one more
// N×N work matrix M in workgroup memory when it fits (M_SHARED) or else in the kernel's N×N
// output buffer `nn_out`, which serves as scratch until its final write. Each kernel declares
// `values_in`, `vectors_in`, `nn_out` and `params`.

override N: u32;           // matrix size, 1..=MAX_N
override MATS: u32;        // matrices per workgroup
override TPM: u32;         // invocations per matrix, ≥ N
override WG: u32;          // MATS * TPM
override STRIDE: u32;      // row stride in workgroup memory (odd, ≥ N)
override V_LEN: u32;       // MATS * N * STRIDE
override M_SHARED: bool;   // the work matrix in workgroup memory (else in the output buffer)
override M_LEN: u32;       // V_LEN when M_SHARED, else 1
override POLICY: u32;      // degeneracy policy: 0 mask, 1 Lorentzian, 2 propagate
override MN_LEN: u32;      // MATS * N

var<workgroup> v_sh: array<f32, V_LEN>;
var<workgroup> m_sh: array<f32, M_LEN>;
var<workgroup> lam_sh: array<f32, MN_LEN>;

fn sh_idx(mi: u32, r: u32, c: u32) -> u32 {
    return (mi * N + r) * STRIDE + c;
}

fn v_at(mi: u32, r: u32, c: u32) -> f32 {
    return v_sh[sh_idx(mi, r, c)];
}

// Both barriers when the work matrix lives in global memory.
fn sync_dense() {
    if (!M_SHARED) {
        storageBarrier();
    }
    workgroupBarrier();
}

// Loads V and λ of matrix g (when live) into workgroup memory.
fn load_eigh(mi: u32, t: u32, g: u32, live: bool) {
    if (live) {
        for (var e = t; e < N * N; e += TPM) {
            v_sh[sh_idx(mi, e / N, e % N)] = vectors_in[g * N * N + e];
        }
        for (var i = t; i < N; i += TPM) {
            lam_sh[mi * N + i] = values_in[g * N + i];
        }
    }
}

// The mask threshold of matrix mi: tol · max|λ| for the mask policy, else 0.
fn mask_threshold(mi: u32, tol: f32) -> f32 {
    if (POLICY != 0u) {
        return 0.0;
    }
    var m = 0.0;
    for (var i = 0u; i < N; i++) {
        m = max(m, abs(lam_sh[mi * N + i]));
    }
    return tol * m;
}

// F_ij = policy(λ_j − λ_i) of matrix mi.
fn factor(mi: u32, i: u32, j: u32, thr: f32) -> f32 {
    let delta = lam_sh[mi * N + j] - lam_sh[mi * N + i];
    return degeneracy_factor(POLICY, delta, thr, params.tol, bitcast<f32>(params.inf_bits));
}

fn m_get(mi: u32, g: u32, r: u32, c: u32) -> f32 {
    if (M_SHARED) {
        return m_sh[sh_idx(mi, r, c)];
    }
    return nn_out[(g * N + r) * N + c];
}

fn m_set(mi: u32, g: u32, r: u32, c: u32, x: f32) {
    if (M_SHARED) {
        m_sh[sh_idx(mi, r, c)] = x;
    } else {
        nn_out[(g * N + r) * N + c] = x;
    }
}

// M ← V·M·Vᵀ, invocation t computing row t (when `own`) in registers until every invocation has
// read M. Call from uniform control flow (it synchronises).
fn congruence_in_place(mi: u32, g: u32, t: u32, own: bool) {
    var t_row: array<f32, MAX_N>;
    var o_row: array<f32, MAX_N>;
    if (own) {
        for (var l = 0u; l < N; l++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                s += v_at(mi, t, k) * m_get(mi, g, k, l);
            }
            t_row[l] = s;
        }
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var l = 0u; l < N; l++) {
                s += t_row[l] * v_at(mi, j, l);
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
}

// nn_out of matrix g ← (M + Mᵀ)/2, exactly symmetric, or NaN when `ok` is false. Each unordered
// pair is read and written by one invocation, so M may live in nn_out itself.
fn write_symmetric(mi: u32, g: u32, t: u32, ok: bool) {
    let nan = bitcast<f32>(params.nan_bits);
    for (var e = t; e < N * N; e += TPM) {
        let i = e / N;
        let j = e % N;
        if (i <= j) {
            let x = select(nan, 0.5 * (m_get(mi, g, i, j) + m_get(mi, g, j, i)), ok);
            nn_out[(g * N + i) * N + j] = x;
            nn_out[(g * N + j) * N + i] = x;
        }
    }
}
