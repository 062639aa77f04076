// Spectral function f(A) = V diag(f(λ)) Vᵀ from a forward eigendecomposition, exactly
// symmetric; status 3 (out of domain) when the function needs positive eigenvalues and one is
// ≤ 0 or when an f(λ) is beyond the f32 range, and NaN outputs for any status other than ok.
// Layout in dense.wgsl, functions in spectral.wgsl.

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
    let x = context(lid, wid);
    load_eigh(x);
    workgroupBarrier();
    // The function's status per matrix (one invocation each).
    for (var m = lid; m < MATS; m += WG) {
        let g = x.first + m;
        if (g < params.batch) {
            var status = status_in[g];
            if (status == 0u && needs_positive()) {
                for (var i = 0u; i < N; i++) {
                    if (!(lam_sh[m * N + i] > 0.0)) {
                        status = 3u;
                    }
                }
            }
            status_out[g] = status;
            ok_sh[m] = select(0u, 1u, status == 0u);
        }
    }
    workgroupBarrier();
    // λ ← f(λ), then f(A) = (V f(Λ)) Vᵀ; the entries on and above the diagonal are stored in
    // place of V, each mirrored, so f(A) is exactly symmetric.
    for (var e = lid; e < MATS * N; e += WG) {
        lam_sh[e] = spectral_value(lam_sh[e], e % N);
    }
    workgroupBarrier();
    // An f(λ) beyond the f32 range (exp or pow of a large eigenvalue) is out of domain too:
    // V f(Λ) Vᵀ would be inf·0 = NaN.
    for (var m = lid; m < MATS; m += WG) {
        let g = x.first + m;
        if (g < params.batch && ok_sh[m] != 0u) {
            var finite = true;
            for (var i = 0u; i < N; i++) {
                finite = finite && is_finite_f32(lam_sh[m * N + i]);
            }
            if (!finite) {
                status_out[g] = 3u;
                ok_sh[m] = 0u;
            }
        }
    }
    workgroupBarrier();
    let f = gemm(x, SRC_V, false, SRC_V, true, true);
    if (!V_SHARED) {
        // V read where it is: the entries on and above the diagonal go straight out, each
        // mirrored (NaN where the status is not ok).
        let ok = x.live && ok_sh[x.mi] != 0u;
        let nan = bitcast<f32>(params.nan_bits);
        for (var r = 0u; r < 4u; r++) {
            let row = tile_row(f, r);
            let i = tile_i(x, r);
            for (var c = 0u; c < 4u; c++) {
                let j = tile_j(x, c);
                if (x.live && i <= j && j < N) {
                    let v = select(nan, row[c], ok);
                    nn_out[(x.g * N + i) * N + j] = v;
                    nn_out[(x.g * N + j) * N + i] = v;
                }
            }
        }
        return;
    }
    workgroupBarrier();
    put_tile(x, f, SRC_V, true);
    workgroupBarrier();
    write_block(x, SRC_V, false);
}
