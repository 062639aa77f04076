// Row t of P = Vᵀ sym(X) V for the symmetric-input derivative kernels (eigh_jvp: X = Ȧ,
// spectral_vjp: X = Ḡ), which declare X as `nn_in` [batch][N][N]. Layout in dense.wgsl.

// Row t of P (when `own`), through W = sym(X) V stored in the work matrix M. Synchronises, so
// call it from uniform control flow.
fn project_row(mi: u32, g: u32, t: u32, own: bool) -> array<f32, MAX_N> {
    let base = g * N * N;
    var row: array<f32, MAX_N>;
    if (own) {
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                let d = 0.5 * nn_in[base + t * N + k] + 0.5 * nn_in[base + k * N + t];
                s += d * v_at(mi, k, j);
            }
            row[j] = s;
        }
        for (var j = 0u; j < N; j++) {
            m_set(mi, g, t, j, row[j]);
        }
    }
    sync_dense();
    if (own) {
        for (var j = 0u; j < N; j++) {
            var s = 0.0;
            for (var k = 0u; k < N; k++) {
                s += v_at(mi, k, t) * m_get(mi, g, k, j);
            }
            row[j] = s;
        }
    }
    sync_dense();
    return row;
}
