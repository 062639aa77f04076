// Shared layout of the derivative and spectral kernels: products of N×N matrices as small
// GEMMs with register tiles. A workgroup holds MATS matrices and T×T invocations per matrix
// (T = ⌈N/4⌉). Invocation (ti, tj) of a matrix owns a 4×4 tile of every product: rows
// ti + r·T and columns tj + c·T (r, c = 0..3), kept as four vec4 accumulators (no run-time
// indexed private arrays). The tile is interleaved so that, for every operand access of a
// product, the invocations of a warp read either consecutive words of a row or one word from
// each of consecutive rows, and rows have an odd stride: no workgroup-memory bank conflicts.
//
// V lives in workgroup memory (buffer SRC_V); a second N×N buffer W (an operand staged from
// global memory, then each intermediate product) too when it fits (W_SHARED), else in the
// kernel's N×N output buffer `nn_out`, which serves as scratch until its final write. Tile
// entries with a row or column ≥ N read whatever lies there (in bounds of the variable, as
// WGSL guarantees), never feed an entry < N, and are never stored. Staging loads and final
// writes run over the whole workgroup's matrices at once, so consecutive invocations touch
// consecutive global addresses. Each kernel declares `values_in`, `vectors_in`, `status_in`,
// `nn_out` and `params`.

override N: u32;           // matrix size, 1..=MAX_N
override T: u32;           // tiles per dimension, ⌈N/4⌉
override MATS: u32;        // matrices per workgroup
override TPM: u32;         // invocations per matrix, T·T
override WG: u32;          // MATS · TPM
override STRIDE: u32;      // row stride in workgroup memory (odd, ≥ N)
override MSTRIDE: u32;     // words per matrix per buffer in workgroup memory (≥ N · STRIDE)
override W_SHARED: bool;   // W in workgroup memory (else in nn_out)
override SH_LEN: u32;      // MATS · MSTRIDE, twice that when W_SHARED
override POLICY: u32;      // degeneracy policy: 0 mask, 1 Lorentzian, 2 propagate
override MN_LEN: u32;      // MATS · N

// The N×N buffers, by source code.
const SRC_V: u32 = 0u;
const SRC_W: u32 = 1u;

var<workgroup> sh: array<f32, SH_LEN>;
var<workgroup> lam_sh: array<f32, MN_LEN>;
// 1 where the matrix is live and its output is valid (status ok), else 0.
var<workgroup> ok_sh: array<u32, MATS>;

// Where an invocation stands: matrix mi of the workgroup (global index g, live when inside the
// dispatch), tile (ti, tj), and the workgroup's first matrix.
struct Ctx {
    lid: u32,
    first: u32,
    mi: u32,
    g: u32,
    ti: u32,
    tj: u32,
    live: bool,
}

// A 4×4 register tile: row r holds columns tj + c·T, c = 0..3.
struct Tile {
    r0: vec4<f32>,
    r1: vec4<f32>,
    r2: vec4<f32>,
    r3: vec4<f32>,
}

fn context(lid: u32, wid: vec3<u32>) -> Ctx {
    let first = workgroup_index(wid, params.groups_x) * MATS;
    let mi = lid / TPM;
    let l = lid % TPM;
    let g = first + mi;
    return Ctx(lid, first, mi, g, l / T, l % T, g < params.batch);
}

// Barriers for W: the storage barrier only when W lives in global memory.
fn sync_dense() {
    if (!W_SHARED) {
        storageBarrier();
    }
    workgroupBarrier();
}

fn sh_index(src: u32, mi: u32, r: u32, c: u32) -> u32 {
    return (src * MATS + mi) * MSTRIDE + r * STRIDE + c;
}

// Element (r, c) of buffer `src` of the caller's matrix.
fn at(x: Ctx, src: u32, r: u32, c: u32) -> f32 {
    if (src == SRC_V || W_SHARED) {
        return sh[sh_index(src, x.mi, r, c)];
    }
    return nn_out[(x.g * N + r) * N + c];
}

// Stores element (r, c) of buffer `src` (r, c < N).
fn put(x: Ctx, src: u32, r: u32, c: u32, v: f32) {
    if (src == SRC_V || W_SHARED) {
        sh[sh_index(src, x.mi, r, c)] = v;
    } else if (x.live) {
        nn_out[(x.g * N + r) * N + c] = v;
    }
}

// Element (i, k) of op(src): src itself, or its transpose when `trans`.
fn operand(x: Ctx, src: u32, trans: bool, i: u32, k: u32) -> f32 {
    if (trans) {
        return at(x, src, k, i);
    }
    return at(x, src, i, k);
}

// The caller's tile of op(A)·op(B), with column k of op(A) scaled by lam_sh[k] when `scale`.
// No barrier inside: callers synchronise before overwriting an operand.
fn gemm(x: Ctx, a: u32, a_t: bool, b: u32, b_t: bool, scale: bool) -> Tile {
    var acc = zero_tile();
    let i0 = x.ti;
    let j0 = x.tj;
    for (var k = 0u; k < N; k++) {
        var av = vec4<f32>(
            operand(x, a, a_t, i0, k),
            operand(x, a, a_t, i0 + T, k),
            operand(x, a, a_t, i0 + 2u * T, k),
            operand(x, a, a_t, i0 + 3u * T, k),
        );
        if (scale) {
            av *= lam_sh[x.mi * N + k];
        }
        let bv = vec4<f32>(
            operand(x, b, b_t, k, j0),
            operand(x, b, b_t, k, j0 + T),
            operand(x, b, b_t, k, j0 + 2u * T),
            operand(x, b, b_t, k, j0 + 3u * T),
        );
        acc.r0 += av.x * bv;
        acc.r1 += av.y * bv;
        acc.r2 += av.z * bv;
        acc.r3 += av.w * bv;
    }
    return acc;
}

// Row r of a tile.
fn tile_row(t: Tile, r: u32) -> vec4<f32> {
    switch r {
        case 0u: { return t.r0; }
        case 1u: { return t.r1; }
        case 2u: { return t.r2; }
        default: { return t.r3; }
    }
}

// Stores the tile's entries inside the matrix into buffer `dst`; with `mirror`, only entries
// on or above the diagonal, each to (i, j) and (j, i).
fn put_tile(x: Ctx, t: Tile, dst: u32, mirror: bool) {
    for (var r = 0u; r < 4u; r++) {
        let row = tile_row(t, r);
        let i = x.ti + r * T;
        for (var c = 0u; c < 4u; c++) {
            let j = x.tj + c * T;
            if (i < N && j < N) {
                if (!mirror) {
                    put(x, dst, i, j, row[c]);
                } else if (i <= j) {
                    put(x, dst, i, j, row[c]);
                    put(x, dst, j, i, row[c]);
                }
            }
        }
    }
}

// Stages V (and λ) of the workgroup's live matrices, and ok_sh from the forward status;
// coalesced over the whole workgroup. Follow with a barrier.
fn load_eigh(x: Ctx) {
    for (var e = x.lid; e < MATS * N * N; e += WG) {
        let m = e / (N * N);
        let q = e % (N * N);
        if (x.first + m < params.batch) {
            sh[sh_index(SRC_V, m, q / N, q % N)] = vectors_in[x.first * N * N + e];
        }
    }
    for (var e = x.lid; e < MATS * N; e += WG) {
        if (x.first + e / N < params.batch) {
            lam_sh[e] = values_in[x.first * N + e];
        }
    }
    for (var m = x.lid; m < MATS; m += WG) {
        let g = x.first + m;
        ok_sh[m] = select(0u, 1u, g < params.batch && status_in[min(g, params.batch - 1u)] == 0u);
    }
}

// The position of element e of the workgroup's [MATS][N][N] block: matrix m of the workgroup,
// row i, column j, and whether the matrix is live.
struct Elem {
    m: u32,
    i: u32,
    j: u32,
    live: bool,
}

fn elem(x: Ctx, e: u32) -> Elem {
    let m = e / (N * N);
    let q = e % (N * N);
    return Elem(m, q / N, q % N, x.first + m < params.batch);
}

// Stores element e of the workgroup's block, read from global memory, into W.
fn stage_w(x: Ctx, e: u32, v: f32) {
    let p = elem(x, e);
    if (W_SHARED) {
        sh[sh_index(SRC_W, p.m, p.i, p.j)] = v;
    } else if (p.live) {
        nn_out[x.first * N * N + e] = v;
    }
}

// The mask threshold of the caller's matrix: tol · max|λ| for the mask policy, else 0.
fn mask_threshold(x: Ctx, tol: f32) -> f32 {
    if (POLICY != 0u) {
        return 0.0;
    }
    var m = 0.0;
    for (var i = 0u; i < N; i++) {
        m = max(m, abs(lam_sh[x.mi * N + i]));
    }
    return tol * m;
}

// λ_i of the caller's matrix.
fn lam(x: Ctx, i: u32) -> f32 {
    return lam_sh[x.mi * N + i];
}

// F_ij = policy(λ_j − λ_i) of the caller's matrix.
fn factor(x: Ctx, i: u32, j: u32, thr: f32) -> f32 {
    let delta = lam(x, j) - lam(x, i);
    return degeneracy_factor(POLICY, delta, thr, params.tol, bitcast<f32>(params.inf_bits));
}

// Writes buffer `src` of the workgroup's matrices to nn_out, coalesced, as (X + Xᵀ)/2 when
// `sym`, NaN where ok_sh is 0. Requires `src` in workgroup memory.
fn write_block(x: Ctx, src: u32, sym: bool) {
    let nan = bitcast<f32>(params.nan_bits);
    for (var e = x.lid; e < MATS * N * N; e += WG) {
        let p = elem(x, e);
        if (p.live) {
            var v = sh[sh_index(src, p.m, p.i, p.j)];
            if (sym) {
                v = 0.5 * (v + sh[sh_index(src, p.m, p.j, p.i)]);
            }
            nn_out[x.first * N * N + e] = select(nan, v, ok_sh[p.m] != 0u);
        }
    }
}

// Writes the final tile `t` of every matrix to nn_out, as (X + Xᵀ)/2 when `sym`, NaN where
// the status is not ok. Call from uniform control flow (it synchronises): W may still be read
// by other invocations when it is called.
fn write_tile(x: Ctx, t: Tile, sym: bool) {
    sync_dense();
    if (W_SHARED) {
        put_tile(x, t, SRC_W, false);
        workgroupBarrier();
        write_block(x, SRC_W, sym);
        return;
    }
    let nan = bitcast<f32>(params.nan_bits);
    let ok = x.live && ok_sh[x.mi] != 0u;
    if (!sym) {
        for (var r = 0u; r < 4u; r++) {
            let row = tile_row(t, r);
            let i = x.ti + r * T;
            for (var c = 0u; c < 4u; c++) {
                let j = x.tj + c * T;
                if (x.live && i < N && j < N) {
                    nn_out[(x.g * N + i) * N + j] = select(nan, row[c], ok);
                }
            }
        }
        return;
    }
    put_tile(x, t, SRC_W, false);
    sync_dense();
    // Each unordered pair read and written by one invocation, since the pair lives in nn_out.
    if (x.live) {
        for (var e = x.lid % TPM; e < N * N; e += TPM) {
            let i = e / N;
            let j = e % N;
            if (i <= j) {
                let v = select(nan, 0.5 * (at(x, SRC_W, i, j) + at(x, SRC_W, j, i)), ok);
                nn_out[(x.g * N + i) * N + j] = v;
                nn_out[(x.g * N + j) * N + i] = v;
            }
        }
    }
}

// Replaces W by the tile product, for every matrix. Call from uniform control flow.
fn store_w(x: Ctx, t: Tile) {
    sync_dense();
    put_tile(x, t, SRC_W, false);
    sync_dense();
}

// Row r of the transpose of the tile held in W: entries W[j][i] for the caller's tile rows
// i = ti + r·T and columns j = tj + c·T (a product's transposed entries, for symmetrising it).
fn transposed_row(x: Ctx, r: u32) -> vec4<f32> {
    let i = x.ti + r * T;
    return vec4<f32>(
        at(x, SRC_W, x.tj, i),
        at(x, SRC_W, x.tj + T, i),
        at(x, SRC_W, x.tj + 2u * T, i),
        at(x, SRC_W, x.tj + 3u * T, i),
    );
}

// The tile with row r replaced by v.
fn with_row(t: Tile, r: u32, v: vec4<f32>) -> Tile {
    var o = t;
    switch r {
        case 0u: { o.r0 = v; }
        case 1u: { o.r1 = v; }
        case 2u: { o.r2 = v; }
        default: { o.r3 = v; }
    }
    return o;
}

// The all-zero tile.
fn zero_tile() -> Tile {
    return Tile(vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
}
