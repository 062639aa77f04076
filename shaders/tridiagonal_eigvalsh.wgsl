// Batched symmetric eigenvalues without eigenvectors: Householder reduction to tridiagonal form,
// then bisection on Sturm counts, one eigenvalue per invocation. Body in tridiagonal.wgsl.
// Bindings in forward_bindings.wgsl (bindings 2 and 4, eigenvectors and scratch, are not used;
// the status is 0 or 1).

const VECTORS: bool = false;

@compute @workgroup_size(WG)
fn tridiagonal_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    tridiagonal_main(lid, wid);
}
