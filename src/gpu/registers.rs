//! The generated parts of `shaders/registers.wgsl`, the one-invocation-per-matrix Jacobi kernel
//! for the smallest sizes, and of `shaders/registers_vjp.wgsl`, its reverse rule: every entry of
//! A, V and the products is a named variable and every rotation of a sweep (every term of a
//! product) is written out with fixed indices, so that nothing in the kernels is indexed at run
//! time (which would let a driver move the matrix out of registers). Each `//@gen NAME` line of
//! a template becomes the block [`expand`] writes for it.

use std::fmt::Write;

/// The largest size the register kernel runs: A's upper triangle and V are n(n + 1)/2 + n²
/// registers per invocation (100 at n = 8), which a GPU holds alongside the temporaries without
/// spilling; at n = 16 it would be 392.
pub const REGISTERS_MAX_N: usize = 8;

/// The variable holding entry (i, j) of a symmetric matrix named `name`: its upper triangle.
fn sym(name: &str, i: u32, j: u32) -> String {
    format!("{name}{}_{}", i.min(j), i.max(j))
}

/// The variable holding entry (i, j) of the symmetric A.
fn a(i: u32, j: u32) -> String {
    sym("a", i, j)
}

/// Writes the plane rotation (c, s) = (cst.x, cst.y) of the pair of variables `p`, `q` through
/// the temporary `t`: p ← c·p − s·q, q ← s·p + c·q.
fn rotate(s: &mut String, t: &str, p: &str, q: &str) {
    writeln!(s, "    let {t} = {p};").unwrap();
    writeln!(s, "    {p} = cst.x * {t} - cst.y * {q};").unwrap();
    writeln!(s, "    {q} = cst.y * {t} + cst.x * {q};").unwrap();
}

/// The variable holding component i of eigenvector j.
fn v(i: u32, j: u32) -> String {
    format!("v{i}_{j}")
}

/// Pair `i` of round `r` of the round-robin (circle method) ordering over `m_pad` indices, as
/// `(p, q)` with p < q (jacobi.wgsl's `rr_pair`); q may be the padding index.
fn rr_pair(m_pad: u32, r: u32, i: u32) -> (u32, u32) {
    let m1 = m_pad - 1;
    let (p, q) = if i == 0 {
        (m1, r)
    } else {
        ((r + i) % m1, (r + m1 - i) % m1)
    };
    (p.min(q), p.max(q))
}

/// The template with its `//@gen` lines expanded for size `n`, with eigenvectors when
/// `vectors`.
pub fn expand(template: &str, n: u32, vectors: bool) -> String {
    let mut out = String::with_capacity(template.len() + 64 * (n * n * n * n) as usize);
    for line in template.lines() {
        let trimmed = line.trim_start();
        let Some(name) = trimmed.strip_prefix("//@gen ") else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let indent = &line[..line.len() - trimmed.len()];
        let body = match name.trim() {
            "load" => load(n),
            "scale" => scale(n, vectors),
            "sweep" => sweep(n, vectors),
            "finish" => finish(n, vectors),
            "beyond" => beyond(n),
            "vjp_load" => vjp_load(n),
            "vjp_m" => vjp_m(n),
            "vjp_out" => vjp_out(n),
            other => panic!("unknown generated block {other}"),
        };
        for l in body.lines() {
            out.push_str(indent);
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// Reads the upper triangle through `stored_entry` and notes the largest magnitude and any
/// non-finite entry.
fn load(n: u32) -> String {
    let mut s = String::new();
    for i in 0..n {
        for j in i..n {
            let x = a(i, j);
            writeln!(s, "var {x} = stored_entry(base, {i}u, {j}u);").unwrap();
            writeln!(s, "big = max(big, finite_abs({x}));").unwrap();
            writeln!(s, "bad = bad || !is_finite_f32({x});").unwrap();
        }
    }
    s
}

/// Prescales A (zeroes it when an entry was not finite) and sets V = I.
fn scale(n: u32, vectors: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        for j in i..n {
            let x = a(i, j);
            writeln!(s, "{x} = select(ldexp({x}, -scale_exp), 0.0, bad);").unwrap();
        }
    }
    if vectors {
        for i in 0..n {
            for j in 0..n {
                let one = if i == j { "1.0" } else { "0.0" };
                writeln!(s, "var {} = {one};", v(i, j)).unwrap();
            }
        }
    }
    s
}

/// One sweep: M_PAD − 1 steps of disjoint rotations, each written out.
fn sweep(n: u32, vectors: bool) -> String {
    let m_pad = n + (n & 1);
    let mut s = String::new();
    for r in 0..m_pad - 1 {
        for i in 0..m_pad / 2 {
            let (p, q) = rr_pair(m_pad, r, i);
            if q >= n {
                continue;
            }
            let (pp, qq, pq) = (a(p, p), a(q, q), a(p, q));
            writeln!(s, "if (rotates({pp}, {qq}, {pq})) {{").unwrap();
            writeln!(s, "    let cst = rotation({pp}, {qq}, {pq});").unwrap();
            writeln!(s, "    {pp} = {pp} - cst.z * {pq};").unwrap();
            writeln!(s, "    {qq} = {qq} + cst.z * {pq};").unwrap();
            writeln!(s, "    {pq} = 0.0;").unwrap();
            for k in (0..n).filter(|&k| k != p && k != q) {
                rotate(&mut s, &format!("x{k}"), &a(k, p), &a(k, q));
            }
            if vectors {
                for k in 0..n {
                    rotate(&mut s, &format!("y{k}"), &v(k, p), &v(k, q));
                }
            }
            writeln!(s, "    rot = true;").unwrap();
            writeln!(s, "}}").unwrap();
        }
    }
    s
}

/// Ranks the eigenvalues (ascending, ties by index) and writes them, and the eigenvectors
/// under the sign gauge, at their ranks (NaN unless the status is 0).
/// Whether an eigenvalue (a diagonal entry after the sweeps) is beyond the f32 range once
/// scaled back, into `beyond`.
fn beyond(n: u32) -> String {
    (0..n)
        .map(|j| format!("beyond = beyond || beyond_f32({}, scale_exp);\n", a(j, j)))
        .collect()
}

fn finish(n: u32, vectors: bool) -> String {
    let mut s = String::new();
    for j in 0..n {
        let dj = a(j, j);
        writeln!(s, "var r{j} = 0u;").unwrap();
        for i in (0..n).filter(|&i| i != j) {
            writeln!(s, "r{j} += ahead({}, {dj}, {});", a(i, i), i < j).unwrap();
        }
        writeln!(
            s,
            "values_out[g * N + r{j}] = select(nan, ldexp({dj}, scale_exp), ok);"
        )
        .unwrap();
        if vectors {
            // The first component within GAUGE_FLOOR of the largest decides the sign.
            writeln!(s, "var m{j} = abs({});", v(0, j)).unwrap();
            for i in 1..n {
                writeln!(s, "m{j} = max(m{j}, abs({}));", v(i, j)).unwrap();
            }
            writeln!(s, "var b{j} = {};", v(0, j)).unwrap();
            for i in (0..n).rev() {
                let x = v(i, j);
                writeln!(
                    s,
                    "b{j} = select(b{j}, {x}, abs({x}) >= m{j} * GAUGE_FLOOR);"
                )
                .unwrap();
            }
            writeln!(s, "let s{j} = select(1.0, -1.0, b{j} < 0.0);").unwrap();
            for i in 0..n {
                writeln!(
                    s,
                    "vectors_out[base + {}u + r{j}] = select(nan, s{j} * {}, ok);",
                    i * n,
                    v(i, j)
                )
                .unwrap();
            }
        }
    }
    s
}

/// The VJP's inputs: λ, V, and the largest |λ| (for the mask threshold).
fn vjp_load(n: u32) -> String {
    let mut s = String::new();
    for i in 0..n {
        writeln!(s, "let l{i} = values_in[g * N + {i}u];").unwrap();
        writeln!(s, "big = max(big, abs(l{i}));").unwrap();
    }
    for i in 0..n {
        for j in 0..n {
            writeln!(s, "let {} = vectors_in[base + {}u];", v(i, j), i * n + j).unwrap();
        }
    }
    s
}

/// M = diag(λ̄) + F∘skew(X) with X = VᵀV̄: its diagonal and upper triangle, `m{i}_{j}`.
fn vjp_m(n: u32) -> String {
    let m = |i: u32, j: u32| sym("m", i, j);
    let mut s = String::new();
    for i in 0..n {
        for j in i..n {
            writeln!(s, "var {} = 0.0;", m(i, j)).unwrap();
        }
    }
    writeln!(s, "if (has_gl) {{").unwrap();
    for i in 0..n {
        writeln!(s, "    {} = grad_values[g * N + {i}u];", m(i, i)).unwrap();
    }
    writeln!(s, "}}").unwrap();
    if n > 1 {
        writeln!(s, "if (has_gv) {{").unwrap();
        // X_ij = Σ_k V_ki V̄_kj, one row k of V̄ at a time.
        for i in 0..n {
            for j in 0..n {
                writeln!(s, "    var x{i}_{j} = 0.0;").unwrap();
            }
        }
        for k in 0..n {
            for j in 0..n {
                writeln!(s, "    let w{k}_{j} = grad_vectors[base + {}u];", k * n + j).unwrap();
            }
            for i in 0..n {
                for j in 0..n {
                    writeln!(s, "    x{i}_{j} = fma({}, w{k}_{j}, x{i}_{j});", v(k, i)).unwrap();
                }
            }
        }
        for i in 0..n {
            for j in i + 1..n {
                writeln!(
                    s,
                    "    {} = degeneracy_factor(POLICY, l{j} - l{i}, thr, params.tol, inf) * (0.5 * (x{i}_{j} - x{j}_{i}));",
                    m(i, j)
                )
                .unwrap();
            }
        }
        writeln!(s, "}}").unwrap();
    }
    s
}

/// Ā = (V M) Vᵀ, upper triangle, each entry written to both of its places.
fn vjp_out(n: u32) -> String {
    let m = |i: u32, j: u32| sym("m", i, j);
    let mut s = String::new();
    for i in 0..n {
        for k in 0..n {
            let terms: Vec<String> = (0..n)
                .map(|j| format!("{} * {}", v(i, j), m(j, k)))
                .collect();
            writeln!(s, "let p{i}_{k} = {};", terms.join(" + ")).unwrap();
        }
        for j in i..n {
            let terms: Vec<String> = (0..n).map(|k| format!("p{i}_{k} * {}", v(j, k))).collect();
            writeln!(s, "let o{i}_{j} = select(nan, {}, ok);", terms.join(" + ")).unwrap();
            writeln!(s, "nn_out[base + {}u] = o{i}_{j};", i * n + j).unwrap();
            if j != i {
                writeln!(s, "nn_out[base + {}u] = o{i}_{j};", j * n + i).unwrap();
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_meets_every_pair_once_per_sweep() {
        for n in 1..=REGISTERS_MAX_N as u32 {
            let m_pad = n + (n & 1);
            let mut seen = std::collections::HashSet::new();
            for r in 0..m_pad - 1 {
                let mut used = std::collections::HashSet::new();
                for i in 0..m_pad / 2 {
                    let (p, q) = rr_pair(m_pad, r, i);
                    assert!(p < q && q < m_pad);
                    assert!(
                        used.insert(p) && used.insert(q),
                        "n={n}: step {r} not disjoint"
                    );
                    assert!(seen.insert((p, q)), "n={n}: ({p}, {q}) twice");
                }
            }
            assert_eq!(seen.len() as u32, m_pad * (m_pad - 1) / 2);
        }
    }

    #[test]
    fn every_generated_block_is_expanded() {
        let src = "fn f() {\n    //@gen load\n    x;\n    //@gen sweep\n}\n";
        let out = expand(src, 3, true);
        assert!(!out.contains("//@gen"));
        assert!(out.contains("    var a0_2 = stored_entry(base, 0u, 2u);\n"));
        // Three pairs for n = 3 (the fourth pairs with the padding index).
        assert_eq!(out.matches("if (rotates(").count(), 3);
        assert!(!expand(src, 3, false).contains("v0_0"));
    }
}
