// The implicit VJP of power iteration through its fixed point: with the dominant pair (λ, v)
// of the symmetric matrix A, Ā = λ̄·vvᵀ + sym(w vᵀ) where w solves (λI − A)w = (I − vvᵀ)v̄ on
// v⊥. The system is solved by Cholesky of M = sign(λ)(λI − A) + |λ|vvᵀ, which is positive
// definite exactly when λ is simple. A dominant eigenvalue that is not numerically simple (M's
// smallest eigenvalue ≤ (params.tol + 4·N·eps)·|λ|, the tolerance plus the factorisation's
// backward error: a pivot that small, or an estimate of M's smallest eigenvalue by two steps of
// inverse iteration that small, since pivots alone can stay well above it) gives NaN outputs,
// as does a status other than ok. λ̄ and v̄ are optional (params.flags bits 0 and 1). Layout in
// power.wgsl.

// λ [batch].
@group(0) @binding(0) var<storage, read> value_in: array<f32>;
// v [batch][N].
@group(0) @binding(1) var<storage, read> vector_in: array<f32>;
// The symmetric matrix iterated on [batch][N][N].
@group(0) @binding(2) var<storage, read> matrix_in: array<f32>;
// Status [batch].
@group(0) @binding(3) var<storage, read> status_in: array<u32>;
// λ̄ [batch] (a placeholder when absent).
@group(0) @binding(4) var<storage, read> grad_value: array<f32>;
// v̄ [batch][N] (a placeholder when absent).
@group(0) @binding(5) var<storage, read> grad_vector: array<f32>;
// Ā [batch][N][N].
@group(0) @binding(6) var<storage, read_write> grad_out: array<f32>;
// Dispatch parameters (tol: the relative pivot tolerance).
@group(0) @binding(7) var<uniform> params: Params;

var<workgroup> failed: array<u32, MATS>;

// Without A_SHARED the Cholesky factor lives in Ā's place until the output overwrites it.
fn a_global(mi: u32, g: u32, r: u32, c: u32) -> f32 {
    return grad_out[(g * N + r) * N + c];
}

// Stores entry (r, c) of matrix mi (global index g; only where `live`: past the batch the
// global buffer has no room).
fn a_set(mi: u32, g: u32, live: bool, r: u32, c: u32, x: f32) {
    if (A_SHARED) {
        a_sh[pa(mi, r, c)] = x;
    } else if (live) {
        grad_out[(g * N + r) * N + c] = x;
    }
}

// Solves L Lᵀ y = y for matrix mi's y_sh in place (L the Cholesky factor in the lower triangle).
fn cholesky_solve(mi: u32, g: u32) {
    for (var i = 0u; i < N; i++) {
        var s = y_sh[mi * N + i];
        for (var k = 0u; k < i; k++) {
            s -= a_get(mi, g, i, k) * y_sh[mi * N + k];
        }
        y_sh[mi * N + i] = s / a_get(mi, g, i, i);
    }
    for (var r = 0u; r < N; r++) {
        let i = N - 1u - r;
        var s = y_sh[mi * N + i];
        for (var k = i + 1u; k < N; k++) {
            s -= a_get(mi, g, k, i) * y_sh[mi * N + k];
        }
        y_sh[mi * N + i] = s / a_get(mi, g, i, i);
    }
}

// Scales matrix mi's y_sh to unit length; returns its length before.
fn normalize_y(mi: u32) -> f32 {
    var s = 0.0;
    for (var i = 0u; i < N; i++) {
        s += y_sh[mi * N + i] * y_sh[mi * N + i];
    }
    let norm = sqrt(s);
    for (var i = 0u; i < N; i++) {
        y_sh[mi * N + i] /= norm;
    }
    return norm;
}

@compute @workgroup_size(WG)
fn power_iteration_vjp(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    let mi = lid / TPM;
    let t = lid % TPM;
    let g = workgroup_index(wid, params.groups_x) * MATS + mi;
    let live = g < params.batch;
    let base = g * N * N;
    let has_gl = (params.flags & 1u) != 0u;
    let has_gv = (params.flags & 2u) != 0u;
    var lambda = 0.0;
    if (live) {
        lambda = value_in[g];
    }
    let sgn = select(1.0, -1.0, lambda < 0.0);
    for (var i = t; i < N; i += TPM) {
        v_sh[mi * N + i] = select(0.0, vector_in[g * N + i], live);
        y_sh[mi * N + i] = 0.0;
    }
    if (t == 0u) {
        failed[mi] = 0u;
    }
    workgroupBarrier();
    if (has_gv) {
        // M = sign(λ)(λI − A) + |λ| v vᵀ (lower triangle is all Cholesky reads).
        for (var e = t; e < N * N; e += TPM) {
            let i = e / N;
            let j = e % N;
            var m = 1.0;
            if (live) {
                let shift = select(0.0, lambda, i == j);
                m = sgn * (shift - matrix_in[base + e]) + abs(lambda) * v_sh[mi * N + i] * v_sh[mi * N + j];
            } else if (i != j) {
                m = 0.0;
            }
            a_set(mi, g, live, i, j, m);
        }
        sync_a();
        // Right-looking Cholesky, one column per step.
        // The tolerance plus the factorisation's backward error (about n·eps·‖M‖, ‖M‖ ≤ 2|λ|),
        // below which f32 cannot resolve M's smallest eigenvalue at all.
        let min_pivot = (params.tol + 4.0 * f32(N) * 1.1920929e-7) * abs(lambda);
        for (var j = 0u; j < N; j++) {
            if (t == 0u) {
                let d = a_get(mi, g, j, j);
                if (!(d > min_pivot) && live) {
                    failed[mi] = 1u;
                }
                a_set(mi, g, live, j, j, sqrt(select(1.0, d, d > 0.0)));
            }
            sync_a();
            for (var i = j + 1u + t; i < N; i += TPM) {
                a_set(mi, g, live, i, j, a_get(mi, g, i, j) / a_get(mi, g, j, j));
            }
            sync_a();
            let m = N - j - 1u;
            for (var e = t; e < m * m; e += TPM) {
                let i = j + 1u + e / m;
                let k = j + 1u + e % m;
                if (k <= i) {
                    let x = a_get(mi, g, i, k) - a_get(mi, g, i, j) * a_get(mi, g, k, j);
                    a_set(mi, g, live, i, k, x);
                }
            }
            sync_a();
        }
        if (live && t == 0u) {
            // M's smallest eigenvalue μ: for a unit x, ‖M⁻¹x‖ ≤ 1/μ, and two steps of inverse
            // iteration bring x close to μ's eigenvector, so 1/‖M⁻¹x‖ ≤ min_pivot shows μ that
            // small (a tie the pivots missed).
            for (var i = 0u; i < N; i++) {
                y_sh[mi * N + i] = 1.0 + 0.5 * fract(f32(i + 1u) * START_STEP);
            }
            normalize_y(mi);
            cholesky_solve(mi, g);
            normalize_y(mi);
            cholesky_solve(mi, g);
            if (!(normalize_y(mi) * min_pivot < 1.0)) {
                failed[mi] = 1u;
            }
            // w = sign(λ)(v̄ − (vᵀv̄)v), then L Lᵀ w = rhs, then w ← w − (wᵀv)v.
            var vv = 0.0;
            for (var i = 0u; i < N; i++) {
                vv += v_sh[mi * N + i] * grad_vector[g * N + i];
            }
            for (var i = 0u; i < N; i++) {
                y_sh[mi * N + i] = sgn * (grad_vector[g * N + i] - vv * v_sh[mi * N + i]);
            }
            cholesky_solve(mi, g);
            var wv = 0.0;
            for (var i = 0u; i < N; i++) {
                wv += y_sh[mi * N + i] * v_sh[mi * N + i];
            }
            for (var i = 0u; i < N; i++) {
                y_sh[mi * N + i] -= wv * v_sh[mi * N + i];
            }
        }
    }
    // Every read of the factor before Ā overwrites it.
    sync_a();
    if (live) {
        let ok = status_in[g] == 0u && failed[mi] == 0u;
        let nan = bitcast<f32>(params.nan_bits);
        let lbar = select(0.0, grad_value[g], has_gl);
        for (var e = t; e < N * N; e += TPM) {
            let i = e / N;
            let j = e % N;
            if (i <= j) {
                let vi = v_sh[mi * N + i];
                let vj = v_sh[mi * N + j];
                let x = lbar * vi * vj + 0.5 * (y_sh[mi * N + i] * vj + vi * y_sh[mi * N + j]);
                let out = select(nan, x, ok);
                grad_out[base + i * N + j] = out;
                grad_out[base + j * N + i] = out;
            }
        }
    }
}
