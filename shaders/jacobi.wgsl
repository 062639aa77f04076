// Batched two-sided Jacobi for symmetric matrices (the forward kernels' shared body).
//
// Mapping: MATS matrices per workgroup, TPM invocations per matrix. A lives in workgroup memory
// with an odd row stride (so column passes hit distinct banks); the rotations are accumulated
// into Vᵀ (rows = eigenvectors, so every update runs along contiguous rows), in workgroup
// memory when it fits (VT_SHARED) and otherwise in a global scratch buffer.
// Ordering: round-robin (circle method) over M_PAD = N rounded up to even indices: M_PAD − 1
// rounds of M_PAD/2 disjoint pairs per sweep; a pair containing the padding index is skipped.
// Each round: rotation parameters (one invocation per pair), barrier, rows p and q of A and Vᵀ,
// barrier, columns p and q of A (the pair's own 2×2 block set exactly), barrier.
// Sweeps run until one performs no rotation in any matrix of the workgroup, or MAX_SWEEPS;
// a matrix still rotating in the last allowed sweep gets status 2 and NaN outputs.
// The input is prescaled by an exact power of two so its largest entry lies in [0.5, 1),
// which keeps every intermediate far from overflow and underflow (1e±30 inputs work).

override N: u32;             // matrix size, 1..=MAX_N
override M_PAD: u32;         // N rounded up to even
override MATS: u32;          // matrices per workgroup
override TPM: u32;           // invocations per matrix (a power of two)
override WG: u32;            // MATS * TPM
override A_STRIDE: u32;      // row stride of A in workgroup memory (odd, ≥ N)
override A_LEN: u32;         // MATS * N * A_STRIDE
override VT_SHARED: bool;    // Vᵀ in workgroup memory (else in vt_global)
override VT_LEN: u32;        // MATS * N * N when VT_SHARED, else 1
override PAIRS_LEN: u32;     // MATS * M_PAD / 2
override MN_LEN: u32;        // MATS * N
override MAX_SWEEPS: u32;    // sweep cap
override REL_THRESHOLD: f32; // rotate while |a_pq| > REL_THRESHOLD·√(|a_pp a_qq|) ...
override ROT_FLOOR: f32;     // ... and |a_pq| > ROT_FLOOR (relative to the scaled max entry)

// Bindings 0–3 and 5 in forward_bindings.wgsl; the Vᵀ scratch [batch][N][N], used when it
// does not fit in workgroup memory:
@group(0) @binding(4) var<storage, read_write> vt_global: array<f32>;

var<workgroup> a_sh: array<f32, A_LEN>;
var<workgroup> vt_sh: array<f32, VT_LEN>;
var<workgroup> rot_c: array<f32, PAIRS_LEN>;
var<workgroup> rot_s: array<f32, PAIRS_LEN>;
var<workgroup> rot_dp: array<f32, PAIRS_LEN>;  // new a_pp
var<workgroup> rot_dq: array<f32, PAIRS_LEN>;  // new a_qq
var<workgroup> rot_on: array<u32, PAIRS_LEN>;
var<workgroup> out_src: array<u32, MN_LEN>;           // column r of the output ← row out_src[r] of Vᵀ
var<workgroup> out_sign: array<f32, MN_LEN>;          // gauge sign of that vector

fn a_idx(mi: u32, r: u32, c: u32) -> u32 {
    return (mi * N + r) * A_STRIDE + c;
}

fn vt_get(mi: u32, g: u32, j: u32, k: u32) -> f32 {
    if (VT_SHARED) {
        return vt_sh[(mi * N + j) * N + k];
    }
    return vt_global[(g * N + j) * N + k];
}

fn vt_set(mi: u32, g: u32, j: u32, k: u32, x: f32) {
    if (VT_SHARED) {
        vt_sh[(mi * N + j) * N + k] = x;
    } else {
        vt_global[(g * N + j) * N + k] = x;
    }
}

// Pair i of round r (circle method), as (p, q) with p < q; q may be the padding index N.
fn rr_pair(r: u32, i: u32) -> vec2<u32> {
    let m1 = M_PAD - 1u;
    var p: u32;
    var q: u32;
    if (i == 0u) {
        p = m1;
        q = r;
    } else {
        p = (r + i) % m1;
        q = (r + m1 - i) % m1;
    }
    return vec2<u32>(min(p, q), max(p, q));
}

// Both barriers when Vᵀ lives in global memory.
fn sync_all() {
    if (!VT_SHARED) {
        storageBarrier();
    }
    workgroupBarrier();
}

fn jacobi_main(lid: u32, wid: vec3<u32>, want_vectors: bool) {
    let half = M_PAD / 2u;
    let mi = lid / TPM;                 // matrix slot in the workgroup
    let t = lid % TPM;                  // invocation within the matrix
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;  // matrix in the dispatch
    let live = g < params.batch;
    let nan = bitcast<f32>(params.nan_bits);

    if (t == 0u) {
        admit_reset(mi);
    }
    sweep_reset(mi, t == 0u, lid);
    workgroupBarrier();

    // Load (symmetrised or lower triangle), record max |a| and non-finite entries.
    let base = g * N * N;
    var seen = admitted_none();
    for (var e = t; e < N * N; e += TPM) {
        let r = e / N;
        let c = e % N;
        var x = 0.0;
        if (live) {
            x = admit(&seen, stored_entry(base, r, c));
        }
        a_sh[a_idx(mi, r, c)] = x;
    }
    admit_flush(mi, seen);
    workgroupBarrier();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    for (var e = t; e < N * N; e += TPM) {
        let r = e / N;
        let c = e % N;
        let idx = a_idx(mi, r, c);
        a_sh[idx] = select(ldexp(a_sh[idx], -scale_exp), 0.0, bad);
        if (want_vectors) {
            vt_set(mi, g, r, c, select(0.0, 1.0, r == c));
        }
    }
    sync_all();

    for (var sweep = 0u; sweep < MAX_SWEEPS; sweep++) {
        for (var r = 0u; r < M_PAD - 1u; r++) {
            // Rotation parameters of each pair (Golub & Van Loan sym.schur2, overflow-safe).
            for (var i = t; i < half; i += TPM) {
                let slot = mi * half + i;
                let pq = rr_pair(r, i);
                var on = 0u;
                if (pq.y < N) {
                    let apq = a_sh[a_idx(mi, pq.x, pq.y)];
                    let app = a_sh[a_idx(mi, pq.x, pq.x)];
                    let aqq = a_sh[a_idx(mi, pq.y, pq.y)];
                    if (abs(apq) > max(REL_THRESHOLD * sqrt(abs(app) * abs(aqq)), ROT_FLOOR)) {
                        let cst = rotation(app, aqq, apq);
                        rot_c[slot] = cst.x;
                        rot_s[slot] = cst.y;
                        rot_dp[slot] = app - cst.z * apq;
                        rot_dq[slot] = aqq + cst.z * apq;
                        on = 1u;
                        atomicStore(&rotated[mi], 1u);
                    }
                }
                rot_on[slot] = on;
            }
            workgroupBarrier();
            // Rows p and q of A and of Vᵀ: Jᵀ·A and Jᵀ·Vᵀ.
            for (var e = t; e < half * N; e += TPM) {
                let i = e / N;
                let k = e % N;
                let slot = mi * half + i;
                if (rot_on[slot] != 0u) {
                    let pq = rr_pair(r, i);
                    let c = rot_c[slot];
                    let s = rot_s[slot];
                    let ip = a_idx(mi, pq.x, k);
                    let iq = a_idx(mi, pq.y, k);
                    let ap = a_sh[ip];
                    let aq = a_sh[iq];
                    a_sh[ip] = c * ap - s * aq;
                    a_sh[iq] = s * ap + c * aq;
                    if (want_vectors) {
                        let vp = vt_get(mi, g, pq.x, k);
                        let vq = vt_get(mi, g, pq.y, k);
                        vt_set(mi, g, pq.x, k, c * vp - s * vq);
                        vt_set(mi, g, pq.y, k, s * vp + c * vq);
                    }
                }
            }
            workgroupBarrier();
            // Columns p and q of A: (JᵀA)·J, with the pair's own 2×2 block set exactly.
            for (var e = t; e < half * N; e += TPM) {
                let i = e / N;
                let k = e % N;
                let slot = mi * half + i;
                if (rot_on[slot] != 0u) {
                    let pq = rr_pair(r, i);
                    let ip = a_idx(mi, k, pq.x);
                    let iq = a_idx(mi, k, pq.y);
                    if (k == pq.x) {
                        a_sh[ip] = rot_dp[slot];
                        a_sh[iq] = 0.0;
                    } else if (k == pq.y) {
                        a_sh[ip] = 0.0;
                        a_sh[iq] = rot_dq[slot];
                    } else {
                        let c = rot_c[slot];
                        let s = rot_s[slot];
                        let ap = a_sh[ip];
                        let aq = a_sh[iq];
                        a_sh[ip] = c * ap - s * aq;
                        a_sh[iq] = s * ap + c * aq;
                    }
                }
            }
            sync_all();
        }
        // Convergence: stop when no matrix of the workgroup rotated in this sweep.
        if (!sweep_vote(mi, t == 0u, lid, false)) {
            break;
        }
    }

    // Status, ascending order (ties by index, as on the CPU) and the sign gauge.
    var status = 0u;
    if (bad) {
        status = 1u;
    } else if (last_rotated[mi] != 0u) {
        status = 2u;
    } else {
        // An eigenvalue beyond the f32 range (up to n times the largest entry): status 3.
        for (var i = 0u; i < N; i++) {
            if (beyond_f32(a_sh[a_idx(mi, i, i)], scale_exp)) {
                status = 3u;
            }
        }
    }
    for (var j = t; j < N; j += TPM) {
        let dj = a_sh[a_idx(mi, j, j)];
        var rank = 0u;
        for (var i = 0u; i < N; i++) {
            let di = a_sh[a_idx(mi, i, i)];
            if (di < dj || (di == dj && i < j)) {
                rank += 1u;
            }
        }
        if (live) {
            values_out[g * N + rank] = select(nan, ldexp(dj, scale_exp), status == 0u);
        }
        if (want_vectors) {
            var top = 0.0;
            for (var k = 0u; k < N; k++) {
                top = max(top, abs(vt_get(mi, g, j, k)));
            }
            var best = N;
            for (var k = 0u; k < N; k++) {
                if (best == N && abs(vt_get(mi, g, j, k)) >= top * GAUGE_FLOOR) {
                    best = k;
                }
            }
            best = select(best, 0u, best == N);
            out_src[mi * N + rank] = j;
            out_sign[mi * N + rank] = select(1.0, -1.0, vt_get(mi, g, j, best) < 0.0);
        }
    }
    if (live && t == 0u) {
        status_out[g] = status;
    }
    workgroupBarrier();
    if (want_vectors) {
        if (live) {
            // Coalesced write: element (i, r) of V is component i of the vector ranked r.
            for (var e = t; e < N * N; e += TPM) {
                let i = e / N;
                let r = e % N;
                let j = out_src[mi * N + r];
                let x = out_sign[mi * N + r] * vt_get(mi, g, j, i);
                vectors_out[base + e] = select(nan, x, status == 0u);
            }
        }
    }
}
