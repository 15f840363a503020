//! N steps, a snapshot, then N more steps from it must give exactly the weights, optimiser
//! moments and counters of 2N steps in one go (CPU, deterministic kernels).
mod common;

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::tiny_dataset(tmp.path(), 24, 8);
    // 20 steps of batch 4: R1 runs at steps 0 and 16, path length every 4 steps.
    common::assert_resume_is_exact(common::tiny_options(data), tmp.path());
}
