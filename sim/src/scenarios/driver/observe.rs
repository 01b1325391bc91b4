//! What a scenario reads of the world, through its [`Driver`]: the
//! compute as the harness sees it (no network), the boot count, the WAL
//! receiver, and what the fault ledger excuses.

use compute_ctl::compute::ComputeState;

use super::Driver;

impl Driver {
    /// The compute's state as the harness sees it (no network); `None`
    /// while no supervisor runs.
    pub fn observed_state(&self) -> Option<ComputeState> {
        self.shared.compute().map(|c| c.state())
    }

    /// [`Driver::observed_state`] of the second compute on
    /// [`crate::names::REPLICA`] (`None` in a world without one).
    pub fn observed_replica_state(&self) -> Option<ComputeState> {
        let replica = self.shared.lock().second_compute.clone();
        replica.and_then(|r| r.compute()).map(|c| c.state())
    }

    /// How many times the compute host booted (a changed count: the
    /// compute restarted).
    pub fn boot(&self) -> u64 {
        self.shared.lock().boot
    }

    /// The compute's supervisor exited (the process is gone).
    pub fn supervisor_exited(&self) -> bool {
        self.shared.lock().supervisor_exited
    }

    /// No supervisor runs on the compute host (crashed, or not booted).
    pub fn compute_gone(&self) -> bool {
        self.shared.lock().compute.is_none()
    }

    /// Postgres runs with a loaded config.
    pub fn config_loaded(&self) -> bool {
        self.shared.lock().loaded_config.is_some()
    }

    /// The timeline the replica's WAL receiver is on.
    pub fn receiver_timeline(&self) -> u32 {
        self.shared.lock().receiver.timeline
    }

    /// The `host:port` the replica's WAL receiver streams from, if any.
    pub fn receiver_sender(&self) -> Option<String> {
        self.shared.lock().receiver.sender.clone()
    }

    /// How many computes the fleet has (0 in a one-compute world).
    pub fn fleet_len(&self) -> usize {
        self.fleet.len()
    }

    /// A fault fired.
    pub fn any_fault_fired(&self) -> bool {
        self.shared.lock().ledger.any()
    }

    /// Until when (µs) a network fault ran; 0 if none fired.
    pub fn network_until(&self) -> u64 {
        self.shared.lock().ledger.network_until()
    }

    /// A network fault may have swallowed a request sent at `t0`.
    pub fn excuses_lost_request(&self, t0: u64) -> bool {
        self.shared.lock().ledger.excuses_lost_request(t0)
    }

    /// A fault that fired can make the compute fail with `failure_kind`
    /// (`FailReason::kind`).
    pub fn explains_failure(&self, failure_kind: &str) -> bool {
        self.shared
            .lock()
            .ledger
            .explains_failure(failure_kind)
            .is_some()
    }

    /// A safekeeper fault ran between `t0` and `t1` (µs).
    pub fn safekeeper_fault_during(&self, t0: u64, t1: u64) -> bool {
        self.shared.lock().ledger.safekeeper_fault_during(t0, t1)
    }
}
