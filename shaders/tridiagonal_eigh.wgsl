// Batched symmetric eigendecomposition by Householder reduction to tridiagonal form
// (tridiagonal.wgsl, which also accumulates Q with T = QᵀAQ) and implicit QL iterations with
// Wilkinson shifts on T (EISPACK's tql2), whose plane rotations are applied to Q's columns:
// eigenvalues (ascending), eigenvectors (columns, sign gauge) and a status per matrix.
//
// Mapping: after the reduction, Q lives in workgroup memory column-major (column j at
// mi·QS + j·NP, NP odd), invocation i owning row i; T's diagonal d and off-diagonal e
// (e_j = T[j+1][j], e_{N−1} = 0) follow it twice (two buffers alternate between iterations). One
// QL iteration on the unreduced block [l, m] is a chain of m − l rotations whose scalars every
// invocation of the matrix computes alike from the same d and e (no barrier inside the chain);
// invocation i applies each rotation to its row of columns j and j + 1 (the shared column passes
// from one rotation to the next in a register: one load and one store per rotation) and keeps
// the new d_i and e_i when the chain produces them. After the chain every invocation writes its
// d_i and e_i into the other buffer, and one barrier ends the iteration. Matrices are iterated
// side by side; the workgroup stops when no matrix had a block left in the last iteration.
//
// Deflation: e_j is negligible when |e_j| ≤ TOL·(|d_j| + |d_{j+1}|) + FLOOR (the input is
// prescaled so its largest entry lies in [0.5, 1)). Budget: MAX_ROT rotations per matrix (the
// sweep cap times the N(N−1)/2 rotations of a Jacobi sweep); a matrix that would exceed it gets
// status 2 and NaN outputs. A diagonal input does no iteration and is returned exactly.

override MAX_ROT: u32;  // rotation budget per matrix
override TOL: f32;      // relative deflation threshold
override FLOOR: f32;    // absolute deflation threshold (prescaled units)

// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

const VECTORS: bool = true;

var<workgroup> ql_busy: atomic<u32>;  // a matrix iterated in the current round
var<workgroup> ql_go: u32;

// Ends a round in which this invocation's matrix iterated (`busy`) or not, and returns whether
// the workgroup goes on. Call from uniform control flow (it synchronises).
fn ql_vote(busy: bool, lid: u32) -> bool {
    if (busy) {
        atomicOr(&ql_busy, 1u);
    }
    workgroupBarrier();
    if (lid == 0u) {
        ql_go = atomicExchange(&ql_busy, 0u);
    }
    return workgroupUniformLoad(&ql_go) != 0u;
}

// Whether T's off-diagonal entry e_j (at word `e`, with d_j at word `d`) is negligible.
fn ql_negligible(e: u32, d: u32) -> bool {
    return abs(qsh[e]) <= fma(TOL, abs(qsh[d]) + abs(qsh[d + 1u]), FLOOR);
}

fn tridiagonal_finish(t: Tri) {
    let row = t.i;
    let mb = t.mi * QS;                 // Q, then V: column j at mb + j·NP
    let tb = mb + N * NP;               // d, e, d, e: N words each
    qsh[tb + row] = t.d;
    if (row > 0u) {
        qsh[tb + N + row - 1u] = t.e;
    } else {
        qsh[tb + 2u * N - 1u] = 0.0;
    }
    if (row == 0u) {
        atomicStore(&ql_busy, 0u);
    }
    workgroupBarrier();

    var src = 0u;                       // which of the two (d, e) buffers holds T
    var l = 0u;                         // every e_j with j < l is negligible
    var used = 0u;                      // rotations so far
    var failed = false;
    loop {
        let ds = tb + 2u * N * src;
        let es = ds + N;
        let dd = tb + 2u * N * (1u - src);
        let ed = dd + N;
        // The unreduced block [l, m]: l the first index with a non-negligible e_l, m the first
        // index from l on whose e_m is negligible (e_{N−1} = 0).
        var m = l;
        loop {
            if (l + 1u >= N) {
                break;
            }
            m = l;
            loop {
                if (m + 1u >= N || ql_negligible(es + m, ds + m)) {
                    break;
                }
                m++;
            }
            if (m != l) {
                break;
            }
            l++;
        }
        var busy = !failed && l + 1u < N;
        if (busy && used + (m - l) > MAX_ROT) {
            failed = true;
            busy = false;
        }
        var my_d = qsh[ds + row];
        var my_e = qsh[es + row];
        if (busy) {
            used += m - l;
            // Wilkinson shift from the top 2×2 block, then the chain from the bottom up.
            let dl = qsh[ds + l];
            let el = qsh[es + l];
            var g = (qsh[ds + l + 1u] - dl) / (2.0 * el);
            var r = sqrt(fma(g, g, 1.0));
            g = qsh[ds + m] - dl + el / (g + select(-r, r, g >= 0.0));
            var s = 1.0;
            var c = 1.0;
            var p = 0.0;
            var d_next = qsh[ds + m];           // d_{j+1} before this iteration
            var z = qsh[mb + m * NP + row];     // this row's entry of the column in hand
            var kz = m;                         // that column
            var split = false;
            var j1 = m;                         // the rotation of (j1 − 1, j1)
            loop {
                if (j1 == l) {
                    break;
                }
                let j = j1 - 1u;
                let ej = qsh[es + j];
                let dj = qsh[ds + j];
                let f = s * ej;
                let b = c * ej;
                r = sqrt(fma(f, f, g * g));
                if (row == j1) {
                    my_e = r;
                }
                if (r == 0.0) {
                    // Underflow: T splits at j1; the iteration ends without its last update.
                    if (row == j1) {
                        my_d = d_next - p;
                    }
                    split = true;
                    break;
                }
                let inv = 1.0 / r;
                s = f * inv;
                c = g * inv;
                g = d_next - p;
                r = fma(dj - g, s, 2.0 * c * b);
                p = s * r;
                if (row == j1) {
                    my_d = g + p;
                }
                g = fma(c, r, -b);
                let zj = qsh[mb + j * NP + row];
                qsh[mb + j1 * NP + row] = fma(s, zj, c * z);
                z = fma(c, zj, -s * z);
                kz = j;
                d_next = dj;
                j1 = j;
            }
            qsh[mb + kz * NP + row] = z;
            if (!split && row == l) {
                my_d = dl - p;
                my_e = g;
            }
            if (row == m) {
                my_e = 0.0;
            }
        }
        qsh[dd + row] = my_d;
        qsh[ed + row] = my_e;
        src = 1u - src;
        if (!ql_vote(busy, t.lid)) {
            break;
        }
    }

    // Eigenvalue `row` is d_row with vector column `row`: its largest component (the first on
    // ties) fixes the sign and breaks ties in the ranking (which orders a diagonal input's ties by
    // index, as the CPU reference does). The other buffer, free now, holds those indices.
    let ds = tb + 2u * N * src;
    let ties = tb + 2u * N * (1u - src);
    let col = mb + row * NP;
    let lam = qsh[ds + row];
    var best = -1.0;
    var top = 0u;
    for (var k = 0u; k < N; k++) {
        let x = abs(qsh[col + k]);
        if (x > best) {
            best = x;
            top = k;
        }
    }
    let sg = select(1.0, -1.0, qsh[col + top] < 0.0);
    qsh[ties + row] = f32(top);
    workgroupBarrier();
    // The ranks (and whether an eigenvalue is not finite, which only a fault of the iteration
    // could give: then status 2 rather than a wrong answer).
    var rank = 0u;
    var finite = true;
    for (var k = 0u; k < N; k++) {
        let lk = qsh[ds + k];
        let tk = u32(qsh[ties + k]);
        finite = finite && is_finite_f32(lk);
        if (lk < lam || (lk == lam && (tk < top || (tk == top && k < row)))) {
            rank += 1u;
        }
    }
    var status = 0u;
    if (t.bad) {
        status = 1u;
    } else if (failed || !finite) {
        status = 2u;
    }
    if (t.live) {
        let ok = status == 0u;
        let nan = bitcast<f32>(params.nan_bits);
        values_out[t.g * N + rank] = select(nan, ldexp(lam, t.scale_exp), ok);
        if (row == 0u) {
            status_out[t.g] = status;
        }
        // Column `rank` of the output, row by row: each row's N entries are written by the
        // matrix's N invocations together.
        let base = t.g * N * N;
        for (var k = 0u; k < N; k++) {
            vectors_out[base + k * N + rank] = select(nan, sg * qsh[col + k], ok);
        }
    }
}

@compute @workgroup_size(WG)
fn tridiagonal_eigh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    tridiagonal_main(lid, wid);
}
