// The bindings of the forward kernels (jacobi.wgsl, hestenes.wgsl, registers.wgsl,
// tridiagonal_eigvalsh.wgsl). Binding 4, the two-sided kernel's Vᵀ scratch, is declared by
// jacobi.wgsl alone; the eigenvalues-only kernels leave the eigenvectors unused.

// Input matrices [batch][N][N].
@group(0) @binding(0) var<storage, read> a_in: array<f32>;
// Eigenvalues [batch][N], ascending.
@group(0) @binding(1) var<storage, read_write> values_out: array<f32>;
// Eigenvectors [batch][N][N], columns (unused by the eigenvalues-only kernels).
@group(0) @binding(2) var<storage, read_write> vectors_out: array<f32>;
// Status codes [batch] (0 ok, 1 non-finite input, 2 not converged).
@group(0) @binding(3) var<storage, read_write> status_out: array<u32>;
// Dispatch parameters.
@group(0) @binding(5) var<uniform> params: Params;
