// Batched symmetric eigenvalues without eigenvectors: Householder reduction to tridiagonal form
// (tridiagonal.wgsl), then bisection on Sturm counts, one eigenvalue per invocation.
//
// Eigenvalues: the Gershgorin interval [gl, gu] of the tridiagonal matrix T, widened as LAPACK's
// dstebz does; a multisection first (invocation j counts the eigenvalues of T below
// gl + (j + 1)(gu − gl)/(N + 1)), which brackets every eigenvalue within one (N + 1)-th of the
// interval; then each invocation i bisects its bracket for λ_i (ascending) on the Sturm count
// #{λ < x} (signs of the LDLᵀ pivots q_j = d_j − x − e_{j−1}²/q_{j−1}, with |q| ≤ pivmin
// replaced by −pivmin, as dstebz) down to eps·‖T‖, about 19 steps at N = 32, and returns the
// bracket's midpoint. A diagonal input (no non-zero off-diagonal entry) is returned exactly, its
// diagonal ranked (ties by index). Bisection always converges, so the status is 0 or 1
// (non-finite input), never 2.

// Bindings in forward_bindings.wgsl (bindings 2 and 4, eigenvectors and scratch, are not
// used; status is 0 or 1).

const VECTORS: bool = false;

// After the reduction, per matrix: T's diagonal d in v_sh (the padding past N: a huge value,
// which no count reaches) and e_{j−1}² at j in p_sh.
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

fn tridiagonal_finish(t: Tri) {
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

    if (t.live) {
        let nan = bitcast<f32>(params.nan_bits);
        values_out[t.g * N + rank] = select(ldexp(lam, t.scale_exp), nan, t.bad);
        if (i == 0u) {
            status_out[t.g] = select(0u, 1u, t.bad);
        }
    }
}

@compute @workgroup_size(WG)
fn tridiagonal_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    tridiagonal_main(lid, wid);
}
