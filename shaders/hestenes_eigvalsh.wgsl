// Batched symmetric eigenvalues only, one-sided Jacobi: eigenvalues (ascending) and a status per
// matrix. Body in hestenes.wgsl.
@compute @workgroup_size(WG)
fn hestenes_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    hestenes_main(lid, wid, false);
}
