// Batched symmetric eigenvalues (ascending) and a status per matrix of the smallest matrices, one
// invocation per matrix; the same sweeps as registers_eigh. Body in registers.wgsl.
@compute @workgroup_size(WG)
fn registers_eigvalsh(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
    registers_main(lid, wid);
}
