// Shared layout of the derivative and spectral kernels: products of N×N matrices as small
// GEMMs with register tiles. A workgroup holds MATS matrices and T×T invocations per matrix
// (T = ⌈N/4⌉). Invocation (ti, tj) of a matrix owns the 4×4 tile of every product at rows
// 4ti..4ti+3 and columns 4tj..4tj+3, kept as four vec4 accumulators (no run-time indexed
// private arrays). In workgroup memory an N×N buffer is padded with zeros to 4T×4T and stored
// as T blocks of four rows of SV vec4s (SV odd): a product runs over k in blocks of four, each
// block of an operand four 16-byte reads (rows of the operand, or of its transpose, transposed
// in registers) for 64 FMAs, and the zero padding makes the last block's k ≥ N add nothing.
// The row within a block is always a constant, so the four reads share one clamped index and
// differ by constant offsets. The eight invocations of a quarter-warp read either one vec4 (a
// broadcast) or consecutive ones, and the rows of neighbouring tiles (4·SV vec4s apart) start
// in distinct bank groups (matrices that share a warp, at n ≤ 12, may meet in one). The host
// prepends `const T: u32` (⌈N/4⌉) and `const SV: u32`.
//
// V lives in workgroup memory (buffer SRC_V) when it fits (V_SHARED), else it is read where
// it is, in `vectors_in`; a second N×N buffer W (an operand staged from global memory, then
// each intermediate product) lives in workgroup memory too when it fits (W_SHARED, only with
// V_SHARED), else in the kernel's N×N output buffer `nn_out`, which serves as scratch until
// its final write (read there as 0 outside the matrix). Staging loads and final writes run
// over the whole workgroup's matrices at once, so consecutive invocations touch consecutive
// global addresses. Each kernel declares `values_in`, `vectors_in`, `status_in`, `nn_out` and
// `params`. The host prepends `const SH_T: u32` and `const SH_SV: u32`, the workgroup array's
// dimensions: T and SV, or 1 and 1 when no buffer lives there (so that it takes no room).

override N: u32;           // matrix size, 1..=MAX_N
override MATS: u32;        // matrices per workgroup
override TPM: u32;         // invocations per matrix, T·T
override WG: u32;          // MATS · TPM
override V_SHARED: bool;   // V in workgroup memory (else read from vectors_in)
override W_SHARED: bool;   // W in workgroup memory (else in nn_out); only with V_SHARED
override SH_MATS: u32;     // MATS per buffer in workgroup memory (at least 1)
override POLICY: u32;      // degeneracy policy: 0 mask, 1 Lorentzian, 2 propagate
override MN_LEN: u32;      // MATS · N

// The N×N buffers, by source code.
const SRC_V: u32 = 0u;
const SRC_W: u32 = 1u;

// [buffer · MATS + matrix][row block][row in block][vec4 of the row].
var<workgroup> sh: array<array<array<array<vec4<f32>, SH_SV>, 4>, SH_T>, SH_MATS>;
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

// A 4×4 register tile: row r (matrix row 4ti + r) holds columns 4tj..4tj+3.
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

// Row r of the caller's tile (matrix row 4ti + r), and its column c.
fn tile_i(x: Ctx, r: u32) -> u32 {
    return 4u * x.ti + r;
}

fn tile_j(x: Ctx, c: u32) -> u32 {
    return 4u * x.tj + c;
}

// Barriers for W: the storage barrier only when W lives in global memory.
fn sync_dense() {
    if (!W_SHARED) {
        storageBarrier();
    }
    workgroupBarrier();
}

// Whether buffer `src` lives in workgroup memory.
fn in_workgroup(src: u32) -> bool {
    return select(W_SHARED, V_SHARED, src == SRC_V);
}

// Element (r, c) of buffer `src` of matrix m, in workgroup memory.
fn sh_elem(src: u32, m: u32, r: u32, c: u32) -> f32 {
    return sh[src * MATS + m][r / 4u][r % 4u][c / 4u][c % 4u];
}

// Stores element (r, c) of buffer `src` of matrix m, in workgroup memory.
fn sh_set(src: u32, m: u32, r: u32, c: u32, v: f32) {
    sh[src * MATS + m][r / 4u][r % 4u][c / 4u][c % 4u] = v;
}

// Element (r, c) of buffer `src` of the caller's matrix (r, c < 4T; 0 outside the matrix).
fn at(x: Ctx, src: u32, r: u32, c: u32) -> f32 {
    if (in_workgroup(src)) {
        return sh_elem(src, x.mi, r, c);
    }
    let e = (x.g * N + min(r, N - 1u)) * N + min(c, N - 1u);
    var v = 0.0;
    if (src == SRC_V) {
        v = vectors_in[e];
    } else {
        v = nn_out[e];
    }
    return select(0.0, v, r < N && c < N);
}

// Columns 4q..4q+3 of row 4p + u of buffer `src` of the caller's matrix (u < 4: a constant
// at every call).
fn row4(x: Ctx, src: u32, p: u32, u: u32, q: u32) -> vec4<f32> {
    if (in_workgroup(src)) {
        return sh[src * MATS + x.mi][p][u][q];
    }
    let r = 4u * p + u;
    let c = 4u * q;
    return vec4<f32>(
        at(x, src, r, c),
        at(x, src, r, c + 1u),
        at(x, src, r, c + 2u),
        at(x, src, r, c + 3u),
    );
}

// Stores element (r, c) of buffer `src` (r, c < N).
fn put(x: Ctx, src: u32, r: u32, c: u32, v: f32) {
    if (in_workgroup(src)) {
        sh_set(src, x.mi, r, c, v);
    } else if (x.live) {
        nn_out[(x.g * N + r) * N + c] = v;
    }
}

// The 4×4 block of buffer `src` at rows 4p.., columns 4q.., as rows; transposed when `trans`
// (then row u holds the block's column u, read as rows 4q.. at columns 4p..).
fn block(x: Ctx, src: u32, trans: bool, p: u32, q: u32) -> Tile {
    if (trans) {
        let l0 = row4(x, src, q, 0u, p);
        let l1 = row4(x, src, q, 1u, p);
        let l2 = row4(x, src, q, 2u, p);
        let l3 = row4(x, src, q, 3u, p);
        return Tile(
            vec4<f32>(l0.x, l1.x, l2.x, l3.x),
            vec4<f32>(l0.y, l1.y, l2.y, l3.y),
            vec4<f32>(l0.z, l1.z, l2.z, l3.z),
            vec4<f32>(l0.w, l1.w, l2.w, l3.w),
        );
    }
    return Tile(
        row4(x, src, p, 0u, q),
        row4(x, src, p, 1u, q),
        row4(x, src, p, 2u, q),
        row4(x, src, p, 3u, q),
    );
}

// λ_k for k = 4q..4q+3 of the caller's matrix (0 past N, so that the padding adds nothing even
// where λ is not finite).
fn lam4(x: Ctx, q: u32) -> vec4<f32> {
    var out = vec4<f32>(0.0);
    for (var u = 0u; u < 4u; u++) {
        let k = 4u * q + u;
        if (k < N) {
            out = with_component(out, u, lam_sh[x.mi * N + k]);
        }
    }
    return out;
}

// acc + a.x·b.r0 + a.y·b.r1 + a.z·b.r2 + a.w·b.r3, as a chain of FMAs into acc.
fn mac4(acc: vec4<f32>, a: vec4<f32>, b: Tile) -> vec4<f32> {
    let s0 = fma(vec4<f32>(a.x), b.r0, acc);
    let s1 = fma(vec4<f32>(a.y), b.r1, s0);
    let s2 = fma(vec4<f32>(a.z), b.r2, s1);
    return fma(vec4<f32>(a.w), b.r3, s2);
}

// The caller's tile of op(A)·op(B), with column k of op(A) scaled by lam_sh[k] when `scale`.
// No barrier inside: callers synchronise before overwriting an operand.
fn gemm(x: Ctx, a: u32, a_t: bool, b: u32, b_t: bool, scale: bool) -> Tile {
    var acc = zero_tile();
    for (var q = 0u; q < T; q++) {
        // op(A) at rows 4ti.., columns 4q..; op(B) at rows 4q.., columns 4tj...
        var ab = block(x, a, a_t, x.ti, q);
        if (scale) {
            let s = lam4(x, q);
            ab = Tile(ab.r0 * s, ab.r1 * s, ab.r2 * s, ab.r3 * s);
        }
        let bb = block(x, b, b_t, q, x.tj);
        acc.r0 = mac4(acc.r0, ab.r0, bb);
        acc.r1 = mac4(acc.r1, ab.r1, bb);
        acc.r2 = mac4(acc.r2, ab.r2, bb);
        acc.r3 = mac4(acc.r3, ab.r3, bb);
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

// Stores the tile into buffer `dst`: every entry, 0 outside the matrix (so the padding stays
// zero); with `mirror`, only entries inside the matrix on or above the diagonal, each to
// (i, j) and (j, i).
fn put_tile(x: Ctx, t: Tile, dst: u32, mirror: bool) {
    for (var r = 0u; r < 4u; r++) {
        let row = tile_row(t, r);
        let i = tile_i(x, r);
        if (!mirror && in_workgroup(dst)) {
            let inside = vec4<u32>(tile_j(x, 0u)) + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(N);
            let v = select(vec4<f32>(0.0), row, inside & vec4<bool>(i < N));
            sh[dst * MATS + x.mi][x.ti][r][x.tj] = v;
            continue;
        }
        for (var c = 0u; c < 4u; c++) {
            let j = tile_j(x, c);
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

// Zeroes the padding (rows or columns ≥ N, up to 4T) of buffer `src` of every matrix of the
// workgroup. Follow with a barrier.
fn clear_padding(x: Ctx, src: u32) {
    for (var e = x.lid; e < MATS * 16u * T * T; e += WG) {
        let m = e / (16u * T * T);
        let q = e % (16u * T * T);
        let r = q / (4u * T);
        let c = q % (4u * T);
        if (r >= N || c >= N) {
            sh_set(src, m, r, c, 0.0);
        }
    }
}

// Stages V (and λ) of the workgroup's live matrices, and ok_sh from the forward status;
// coalesced over the whole workgroup; zeroes the padding of V and W in workgroup memory.
// Follow with a barrier.
fn load_eigh(x: Ctx) {
    if (V_SHARED) {
        for (var e = x.lid; e < MATS * N * N; e += WG) {
            let m = e / (N * N);
            let q = e % (N * N);
            if (x.first + m < params.batch) {
                sh_set(SRC_V, m, q / N, q % N, vectors_in[x.first * N * N + e]);
            }
        }
        clear_padding(x, SRC_V);
    }
    if (W_SHARED) {
        clear_padding(x, SRC_W);
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
        sh_set(SRC_W, p.m, p.i, p.j, v);
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
            var v = sh_elem(src, p.m, p.i, p.j);
            if (sym) {
                v = mean_of(v, sh_elem(src, p.m, p.j, p.i));
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
            let i = tile_i(x, r);
            for (var c = 0u; c < 4u; c++) {
                let j = tile_j(x, c);
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
                let v = select(nan, mean_of(at(x, SRC_W, i, j), at(x, SRC_W, j, i)), ok);
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

// The transpose of the caller's tile of W: row r holds W[4tj + c][4ti + r], c = 0..3 (a
// product's transposed entries, for symmetrising it).
fn transposed_w(x: Ctx) -> Tile {
    return block(x, SRC_W, true, x.ti, x.tj);
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
