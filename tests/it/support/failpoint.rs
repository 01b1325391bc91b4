//! compute_ctl stopped at a failpoint: a test build (feature `failpoints`)
//! stops itself with SIGSTOP as it enters a phase named in
//! `COMPUTE_CTL_FAILPOINT` (comma-separated).

use std::time::Duration;

use super::compute::Compute;
use super::os::state_of;
use super::wait_for;

/// The environment variable that names the failpoints to stop at.
pub const VAR: &str = "COMPUTE_CTL_FAILPOINT";

/// Whether compute_ctl is stopped at one of its failpoints.
pub fn stopped(c: &Compute) -> bool {
    state_of(c.pid as i32) == Some('T')
}

/// Waits until compute_ctl stops at a failpoint; fails if it exits first.
pub async fn wait_stopped(c: &Compute, at: &str) {
    wait_for(Duration::from_secs(90), at, || async {
        if let Some(exit) = c.try_exit() {
            panic!(
                "compute_ctl exited ({exit}) before the failpoint {at}:\n{}",
                c.log()
            );
        }
        stopped(c).then_some(())
    })
    .await;
}
