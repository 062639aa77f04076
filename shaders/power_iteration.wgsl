// The dominant eigenpair (largest |λ|) by power iteration, per matrix: v ← Av/‖Av‖ from a fixed
// start vector until ‖Av − ρv‖ ≤ tol·|ρ| (ρ = vᵀAv), at most params.extra iterations. The
// matrix is prescaled by an exact power of two. Outputs λ, v (sign gauge of DESIGN §1), the
// iteration count, a status (0 ok, 1 non-finite input, 2 not converged, with NaN outputs) and
// the symmetric matrix iterated on (for the VJP). Layout in power.wgsl.

// Input matrices [batch][N][N].
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
// λ [batch].
@group(0) @binding(1) var<storage, read_write> value_out: array<f32>;
// v [batch][N].
@group(0) @binding(2) var<storage, read_write> vector_out: array<f32>;
// Iterations used [batch].
@group(0) @binding(3) var<storage, read_write> iterations_out: array<u32>;
// Status [batch].
@group(0) @binding(4) var<storage, read_write> status_out: array<u32>;
// The symmetric matrix [batch][N][N].
@group(0) @binding(5) var<storage, read_write> matrix_out: array<f32>;
// Dispatch parameters (tol: the residual tolerance; extra: the iteration cap).
@group(0) @binding(6) var<uniform> params: Params;

var<workgroup> state: array<u32, MATS>;   // 0 iterating, 1 converged, 2 not iterated
var<workgroup> rho_sh: array<f32, MATS>;
var<workgroup> norm_sh: array<f32, MATS>;
var<workgroup> iters_sh: array<u32, MATS>;
var<workgroup> running: atomic<u32>;
var<workgroup> go: u32;
var<workgroup> scale_sh: array<i32, MATS>;

// Without A_SHARED the matrix is read from matrix_out (the symmetric matrix as stored, scaled
// here as a_sh would hold it: the same values) and never written there again.
fn a_global(mi: u32, g: u32, r: u32, c: u32) -> f32 {
    return ldexp(matrix_out[(g * N + r) * N + c], -scale_sh[mi]);
}

// The iteration's sums over k are written out in blocks of four (`//@for q`, the host repeats
// them for q = 0..R4) instead of loops: Mesa's llvmpipe ends every loop of a shader invocation
// after 65 535 loop trips in all, which loops over k used up within a few hundred iterations;
// written out, an iteration takes three loop trips. Each sum keeps its k order.

// s + A[i][k]·v[k] for k = 4q..4q+3 below N, in order.
fn row_sum4(s: f32, mi: u32, g: u32, i: u32, q: u32) -> f32 {
    var acc = s;
    acc = row_step(acc, mi, g, i, 4u * q);
    acc = row_step(acc, mi, g, i, 4u * q + 1u);
    acc = row_step(acc, mi, g, i, 4u * q + 2u);
    return row_step(acc, mi, g, i, 4u * q + 3u);
}

fn row_step(s: f32, mi: u32, g: u32, i: u32, k: u32) -> f32 {
    let kk = min(k, N - 1u);
    return select(s, s + a_get(mi, g, i, kk) * v_sh[mi * N + kk], k < N);
}

// (Σ y_k v_k, Σ y_k²) continued over k = 4q..4q+3 below N, in order.
fn products4(sums: vec2<f32>, mi: u32, q: u32) -> vec2<f32> {
    var acc = sums;
    acc = product_step(acc, mi, 4u * q);
    acc = product_step(acc, mi, 4u * q + 1u);
    acc = product_step(acc, mi, 4u * q + 2u);
    return product_step(acc, mi, 4u * q + 3u);
}

fn product_step(sums: vec2<f32>, mi: u32, k: u32) -> vec2<f32> {
    let y = y_sh[mi * N + min(k, N - 1u)];
    let v = v_sh[mi * N + min(k, N - 1u)];
    return select(sums, vec2<f32>(sums.x + y * v, sums.y + y * y), k < N);
}

// res + Σ (y_k − ρ v_k)² continued over k = 4q..4q+3 below N, in order.
fn residual4(res: f32, mi: u32, rho: f32, q: u32) -> f32 {
    var acc = res;
    acc = residual_step(acc, mi, rho, 4u * q);
    acc = residual_step(acc, mi, rho, 4u * q + 1u);
    acc = residual_step(acc, mi, rho, 4u * q + 2u);
    return residual_step(acc, mi, rho, 4u * q + 3u);
}

fn residual_step(res: f32, mi: u32, rho: f32, k: u32) -> f32 {
    let d = y_sh[mi * N + min(k, N - 1u)] - rho * v_sh[mi * N + min(k, N - 1u)];
    return select(res, res + d * d, k < N);
}

@compute @workgroup_size(WG)
fn power_iteration(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    if (t == 0u) {
        admit_reset(mi);
    }
    if (lid == 0u) {
        atomicStore(&running, 0u);
    }
    workgroupBarrier();
    var seen = admitted_none();
    for (var e = t; e < N * N; e += TPM) {
        let r = e / N;
        let c = e % N;
        var x = 0.0;
        if (live) {
            let raw = stored_entry(base, r, c);
            matrix_out[base + e] = raw;
            x = admit(&seen, raw);
        }
        if (A_SHARED) {
            a_sh[pa(mi, r, c)] = x;
        }
    }
    admit_flush(mi, seen);
    sync_a();
    let bad = admitted_bad(mi);
    let scale_exp = admitted_exponent(mi);
    if (A_SHARED) {
        for (var e = t; e < N * N; e += TPM) {
            let idx = pa(mi, e / N, e % N);
            a_sh[idx] = ldexp(a_sh[idx], -scale_exp);
        }
    } else if (t == 0u) {
        scale_sh[mi] = scale_exp;
    }
    // The CPU reference's start vector, normalised.
    for (var i = t; i < N; i += TPM) {
        v_sh[mi * N + i] = 1.0 + 0.5 * fract(f32(i + 1u) * START_STEP);
    }
    workgroupBarrier();
    if (t == 0u) {
        var s = 0.0;
        for (var i = 0u; i < N; i++) {
            s += v_sh[mi * N + i] * v_sh[mi * N + i];
        }
        let inv = inverseSqrt(s);
        for (var i = 0u; i < N; i++) {
            v_sh[mi * N + i] *= inv;
        }
        state[mi] = select(0u, 2u, bad || !live);
        iters_sh[mi] = 0u;
    }
    workgroupBarrier();
    let tol = params.tol;
    for (var it = 1u; it <= params.extra; it++) {
        let iterating = state[mi] == 0u;
        if (iterating) {
            for (var i = t; i < N; i += TPM) {
                var s = 0.0;
                //@for q
                s = row_sum4(s, mi, g, i, $qu);
                //@end
                y_sh[mi * N + i] = s;
            }
        }
        workgroupBarrier();
        if (iterating && t == 0u) {
            var sums = vec2<f32>(0.0);
            //@for q
            sums = products4(sums, mi, $qu);
            //@end
            let rho = sums.x;
            let yy = sums.y;
            var res = 0.0;
            //@for q
            res = residual4(res, mi, rho, $qu);
            //@end
            iters_sh[mi] = it;
            if (sqrt(res) <= tol * abs(rho)) {
                state[mi] = 1u;
                rho_sh[mi] = rho;
            } else {
                norm_sh[mi] = inverseSqrt(yy);
                atomicAdd(&running, 1u);
            }
        }
        workgroupBarrier();
        if (state[mi] == 0u) {
            for (var i = t; i < N; i += TPM) {
                v_sh[mi * N + i] = y_sh[mi * N + i] * norm_sh[mi];
            }
        }
        if (lid == 0u) {
            go = atomicExchange(&running, 0u);
        }
        if (workgroupUniformLoad(&go) == 0u) {
            break;
        }
    }
    workgroupBarrier();
    if (live && t == 0u) {
        let nan = bitcast<f32>(params.nan_bits);
        var status = 0u;
        if (bad) {
            status = 1u;
        } else if (state[mi] != 1u) {
            status = 2u;
        } else if (beyond_f32(rho_sh[mi], scale_exp)) {
            status = 3u;
        }
        var top = 0.0;
        for (var i = 0u; i < N; i++) {
            top = max(top, abs(v_sh[mi * N + i]));
        }
        var best = N;
        for (var i = 0u; i < N; i++) {
            if (best == N && abs(v_sh[mi * N + i]) >= top * GAUGE_FLOOR) {
                best = i;
            }
        }
        best = select(best, 0u, best == N);
        let sign = select(1.0, -1.0, v_sh[mi * N + best] < 0.0);
        for (var i = 0u; i < N; i++) {
            vector_out[g * N + i] = select(nan, sign * v_sh[mi * N + i], status == 0u);
        }
        value_out[g] = select(nan, ldexp(rho_sh[mi], scale_exp), status == 0u);
        iterations_out[g] = iters_sh[mi];
        status_out[g] = status;
    }
}
