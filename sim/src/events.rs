//! The typed event log of one world: what the simulated hosts (compute
//! boots, the postmaster, the supervisor's status channel, the fault
//! schedule) did, in simulated-time order. Checkers read it as it grows
//! ([`crate::checkers`]); the trace is its serialised form.

use compute_ctl::state::ComputeStatus;
use serde::Serialize;

use crate::faults::FaultKind;

/// One thing that happened in the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// A compute host (re)booted: a fresh process, an empty disk.
    Boot { host: String, boot: u64 },
    /// The supervisor's status channel showed a new status.
    Status { boot: u64, status: ComputeStatus },
    /// The supervisor's run loop returned: the binary lingers or drains.
    SupervisorExit {
        status: ComputeStatus,
        reason: String,
    },
    /// A postmaster process was spawned on the compute host.
    PostmasterSpawned { boot: u64, pid: u32 },
    /// The supervisor reported a replay LSN (a replica).
    ReplayReported { boot: u64, lsn: u64 },
    /// A fault of the schedule started (`start`) or ended.
    Fault {
        #[serde(flatten)]
        kind: FaultKind,
        start: bool,
        window_ms: (u64, u64),
    },
    /// The fault schedule is over and everything was repaired.
    Healed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::PgPhase;

    #[test]
    fn an_event_serialises_flat_with_its_name() {
        let ev = Event::Fault {
            kind: FaultKind::PgCrash {
                phase: PgPhase::Reload,
            },
            start: true,
            window_ms: (10, 60),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ev": "fault", "kind": "pg_crash", "phase": "reload", "start": true, "window_ms": [10, 60]})
        );
        let st = Event::Status {
            boot: 1,
            status: ComputeStatus::Running,
        };
        assert_eq!(
            serde_json::to_value(&st).unwrap(),
            serde_json::json!({"ev": "status", "boot": 1, "status": "running"})
        );
    }
}
