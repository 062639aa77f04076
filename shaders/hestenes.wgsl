// Batched one-sided (Hestenes) Jacobi for symmetric matrices, the forward kernels' v2 body.
//
// Method: M = A + σI with σ = 1.5·max_i Σ_j |a_ij| (a Gershgorin bound, so M is positive
// definite with condition number ≤ 5); plane rotations of pairs of columns of U = M·Q make the
// columns mutually orthogonal (rotate while |u_p·u_q| > TOL·‖u_p‖‖u_q‖). At convergence
// UᵀU = QᵀM²Q is diagonal, so the normalised columns of U are eigenvectors of M and of A (M is
// positive definite, so M and M² share eigenspaces); each eigenvalue is the Rayleigh quotient
// vᵀAv with the original A (accurate to a few eps·‖A‖ whatever σ). No basis is accumulated:
// the full and the eigenvalues-only kernels do the same sweeps.
//
// Mapping: H = M_PAD/2 invocations per matrix, MATS matrices per workgroup. Invocation k holds
// two columns, X and Y, in registers: R4 = ⌈N/4⌉ vec4 variables each (x0, x1, …, y0, y1, …),
// written out by the host, which repeats every block between `//@for q` and `//@end` for
// q = 0..R4 with `$q` replaced by q. Named variables rather than arrays, so that nothing can
// push the columns out to local memory.
// Ordering: odd-even transposition (every pair of columns meets exactly once in M_PAD rounds):
// in even rounds each invocation rotates its (X, Y), then sends Y to invocation k − 1 and
// receives the next Y from k + 1; in odd rounds invocations 0..H−2 rotate, the last one swaps
// X and Y instead (as (Y, −X): every invocation runs the same branch-free update, see
// `pair_step`), then each sends X to k + 1 and receives X from k − 1 (indices mod H). One
// column of n floats and its norm cross workgroup memory per invocation per round, with one
// barrier (two buffers alternate, so a round's writes never meet the previous round's reads),
// or, where the device has subgroup operations of a fixed size that H divides, one subgroup
// shuffle per vec4 and no barrier (the `//@if sg` branches, chosen by the host).
// Odd N gets one zero padding column, which never rotates (its products are exactly 0).
//
// The input is prescaled by an exact power of two so its largest entry lies in [0.5, 1).
// A diagonal input skips everything (no rotation would happen) and is returned exactly.
// Sweeps run until one performs no rotation in any matrix of the workgroup, or MAX_SWEEPS;
// a matrix still rotating in the last allowed sweep gets status 2 and NaN outputs.
// The host prepends `const R4: u32` and expands the `//@for q` blocks.

override N: u32;           // matrix size, 1..=MAX_N
override M_PAD: u32;       // N rounded up to even: columns, including the padding column
override H: u32;           // M_PAD / 2: invocations per matrix
override MATS: u32;        // matrices per workgroup
override WG: u32;          // MATS * H
override X_ROWS: u32;     // 2 * WG: rows of xbuf (two alternating buffers of WG slots)
override MN_LEN: u32;      // MATS * M_PAD
override MAX_SWEEPS: u32;  // sweep cap
override ROT_TOL: f32;     // rotate when |x·y| > ROT_TOL·‖x‖·‖y‖ ...
override STOP_TOL: f32;    // ... and sweep on while some |x·y| > STOP_TOL·‖x‖·‖y‖

// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

// Vec4s per row of xbuf (odd, ≥ R4 + 1: a column, then its norm; odd so that the rows of
// consecutive invocations start in distinct bank groups). plan.rs sizes the workgroup memory
// with the same formula.
const SLOT: u32 = (R4 + 1u) | 1u;

// The exchange buffers, one row per invocation (rows WG.. are the second buffer); after the
// sweeps, A (for the Rayleigh quotients) and then V (for a coalesced write), M_PAD rows per
// matrix. Rows and vec4s are separate indices so that a row's index is clamped once however
// many of its vec4s are accessed, and the vec4 index of the sweeps is a constant.
var<workgroup> xbuf: array<array<vec4<f32>, SLOT>, X_ROWS>;
var<workgroup> keys: array<f32, MN_LEN>;             // eigenvalue of each column, for ranking
var<workgroup> ties: array<u32, MN_LEN>;             // its largest component's index, for ties
var<workgroup> bound_bits: array<atomic<u32>, MATS>; // Gershgorin bound (after prescaling)
var<workgroup> off_diag: array<atomic<u32>, MATS>;   // a non-zero off-diagonal entry seen

// Rows 4q..4q+3 of column p of the symmetric input (rows ≥ N and p ≥ N read 0), with their
// largest magnitude, whether one was not finite (it reads as 0) and whether an off-diagonal
// one is non-zero.
struct Quad {
    v: vec4<f32>,
    max_abs: f32,
    bad: bool,
    off: bool,
}

fn load_quad(base: u32, q: u32, p: u32, live: bool) -> Quad {
    var out = Quad(vec4<f32>(0.0), 0.0, false, false);
    for (var c = 0u; c < 4u; c++) {
        let i = 4u * q + c;
        if (live && p < N && i < N) {
            let x = stored_entry(base, i, p);
            if (is_finite_f32(x)) {
                out.v = with_component(out.v, c, x);
                out.max_abs = max(out.max_abs, abs(x));
                out.off = out.off || (i != p && x != 0.0);
            } else {
                out.bad = true;
            }
        }
    }
    return out;
}

// Whether each component of quad q is row p.
fn at_row(q: u32, p: u32) -> vec4<bool> {
    return vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(p);
}

// The largest |component| of quad v.
fn max_quad(v: vec4<f32>) -> f32 {
    let a = abs(v);
    return max(max(a.x, a.y), max(a.z, a.w));
}

// Sets `first` (while it is still `none`) to the first row 4q + c of quad v whose |component|
// is at least `floor`.
fn first_at_least(v: vec4<f32>, q: u32, floor: f32, none: u32, first: ptr<function, u32>) {
    for (var c = 0u; c < 4u; c++) {
        if (*first == none && abs(v[c]) >= floor) {
            *first = 4u * q + c;
        }
    }
}

// The rank of key `slot` among the matrix's M_PAD keys: ascending, ties by the index of the
// vector's largest component (which orders a diagonal input's ties by index, as the CPU
// reference does), then by slot.
fn rank_of(mi: u32, slot: u32) -> u32 {
    let kv = keys[mi * M_PAD + slot];
    let tv = ties[mi * M_PAD + slot];
    var r = 0u;
    for (var i = 0u; i < M_PAD; i++) {
        let ki = keys[mi * M_PAD + i];
        let ti = ties[mi * M_PAD + i];
        if (ki < kv || (ki == kv && (ti < tv || (ti == tv && i < slot)))) {
            r += 1u;
        }
    }
    return r;
}

// Writes the components of quad v (rows 4q..) as column r of matrix mi's staging region.
fn stage_quad(region: u32, q: u32, r: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c++) {
        let i = 4u * q + c;
        if (i < N) {
            xbuf[region + i][r / 4u][r % 4u] = v[c];
        }
    }
}

// One pair's step of a round, as one formula for every invocation (no branch, so the columns
// stay in the same registers whatever each invocation does): (x, y) ← (c·x − s·y, s·x + c·y).
// A pair that rotates gets its rotation; one that does not, (c, s) = (1, 0), which leaves both
// columns exactly as they are; the last invocation of an odd round swaps them instead,
// (c, s) = (0, −1): (y, −x) (a column's sign is free: the epilogue normalises it).
struct PairStep {
    c: f32,
    s: f32,
    alpha: f32,      // ‖x‖² afterwards
    beta: f32,       // ‖y‖² afterwards
    goes_on: bool,   // the pair was far enough from orthogonal to keep the sweeps going
}

fn pair_step(alpha: f32, beta: f32, gamma: f32, swap: bool) -> PairStep {
    let norms = sqrt(alpha) * sqrt(beta);
    let rotate = !swap && abs(gamma) > ROT_TOL * norms;
    // (Computed for every pair; only the rotating ones use it.)
    let cst = rotation(alpha, beta, select(1.0, gamma, rotate));
    if (swap) {
        return PairStep(0.0, -1.0, beta, alpha, false);
    }
    if (rotate) {
        return PairStep(cst.x, cst.y, alpha - cst.z * gamma, beta + cst.z * gamma,
            abs(gamma) > STOP_TOL * norms);
    }
    return PairStep(1.0, 0.0, alpha, beta, false);
}

// `lid` is the invocation's index in the workgroup, numbered so that each subgroup holds
// consecutive indices when columns travel by subgroup shuffles; `lane` is its index in its
// subgroup then (unused otherwise).
fn hestenes_main(lid: u32, wid: vec3<u32>, want_vectors: bool, lane: u32) {
    let mi = lid / H;                   // matrix slot in the workgroup
    let k = lid % H;                    // invocation within the matrix
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;  // matrix in the dispatch
    let live = g < params.batch;
    let nan = bitcast<f32>(params.nan_bits);
    let base = g * N * N;
    let last = k == H - 1u;
    let px = 2u * k;
    let py = 2u * k + 1u;

    if (k == 0u) {
        admit_reset(mi);
        atomicStore(&bound_bits[mi], 0u);
        atomicStore(&off_diag[mi], 0u);
    }
    sweep_reset(mi, k == 0u, lid);
    workgroupBarrier();

    // Columns 2k and 2k + 1 (the latter is the zero padding column when it is N).
    var big = 0.0;
    var bad_here = false;
    var off_here = false;
    //@for q
    let lx$q = load_quad(base, $qu, px, live);
    let ly$q = load_quad(base, $qu, py, live);
    var x$q = lx$q.v;
    var y$q = ly$q.v;
    big = max(big, max(lx$q.max_abs, ly$q.max_abs));
    bad_here = bad_here || lx$q.bad || ly$q.bad;
    off_here = off_here || lx$q.off || ly$q.off;
    //@end
    admit_flush(mi, Admitted(big, bad_here));
    if (off_here) {
        atomicOr(&off_diag[mi], 1u);
    }
    workgroupBarrier();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    let diagonal = atomicLoad(&off_diag[mi]) == 0u;
    // Prescale by 2^-e; column absolute sums bound ‖A‖₂ (Gershgorin).
    var sx = 0.0;
    var sy = 0.0;
    //@for q
    x$q = ldexp(x$q, vec4<i32>(-scale_exp));
    y$q = ldexp(y$q, vec4<i32>(-scale_exp));
    sx += dot(abs(x$q), vec4<f32>(1.0));
    sy += dot(abs(y$q), vec4<f32>(1.0));
    //@end
    atomicMax(&bound_bits[mi], bitcast<u32>(max(sx, sy)));
    workgroupBarrier();
    let bound = bitcast<f32>(atomicLoad(&bound_bits[mi]));
    // A zero matrix gets σ = 1 (any positive shift works); a non-finite one is zeroed.
    let sigma = select(1.5 * bound, 1.0, bound == 0.0 || bad);
    let sy_shift = select(0.0, sigma, py < N);
    //@for q
    x$q = select(x$q, vec4<f32>(0.0), bad) + select(vec4<f32>(0.0), vec4<f32>(sigma), at_row($qu, px));
    y$q = select(y$q, vec4<f32>(0.0), bad) + select(vec4<f32>(0.0), vec4<f32>(sy_shift), at_row($qu, py));
    //@end

    var sweeping = true;
    for (var sweep = 0u; sweep < MAX_SWEEPS && sweeping; sweep++) {
        var any = false;
        var a4 = vec4<f32>(0.0);
        var b4 = vec4<f32>(0.0);
        //@for q
        a4 = fma(x$q, x$q, a4);
        b4 = fma(y$q, y$q, b4);
        //@end
        var alpha = (a4.x + a4.y) + (a4.z + a4.w);
        var beta = (b4.x + b4.y) + (b4.z + b4.w);
        for (var r = 0u; r < M_PAD; r += 2u) {
            // Even round: rotate (X, Y); Y goes to k − 1, the next Y comes from k + 1.
            {
                // Four independent partial sums, added pairwise: ⌈N/4⌉ + 2 dependent operations.
                var g = vec4<f32>(0.0);
                //@for q
                g = fma(x$q, y$q, g);
                //@end
                let gamma = (g.x + g.y) + (g.z + g.w);
                let step = pair_step(alpha, beta, gamma, false);
                //@for q
                let xr$q = x$q;
                x$q = step.c * xr$q - step.s * y$q;
                y$q = step.s * xr$q + step.c * y$q;
                //@end
                alpha = step.alpha;
                beta = step.beta;
                any = any || step.goes_on;
            }
            //@if sg
            let next = lane - k + (k + 1u) % H;
            //@for q
            y$q = subgroupShuffle(y$q, next);
            //@end
            beta = subgroupShuffle(beta, next);
            //@else
            let out_y = WG + lid;
            //@for q
            xbuf[out_y][$qu] = y$q;
            //@end
            xbuf[out_y][R4] = vec4<f32>(beta, 0.0, 0.0, 0.0);
            workgroupBarrier();
            let in_y = WG + mi * H + (k + 1u) % H;
            //@for q
            y$q = xbuf[in_y][$qu];
            //@end
            beta = xbuf[in_y][R4].x;
            //@fi
            // Odd round: the last invocation swaps instead of rotating; X goes to k + 1.
            {
                var g = vec4<f32>(0.0);
                //@for q
                g = fma(x$q, y$q, g);
                //@end
                let gamma = (g.x + g.y) + (g.z + g.w);
                let step = pair_step(alpha, beta, gamma, last);
                //@for q
                let xr$q = x$q;
                x$q = step.c * xr$q - step.s * y$q;
                y$q = step.s * xr$q + step.c * y$q;
                //@end
                alpha = step.alpha;
                beta = step.beta;
                any = any || step.goes_on;
            }
            //@if sg
            let prev = lane - k + (k + H - 1u) % H;
            //@for q
            x$q = subgroupShuffle(x$q, prev);
            //@end
            alpha = subgroupShuffle(alpha, prev);
            //@else
            let out_x = lid;
            //@for q
            xbuf[out_x][$qu] = x$q;
            //@end
            xbuf[out_x][R4] = vec4<f32>(alpha, 0.0, 0.0, 0.0);
            workgroupBarrier();
            let in_x = mi * H + (k + H - 1u) % H;
            //@for q
            x$q = xbuf[in_x][$qu];
            //@end
            alpha = xbuf[in_x][R4].x;
            //@fi
        }
        // Convergence: stop when no matrix of the workgroup rotated in this sweep.
        sweeping = sweep_vote(mi, k == 0u, lid, any);
    }

    var status = 0u;
    if (bad) {
        status = 1u;
    } else if (last_rotated[mi] != 0u) {
        status = 2u;
    }
    let ok = live && status == 0u;

    // Stage the prescaled A, one row of xbuf per row of A, for the Rayleigh quotients.
    let region = mi * M_PAD;
    for (var e = k; e < N * R4; e += H) {
        let i = e / R4;
        let q = e % R4;
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let j = 4u * q + c;
            if (ok && j < N) {
                v = with_component(v, c, ldexp(stored_entry(base, i, j), -scale_exp));
            }
        }
        xbuf[region + i][q] = v;
    }
    // Unit vectors (a diagonal input's snapped to e_j), the index of their largest component,
    // and whether the column is the padding one (norm 0; M is non-singular otherwise).
    var mx = 0.0;
    var my = 0.0;
    var nx = 0.0;
    var ny = 0.0;
    //@for q
    mx = max(mx, max_quad(x$q));
    my = max(my, max_quad(y$q));
    nx += dot(x$q, x$q);
    ny += dot(y$q, y$q);
    //@end
    // The sign gauge's component: the first within GAUGE_FLOOR of the largest.
    var tx = N;
    var ty = N;
    //@for q
    first_at_least(x$q, $qu, mx * GAUGE_FLOOR, N, &tx);
    first_at_least(y$q, $qu, my * GAUGE_FLOOR, N, &ty);
    //@end
    tx = select(tx, 0u, tx == N);
    ty = select(ty, 0u, ty == N);
    let ix = inverseSqrt(nx);
    let iy = inverseSqrt(ny);
    //@for q
    x$q = select(x$q * ix, select(vec4<f32>(0.0), vec4<f32>(1.0), at_row($qu, tx)), diagonal);
    y$q = select(y$q * iy, select(vec4<f32>(0.0), vec4<f32>(1.0), at_row($qu, ty)), diagonal);
    //@end
    workgroupBarrier();
    // Rayleigh quotients vᵀAv with the prescaled A.
    var lam = vec2<f32>(0.0);
    for (var i = 0u; i < N; i++) {
        var ax = 0.0;
        var ay = 0.0;
        var vxi = 0.0;
        var vyi = 0.0;
        //@for q
        let row$q = xbuf[region + i][$qu];
        ax += dot(row$q, x$q);
        ay += dot(row$q, y$q);
        if (i / 4u == $qu) {
            // Through values: a run-time index into x$q itself would make it addressable.
            let xv$q = x$q;
            let yv$q = y$q;
            vxi = xv$q[i % 4u];
            vyi = yv$q[i % 4u];
        }
        //@end
        lam += vec2<f32>(vxi * ax, vyi * ay);
    }
    let inf = bitcast<f32>(params.inf_bits);
    keys[mi * M_PAD + px] = select(lam.x, inf, nx == 0.0);
    keys[mi * M_PAD + py] = select(lam.y, inf, ny == 0.0);
    ties[mi * M_PAD + px] = tx;
    ties[mi * M_PAD + py] = ty;
    workgroupBarrier();
    let rx = rank_of(mi, px);
    let ry = rank_of(mi, py);
    // An eigenvalue beyond the f32 range (up to n times the largest entry) gives status 3.
    if (status == 0u) {
        for (var c = 0u; c < M_PAD; c++) {
            let key = keys[mi * M_PAD + c];
            if (is_finite_f32(key) && beyond_f32(key, scale_exp)) {
                status = 3u;
            }
        }
    }
    if (live) {
        if (rx < N) {
            values_out[g * N + rx] = select(nan, ldexp(lam.x, scale_exp), status == 0u);
        }
        if (ry < N) {
            values_out[g * N + ry] = select(nan, ldexp(lam.y, scale_exp), status == 0u);
        }
        if (k == 0u) {
            status_out[g] = status;
        }
    }
    if (want_vectors) {
        // Sign gauge: the largest component (the first within GAUGE_FLOOR of it) positive.
        var sgx = 1.0;
        var sgy = 1.0;
        //@for q
        let gx$q = x$q;
        let gy$q = y$q;
        if (tx / 4u == $qu && gx$q[tx % 4u] < 0.0) {
            sgx = -1.0;
        }
        if (ty / 4u == $qu && gy$q[ty % 4u] < 0.0) {
            sgy = -1.0;
        }
        //@end
        //@for q
        if (rx < N) {
            stage_quad(region, $qu, rx, sgx * x$q);
        }
        if (ry < N) {
            stage_quad(region, $qu, ry, sgy * y$q);
        }
        //@end
        workgroupBarrier();
        if (live) {
            // Coalesced write: element (i, r) of V is component i of the vector ranked r.
            for (var e = k; e < N * N; e += H) {
                let i = e / N;
                let r = e % N;
                let v = xbuf[region + i][r / 4u][r % 4u];
                vectors_out[base + e] = select(nan, v, status == 0u);
            }
        }
    }
}
