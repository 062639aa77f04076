// Batched symmetric eigenvalues only (no basis accumulation): eigenvalues (ascending) and a
// status per matrix. Body in jacobi.wgsl.
@compute @workgroup_size(WG)
fn jacobi_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    jacobi_main(lid, wid, false);
}
