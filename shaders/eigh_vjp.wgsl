// The reverse rule: Ā = V (diag(λ̄) + F∘skew(VᵀV̄)) Vᵀ, symmetric, NaN where the forward status
// is not ok. λ̄ and V̄ are optional (params.flags bits 0 and 1); without V̄ this is the
// eigenvalues-only rule V diag(λ̄) Vᵀ. Layout in dense.wgsl.

// Bindings in vjp_bindings.wgsl.

// Row r of M = diag(λ̄) + F∘skew(X), X = VᵀV̄, from row r of X's tile (`xr`) and of the tile
// of Xᵀ (`xt`, read from W; both zero without V̄). M is exactly symmetric: F is antisymmetric
// and skew(X)_ji = −skew(X)_ij exactly.
fn vjp_row(
    x: Ctx,
    r: u32,
    xr: vec4<f32>,
    xt: vec4<f32>,
    has_gl: bool,
    has_gv: bool,
    thr: f32,
) -> vec4<f32> {
    let i = tile_i(x, r);
    var m = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let j = tile_j(x, c);
        if (i == j) {
            if (has_gl && x.live && i < N) {
                m = with_component(m, c, grad_values[x.g * N + i]);
            }
        } else if (has_gv) {
            m = with_component(m, c, factor(x, i, j, thr) * (0.5 * (xr[c] - xt[c])));
        }
    }
    return m;
}

@compute @workgroup_size(WG)
fn eigh_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = context(lid, wid);
    let has_gl = (params.flags & 1u) != 0u;
    let has_gv = (params.flags & 2u) != 0u;
    load_eigh(x);
    if (has_gv) {
        for (var e = lid; e < MATS * N * N; e += WG) {
            if (elem(x, e).live) {
                stage_w(x, e, grad_vectors[x.first * N * N + e]);
            }
        }
    }
    sync_dense();
    let thr = mask_threshold(x, params.tol);

    // X = VᵀV̄ (tile in registers, whole matrix in W), then M = diag(λ̄) + F∘skew(X) in W.
    var xt = zero_tile();
    if (has_gv) {
        xt = gemm(x, SRC_V, true, SRC_W, false, false);
        store_w(x, xt);
    }
    var xtt = zero_tile();
    if (has_gv) {
        xtt = transposed_w(x);
    }
    var m = zero_tile();
    for (var r = 0u; r < 4u; r++) {
        m = with_row(m, r, vjp_row(x, r, tile_row(xt, r), tile_row(xtt, r), has_gl, has_gv, thr));
    }
    store_w(x, m);
    // Ā = (V M) Vᵀ, symmetrised.
    store_w(x, gemm(x, SRC_V, false, SRC_W, false, false));
    write_tile(x, gemm(x, SRC_W, false, SRC_V, true, false), true);
}
