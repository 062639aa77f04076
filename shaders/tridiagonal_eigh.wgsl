// Batched symmetric eigendecomposition by Householder reduction to tridiagonal form and
// implicit QL iterations (both in tridiagonal.wgsl, with VECTORS): eigenvalues (ascending),
// eigenvectors (columns, sign gauge) and a status per matrix (2 when the QL's rotation budget
// ran out). Here: ranking, sign gauge and the coalesced write from the staged eigenvectors.

// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

const VECTORS: bool = true;

fn tridiagonal_finish(t: Tri) {
    let row = t.i;
    // Eigenvalue `row` is d_row with eigenvector column `row`: its largest component (the first
    // on ties) fixes the sign and breaks ties in the ranking (which orders a diagonal input's
    // ties by index, as the CPU reference does). ql_e, free now, holds those indices.
    let col = (t.mi * N + row) * NP;
    let lam = ql_d[t.mi][row];
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
    ql_e[t.mi][row] = f32(top);
    workgroupBarrier();
    // The ranks (and whether an eigenvalue is not finite, which only a fault of the iteration
    // could give: then status 2 rather than a wrong answer).
    var rank = 0u;
    var finite = true;
    for (var k = 0u; k < N; k++) {
        let lk = ql_d[t.mi][k];
        let tk = u32(ql_e[t.mi][k]);
        finite = finite && is_finite_f32(lk);
        if (lk < lam || (lk == lam && (tk < top || (tk == top && k < row)))) {
            rank += 1u;
        }
    }
    var status = 0u;
    if (t.bad) {
        status = 1u;
    } else if (ql_failed[t.mi] != 0u || !finite) {
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
