// P = sym(Vᵀ X V) for the symmetric-input derivative kernels (eigh_jvp: X = Ȧ, spectral_vjp:
// X = Ḡ), which declare X as `nn_in` [batch][N][N] and the entry map
// `fn weigh(x: Ctx, i: u32, j: u32, p: f32, thr: f32) -> f32` (entry (i, j) of the work matrix
// from P_ij). Since sym(Vᵀ X V) = Vᵀ sym(X) V, X is used as given and the product symmetrised.
// Layout in dense.wgsl.

// Stages X of the workgroup's live matrices into W. Follow with sync_dense().
fn stage_tangent(x: Ctx) {
    for (var e = x.lid; e < MATS * N * N; e += WG) {
        if (elem(x, e).live) {
            stage_w(x, e, nn_in[x.first * N * N + e]);
        }
    }
}

// The caller's tile of Vᵀ X V, which is left in W too. Call from uniform control flow (it
// synchronises).
fn project(x: Ctx) -> Tile {
    store_w(x, gemm(x, SRC_V, true, SRC_W, false, false));
    let p = gemm(x, SRC_W, false, SRC_V, false, false);
    store_w(x, p);
    return p;
}

// Stages V, λ and X, and returns the caller's tile of Vᵀ X V (also left in W). Call from
// uniform control flow (it synchronises).
fn begin_projected(x: Ctx) -> Tile {
    load_eigh(x);
    stage_tangent(x);
    sync_dense();
    return project(x);
}

// Replaces W (holding P₀ = Vᵀ X V, whose tile is `p`) by weigh(sym(P₀)) entry by entry, with
// sym(P₀) = (P₀ + P₀ᵀ)/2. Call from uniform control flow (it synchronises).
fn weigh_projected(x: Ctx, p: Tile, thr: f32) {
    let pt = transposed_w(x);
    var m = zero_tile();
    for (var r = 0u; r < 4u; r++) {
        let i = tile_i(x, r);
        let pr = 0.5 * (tile_row(p, r) + tile_row(pt, r));
        var row = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            row = with_component(row, c, weigh(x, i, tile_j(x, c), pr[c], thr));
        }
        m = with_row(m, r, row);
    }
    store_w(x, m);
}
