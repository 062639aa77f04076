// One step of first-order refinement of eigenvectors from the one-sided kernel (run after it for
// the sizes where its accuracy needs it; see ForwardKernel in src/gpu/mod.rs). The one-sided
// kernel diagonalises M = A + σI, so its eigenvectors carry rounding of the order of eps·‖M‖,
// not eps·‖A‖: mixing of about eps·σ/|λ_k − λ_l| between eigenvectors k and l. With the
// original A, B = VᵀAV is diagonal up to those mixings times the gaps, and
//   V ← V + V·C,  C_kl = sym(B)_kl / (λ_l − λ_k)  (k ≠ l, the pair's mixing; 0 on the diagonal)
// removes them to first order, leaving errors of order C² and eps·‖A‖. C is antisymmetric, so
// V + V·C stays orthogonal to order C². Pairs whose mixing is not small (|C_kl| ≥ TOL: close
// or equal eigenvalues, whose eigenvectors are only defined up to a rotation among them) keep
// their vectors as they are. The eigenvalues (the forward's Rayleigh quotients) and statuses are
// left alone; the sign gauge (largest component positive, the first within GAUGE_FLOOR of it)
// is applied again.
// A is prescaled by the power of two of the largest |λ| so no product overflows. Layout in
// dense.wgsl, with W holding A, then AV, then B, then C, then the refined V.

// Largest |C_kl| applied: 2⁻¹² keeps the neglected second-order terms near f32's eps.
const TOL: f32 = 0.000244140625;

// Input matrices [batch][N][N] (the forward's input, read as stored.wgsl reads it).
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
// Eigenvalues [batch][N] from the forward.
@group(0) @binding(1) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward: the host binds the tensor of binding 4 here too
// (all bindings read_write), and each workgroup stages its matrices' vectors before anything
// writes to them.
@group(0) @binding(2) var<storage, read> vectors_in: array<f32>;
// Forward status [batch].
@group(0) @binding(3) var<storage, read> status_in: array<u32>;
// Refined eigenvectors [batch][N][N], in place (also the work matrix W when W_SHARED is false).
@group(0) @binding(4) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters.
@group(0) @binding(5) var<uniform> params: Params;

// Per matrix of the workgroup: the prescaling exponent.
var<workgroup> scale_sh: array<i32, MATS>;

// C_ij of the caller's matrix from sym(B)_ij = `b` (prescaled by 2^-s).
fn correction(x: Ctx, i: u32, j: u32, b: f32, s: i32) -> f32 {
    if (i == j || i >= N || j >= N) {
        return 0.0;
    }
    let gap = ldexp(lam(x, j), -s) - ldexp(lam(x, i), -s);
    if (abs(b) < TOL * abs(gap)) {
        return b / gap;
    }
    return 0.0;
}

// Element e of the workgroup's [MATS][N][N] block of W.
fn w_elem(x: Ctx, e: u32) -> f32 {
    let p = elem(x, e);
    if (W_SHARED) {
        return sh_elem(SRC_W, p.m, p.i, p.j);
    }
    return nn_out[x.first * N * N + e];
}

@compute @workgroup_size(WG)
fn eigh_refine(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let x = context(lid, wid);
    load_eigh(x);
    // Every read of vectors_in before any write to nn_out, the same memory.
    storageBarrier();
    workgroupBarrier();
    for (var m = lid; m < MATS; m += WG) {
        var big = 0.0;
        for (var i = 0u; i < N; i++) {
            big = max(big, abs(lam_sh[m * N + i]));
        }
        scale_sh[m] = select(0, exponent_of(big), is_finite_f32(big));
    }
    workgroupBarrier();
    // W = A, prescaled.
    for (var e = lid; e < MATS * N * N; e += WG) {
        let p = elem(x, e);
        if (p.live) {
            let a = stored_entry((x.first + p.m) * N * N, p.i, p.j);
            stage_w(x, e, ldexp(a, -scale_sh[p.m]));
        }
    }
    sync_dense();
    // W = A·V, then B = Vᵀ·(A·V) (tile in registers, whole matrix in W).
    store_w(x, gemm(x, SRC_W, false, SRC_V, false, false));
    let b = gemm(x, SRC_V, true, SRC_W, false, false);
    store_w(x, b);
    // W = C from sym(B).
    let s = scale_sh[x.mi];
    let bt = transposed_w(x);
    var c = zero_tile();
    for (var r = 0u; r < 4u; r++) {
        let i = tile_i(x, r);
        let br = 0.5 * (tile_row(b, r) + tile_row(bt, r));
        var row = vec4<f32>(0.0);
        for (var k = 0u; k < 4u; k++) {
            row = with_component(row, k, correction(x, i, tile_j(x, k), br[k], s));
        }
        c = with_row(c, r, row);
    }
    store_w(x, c);
    // W = V + V·C.
    let vc = gemm(x, SRC_V, false, SRC_W, false, false);
    var v = vc;
    for (var r = 0u; r < 4u; r++) {
        let vr = row4(x, SRC_V, x.ti, r, x.tj);
        v = with_row(v, r, tile_row(vc, r) + vr);
    }
    store_w(x, v);
    // The sign gauge per column (into lam_sh, whose eigenvalues are no longer needed).
    for (var j = lid % TPM; j < N; j += TPM) {
        var top = 0.0;
        for (var i = 0u; i < N; i++) {
            top = max(top, abs(at(x, SRC_W, i, j)));
        }
        var sign = 0.0;
        for (var i = 0u; i < N; i++) {
            let vij = at(x, SRC_W, i, j);
            if (sign == 0.0 && abs(vij) >= top * GAUGE_FLOOR) {
                sign = select(1.0, -1.0, vij < 0.0);
            }
        }
        lam_sh[x.mi * N + j] = select(sign, 1.0, sign == 0.0);
    }
    sync_dense();
    // Coalesced write; NaN where the forward status is not ok. Without W_SHARED each element is
    // read and rewritten in place by the same invocation.
    let nan = bitcast<f32>(params.nan_bits);
    for (var e = lid; e < MATS * N * N; e += WG) {
        let p = elem(x, e);
        if (p.live) {
            let vij = w_elem(x, e) * lam_sh[p.m * N + p.j];
            nn_out[x.first * N * N + e] = select(nan, vij, ok_sh[p.m] != 0u);
        }
    }
}
