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
// two columns, X and Y, in registers (private arrays of R4 vec4s, indexed only by loop counters
// with constant bounds, so the driver can keep them in registers), with their squared norms.
// Ordering: odd-even transposition (every pair of columns meets exactly once in M_PAD rounds):
// in even rounds each invocation rotates its (X, Y), then sends Y to invocation k − 1 and
// receives the next Y from k + 1; in odd rounds invocations 0..H−2 rotate, the last one swaps
// X and Y instead, then each sends X to k + 1 and receives X from k − 1 (indices mod H). One
// column of n floats and its norm cross workgroup memory per invocation per round, with one
// barrier (two buffers alternate, so a round's writes never meet the previous round's reads).
// Odd N gets one zero padding column, which never rotates (its products are exactly 0).
//
// The input is prescaled by an exact power of two so its largest entry lies in [0.5, 1).
// A diagonal input skips everything (no rotation would happen) and is returned exactly.
// Sweeps run until one performs no rotation in any matrix of the workgroup, or MAX_SWEEPS;
// a matrix still rotating in the last allowed sweep gets status 2 and NaN outputs.
// The host prepends `const R4: u32`, ⌈N/4⌉ (private arrays need a constant length).

override N: u32;           // matrix size, 1..=MAX_N
override M_PAD: u32;       // N rounded up to even: columns, including the padding column
override H: u32;           // M_PAD / 2: invocations per matrix
override MATS: u32;        // matrices per workgroup
override WG: u32;          // MATS * H
override SLOT: u32;        // vec4s per exchange slot (odd, ≥ R4 + 1: the column, then its norm)
override X_LEN: u32;       // 2 * WG * SLOT (two alternating buffers)
override MN_LEN: u32;      // MATS * M_PAD
override MAX_SWEEPS: u32;  // sweep cap
override ROT_TOL: f32;     // rotate when |x·y| > ROT_TOL·‖x‖·‖y‖ ...
override STOP_TOL: f32;    // ... and sweep on while some |x·y| > STOP_TOL·‖x‖·‖y‖

// Input matrices [batch][N][N].
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
// Eigenvalues [batch][N], ascending.
@group(0) @binding(1) var<storage, read_write> values_out: array<f32>;
// Eigenvectors [batch][N][N], columns (unused by the eigenvalues-only kernel).
@group(0) @binding(2) var<storage, read_write> vectors_out: array<f32>;
// Status codes [batch] (0 ok, 1 non-finite input, 2 not converged).
@group(0) @binding(3) var<storage, read_write> status_out: array<u32>;
// Dispatch parameters (binding 4, the two-sided kernel's scratch, is not used here).
@group(0) @binding(5) var<uniform> params: Params;

alias Col = array<vec4<f32>, R4>;

// The exchange buffers; after the sweeps, A (for the Rayleigh quotients) and then V (for a
// coalesced write), each row with stride SLOT vec4s in a region of M_PAD·SLOT per matrix.
var<workgroup> xbuf: array<vec4<f32>, X_LEN>;
var<workgroup> keys: array<f32, MN_LEN>;             // eigenvalue of each column, for ranking
var<workgroup> ties: array<u32, MN_LEN>;             // its largest component's index, for ties
var<workgroup> rotated: array<atomic<u32>, MATS>;    // rotated in the current sweep
var<workgroup> last_rotated: array<u32, MATS>;       // rotated in the last finished sweep
var<workgroup> any_rotated: atomic<u32>;
var<workgroup> sweep_go: u32;
var<workgroup> bound_bits: array<atomic<u32>, MATS>; // Gershgorin bound (after prescaling)
var<workgroup> off_diag: array<atomic<u32>, MATS>;   // a non-zero off-diagonal entry seen

// Column p of the symmetric input (rows ≥ N zero), with the largest magnitude and whether
// an entry was not finite (such entries read as 0), and whether an off-diagonal entry is
// non-zero.
struct Loaded {
    col: Col,
    max_abs: f32,
    bad: bool,
    off: bool,
}

fn load_column(base: u32, p: u32, live: bool) -> Loaded {
    var out: Loaded;
    out.max_abs = 0.0;
    out.bad = false;
    out.off = false;
    for (var q = 0u; q < R4; q++) {
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let i = 4u * q + c;
            if (live && p < N && i < N) {
                let x = stored_entry(base, i, p);
                if (is_finite_f32(x)) {
                    v[c] = x;
                    out.max_abs = max(out.max_abs, abs(x));
                    out.off = out.off || (i != p && x != 0.0);
                } else {
                    out.bad = true;
                }
            }
        }
        out.col[q] = v;
    }
    return out;
}

// Scales a column by 2^-e, adds σ at row p, and returns its absolute sum before the shift.
fn shift_column(col: ptr<function, Col>, p: u32, e: i32, sigma_or_zero: f32) -> f32 {
    var s = 0.0;
    for (var q = 0u; q < R4; q++) {
        let v = ldexp((*col)[q], vec4<i32>(-e));
        s += dot(abs(v), vec4<f32>(1.0));
        let at = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(p);
        (*col)[q] = v + select(vec4<f32>(0.0), vec4<f32>(sigma_or_zero), at);
    }
    return s;
}

fn add_shift(col: ptr<function, Col>, p: u32, sigma: f32) {
    for (var q = 0u; q < R4; q++) {
        let at = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(p);
        (*col)[q] += select(vec4<f32>(0.0), vec4<f32>(sigma), at);
    }
}

fn norm2(col: ptr<function, Col>) -> f32 {
    var s = 0.0;
    for (var q = 0u; q < R4; q++) {
        s += dot((*col)[q], (*col)[q]);
    }
    return s;
}

// Rotates the pair (x, y) so that x·y = 0 when |x·y| > ROT_TOL·‖x‖‖y‖; `ab` holds (‖x‖², ‖y‖²)
// and is updated. Returns whether the cosine was above STOP_TOL (a rotation that counts).
fn rotate(x: ptr<function, Col>, y: ptr<function, Col>, ab: ptr<function, vec2<f32>>) -> bool {
    var gamma = 0.0;
    for (var q = 0u; q < R4; q++) {
        gamma += dot((*x)[q], (*y)[q]);
    }
    let alpha = (*ab).x;
    let beta = (*ab).y;
    let norms = sqrt(alpha) * sqrt(beta);
    if (!(abs(gamma) > ROT_TOL * norms)) {
        return false;
    }
    // Golub & Van Loan sym.schur2 on the Gram matrix [[α, γ], [γ, β]], overflow-safe.
    let tau = (beta - alpha) / (2.0 * gamma);
    var t: f32;
    if (abs(tau) > 1e18) {
        t = 0.5 / tau;
    } else {
        t = sign(tau) / (abs(tau) + sqrt(1.0 + tau * tau));
    }
    if (tau == 0.0) {
        t = 1.0;
    }
    var c = inverseSqrt(1.0 + t * t);
    var s = t * c;
    // One Newton step on c² + s² = 1: inverseSqrt may be a few ulp off on GPUs, and a
    // systematic norm error would otherwise compound over hundreds of rotations.
    let fix = 1.5 - 0.5 * (c * c + s * s);
    c *= fix;
    s *= fix;
    for (var q = 0u; q < R4; q++) {
        let xv = (*x)[q];
        let yv = (*y)[q];
        (*x)[q] = c * xv - s * yv;
        (*y)[q] = s * xv + c * yv;
    }
    *ab = vec2<f32>(alpha - t * gamma, beta + t * gamma);
    return abs(gamma) > STOP_TOL * norms;
}

fn send(col: ptr<function, Col>, norm: f32, slot: u32) {
    for (var q = 0u; q < R4; q++) {
        xbuf[slot + q] = (*col)[q];
    }
    xbuf[slot + R4] = vec4<f32>(norm, 0.0, 0.0, 0.0);
}

fn receive(col: ptr<function, Col>, slot: u32) -> f32 {
    for (var q = 0u; q < R4; q++) {
        (*col)[q] = xbuf[slot + q];
    }
    return xbuf[slot + R4].x;
}

// The index of the largest |component| of col (the first, on ties).
fn argmax_abs(col: ptr<function, Col>) -> u32 {
    var big = -1.0;
    var at = 0u;
    for (var q = 0u; q < R4; q++) {
        for (var c = 0u; c < 4u; c++) {
            let x = abs((*col)[q][c]);
            if (x > big) {
                big = x;
                at = 4u * q + c;
            }
        }
    }
    return at;
}

// The unit vector along col, snapped to e_at for a diagonal input.
fn unit(col: ptr<function, Col>, at: u32, diagonal: bool) -> Col {
    let inv = inverseSqrt(norm2(col));
    var out: Col;
    for (var q = 0u; q < R4; q++) {
        let e = vec4<u32>(4u * q) + vec4<u32>(0u, 1u, 2u, 3u) == vec4<u32>(at);
        out[q] = select((*col)[q] * inv, select(vec4<f32>(0.0), vec4<f32>(1.0), e), diagonal);
    }
    return out;
}

// The sign (±1) that makes the largest component of v (the first, on ties) positive.
fn gauge(v: ptr<function, Col>) -> f32 {
    var big = -1.0;
    var sgn = 1.0;
    for (var q = 0u; q < R4; q++) {
        for (var c = 0u; c < 4u; c++) {
            let x = (*v)[q][c];
            if (abs(x) > big) {
                big = abs(x);
                sgn = select(1.0, -1.0, x < 0.0);
            }
        }
    }
    return sgn;
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

// Writes component r of the vec4 row i of matrix mi's staging region.
fn stage(mi: u32, i: u32, r: u32, x: f32) {
    xbuf[mi * M_PAD * SLOT + i * SLOT + r / 4u][r % 4u] = x;
}

fn hestenes_main(lid: u32, wid: vec3<u32>, want_vectors: bool) {
    let mi = lid / H;                   // matrix slot in the workgroup
    let k = lid % H;                    // invocation within the matrix
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;  // matrix in the dispatch
    let live = g < params.batch;
    let nan = bitcast<f32>(params.nan_bits);
    let base = g * N * N;
    let last = k == H - 1u;

    if (k == 0u) {
        admit_reset(mi);
        atomicStore(&rotated[mi], 0u);
        atomicStore(&bound_bits[mi], 0u);
        atomicStore(&off_diag[mi], 0u);
        last_rotated[mi] = 0u;
    }
    if (lid == 0u) {
        atomicStore(&any_rotated, 0u);
    }
    workgroupBarrier();

    // Columns 2k and 2k + 1 (the latter is the zero padding column when it is N).
    let lx = load_column(base, 2u * k, live);
    let ly = load_column(base, 2u * k + 1u, live);
    var x = lx.col;
    var y = ly.col;
    atomicMax(&max_bits[mi], bitcast<u32>(max(lx.max_abs, ly.max_abs)));
    if (lx.bad || ly.bad) {
        atomicOr(&bad_input[mi], 1u);
    }
    if (lx.off || ly.off) {
        atomicOr(&off_diag[mi], 1u);
    }
    workgroupBarrier();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    let diagonal = atomicLoad(&off_diag[mi]) == 0u;
    let sx = shift_column(&x, 2u * k, scale_exp, 0.0);
    let sy = shift_column(&y, 2u * k + 1u, scale_exp, 0.0);
    atomicMax(&bound_bits[mi], bitcast<u32>(max(sx, sy)));
    workgroupBarrier();
    let bound = bitcast<f32>(atomicLoad(&bound_bits[mi]));
    // A zero matrix gets σ = 1 (any positive shift works); a non-finite one is zeroed.
    let sigma = select(1.5 * bound, 1.0, bound == 0.0 || bad);
    if (bad) {
        x = Col();
        y = Col();
    }
    add_shift(&x, 2u * k, sigma);
    if (2u * k + 1u < N) {
        add_shift(&y, 2u * k + 1u, sigma);
    }
    var ab = vec2<f32>(norm2(&x), norm2(&y));

    for (var sweep = 0u; sweep < MAX_SWEEPS; sweep++) {
        var any = false;
        ab = vec2<f32>(norm2(&x), norm2(&y));
        for (var r = 0u; r < M_PAD; r += 2u) {
            // Even round: rotate (X, Y); Y goes to k − 1, the next Y comes from k + 1.
            any = rotate(&x, &y, &ab) || any;
            send(&y, ab.y, WG * SLOT + lid * SLOT);
            workgroupBarrier();
            ab.y = receive(&y, WG * SLOT + (mi * H + (k + 1u) % H) * SLOT);
            // Odd round: the last invocation swaps instead of rotating; X goes to k + 1.
            if (last) {
                let t = x;
                x = y;
                y = t;
                ab = ab.yx;
            } else {
                any = rotate(&x, &y, &ab) || any;
            }
            send(&x, ab.x, lid * SLOT);
            workgroupBarrier();
            ab.x = receive(&x, (mi * H + (k + H - 1u) % H) * SLOT);
        }
        // Convergence: stop when no matrix of the workgroup rotated in this sweep.
        if (any) {
            atomicOr(&rotated[mi], 1u);
        }
        workgroupBarrier();
        if (k == 0u) {
            let rot = atomicExchange(&rotated[mi], 0u);
            last_rotated[mi] = rot;
            if (rot != 0u) {
                atomicOr(&any_rotated, 1u);
            }
        }
        workgroupBarrier();
        if (lid == 0u) {
            sweep_go = atomicExchange(&any_rotated, 0u);
        }
        if (workgroupUniformLoad(&sweep_go) == 0u) {
            break;
        }
    }

    var status = 0u;
    if (bad) {
        status = 1u;
    } else if (last_rotated[mi] != 0u) {
        status = 2u;
    }
    let ok = live && status == 0u;

    // Stage the prescaled A, rows with stride SLOT, for the Rayleigh quotients.
    let region = mi * M_PAD * SLOT;
    for (var e = k; e < N * R4; e += H) {
        let i = e / R4;
        let q = e % R4;
        var v = vec4<f32>(0.0);
        for (var c = 0u; c < 4u; c++) {
            let j = 4u * q + c;
            if (ok && j < N) {
                v[c] = ldexp(stored_entry(base, i, j), -scale_exp);
            }
        }
        xbuf[region + i * SLOT + q] = v;
    }
    let tx = argmax_abs(&x);
    let ty = argmax_abs(&y);
    var vx = unit(&x, tx, diagonal);
    var vy = unit(&y, ty, diagonal);
    workgroupBarrier();
    var lam = vec2<f32>(0.0);
    for (var i = 0u; i < N; i++) {
        var ax = 0.0;
        var ay = 0.0;
        for (var q = 0u; q < R4; q++) {
            let row = xbuf[region + i * SLOT + q];
            ax += dot(row, vx[q]);
            ay += dot(row, vy[q]);
        }
        lam += vec2<f32>(vx[i / 4u][i % 4u] * ax, vy[i / 4u][i % 4u] * ay);
    }
    // The padding column is the one column of norm 0 (M is non-singular); it ranks last, at N.
    let inf = bitcast<f32>(params.inf_bits);
    keys[mi * M_PAD + 2u * k] = select(lam.x, inf, norm2(&x) == 0.0);
    keys[mi * M_PAD + 2u * k + 1u] = select(lam.y, inf, norm2(&y) == 0.0);
    ties[mi * M_PAD + 2u * k] = tx;
    ties[mi * M_PAD + 2u * k + 1u] = ty;
    workgroupBarrier();
    let rx = rank_of(mi, 2u * k);
    let ry = rank_of(mi, 2u * k + 1u);
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
        let gx = gauge(&vx);
        let gy = gauge(&vy);
        for (var i = 0u; i < N; i++) {
            if (rx < N) {
                stage(mi, i, rx, gx * vx[i / 4u][i % 4u]);
            }
            if (ry < N) {
                stage(mi, i, ry, gy * vy[i / 4u][i % 4u]);
            }
        }
        workgroupBarrier();
        if (live) {
            // Coalesced write: element (i, r) of V is component i of the vector ranked r.
            for (var e = k; e < N * N; e += H) {
                let i = e / N;
                let r = e % N;
                let v = xbuf[region + i * SLOT + r / 4u][r % 4u];
                vectors_out[base + e] = select(nan, v, status == 0u);
            }
        }
    }
}
