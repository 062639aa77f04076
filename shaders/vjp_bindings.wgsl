// The bindings of the reverse-rule kernels (eigh_vjp.wgsl, registers_vjp.wgsl).

// Eigenvalues [batch][N] from the forward.
@group(0) @binding(0) var<storage, read> values_in: array<f32>;
// Eigenvectors [batch][N][N] from the forward.
@group(0) @binding(1) var<storage, read> vectors_in: array<f32>;
// λ̄ [batch][N] (a placeholder when absent).
@group(0) @binding(2) var<storage, read> grad_values: array<f32>;
// V̄ [batch][N][N] (a placeholder when absent).
@group(0) @binding(3) var<storage, read> grad_vectors: array<f32>;
// Forward status [batch].
@group(0) @binding(4) var<storage, read> status_in: array<u32>;
// Ā [batch][N][N] (in eigh_vjp.wgsl also the work matrix W when W_SHARED is false).
@group(0) @binding(5) var<storage, read_write> nn_out: array<f32>;
// Dispatch parameters (tol: mask relative tolerance or Lorentzian eps).
@group(0) @binding(6) var<uniform> params: Params;
