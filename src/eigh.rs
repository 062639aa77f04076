//! The owning result of a batched eigendecomposition.

use crate::Status;

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
