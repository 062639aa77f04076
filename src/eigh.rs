//! The owning result of a batched eigendecomposition.

use crate::{Error, Result, Status};

/// The tie tolerance of the sign gauge (DESIGN §1): each eigenvector is signed so that its
/// first component whose magnitude is at least `1 − GAUGE_TIE` times the largest is positive.
/// Components that are equal in exact arithmetic (a path graph's Laplacian, a Hadamard basis)
/// differ at rounding level in a computed vector, and a strict "largest, first on ties" would
/// follow the rounding, so that two solvers (CPU and GPU) could sign the same vector
/// differently. With the tolerance (2⁻⁸, far above the components' rounding errors of about
/// 1e-4 relative at worst in f32 at n = 64) such components count as tied and the first
/// decides on every path; two paths can still disagree only for a component whose magnitude
/// lies within rounding of the threshold itself.
pub const GAUGE_TIE: f64 = 1.0 / 256.0;

/// An error unless `len` is `expected` (`what` names the buffer or field).
pub(crate) fn check_len(len: usize, expected: usize, what: &str) -> Result<()> {
    if len != expected {
        return Err(Error::Shape(format!(
            "{what} has {len} elements, expected {expected}"
        )));
    }
    Ok(())
}

/// `n·n`, or an error when `n` is 0 or `n·n` f64s could not be addressed.
pub(crate) fn matrix_len(n: usize) -> Result<usize> {
    if n == 0 {
        return Err(Error::Shape("matrix size n must be at least 1".into()));
    }
    n.checked_mul(n)
        .filter(|nn| {
            nn.checked_mul(size_of::<f64>())
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| Error::Shape(format!("matrix size n = {n} is too large")))
}

/// `batch · per_matrix` elements, or an error when that overflows.
pub(crate) fn batch_len(batch: usize, per_matrix: usize) -> Result<usize> {
    batch
        .checked_mul(per_matrix)
        .ok_or_else(|| Error::Shape(format!("a batch of {batch} is too large")))
}

/// Eigenvalues (ascending), optional eigenvectors (columns) and a status per matrix for a batch of
/// `batch` matrices of size `n×n`. `T` is f64 for the CPU reference and f32 for GPU readback.
#[derive(Clone, Debug, PartialEq)]
pub struct Eigh<T> {
    /// Matrix size.
    pub n: usize,
    /// Number of matrices.
    pub batch: usize,
    /// `[batch][n]`, ascending per matrix; NaN where the status is not ok.
    pub eigenvalues: Vec<T>,
    /// `[batch][n][n]`, `eigenvectors[b][i][j]` = component `i` of eigenvector `j`; `None` for the
    /// eigenvalues-only path.
    pub eigenvectors: Option<Vec<T>>,
    /// One status per matrix.
    pub status: Vec<Status>,
}

impl<T> Eigh<T> {
    /// Checks that the fields agree with `n` and `batch` (the derivatives check the forward
    /// result they are given, whose fields are public): `n ≥ 1`, `batch·n` eigenvalues, `batch`
    /// statuses and, when present, `batch·n²` eigenvector entries.
    pub fn check(&self) -> Result<()> {
        let nn = matrix_len(self.n)?;
        let values = batch_len(self.batch, self.n)?;
        check_len(self.eigenvalues.len(), values, "eigenvalues")?;
        check_len(self.status.len(), self.batch, "status")?;
        if let Some(v) = &self.eigenvectors {
            check_len(v.len(), batch_len(self.batch, nn)?, "eigenvectors")?;
        }
        Ok(())
    }

    /// The eigenvalues of matrix `b`.
    pub fn values(&self, b: usize) -> &[T] {
        &self.eigenvalues[b * self.n..(b + 1) * self.n]
    }

    /// The eigenvectors of matrix `b` (row-major `n×n`, columns are eigenvectors), if computed.
    pub fn vectors(&self, b: usize) -> Option<&[T]> {
        let nn = self.n * self.n;
        self.eigenvectors.as_ref().map(|v| &v[b * nn..(b + 1) * nn])
    }

    /// True when every matrix has status ok.
    pub fn all_ok(&self) -> bool {
        self.status.iter().all(|s| s.is_ok())
    }
}

/// Tangents of the eigendecomposition (JVP): `λ̇` and `V̇` for a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Jvp<T> {
    /// `λ̇`, `[B][n]`.
    pub values_dot: Vec<T>,
    /// `V̇`, `[B][n][n]`.
    pub vectors_dot: Vec<T>,
}
