// Batched symmetric eigendecomposition by Householder reduction to tridiagonal form and
// implicit QL iterations: eigenvalues (ascending), eigenvectors (columns, sign gauge) and a
// status per matrix (2 when the QL's rotation budget ran out). Body in tridiagonal.wgsl.
// Bindings in forward_bindings.wgsl (binding 4, the two-sided kernel's scratch, is not used).

const VECTORS: bool = true;

@compute @workgroup_size(WG)
fn tridiagonal_eigh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    tridiagonal_main(lid, wid);
}
