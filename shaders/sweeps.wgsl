// The sweep-level convergence vote shared by the Jacobi kernels, which declare MATS.
// A workgroup sweeps on while any of its matrices rotated in the last sweep; a matrix that still
// rotated in the last allowed sweep is not converged.

var<workgroup> rotated: array<atomic<u32>, MATS>;    // rotated in the current sweep
var<workgroup> last_rotated: array<u32, MATS>;       // rotated in the last finished sweep
var<workgroup> any_rotated: atomic<u32>;
var<workgroup> sweep_go: u32;

// Clears the records (before a barrier): `first` is one invocation per matrix, `lid` the
// invocation's index in the workgroup.
fn sweep_reset(mi: u32, first: bool, lid: u32) {
    if (first) {
        atomicStore(&rotated[mi], 0u);
        last_rotated[mi] = 0u;
    }
    if (lid == 0u) {
        atomicStore(&any_rotated, 0u);
    }
}

// Ends a sweep in which this invocation rotated (`any`) or not, and returns whether the
// workgroup sweeps on. Call from uniform control flow (it synchronises).
fn sweep_vote(mi: u32, first: bool, lid: u32, any: bool) -> bool {
    if (any) {
        atomicOr(&rotated[mi], 1u);
    }
    workgroupBarrier();
    if (first) {
        let rot = atomicExchange(&rotated[mi], 0u);
        last_rotated[mi] = rot;
        if (rot != 0u) {
            atomicOr(&any_rotated, 1u);
        }
    }
    workgroupBarrier();
    if (lid == 0u) {
        sweep_go = atomicExchange(&any_rotated, 0u);
    }
    return workgroupUniformLoad(&sweep_go) != 0u;
}
