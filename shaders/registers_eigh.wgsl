// Batched symmetric eigendecomposition of the smallest matrices, one invocation per matrix:
// eigenvalues (ascending), eigenvectors (columns, sign gauge) and a status per matrix. Body in
// registers.wgsl, its rotations written out by the host.
@compute @workgroup_size(WG)
fn registers_eigh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    registers_main(lid, wid);
}
