// Batched symmetric eigenvalues without eigenvectors: Householder reduction to tridiagonal form
// in workgroup memory, then bisection on Sturm counts, one eigenvalue per invocation.
//
// Mapping: N invocations per matrix (invocation i owns row i of A, stored with the odd row
// stride STRIDE so that a column is spread over distinct banks), MATS matrices per workgroup.
// The input is prescaled by an exact power of two so its largest entry lies in [0.5, 1).
//
// Reduction, step k = 0..N−3, on the trailing block (rows and columns > k) of the full symmetric
// matrix: x = A[k+1.., k], α = −sign(x₀)‖x‖, v = x − α e₁, β = 2/vᵀv, p = βAv,
// w = p − (βvᵀp/2) v, A ← A − v wᵀ − w vᵀ; then d_k = A[k][k] and e_k = α. Column k itself is
// never rewritten, so v is read from it; two barriers per step. A column whose entries below
// x₀ are negligible (Σ x_j² ≤ 1e-30, i.e. |x_j| ≤ 1e-15 after prescaling, far below the f32
// rounding of eigenvalues ≥ 0.5·eps) is not reflected (β = 0), and no barrier depends on it.
//
// Bisection: invocation i finds λ_i (ascending) as the point where the Sturm count
// #{λ < x} of the tridiagonal matrix (LDLᵀ pivots q_j = d_j − x − e_{j−1}²/q_{j−1}, with
// |q| ≤ pivmin replaced by −pivmin, as LAPACK's dstebz) passes i. It bisects the ordered bit
// patterns of f32 within the widened Gershgorin interval, so at most 32 steps bring the bracket
// down to two neighbouring floats, whatever the scale; it returns the lower one. A diagonal
// input (no non-zero off-diagonal entry) is returned exactly, its diagonal ranked (ties by
// index). Bisection always converges, so the status is 0 or 1 (non-finite input), never 2.

override N: u32;       // matrix size, 1..=MAX_N
override MATS: u32;    // matrices per workgroup
override WG: u32;      // MATS * N
override STRIDE: u32;  // odd row stride ≥ N
override A_LEN: u32;   // MATS * N * STRIDE
override MN_LEN: u32;  // MATS * N

// Input matrices [batch][N][N].
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
// Eigenvalues [batch][N], ascending.
@group(0) @binding(1) var<storage, read_write> values_out: array<f32>;
// Status codes [batch] (0 ok, 1 non-finite input). Bindings 2 and 4 of the eigenvalues-only
// layout (eigenvectors, scratch) are not used.
@group(0) @binding(3) var<storage, read_write> status_out: array<u32>;
// Dispatch parameters.
@group(0) @binding(5) var<uniform> params: Params;

var<workgroup> a_sh: array<f32, A_LEN>;              // A, then its reduced trailing blocks
// (v_j, p_j) of the current reduction step; then the tridiagonal matrix, (d_j, e_{j−1}²).
var<workgroup> vp_sh: array<vec2<f32>, MN_LEN>;
var<workgroup> off_diag: array<atomic<u32>, MATS>;   // a non-zero off-diagonal entry seen

// Σ x_j² below which a column is not reflected (see the header).
const NEGLIGIBLE: f32 = 1e-30;

// The order-preserving map of finite f32 values (−0 just below +0) onto u32, and back.
fn key_of(x: f32) -> u32 {
    let b = bitcast<u32>(x);
    return select(b | 0x80000000u, ~b, (b & 0x80000000u) != 0u);
}

fn value_of(k: u32) -> f32 {
    return bitcast<f32>(select(~k, k & 0x7fffffffu, (k & 0x80000000u) != 0u));
}

// The number of eigenvalues below x of the tridiagonal matrix of slot mi (e_{−1}² = 0, so the
// first pivot is d_0 − x whatever q starts as).
fn count_below(mi: u32, x: f32, pivmin: f32) -> u32 {
    var q = 1.0;
    var c = 0u;
    for (var j = 0u; j < N; j++) {
        let t = vp_sh[mi * N + j];
        q = (t.x - x) - t.y / q;
        q = select(q, -pivmin, abs(q) <= pivmin);
        c += select(0u, 1u, q < 0.0);
    }
    return c;
}

@compute @workgroup_size(WG)
fn tridiagonal_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / N;                   // matrix slot in the workgroup
    let i = lid % N;                    // row, and then eigenvalue index
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    let row0 = mi * N * STRIDE;         // A[0][0] of this slot
    let own = row0 + i * STRIDE;        // A[i][0]

    if (i == 0u) {
        admit_reset(mi);
        atomicStore(&off_diag[mi], 0u);
    }
    workgroupBarrier();
    // Coalesced load: invocation i takes entries i, i + N, … of the matrix.
    var off = false;
    for (var e = i; e < N * N; e += N) {
        let r = e / N;
        let c = e % N;
        var x = 0.0;
        if (live) {
            x = admit(mi, stored_entry(base, r, c));
        }
        off = off || (r != c && x != 0.0);
        a_sh[row0 + r * STRIDE + c] = x;
    }
    if (off) {
        atomicOr(&off_diag[mi], 1u);
    }
    workgroupBarrier();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    let diagonal = atomicLoad(&off_diag[mi]) == 0u;
    for (var j = 0u; j < N; j++) {
        a_sh[own + j] = ldexp(a_sh[own + j], -scale_exp);
    }
    workgroupBarrier();

    var e2 = 0.0;                       // e_{i−1}², set in step i − 1
    for (var k = 0u; k + 2u < N; k++) {
        let col = row0 + k;             // A[0][k]: column k is a_sh[col + j * STRIDE]
        let x0 = a_sh[col + (k + 1u) * STRIDE];
        var s = 0.0;
        for (var j = k + 2u; j < N; j++) {
            let x = a_sh[col + j * STRIDE];
            s = fma(x, x, s);
        }
        let skip = s <= NEGLIGIBLE;
        let nrm = sqrt(fma(x0, x0, s));
        let alpha = select(-nrm, nrm, x0 < 0.0);
        let v1 = x0 - alpha;            // v_{k+1}; v_j = A[j][k] below it
        let beta = select(2.0 / fma(v1, v1, s), 0.0, skip);
        let ek = select(alpha, x0, skip);
        if (i > k) {
            var acc = a_sh[own + k + 1u] * v1;
            for (var j = k + 2u; j < N; j++) {
                acc = fma(a_sh[own + j], a_sh[col + j * STRIDE], acc);
            }
            let vi = select(a_sh[col + i * STRIDE], v1, i == k + 1u);
            vp_sh[mi * N + i] = vec2<f32>(vi, beta * acc);
            if (i == k + 1u) {
                e2 = ek * ek;
            }
        }
        workgroupBarrier();
        if (i > k) {
            // c = βvᵀp/2, then row i of A − v wᵀ − w vᵀ with w = p − c v.
            var vp = 0.0;
            for (var j = k + 1u; j < N; j++) {
                let u = vp_sh[mi * N + j];
                vp = fma(u.x, u.y, vp);
            }
            let c = 0.5 * beta * vp;
            let ui = vp_sh[mi * N + i];
            let wi = ui.y - c * ui.x;
            for (var j = k + 1u; j < N; j++) {
                let u = vp_sh[mi * N + j];
                a_sh[own + j] = a_sh[own + j] - (ui.x * (u.y - c * u.x) + wi * u.x);
            }
        }
        workgroupBarrier();
    }
    // The tridiagonal matrix: d_i, and e_{N−2} (invocation k + 1 kept e_k² from step k).
    if (N >= 2u && i == N - 1u) {
        let e = a_sh[own + N - 2u];
        e2 = e * e;
    }
    vp_sh[mi * N + i] = vec2<f32>(a_sh[own + i], e2);
    workgroupBarrier();

    var lam: f32;
    var rank = i;
    if (diagonal) {
        // The diagonal itself, ranked: ascending, ties by index.
        lam = a_sh[own + i];
        rank = 0u;
        for (var j = 0u; j < N; j++) {
            let dj = vp_sh[mi * N + j].x;
            if (dj < lam || (dj == lam && j < i)) {
                rank += 1u;
            }
        }
    } else {
        // Gershgorin interval of the tridiagonal matrix, widened as LAPACK's dstebz does.
        var gl = vp_sh[mi * N].x;
        var gu = gl;
        var max_e2 = 0.0;
        for (var j = 0u; j < N; j++) {
            let t = vp_sh[mi * N + j];
            var e2_next = 0.0;
            if (j + 1u < N) {
                e2_next = vp_sh[mi * N + j + 1u].y;
            }
            max_e2 = max(max_e2, t.y);
            let r = sqrt(t.y) + sqrt(e2_next);
            gl = min(gl, t.x - r);
            gu = max(gu, t.x + r);
        }
        let pivmin = 0x1p-100f * max(1.0, max_e2);
        let tnorm = max(abs(gl), abs(gu));
        let widen = 2.1 * (f32(N) * 1.1920929e-7 * tnorm + 2.0 * pivmin);
        var lo = key_of(gl - widen);
        var hi = key_of(gu + widen);
        while (hi - lo > 1u) {
            let mid = lo + (hi - lo) / 2u;
            if (count_below(mi, value_of(mid), pivmin) <= i) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lam = value_of(lo);
    }

    if (live) {
        let nan = bitcast<f32>(params.nan_bits);
        values_out[g * N + rank] = select(ldexp(lam, scale_exp), nan, bad);
        if (i == 0u) {
            status_out[g] = select(0u, 1u, bad);
        }
    }
}
