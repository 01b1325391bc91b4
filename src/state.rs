//! The compute's status and its legal transitions, as a pure function.
//!
//! ```text
//!   Empty --SpecDelivered--> ConfigurationPending --BeginStart--> Init --Started--> Running
//!   Running --SpecDelivered--> ConfigurationPending --BeginReconfigure--> Configuration --Reconfigured--> Running
//!   Failed --SpecDelivered--> ConfigurationPending   (only while Postgres still runs: `Compute::submit` checks)
//!   Empty | ConfigurationPending | Init | Configuration | Running --Fail--> Failed
//!   any but Terminated --TerminateRequested--> TerminationPending --Stopped--> Terminated
//! ```
//! A terminate request while already `TerminationPending` keeps that state.
//!
//! On the wire (`/status`, Neon's `ComputeStatus` enum) `TerminationPending`
//! is named by how Postgres is being stopped: `termination_pending_fast` or
//! `termination_pending_immediate` ([`WireStatus`]); both names parse back.

use serde::{Deserialize, Serialize};

/// What the compute is doing; serialised snake_case as in Neon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComputeStatus {
    /// No spec yet.
    Empty,
    /// A spec was accepted and waits for the supervisor to apply it.
    ConfigurationPending,
    /// A reconfigure of a running compute is being applied.
    Configuration,
    /// First start: preparing PGDATA, starting Postgres, applying the spec.
    Init,
    /// Postgres runs in the shape of the last applied spec.
    Running,
    /// Something went wrong; `error` says what. Terminate is accepted, and a
    /// configure while Postgres still runs (a failed reconfigure).
    Failed,
    /// Shutting Postgres down.
    #[serde(
        alias = "termination_pending_fast",
        alias = "termination_pending_immediate"
    )]
    TerminationPending,
    /// Postgres is stopped; the process is about to exit.
    Terminated,
}

impl ComputeStatus {
    /// Every status, in declaration order.
    pub const ALL: [ComputeStatus; 8] = [
        Self::Empty,
        Self::ConfigurationPending,
        Self::Configuration,
        Self::Init,
        Self::Running,
        Self::Failed,
        Self::TerminationPending,
        Self::Terminated,
    ];

    /// The snake_case name used by the API and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::ConfigurationPending => "configuration_pending",
            Self::Configuration => "configuration",
            Self::Init => "init",
            Self::Running => "running",
            Self::Failed => "failed",
            Self::TerminationPending => "termination_pending",
            Self::Terminated => "terminated",
        }
    }

    /// The name Neon's API uses: as [`as_str`](Self::as_str), but a pending
    /// termination says whether it is `fast` or `immediate`.
    pub fn wire_name(self, immediate: bool) -> &'static str {
        match (self, immediate) {
            (Self::TerminationPending, false) => "termination_pending_fast",
            (Self::TerminationPending, true) => "termination_pending_immediate",
            (s, _) => s.as_str(),
        }
    }

    /// Whether a configure is under way (a new one is answered 409).
    pub fn is_configuring(self) -> bool {
        matches!(
            self,
            Self::ConfigurationPending | Self::Configuration | Self::Init
        )
    }

    /// Whether a terminate was accepted (pending or done): work in flight
    /// stops, nothing new starts.
    pub fn is_terminating(self) -> bool {
        matches!(self, Self::TerminationPending | Self::Terminated)
    }
}

impl std::fmt::Display for ComputeStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status as the API sends it (Neon's `ComputeStatus` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireStatus {
    pub status: ComputeStatus,
    /// The terminate under way is `immediate` (else `fast`).
    pub immediate: bool,
}

impl Serialize for WireStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.status.wire_name(self.immediate))
    }
}

/// Something that happens to the compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Event {
    /// A spec was accepted (first one, or a reconfigure).
    SpecDelivered,
    /// The supervisor begins the first start.
    BeginStart,
    /// The supervisor begins a reconfigure of running Postgres.
    BeginReconfigure,
    /// The first start finished.
    Started,
    /// A reconfigure finished.
    Reconfigured,
    /// Something failed (start, reconfigure, or the postmaster died).
    Fail,
    /// Somebody asked to stop.
    TerminateRequested,
    /// Postgres is stopped.
    Stopped,
}

impl Event {
    /// Every event, in declaration order.
    pub const ALL: [Event; 8] = [
        Self::SpecDelivered,
        Self::BeginStart,
        Self::BeginReconfigure,
        Self::Started,
        Self::Reconfigured,
        Self::Fail,
        Self::TerminateRequested,
        Self::Stopped,
    ];
}

impl Event {
    /// What the event does, for a person: the subject of an error.
    pub fn action(self) -> &'static str {
        match self {
            Self::SpecDelivered => "accepting a new spec",
            Self::BeginStart => "starting Postgres",
            Self::BeginReconfigure => "reconfiguring Postgres",
            Self::Started => "finishing the start",
            Self::Reconfigured => "finishing the reconfigure",
            Self::Fail => "marking the compute failed",
            Self::TerminateRequested => "stopping the compute",
            Self::Stopped => "marking the compute stopped",
        }
    }
}

impl ComputeStatus {
    /// What to do about an action this status does not allow.
    fn remedy(self) -> &'static str {
        match self {
            Self::Empty => "send a spec first (POST /configure)",
            Self::ConfigurationPending | Self::Init | Self::Configuration => {
                "wait until the configuration in progress has finished (GET /status), then retry"
            }
            Self::Running | Self::Failed => "send a spec (POST /configure) and retry",
            Self::TerminationPending | Self::Terminated => {
                "the compute is stopping for good; start a new compute_ctl"
            }
        }
    }
}

/// An event that is not allowed in a state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} is not possible while the compute is {from}: {}", event.action(), from.remedy())]
pub struct IllegalTransition {
    pub from: ComputeStatus,
    pub event: Event,
}

/// The status after `event` in `from`, or why it is not allowed.
pub fn transition(from: ComputeStatus, event: Event) -> Result<ComputeStatus, IllegalTransition> {
    use ComputeStatus as S;
    use Event as E;
    let next = match (from, event) {
        (S::Empty | S::Running | S::Failed, E::SpecDelivered) => S::ConfigurationPending,
        (S::ConfigurationPending, E::BeginStart) => S::Init,
        (S::ConfigurationPending, E::BeginReconfigure) => S::Configuration,
        (S::Init, E::Started) => S::Running,
        (S::Configuration, E::Reconfigured) => S::Running,
        (S::Empty | S::ConfigurationPending | S::Init | S::Configuration | S::Running, E::Fail) => {
            S::Failed
        }
        (s, E::TerminateRequested) if s != S::Terminated => S::TerminationPending,
        (S::TerminationPending, E::Stopped) => S::Terminated,
        _ => return Err(IllegalTransition { from, event }),
    };
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ComputeStatus as S;
    use Event as E;

    /// The diagram of the module docs, written out as a table.
    const LEGAL: &[(S, E, S)] = &[
        (S::Empty, E::SpecDelivered, S::ConfigurationPending),
        (S::Running, E::SpecDelivered, S::ConfigurationPending),
        (S::Failed, E::SpecDelivered, S::ConfigurationPending),
        (S::ConfigurationPending, E::BeginStart, S::Init),
        (
            S::ConfigurationPending,
            E::BeginReconfigure,
            S::Configuration,
        ),
        (S::Init, E::Started, S::Running),
        (S::Configuration, E::Reconfigured, S::Running),
        (S::Empty, E::Fail, S::Failed),
        (S::ConfigurationPending, E::Fail, S::Failed),
        (S::Init, E::Fail, S::Failed),
        (S::Configuration, E::Fail, S::Failed),
        (S::Running, E::Fail, S::Failed),
        (S::Empty, E::TerminateRequested, S::TerminationPending),
        (
            S::ConfigurationPending,
            E::TerminateRequested,
            S::TerminationPending,
        ),
        (
            S::Configuration,
            E::TerminateRequested,
            S::TerminationPending,
        ),
        (S::Init, E::TerminateRequested, S::TerminationPending),
        (S::Running, E::TerminateRequested, S::TerminationPending),
        (S::Failed, E::TerminateRequested, S::TerminationPending),
        (
            S::TerminationPending,
            E::TerminateRequested,
            S::TerminationPending,
        ),
        (S::TerminationPending, E::Stopped, S::Terminated),
    ];

    #[test]
    fn every_state_event_pair_matches_the_diagram() {
        let mut checked = 0;
        for from in S::ALL {
            for event in E::ALL {
                let expected = LEGAL
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{from} --{event:?}"),
                    (Err(err), None) => {
                        assert_eq!(err, IllegalTransition { from, event });
                        assert!(err.to_string().contains(from.as_str()));
                    }
                    (got, want) => panic!("{from} --{event:?}: got {got:?}, diagram says {want:?}"),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, 64);
    }

    #[test]
    fn terminated_is_final() {
        for event in E::ALL {
            assert!(transition(S::Terminated, event).is_err());
        }
    }

    #[test]
    fn wire_names_are_neons_enum_and_parse_back() {
        // Neon's ComputeStatus enum (openapi_spec.yaml at 6a35a3e9).
        let neon = [
            "empty",
            "configuration_pending",
            "init",
            "running",
            "configuration",
            "failed",
            "termination_pending_fast",
            "termination_pending_immediate",
            "terminated",
        ];
        let mut names = Vec::new();
        for status in S::ALL {
            for immediate in [false, true] {
                let w = WireStatus { status, immediate };
                let v = serde_json::to_value(w).unwrap();
                let name = v.as_str().unwrap().to_string();
                assert!(
                    neon.contains(&name.as_str()),
                    "{name} is not in Neon's enum"
                );
                let back: S = serde_json::from_value(v).unwrap();
                assert_eq!(back, status);
                names.push(name);
            }
        }
        names.sort();
        names.dedup();
        assert_eq!(
            names.len(),
            neon.len(),
            "every Neon value is sent: {names:?}"
        );
    }

    #[test]
    fn status_serialises_snake_case_like_neon() {
        for s in S::ALL {
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }
}
