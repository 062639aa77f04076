// Batched symmetric eigenvalues without eigenvectors: Householder reduction to tridiagonal form,
// then bisection on Sturm counts, one eigenvalue per invocation.
//
// Mapping: N invocations per matrix, MATS matrices per workgroup. Invocation i keeps row i of A
// in registers as R4 = ⌈N/4⌉ named vec4 variables (r0, r1, …; the host repeats every block
// between `//@for q` and `//@end` for q = 0..R4, as for the one-sided Jacobi kernel), so the
// inner products and updates are unrolled vec4 arithmetic; vectors every invocation needs pass
// through workgroup memory as vec4s (broadcast loads). The input is prescaled by an exact power
// of two so its largest entry lies in [0.5, 1).
//
// Reduction, step k = 0..N−3, on the trailing block (rows and columns > k) of the full symmetric
// matrix: x = A[k+1.., k], α = −sign(x₀)‖x‖, v = x − α e₁, β = 2/vᵀv, p = βAv,
// w = p − (βvᵀp/2) v, A ← A − v wᵀ − w vᵀ; then d_k = A[k][k] and e_k = α. Each invocation
// posts its entry of column k (0 above row k + 1); after a barrier all read x, and invocation i
// forms p_i = β·(row_i·x + a_{i,k+1}(v_{k+1} − x₀)) and posts v_i and p_i; after a second barrier all
// read v and p and update their row. A finished row (i ≤ k) has v_i = 0, so its update is
// row_i·H, which leaves its entries ≤ k (its diagonal included) alone and keeps it bounded. A
// column whose entries below x₀ are negligible (Σ x_j² ≤ 1e-30, i.e. |x_j| ≤ 1e-15 after
// prescaling, far below the f32 rounding of eigenvalues ≥ 0.5·eps) is not reflected (β = 0);
// no barrier depends on that.
//
// Eigenvalues: the Gershgorin interval [gl, gu] of the tridiagonal matrix T, widened as LAPACK's
// dstebz does; a multisection first (invocation j counts the eigenvalues of T below
// gl + (j + 1)(gu − gl)/(N + 1)), which brackets every eigenvalue within one (N + 1)-th of the
// interval; then each invocation i bisects its bracket for λ_i (ascending) on the Sturm count
// #{λ < x} (signs of the LDLᵀ pivots q_j = d_j − x − e_{j−1}²/q_{j−1}, with |q| ≤ pivmin
// replaced by −pivmin, as dstebz) down to eps·‖T‖, about 19 steps at N = 32, and returns the
// bracket's midpoint. A diagonal input (no non-zero off-diagonal entry) is returned exactly, its
// diagonal ranked (ties by index). Bisection always converges, so the status is 0 or 1
// (non-finite input), never 2. The host prepends `const R4: u32` and expands the `//@for q`
// blocks.

override N: u32;       // matrix size, 1..=MAX_N
override MATS: u32;    // matrices per workgroup
override WG: u32;      // MATS * N
override MN_LEN: u32;  // MATS * N

// Bindings in forward_bindings.wgsl (bindings 2 and 4, eigenvectors and scratch, are not
// used; status is 0 or 1).

// Per matrix R4 vec4s each: column k of the current step; v, then T's diagonal d (the padding
// past N: a huge value, which no count reaches); p, then e_{j−1}² at j. Indexed [matrix][vec4]
// so that the unrolled loops' vec4 index is a literal (no bounds clamp).
var<workgroup> col_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> v_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> p_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> counts: array<u32, MN_LEN>;           // the multisection's counts
var<workgroup> off_diag: array<atomic<u32>, MATS>;   // a non-zero off-diagonal entry seen

// Σ x_j² below which a column is not reflected (see the header).
const NEGLIGIBLE: f32 = 1e-30;
// T's diagonal past N, so that padding never counts as an eigenvalue below x.
const PAD_D: f32 = 1e30;

// Whether each component of quad q is a row ≤ p.
fn tri_at_most(q: u32, p: u32) -> vec4<bool> {
    return vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) <= vec4<u32>(p);
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// One step of the Sturm recurrence: the pivot after q for diagonal d and e² = e2 (negative
// pivots are the eigenvalues below x).
fn sturm(q: f32, d: f32, e2: f32, x: f32, pivmin: f32) -> f32 {
    let next = (d - x) - e2 / q;
    return select(next, -pivmin, abs(next) <= pivmin);
}

// The number of eigenvalues below x of the tridiagonal matrix of slot mi.
fn count_below(mi: u32, x: f32, pivmin: f32) -> u32 {
    var q = 1.0;                        // any non-zero start: e_{−1}² = 0
    var c = vec4<u32>(0u);
    //@for q
    let d$q = v_sh[mi][$qu];
    let e$q = p_sh[mi][$qu];
    q = sturm(q, d$q.x, e$q.x, x, pivmin);
    c.x += select(0u, 1u, q < 0.0);
    q = sturm(q, d$q.y, e$q.y, x, pivmin);
    c.y += select(0u, 1u, q < 0.0);
    q = sturm(q, d$q.z, e$q.z, x, pivmin);
    c.z += select(0u, 1u, q < 0.0);
    q = sturm(q, d$q.w, e$q.w, x, pivmin);
    c.w += select(0u, 1u, q < 0.0);
    //@end
    return (c.x + c.y) + (c.z + c.w);
}

@compute @workgroup_size(WG)
fn tridiagonal_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / N;                   // matrix slot in the workgroup
    let i = lid % N;                    // row, and then eigenvalue index
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    let slot = i / 4u;                  // this invocation's vec4 in its matrix's vectors
    let lane = i % 4u;

    if (i == 0u) {
        admit_reset(mi);
        atomicStore(&off_diag[mi], 0u);
    }
    // Zero the vector buffers past N (T's diagonal gets PAD_D there after the reduction).
    for (var j = N + i; j < 4u * R4; j += N) {
        col_sh[mi][j / 4u][j % 4u] = 0.0;
        v_sh[mi][j / 4u][j % 4u] = 0.0;
        p_sh[mi][j / 4u][j % 4u] = 0.0;
    }
    workgroupBarrier();
    // Row i (columns ≥ N read 0; a non-finite entry reads 0 and marks the matrix).
    var off = false;
    var seen = admitted_none();
    //@for q
    var r$q = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c++) {
        let j = 4u * $qu + c;
        if (live && j < N) {
            let x = admit(&seen, stored_entry(base, i, j));
            r$q = with_component(r$q, c, x);
            off = off || (j != i && x != 0.0);
        }
    }
    //@end
    admit_flush(mi, seen);
    if (off) {
        atomicOr(&off_diag[mi], 1u);
    }
    workgroupBarrier();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    let diagonal = atomicLoad(&off_diag[mi]) == 0u;
    //@for q
    r$q = ldexp(r$q, vec4<i32>(-scale_exp));
    //@end

    var e2 = 0.0;                       // e_{i−1}², kept from step i − 1
    for (var k = 0u; k + 2u < N; k++) {
        // This row's entries k (its column-k entry) and k + 1.
        var rk = 0.0;
        var rk1 = 0.0;
        //@for q
        let rv$q = r$q;
        if (k / 4u == $qu) {
            rk = rv$q[k % 4u];
        }
        if ((k + 1u) / 4u == $qu) {
            rk1 = rv$q[(k + 1u) % 4u];
        }
        //@end
        let xi = select(0.0, rk, i > k);
        col_sh[mi][slot][lane] = xi;
        workgroupBarrier();
        let x0 = col_sh[mi][(k + 1u) / 4u][(k + 1u) % 4u];
        // Quads wholly left of column k + 1 hold nothing the step reads or changes (x and v
        // are 0 there), so they are skipped (k is uniform: no divergence).
        var s4 = vec4<f32>(0.0);
        var rx4 = vec4<f32>(0.0);
        //@for q
        if (4u * $qu + 3u > k) {
            let c$q = col_sh[mi][$qu];
            let below$q = select(c$q, vec4<f32>(0.0), tri_at_most($qu, k + 1u));
            s4 = fma(below$q, below$q, s4);
            rx4 = fma(r$q, c$q, rx4);
        }
        //@end
        let s = hsum(s4);
        let skip = s <= NEGLIGIBLE;
        let nrm = sqrt(fma(x0, x0, s));
        let alpha = select(-nrm, nrm, x0 < 0.0);
        let vk1 = x0 - alpha;           // v_{k+1}; v_j = x_j below it, 0 above
        let beta = select(2.0 / fma(vk1, vk1, s), 0.0, skip);
        let vi = select(xi, vk1, i == k + 1u);
        let pi = beta * fma(rk1, vk1 - x0, hsum(rx4));
        v_sh[mi][slot][lane] = vi;
        p_sh[mi][slot][lane] = pi;
        if (i == k + 1u) {
            let ek = select(alpha, x0, skip);
            e2 = ek * ek;
        }
        workgroupBarrier();
        // c = βvᵀp/2; row i of A − v wᵀ − w vᵀ with w = p − c v.
        var vp4 = vec4<f32>(0.0);
        //@for q
        if (4u * $qu + 3u > k) {
            vp4 = fma(v_sh[mi][$qu], p_sh[mi][$qu], vp4);
        }
        //@end
        let c = 0.5 * beta * hsum(vp4);
        let wi = pi - c * vi;
        //@for q
        if (4u * $qu + 3u > k) {
            let vv$q = v_sh[mi][$qu];
            let w$q = p_sh[mi][$qu] - c * vv$q;
            r$q = r$q - (vi * w$q + wi * vv$q);
        }
        //@end
    }
    // T: d_i and e_{i−1}² (e_{N−2} from the last row). Every read of v and p of the last step
    // happened before this barrier.
    var di = 0.0;
    var last_e = 0.0;
    //@for q
    let rf$q = r$q;
    if (i / 4u == $qu) {
        di = rf$q[i % 4u];
    }
    if ((N + 2u) / 4u == $qu + 1u) {
        // (N − 2) / 4 == q, for N ≥ 2; unsigned arithmetic without wrap-around.
        last_e = rf$q[(N + 2u) % 4u];
    }
    //@end
    if (N >= 2u && i == N - 1u) {
        e2 = last_e * last_e;
    }
    workgroupBarrier();
    v_sh[mi][slot][lane] = di;
    p_sh[mi][slot][lane] = e2;
    for (var j = N + i; j < 4u * R4; j += N) {
        v_sh[mi][j / 4u][j % 4u] = PAD_D;
    }
    workgroupBarrier();

    // Gershgorin interval of T, widened as LAPACK's dstebz does (every invocation of the matrix
    // computes the same values).
    var gl = PAD_D;
    var gu = -PAD_D;
    var max_e2 = 0.0;
    var e_below = 0.0;                  // |e_{j−1}|
    for (var j = 0u; j < N; j++) {
        let d = v_sh[mi][j / 4u][j % 4u];
        var e_next = 0.0;
        if (j + 1u < N) {
            let en2 = p_sh[mi][(j + 1u) / 4u][(j + 1u) % 4u];
            max_e2 = max(max_e2, en2);
            e_next = sqrt(en2);
        }
        gl = min(gl, d - (e_below + e_next));
        gu = max(gu, d + (e_below + e_next));
        e_below = e_next;
    }
    let pivmin = 0x1p-100f * max(1.0, max_e2);
    let tnorm = max(abs(gl), abs(gu));
    let widen = 2.1 * (f32(N) * 1.1920929e-7 * tnorm + 2.0 * pivmin);
    gl -= widen;
    gu += widen;
    // Multisection: N + 1 equal parts (for every matrix, so that the barrier stays uniform).
    let h = (gu - gl) / f32(N + 1u);
    counts[mi * N + i] = count_below(mi, fma(f32(i + 1u), h, gl), pivmin);
    workgroupBarrier();

    var lam: f32;
    var rank = i;
    if (diagonal) {
        // The diagonal itself, ranked: ascending, ties by index.
        lam = di;
        rank = 0u;
        for (var j = 0u; j < N; j++) {
            let dj = v_sh[mi][j / 4u][j % 4u];
            if (dj < lam || (dj == lam && j < i)) {
                rank += 1u;
            }
        }
    } else {
        // λ_i lies above the last point whose count is ≤ i and at or below the first whose
        // count is > i (the interval's ends count 0 and N).
        var lo = gl;
        var hi = gu;
        for (var j = 0u; j < N; j++) {
            let x = fma(f32(j + 1u), h, gl);
            if (counts[mi * N + j] <= i) {
                lo = max(lo, x);
            } else {
                hi = min(hi, x);
            }
        }
        let tol = 1.1920929e-7 * tnorm;
        loop {
            let mid = 0.5 * (lo + hi);
            if (hi - lo <= tol || mid <= lo || mid >= hi) {
                break;
            }
            if (count_below(mi, mid, pivmin) <= i) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lam = 0.5 * (lo + hi);
    }

    if (live) {
        let nan = bitcast<f32>(params.nan_bits);
        values_out[g * N + rank] = select(ldexp(lam, scale_exp), nan, bad);
        if (i == 0u) {
            status_out[g] = select(0u, 1u, bad);
        }
    }
}
