// Batched symmetric eigenvalues (tridiagonal_eigvalsh.wgsl) and eigendecompositions
// (tridiagonal_eigh.wgsl) through Householder reduction to tridiagonal form T = QᵀAQ: the body
// of both. Each entry file defines `const VECTORS: bool`: without it, T's eigenvalues by
// bisection on Sturm counts; with it, Q is accumulated and implicit QL iterations on T rotate
// it into the eigenvectors.
//
// Mapping: N invocations per matrix, MATS matrices per workgroup. Invocation i keeps row i of A
// in registers as R4 = ⌈N/4⌉ named vec4 variables (r0, r1, …; the host repeats every block
// between `//@for q` and `//@end` for q = 0..R4, as for the one-sided Jacobi kernel), and, with
// VECTORS, row i of Q likewise (q0, q1, …), so the inner products and updates are unrolled vec4
// arithmetic; vectors every invocation needs pass through workgroup memory as vec4s (broadcast
// loads). The input is prescaled by an exact power of two so its largest entry lies in
// [0.5, 1).
//
// Reduction, step k = 0..N−3, on the trailing block (rows and columns > k) of the full symmetric
// matrix: x = A[k+1.., k], α = −sign(x₀)‖x‖, v = x − α e₁, β = 2/vᵀv, p = βAv,
// w = p − (βvᵀp/2) v, A ← A − v wᵀ − w vᵀ (and Q ← Q − β(Qv)vᵀ); then d_k = A[k][k] and
// e_k = α. Each invocation posts its entry of column k (0 above row k + 1); after a barrier all
// read x, and invocation i forms p_i = β·(row_i·x + a_{i,k+1}(v_{k+1} − x₀)) and posts v_i and
// p_i; after a second barrier all read v and p and update their rows. A finished row (i ≤ k)
// has v_i = 0, so its update is row_i·H, which leaves its entries ≤ k (its diagonal included)
// alone and keeps it bounded. A column whose entries below x₀ are negligible (Σ x_j² ≤ 1e-30,
// i.e. |x_j| ≤ 1e-15 after prescaling, far below the f32 rounding of eigenvalues ≥ 0.5·eps) is
// not reflected (β = 0); no barrier depends on that. A diagonal input is never reflected: Q = I
// and T = A exactly.
//
// QL (with VECTORS; EISPACK's tql2 with LAPACK dsteqr's treatment of a zero rotation): rounds
// of two phases. In the first, invocation k < MATS of the workgroup does one implicit QL
// iteration with a Wilkinson shift on the unreduced block [l, m] of matrix k's T (its d and e
// in workgroup memory, e_j = T[j+1][j]; the whole scalar chain on one invocation, so the
// matrices' chains run side by side instead of every invocation of a matrix repeating its
// chain) and logs the chain's rotations (c_j, s_j), j = m−1 down to l, in a log that holds the
// identity (1, 0) everywhere else (the invocation resets what its previous block logged outside
// the new one); after a barrier every invocation applies the logged rotations to its row of Q
// in registers (the rotation of columns j and j + 1 written out for every j, `//@for j desc`,
// in groups of 8 under one guard that skips a group wholly outside [l, m): the identity would
// leave its pairs exactly as they are). Deflation: e_j is negligible when
// |e_j| ≤ TOL·(|d_j| + |d_{j+1}|) + FLOOR (prescaled units); the chain tests each e_j it makes
// final, so the next iteration's block end is known without rescanning. Budget: MAX_ROT
// rotations per matrix (the sweep cap times the N(N−1)/2 rotations of a Jacobi sweep); a matrix
// that would exceed it is marked failed (status 2). The rounds go on until no matrix of the
// workgroup had a block left. Then the eigenvalues are ranked (ascending; ties by the index of
// the vector's largest component, which orders a diagonal input's ties by index as the CPU
// reference does), the largest component of each vector made positive, and the vectors written
// out coalesced from a column-major staging area in workgroup memory, which holds STAGE
// matrices at a time (PASSES passes), or, where not even one matrix's staging fits (UNSTAGED,
// n ≥ 60 under 16 KiB), through the output buffer itself (each row of Q written, read back by
// column for the ties and signs, then rewritten permuted and signed).
//
// Bisection (without VECTORS): the Gershgorin interval [gl, gu] of the tridiagonal matrix T,
// widened as LAPACK's dstebz does; a multisection first (invocation j counts the eigenvalues of
// T below gl + (j + 1)(gu − gl)/(N + 1)), which brackets every eigenvalue within one (N + 1)-th
// of the interval; then each invocation i bisects its bracket for λ_i (ascending) on the Sturm
// count #{λ < x} (signs of the LDLᵀ pivots q_j = d_j − x − e_{j−1}²/q_{j−1}, with |q| ≤ pivmin
// replaced by −pivmin, as dstebz) down to eps·‖T‖, about 19 steps at N = 32, and returns the
// bracket's midpoint. A diagonal input (no non-zero off-diagonal entry) is returned exactly, its
// diagonal ranked (ties by index). Bisection always converges, so the status is 0 or 1
// (non-finite input), never 2.
//
// The host prepends `const R4: u32` and expands the `//@for q` and `//@for j desc` blocks.

override N: u32;       // matrix size, 1..=MAX_N
override MATS: u32;    // matrices per workgroup
override WG: u32;      // MATS * N
override MN_LEN: u32;  // MATS * N
// With VECTORS (the defaults size the QL arrays for one matrix, and the staging to one word,
// for the eigenvalues-only kernel): the eigenvectors staged column-major for the output, N·NP
// words per staged matrix, with an odd column stride NP so that a row of them spreads over
// distinct banks; the matrices of the QL arrays; the QL's budget and deflation thresholds.
override NP: u32 = 1u;
override STAGE: u32 = 1u;    // matrices staged per pass
override PASSES: u32 = 1u;   // ⌈MATS / STAGE⌉
override Q_LEN: u32 = 1u;    // STAGE * N * NP
override QL_MATS: u32 = 1u;  // MATS
// Without room for even one staged matrix: the eigenvectors pass through the output buffer
// instead (STAGE and PASSES then unused).
override UNSTAGED: bool = false;
override MAX_ROT: u32 = 0u;  // rotation budget per matrix
override TOL: f32 = 0.0;     // relative deflation threshold
override FLOOR: f32 = 0.0;   // absolute deflation threshold (prescaled units)

// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

// Per matrix R4 vec4s each: column k of the current step; v; p. Indexed [matrix][vec4] so that
// the unrolled loops' vec4 index is a literal (no bounds clamp). The bisection reuses two of
// them for T.
var<workgroup> col_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> v_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> p_sh: array<array<vec4<f32>, R4>, MATS>;
var<workgroup> qsh: array<f32, Q_LEN>;
var<workgroup> off_diag: array<atomic<u32>, MATS>;   // a non-zero off-diagonal entry seen
// The QL's state per matrix: T's d and e, the rotation log (c_j, s_j) (entries ≥ N − 1 unused;
// a constant row length, so that the written-out rotations' literal j needs no clamp), the block
// the last chain rotated ([x, y); empty when none) and whether the budget ran out; whether the
// workgroup goes on.
var<workgroup> ql_d: array<array<f32, 4u * R4>, QL_MATS>;
var<workgroup> ql_e: array<array<f32, 4u * R4>, QL_MATS>;
var<workgroup> ql_rot: array<array<vec2<f32>, 4u * R4>, QL_MATS>;
var<workgroup> ql_block: array<vec2<u32>, MATS>;
var<workgroup> ql_failed: array<u32, MATS>;
var<workgroup> ql_go: u32;

// Σ x_j² below which a column is not reflected (see the header).
const NEGLIGIBLE: f32 = 1e-30;

// Without VECTORS, after the reduction, per matrix: T's diagonal d in v_sh (the padding past N:
// a huge value, which no count reaches) and e_{j−1}² at j in p_sh.
var<workgroup> counts: array<u32, MN_LEN>;           // the multisection's counts

// T's diagonal past N, so that padding never counts as an eigenvalue below x.
const PAD_D: f32 = 1e30;

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

// What the reduction hands to the output stage, per invocation.
struct Tri {
    mi: u32,          // matrix slot in the workgroup
    i: u32,           // row
    g: u32,           // matrix index in the dispatch
    live: bool,       // g is inside the dispatch
    bad: bool,        // the matrix had a non-finite entry
    scale_exp: i32,   // the input was scaled by 2^−scale_exp
    diagonal: bool,   // no non-zero off-diagonal entry
    d: f32,           // T[i][i]
    e: f32,           // T[i][i−1] (0 for i = 0)
}

// Whether each component of quad q is a row ≤ p.
fn tri_at_most(q: u32, p: u32) -> vec4<bool> {
    return vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) <= vec4<u32>(p);
}

fn hsum(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

// Whether T's off-diagonal entry e, between diagonal entries d0 and d1, is negligible.
fn negligible(e: f32, d0: f32, d1: f32) -> bool {
    return abs(e) <= fma(TOL, abs(d0) + abs(d1), FLOOR);
}

// Whether e_j of matrix k is negligible.
fn ql_negligible(k: u32, j: u32) -> bool {
    return negligible(ql_e[k][j], ql_d[k][j], ql_d[k][j + 1u]);
}

// The QL's progress on one matrix, kept by the invocation that runs its chains.
struct QlState {
    l: u32,         // every e_j with j < l is negligible
    used: u32,      // rotations so far
    failed: bool,   // the budget ran out
    // The first index above l with a negligible e_j, as the last chain found it (valid while
    // l + 1 ≤ next: every e_j in [l + 1, next) is then known not negligible).
    next: u32,
}

// Resets the rotation log of matrix k to the identity at indices [start, end).
fn ql_identity(k: u32, start: u32, end: u32) {
    for (var j = start; j < end; j++) {
        ql_rot[k][j] = vec2<f32>(1.0, 0.0);
    }
}

// One QL iteration on matrix k by the one invocation that owns its chain: finds the unreduced
// block [l, m] (l: the first index with a non-negligible e_l; m: the first index from l on with
// a negligible e_m, e_{N−1} = 0), updates d and e in place and logs the rotations; records the
// block in ql_block[k] (empty when there is none or the budget ran out). The log's entries of
// the previous block, ql_block[k] (only this invocation writes it), go back to the identity
// where this iteration does not overwrite them.
fn ql_iteration(k: u32, st: ptr<function, QlState>) {
    let logged = ql_block[k];
    var l = (*st).l;
    var m = l;
    loop {
        if (l + 1u >= N) {
            break;
        }
        if (!ql_negligible(k, l)) {
            if (l + 1u <= (*st).next) {
                m = (*st).next;
            } else {
                m = l + 1u;
                loop {
                    if (m + 1u >= N || ql_negligible(k, m)) {
                        break;
                    }
                    m++;
                }
            }
            break;
        }
        l++;
    }
    (*st).l = l;
    var busy = !(*st).failed && l + 1u < N;
    if (busy && (*st).used + (m - l) > MAX_ROT) {
        (*st).failed = true;
        busy = false;
    }
    if (!busy) {
        ql_identity(k, logged.x, logged.y);
        ql_block[k] = vec2<u32>(0u, 0u);
        return;
    }
    // Successive blocks mostly overlap (the block shrinks as eigenvalues deflate at its ends),
    // so only the previous block's entries outside [l, m) are reset.
    ql_identity(k, logged.x, min(logged.y, l));
    ql_identity(k, max(logged.x, m), logged.y);
    (*st).used += m - l;
    // Wilkinson shift from the top 2×2 block, then the chain from the bottom up.
    let dl = ql_d[k][l];
    let el = ql_e[k][l];
    var g = (ql_d[k][l + 1u] - dl) / (2.0 * el);
    var r = sqrt(fma(g, g, 1.0));
    g = ql_d[k][m] - dl + el / (g + select(-r, r, g >= 0.0));
    var s = 1.0;
    var c = 1.0;
    var p = 0.0;
    var d_next = ql_d[k][m];            // d_{j+1} before this iteration
    var d_above = 0.0;                  // d_{j+2} after it (read from j1 = m − 1 on)
    var next = m;
    // e_j and d_j are read one step ahead, so that the workgroup-memory latency stays off the
    // chain's critical path (they are not written before step j reads them: step j writes
    // index j + 1).
    var ej = ql_e[k][m - 1u];
    var dj = ql_d[k][m - 1u];
    for (var j1 = m; j1 > l; j1--) {
        let j = j1 - 1u;
        let ahead = j - select(1u, 0u, j == 0u);
        let e_ahead = ql_e[k][ahead];
        let d_ahead = ql_d[k][ahead];
        let f = s * ej;
        let b = c * ej;
        let b2 = 2.0 * b;
        let q = fma(f, f, g * g);
        let e_new = sqrt(q);
        ql_e[k][j1] = e_new;
        // q = 0 (f = g = 0): the identity rotation, as LAPACK's dlartg gives. The reciprocal
        // comes from q itself (one inverse square root, not a square root and then a division
        // on the chain's critical path).
        let zero = q == 0.0;
        let inv = select(inverseSqrt(q), 0.0, zero);
        s = f * inv;
        c = select(g * inv, 1.0, zero);
        // One Newton step on c² + s² = 1, as a correction added to c and s (a GPU's square
        // root and inverse square root may be a few ulp off, and every column of Q meets
        // hundreds of these rotations). Even with exact arithmetic it helps: on llvmpipe
        // ‖VᵀV − I‖ at n = 64 went from 1.0e-5 without it to 7.4e-6, and the VJP error from
        // 1.5e-5 to 1.0e-5, where the form c·(1.5 − (c² + s²)/2) made them worse (2.9e-5,
        // 2.6e-5): that factor lies on a grid of 2⁻²³ above 1. T's update takes the corrected
        // pair too: with the correction on the rotation log alone, the eigenvalue error at
        // n = 64 rose from 1.3e-6 to 2.2e-6 and the VJP error to 1.5e-5.
        let h = 0.5 * fma(-c, c, fma(-s, s, 1.0));
        s = fma(s, h, s);
        c = fma(c, h, c);
        ql_rot[k][j] = vec2<f32>(c, s);
        g = d_next - p;
        r = fma(dj - g, s, c * b2);
        p = s * r;
        let d_new = g + p;
        ql_d[k][j1] = d_new;
        g = fma(c, r, -b);
        // e_{j1} and d_{j1}, d_{j1+1} are final now (below m): the lowest negligible one ends
        // the next iteration's block.
        if (j1 < m && negligible(e_new, d_new, d_above)) {
            next = j1;
        }
        d_above = d_new;
        d_next = dj;
        ej = e_ahead;
        dj = d_ahead;
    }
    (*st).next = next;
    ql_d[k][l] = dl - p;
    ql_e[k][l] = g;
    ql_e[k][m] = 0.0;
    ql_block[k] = vec2<u32>(l, m);
}

// Without VECTORS: T's eigenvalues by bisection, written out ranked.
fn bisect_eigenvalues(t: Tri) {
    let mi = t.mi;
    let i = t.i;
    let di = t.d;
    v_sh[mi][i / 4u][i % 4u] = di;
    p_sh[mi][i / 4u][i % 4u] = t.e * t.e;
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
    if (t.diagonal) {
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
    // An eigenvalue beyond the f32 range (a matrix of finite entries can have one, up to n
    // times its largest entry) gives status 3; each invocation knows only its own, so they
    // are posted in `counts` (read only before the bisection).
    workgroupBarrier();
    counts[mi * N + i] = select(0u, 1u, beyond_f32(lam, t.scale_exp));
    workgroupBarrier();
    var beyond = false;
    for (var j = 0u; j < N; j++) {
        beyond = beyond || counts[mi * N + j] != 0u;
    }

    if (t.live) {
        let nan = bitcast<f32>(params.nan_bits);
        values_out[t.g * N + rank] = select(ldexp(lam, t.scale_exp), nan, t.bad || beyond);
        if (i == 0u) {
            status_out[t.g] = select(select(0u, 3u, beyond), 1u, t.bad);
        }
    }
}

// With VECTORS, after the eigenvectors of matrix t.mi were staged in slot `slot`: the index of
// the largest component of vector t.i (the first within GAUGE_FLOOR of it) into ql_e (free
// after the QL), for the ranking; returns the sign that makes that component positive.
fn vector_tie(t: Tri, slot: u32) -> f32 {
    var big = 0.0;
    for (var k = 0u; k < N; k++) {
        big = max(big, abs(vector_entry(t, slot, k)));
    }
    var top = N;
    for (var k = 0u; k < N; k++) {
        if (top == N && abs(vector_entry(t, slot, k)) >= big * GAUGE_FLOOR) {
            top = k;
        }
    }
    top = select(top, 0u, top == N);
    ql_e[t.mi][t.i] = f32(top);
    return select(1.0, -1.0, vector_entry(t, slot, top) < 0.0);
}

// Component k of the unsorted eigenvector t.i: staged in slot `slot` of qsh, or UNSTAGED in
// the output buffer, where row k of Q was written (0 for a matrix past the batch).
fn vector_entry(t: Tri, slot: u32, k: u32) -> f32 {
    if (UNSTAGED) {
        if (!t.live) {
            return 0.0;
        }
        return vectors_out[(t.g * N + k) * N + t.i];
    }
    return qsh[(slot * N + t.i) * NP + k];
}

// After every vector_tie of the matrix: ranks eigenvalue t.i (d_i, its vector staged column
// t.i of slot `slot`) and writes it and the matrix's status, and its vector (times `sg`);
// UNSTAGED, posts the rank and sign to col_sh and v_sh (free after the reduction) for the
// in-place rewrite at the end of tridiagonal_main instead. Returns the status.
fn vector_write(t: Tri, slot: u32, sg: f32) -> u32 {
    let row = t.i;
    let lam = ql_d[t.mi][row];
    let top = u32(ql_e[t.mi][row]);
    // The rank (and whether an eigenvalue is not finite, which only a fault of the iteration
    // could give: then status 2 rather than a wrong answer).
    var rank = 0u;
    var finite = true;
    var beyond = false;
    for (var k = 0u; k < N; k++) {
        let lk = ql_d[t.mi][k];
        let tk = u32(ql_e[t.mi][k]);
        finite = finite && is_finite_f32(lk);
        beyond = beyond || beyond_f32(lk, t.scale_exp);
        if (lk < lam || (lk == lam && (tk < top || (tk == top && k < row)))) {
            rank += 1u;
        }
    }
    var status = 0u;
    if (t.bad) {
        status = 1u;
    } else if (ql_failed[t.mi] != 0u || !finite) {
        status = 2u;
    } else if (beyond) {
        status = 3u;
    }
    if (UNSTAGED) {
        col_sh[t.mi][row / 4u][row % 4u] = f32(rank);
        v_sh[t.mi][row / 4u][row % 4u] = sg;
    }
    if (t.live) {
        let ok = status == 0u;
        let nan = bitcast<f32>(params.nan_bits);
        values_out[t.g * N + rank] = select(nan, ldexp(lam, t.scale_exp), ok);
        if (row == 0u) {
            status_out[t.g] = status;
        }
        if (!UNSTAGED) {
            // Column `rank` of the output, row by row: each row's N entries are written by the
            // matrix's N invocations together.
            let base = t.g * N * N;
            for (var k = 0u; k < N; k++) {
                vectors_out[base + k * N + rank] = select(nan, sg * vector_entry(t, slot, k), ok);
            }
        }
    }
    return status;
}

fn tridiagonal_main(lid: u32, wid: vec3<u32>) {
    let mi = lid / N;                   // matrix slot in the workgroup
    let i = lid % N;                    // row
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    let slot = i / 4u;                  // this invocation's vec4 in its matrix's vectors
    let lane = i % 4u;

    if (i == 0u) {
        admit_reset(mi);
        atomicStore(&off_diag[mi], 0u);
    }
    // Zero the vector buffers past N.
    for (var j = N + i; j < 4u * R4; j += N) {
        col_sh[mi][j / 4u][j % 4u] = 0.0;
        v_sh[mi][j / 4u][j % 4u] = 0.0;
        p_sh[mi][j / 4u][j % 4u] = 0.0;
    }
    workgroupBarrier();
    // Row i (columns ≥ N read 0; a non-finite entry reads 0 and marks the matrix), and row i of
    // Q = I.
    var off = false;
    var seen = admitted_none();
    //@for q
    var r$q = vec4<f32>(0.0);
    let rows$q = vec4<u32>(4u * $qu) + vec4<u32>(0u, 1u, 2u, 3u);
    var q$q = select(vec4<f32>(0.0), vec4<f32>(1.0), rows$q == vec4<u32>(i));
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

    var e_sub = 0.0;                    // T[i][i−1], kept from step i − 1
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
            e_sub = select(alpha, x0, skip);
        }
        workgroupBarrier();
        // c = βvᵀp/2; row i of A − v wᵀ − w vᵀ with w = p − c v; row i of Q − β(Qv)vᵀ.
        var vp4 = vec4<f32>(0.0);
        var qv4 = vec4<f32>(0.0);
        //@for q
        if (4u * $qu + 3u > k) {
            let vq$q = v_sh[mi][$qu];
            vp4 = fma(vq$q, p_sh[mi][$qu], vp4);
            if (VECTORS) {
                qv4 = fma(q$q, vq$q, qv4);
            }
        }
        //@end
        let c = 0.5 * beta * hsum(vp4);
        let wi = pi - c * vi;
        let tq = beta * hsum(qv4);
        //@for q
        if (4u * $qu + 3u > k) {
            let vv$q = v_sh[mi][$qu];
            let w$q = p_sh[mi][$qu] - c * vv$q;
            r$q = r$q - (vi * w$q + wi * vv$q);
            if (VECTORS) {
                q$q = q$q - tq * vv$q;
            }
        }
        //@end
    }
    // T: d_i, and e_{N−2} from the last row.
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
        e_sub = last_e;
    }
    let t = Tri(mi, i, g, live, bad, scale_exp, diagonal, di, e_sub);
    if (VECTORS) {
        // T into the QL arrays (e_j = T[j+1][j], posted by row j + 1; e_{N−1} = 0), the
        // identity into the rotation log, and no block logged yet.
        ql_d[mi][i] = di;
        ql_e[mi][select(i, N, i == 0u) - 1u] = e_sub;
        ql_rot[mi][i] = vec2<f32>(1.0, 0.0);
        if (i == 0u) {
            ql_block[mi] = vec2<u32>(0u, 0u);
        }
        workgroupBarrier();
        var st = QlState(0u, 0u, false, 0u);
        loop {
            if (lid < MATS) {
                ql_iteration(lid, &st);
            }
            workgroupBarrier();
            // This row of Q times the logged rotations, j = N − 2 down to 0: columns (j, j + 1) ←
            // (c·q_j − s·q_{j+1}, s·q_j + c·q_{j+1}). The log holds the identity outside the
            // iteration's block [blk.x, blk.y), and the rotations are applied in groups, so that
            // a group of them wholly outside it is skipped (exactly what applying the identity
            // gives; src/gpu/shaders.rs, `ROTATION_GROUP`).
            let blk = ql_block[mi];
            //@for j desc
            //@first if (blk.x <= $hiu && $lou < blk.y) {
            let cs$j = ql_rot[mi][$ju];
            let a$j = $a;
            let b$j = $b;
            $a = cs$j.x * a$j - cs$j.y * b$j;
            $b = cs$j.y * a$j + cs$j.x * b$j;
            //@last }
            //@end
            if (lid == 0u) {
                var go = 0u;
                for (var k = 0u; k < MATS; k++) {
                    let b = ql_block[k];
                    go |= select(0u, 1u, b.y > b.x);
                }
                ql_go = go;
            }
            if (workgroupUniformLoad(&ql_go) == 0u) {
                break;
            }
        }
        if (lid < MATS) {
            ql_failed[lid] = select(0u, 1u, st.failed);
        }
        if (UNSTAGED) {
            // Where no staging fits the workgroup memory: this row of Q into the output
            // buffer, which the ties and signs read by column; then ranks and signs, and the
            // row rewritten in place, permuted and signed. Uncoalesced, the same results.
            if (live) {
                //@for q
                let qo$q = q$q;
                for (var c = 0u; c < 4u; c++) {
                    let j = 4u * $qu + c;
                    if (j < N) {
                        vectors_out[base + i * N + j] = qo$q[c];
                    }
                }
                //@end
            }
            storageBarrier();
            let sg = vector_tie(t, 0u);
            storageBarrier();
            let ok = vector_write(t, 0u, sg) == 0u;
            workgroupBarrier();
            let nan = bitcast<f32>(params.nan_bits);
            //@for q
            let qw$q = q$q;
            for (var c = 0u; c < 4u; c++) {
                let j = 4u * $qu + c;
                if (live && j < N) {
                    let rank = u32(col_sh[mi][$qu][c]);
                    let v = v_sh[mi][$qu][c] * qw$q[c];
                    vectors_out[base + i * N + rank] = select(nan, v, ok);
                }
            }
            //@end
            return;
        }
        // The output, STAGE matrices per pass: their rows of Q into column-major staging (a row
        // of stores per component: distinct banks), then ties and signs, then ranks and writes.
        let staged = mi % STAGE;
        for (var round = 0u; round < PASSES; round++) {
            let mine = mi / STAGE == round;
            if (mine) {
                //@for q
                let qf$q = q$q;
                for (var c = 0u; c < 4u; c++) {
                    let j = 4u * $qu + c;
                    if (j < N) {
                        qsh[(staged * N + j) * NP + i] = qf$q[c];
                    }
                }
                //@end
            }
            workgroupBarrier();
            var sg = 1.0;
            if (mine) {
                sg = vector_tie(t, staged);
            }
            workgroupBarrier();
            if (mine) {
                vector_write(t, staged, sg);
            }
            workgroupBarrier();
        }
    } else {
        // Every read of v and p of the last step happened before this barrier.
        workgroupBarrier();
        bisect_eigenvalues(t);
    }
}
