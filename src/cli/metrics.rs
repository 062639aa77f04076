//! Accuracy of a device's results against the f64 CPU reference, shared by `demo` and `check`,
//! and the f32 tolerances they are judged by.
//!
//! Every measure is the worst over the batch and is evaluated in f64 from the device's f32
//! outputs, on the exact matrices the device was given (f32, widened), so that only the
//! algorithm's error is measured, not the rounding of the input.

use eigrad::Eigh;
use rayon::prelude::*;

/// The worst errors over a batch. NaN (a matrix the device failed on) propagates, so it fails
/// every comparison with a tolerance.
#[derive(Clone, Copy, Debug, Default)]
pub struct Forward {
    /// `max_i |λ_i − λ_i^ref| / ‖A‖₂`.
    pub eigenvalue: f64,
    /// `‖AV − VΛ‖_F / ‖A‖₂`.
    pub residual: f64,
    /// `‖VᵀV − I‖_F`.
    pub orthogonality: f64,
    /// Matrices whose status differs from the reference's.
    pub status_mismatches: usize,
}

/// The tolerances of the f32 GPU path for size `n` (normwise, `eps = f32::EPSILON`): eigenvalue
/// error `8·n·eps·‖A‖₂`, residual `16·n·eps·‖A‖₂`, orthogonality `16·n·eps`, VJP relative error
/// `1e-4` on well separated spectra.
#[derive(Clone, Copy, Debug)]
pub struct Tolerances {
    /// Bound on [`Forward::eigenvalue`].
    pub eigenvalue: f64,
    /// Bound on [`Forward::residual`].
    pub residual: f64,
    /// Bound on [`Forward::orthogonality`].
    pub orthogonality: f64,
    /// Bound on the VJP relative error.
    pub vjp: f64,
}

impl Tolerances {
    /// The tolerances for matrices of size `n`.
    pub fn f32(n: usize) -> Self {
        let eps = f32::EPSILON as f64;
        let n = n as f64;
        Tolerances {
            eigenvalue: 8.0 * n * eps,
            residual: 16.0 * n * eps,
            orthogonality: 16.0 * n * eps,
            vjp: 1e-4,
        }
    }

    /// Whether the forward measures pass (NaN fails).
    pub fn forward_ok(&self, f: &Forward) -> bool {
        f.status_mismatches == 0
            && within(f.eigenvalue, self.eigenvalue)
            && within(f.residual, self.residual)
            && within(f.orthogonality, self.orthogonality)
    }
}

/// `x ≤ tol`, false for NaN.
pub fn within(x: f64, tol: f64) -> bool {
    x <= tol
}

/// The larger of two values, NaN if either is NaN (`f64::max` would drop the NaN).
pub fn worst(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `max|λ|` of the reference (`‖A‖₂`), or 1 for a zero matrix so that errors stay absolute.
fn norm2(lambda: &[f64]) -> f64 {
    let m = lambda.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    if m > 0.0 {
        m
    } else {
        1.0
    }
}

/// Compares the device's decomposition `dev` of the matrices `a` (`[B][n][n]`, what the device
/// was given, in f64) with the reference `reference` of the same matrices. `dev` must hold
/// eigenvectors.
pub fn forward(a: &[f64], reference: &Eigh<f64>, dev: &Eigh<f64>) -> Forward {
    let n = reference.n;
    let nn = n * n;
    let dev_vectors = dev.eigenvectors.as_deref().expect("device eigenvectors");
    (0..reference.batch)
        .into_par_iter()
        .with_min_len(16)
        .map(|b| {
            let m = &a[b * nn..(b + 1) * nn];
            let (lr, ld) = (reference.values(b), dev.values(b));
            let v = &dev_vectors[b * nn..(b + 1) * nn];
            let scale = norm2(lr);
            if reference.status[b] != dev.status[b] {
                return Forward {
                    status_mismatches: 1,
                    ..Forward::default()
                };
            }
            if !reference.status[b].is_ok() {
                return Forward::default();
            }
            let eig = lr
                .iter()
                .zip(ld)
                .fold(0.0, |w, (x, y)| worst(w, (x - y).abs()));
            // ‖AV − VΛ‖_F and ‖VᵀV − I‖_F.
            let (mut res, mut orth) = (0.0, 0.0);
            for i in 0..n {
                for j in 0..n {
                    let av: f64 = (0..n).map(|k| m[i * n + k] * v[k * n + j]).sum();
                    let r = av - v[i * n + j] * ld[j];
                    res += r * r;
                    let vtv: f64 = (0..n).map(|k| v[k * n + i] * v[k * n + j]).sum();
                    let o = vtv - if i == j { 1.0 } else { 0.0 };
                    orth += o * o;
                }
            }
            Forward {
                eigenvalue: eig / scale,
                residual: res.sqrt() / scale,
                orthogonality: orth.sqrt(),
                status_mismatches: 0,
            }
        })
        .reduce(Forward::default, |x, y| Forward {
            eigenvalue: worst(x.eigenvalue, y.eigenvalue),
            residual: worst(x.residual, y.residual),
            orthogonality: worst(x.orthogonality, y.orthogonality),
            status_mismatches: x.status_mismatches + y.status_mismatches,
        })
}

/// The worst eigenvalue error `max|Δλ|/‖A‖₂` of the device's eigenvalues `dev` (an
/// eigenvalues-only result) against the reference, over the matrices the reference decomposed;
/// NaN (a failure) where a status differs.
pub fn eigenvalues(reference: &Eigh<f64>, dev: &Eigh<f64>) -> f64 {
    (0..reference.batch)
        .into_par_iter()
        .with_min_len(16)
        .map(|b| {
            if reference.status[b] != dev.status[b] {
                return f64::NAN;
            }
            if !reference.status[b].is_ok() {
                return 0.0;
            }
            let lr = reference.values(b);
            let err = lr
                .iter()
                .zip(dev.values(b))
                .fold(0.0, |w, (x, y)| worst(w, (x - y).abs()));
            err / norm2(lr)
        })
        .reduce(|| 0.0, worst)
}

/// The worst relative error `‖X − X^ref‖_F / ‖X^ref‖_F` over matrices of `nn` elements (VJPs).
/// A length mismatch (a wrong-sized result) counts as NaN, i.e. a failure.
pub fn relative(dev: &[f64], reference: &[f64], nn: usize) -> f64 {
    if dev.len() != reference.len() {
        return f64::NAN;
    }
    relative_each(dev, reference, nn)
        .into_iter()
        .fold(0.0, worst)
}

/// [`relative`] of each matrix (NaN where the device has a NaN the reference does not).
pub fn relative_each(dev: &[f64], reference: &[f64], nn: usize) -> Vec<f64> {
    dev.par_chunks(nn)
        .zip(reference.par_chunks(nn))
        .map(|(d, r)| {
            let num: f64 = d.iter().zip(r).map(|(x, y)| (x - y) * (x - y)).sum();
            let den: f64 = r.iter().map(|y| y * y).sum();
            if den > 0.0 {
                (num / den).sqrt()
            } else {
                num.sqrt()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_keeps_nan() {
        assert!(worst(1.0, f64::NAN).is_nan());
        assert!(worst(f64::NAN, 1.0).is_nan());
        assert_eq!(worst(1.0, 2.0), 2.0);
    }

    #[test]
    fn the_reference_against_itself_is_within_tolerance() {
        let mut rng = eigrad::samples::Rng::new(1);
        let a = eigrad::samples::random_symmetric(&mut rng, 5, 8);
        let e = eigrad::cpu::jacobi_eigh(&a, 5, &Default::default()).unwrap();
        let f = forward(&a, &e, &e);
        assert!(Tolerances::f32(5).forward_ok(&f), "{f:?}");
        assert_eq!(f.eigenvalue, 0.0);
    }
}
