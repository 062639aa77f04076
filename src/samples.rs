//! Deterministic test and demo matrices: random symmetric, prescribed spectra (repeated,
//! clustered, graded), sample covariance matrices. Used by the tests, the benches and the
//! command line's `demo`, `check` and `bench`, so that all of them see the same families.

/// A small, fast, seeded generator (SplitMix64); enough for test data, not for cryptography.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// `B` symmetric `n×n` matrices with N(0,1) entries above the diagonal (mirrored) and on it.
pub fn random_symmetric(rng: &mut Rng, n: usize, batch: usize) -> Vec<f64> {
    let mut out = vec![0.0; batch * n * n];
    for m in out.chunks_mut(n * n) {
        for i in 0..n {
            for j in 0..=i {
                let x = rng.normal();
                m[i * n + j] = x;
                m[j * n + i] = x;
            }
        }
    }
    out
}

/// A random orthogonal `n×n` matrix (Gram–Schmidt, applied twice, on a Gaussian matrix).
pub fn random_orthogonal(rng: &mut Rng, n: usize) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    // Columns j of q, orthonormalised in order.
    for j in 0..n {
        for _ in 0..2 {
            for k in 0..j {
                let dot: f64 = (0..n).map(|i| q[i * n + j] * q[i * n + k]).sum();
                for i in 0..n {
                    q[i * n + j] -= dot * q[i * n + k];
                }
            }
        }
        let norm = (0..n).map(|i| q[i * n + j].powi(2)).sum::<f64>().sqrt();
        for i in 0..n {
            q[i * n + j] /= norm;
        }
    }
    q
}

/// `Q diag(spectrum) Qᵀ` for a random orthogonal `Q`, exactly symmetrised.
pub fn with_spectrum(rng: &mut Rng, spectrum: &[f64]) -> Vec<f64> {
    let n = spectrum.len();
    let q = random_orthogonal(rng, n);
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..n)
                .map(|k| q[i * n + k] * spectrum[k] * q[j * n + k])
                .sum();
            a[i * n + j] = s;
            a[j * n + i] = s;
        }
    }
    a
}

/// A spectrum with repeated values: `n` eigenvalues drawn from about `n/3` distinct levels.
pub fn repeated_spectrum(rng: &mut Rng, n: usize) -> Vec<f64> {
    let levels = (n / 3).max(1);
    let values: Vec<f64> = (0..levels).map(|_| rng.normal() * 3.0).collect();
    let mut s: Vec<f64> = (0..n).map(|i| values[i % levels]).collect();
    s.sort_by(f64::total_cmp);
    s
}

/// A spectrum of clusters whose members differ by `gap` (relative to a unit scale).
pub fn clustered_spectrum(rng: &mut Rng, n: usize, gap: f64) -> Vec<f64> {
    let mut s = Vec::with_capacity(n);
    let mut centre = rng.normal();
    for i in 0..n {
        if i % 3 == 0 {
            centre += 1.0 + rng.uniform();
        }
        s.push(centre + (i % 3) as f64 * gap);
    }
    s
}

/// `B` graded positive definite matrices `D R D`, `R` a random correlation-like matrix and `D`
/// spanning `10^-scale_exp ..= 10^scale_exp`, so eigenvalues span about `10^±2·scale_exp`.
pub fn graded(rng: &mut Rng, n: usize, batch: usize, scale_exp: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(batch * n * n);
    for _ in 0..batch {
        let spectrum: Vec<f64> = (0..n).map(|_| 0.5 + rng.uniform()).collect();
        let r = with_spectrum(rng, &spectrum);
        let d: Vec<f64> = (0..n)
            .map(|i| {
                let t = if n > 1 {
                    i as f64 / (n - 1) as f64
                } else {
                    0.5
                };
                10f64.powf(scale_exp * (2.0 * t - 1.0))
            })
            .collect();
        for i in 0..n {
            for j in 0..n {
                out.push(d[i] * r[i * n + j] * d[j]);
            }
        }
    }
    out
}

/// `B` sample covariance matrices `XᵀX/(m−1)` of `m` random observations of `n` correlated
/// features (the demo's workload).
///
/// The features are mixed through a random unit lower-triangular map `L = I + N`, `N` strictly
/// lower triangular with entries of standard deviation `0.5/√n`, so the population covariance
/// `LLᵀ` is well conditioned (a condition number of order 10). (A mixing map with random
/// diagonal entries, as before, made triangular maps with condition numbers up to about 1e9 and
/// so clusters of eigenvalues below f32 resolution, where the gradient of an eigenvalue is not
/// defined.)
pub fn covariances(rng: &mut Rng, n: usize, batch: usize, observations: usize) -> Vec<f64> {
    let m = observations.max(2);
    let mut out = vec![0.0; batch * n * n];
    let mut x = vec![0.0; m * n];
    let off = 0.5 / (n as f64).sqrt();
    for c in out.chunks_mut(n * n) {
        // Features mixed through a random lower-triangular map so they are correlated.
        let mix: Vec<f64> = (0..n * n)
            .map(|k| {
                let (i, j) = (k / n, k % n);
                let z = rng.normal();
                if i == j {
                    1.0
                } else {
                    off * z
                }
            })
            .collect();
        for r in 0..m {
            let z: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
            for i in 0..n {
                x[r * n + i] = (0..=i).map(|k| mix[i * n + k] * z[k]).sum();
            }
        }
        for i in 0..n {
            for j in 0..=i {
                let s: f64 =
                    (0..m).map(|r| x[r * n + i] * x[r * n + j]).sum::<f64>() / (m - 1) as f64;
                c[i * n + j] = s;
                c[j * n + i] = s;
            }
        }
    }
    out
}
