// Batched symmetric eigendecomposition, one-sided Jacobi: eigenvalues (ascending), eigenvectors
// (columns, sign gauge) and a status per matrix. Body in hestenes.wgsl.
//@if sg
@compute @workgroup_size(WG)
fn hestenes_eigh(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(subgroup_id) sid: u32,
    @builtin(subgroup_size) size: u32,
    @builtin(subgroup_invocation_id) lane: u32,
) {
    hestenes_main(sid * size + lane, wid, true, lane);
}
//@else
@compute @workgroup_size(WG)
fn hestenes_eigh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    hestenes_main(lid, wid, true, 0u);
}
//@fi
