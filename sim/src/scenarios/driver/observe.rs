//! What a scenario reads of the world, through its [`Driver`]: the
//! compute as the harness sees it (no network), the boot count, the WAL
//! receiver, and what the fault ledger excuses.

use compute_ctl::compute::ComputeState;

use super::Driver;
use crate::events::{Event, SpecInEffect};

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

    /// Looks at the primary (no network) and logs what the safekeeper
    /// move checkers read of it ([`Event::PrimarySeen`]).
    pub fn observe_primary(&self) {
        let st = self.observed_state();
        let standby_names = self.loaded_config().and_then(|conf| {
            crate::pgmodel::guc::parse_conf(&conf).remove("synchronous_standby_names")
        });
        let ev = Event::PrimarySeen {
            status: st.as_ref().map(|s| s.status),
            failure_kind: st
                .as_ref()
                .and_then(|s| s.failure.as_ref())
                .map(|f| f.kind().to_string()),
            exited: self.supervisor_exited(),
            standby_names,
            spec: st
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .map(|s| SpecInEffect {
                    operation_uuid: s.operation_uuid.clone(),
                    safekeepers: s.safekeeper_connstrings.clone(),
                    generation: s.safekeepers_generation,
                }),
        };
        self.emit(ev);
    }

    /// Looks at the compute host and logs whether Postgres runs with a
    /// loaded config ([`Event::PostgresSeen`]) for the checkers.
    pub fn observe_postgres(&self) {
        let running = self.config_loaded();
        self.emit(Event::PostgresSeen { running });
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

    /// A fault named `kind` (`FaultKind::name`) fired.
    pub fn fault_fired(&self, kind: &str) -> bool {
        self.shared.lock().ledger.fired(kind)
    }

    /// A fault named `kind` ran between `t0` and `t1` (µs).
    pub fn fault_fired_during(&self, kind: &str, t0: u64, t1: u64) -> bool {
        self.shared.lock().ledger.fired_during(kind, t0, t1)
    }

    /// The config text Postgres loaded last (`None` before it runs).
    pub fn loaded_config(&self) -> Option<String> {
        self.shared.lock().loaded_config.clone()
    }

    /// A safekeeper fault ran between `t0` and `t1` (µs).
    pub fn safekeeper_fault_during(&self, t0: u64, t1: u64) -> bool {
        self.shared.lock().ledger.safekeeper_fault_during(t0, t1)
    }
}
