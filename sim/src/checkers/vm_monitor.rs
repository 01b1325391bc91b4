//! The vm-monitor as the memory scenario's autoscaler-agent sees it
//! (`scenarios/memory.rs`): the agent logs what it does and what it is
//! sent ([`AgentSeen`]), the load logs the cgroup's usage
//! ([`Event::CgroupUsage`]); each checker here rebuilds what the monitor
//! should know from that ([`View`]: its threshold, the usage, the requests
//! in flight) and judges one property:
//! - [`AgentServed`]: a (re)connecting agent gets the version answer and
//!   the echo of its health check, and keeps its connection;
//! - [`UpscaleOnPressure`]: once usage is at or over the threshold, an
//!   `UpscaleRequest` within a second (and again each second it stays
//!   there), never two less than a second apart;
//! - [`DownscaleKeepsBuffer`]: an accepted downscale leaves its threshold
//!   at or above the lowest usage from a second before the request until
//!   its answer, plus the 100 MiB buffer (the monitor decides somewhere in
//!   between: a held or slow link delays the answer, not the decision);
//! - [`MonitorProtocol`]: the monitor's own ids are odd, a result answers
//!   the request in flight, and it never answers with an error.
//!
//! A session's verdicts end with its compute: once the host rebooted or
//! the supervisor exited (seen in the log), nothing of it is judged; and
//! what a network fault may have swallowed is excused by the
//! [`FaultLedger`].

use std::collections::VecDeque;
use std::time::Duration;

use compute_ctl::vm_monitor::rules::{self, MIB};
use serde_json::{Value, json};

use super::Checker;
use super::window::ledger_sees;
use crate::events::{AgentSeen, Event};
use crate::ledger::FaultLedger;

const SEC_US: u64 = 1_000_000;
/// Messages between hosts arrive at step boundaries (20 ms) plus latency.
const NET_SLACK_US: u64 = 50_000;
/// How long a (re)connecting agent may wait for each answer (the agent
/// waits this long before it logs none).
pub const SERVE_DEADLINE: Duration = Duration::from_secs(2);

/// A downscale the agent asked for and has no answer to yet.
#[derive(Debug, Clone, Copy)]
struct Downscale {
    id: u64,
    target: u64,
    /// The lowest usage from a second before it was asked until now.
    lowest: u64,
}

/// What the monitor should know, rebuilt from the log.
#[derive(Debug, Default)]
struct View {
    ledger: FaultLedger,
    /// The compute host's current boot (none before the first).
    boot: Option<u64>,
    /// Its supervisor exited (the process is gone).
    exited: bool,
    /// The agent's connection: since when, to which boot.
    session: Option<(u64, u64)>,
    /// The threshold the monitor must hold.
    threshold: u64,
    /// (time, bytes) of the usage over the last second.
    usage: VecDeque<(u64, u64)>,
    /// Since when usage is at or over the threshold without a request.
    over_since: Option<u64>,
    /// When the last `UpscaleRequest` arrived.
    last_request: Option<u64>,
    downscale: Option<Downscale>,
    /// (id, granted bytes) of the upscale notification in flight.
    grant: Option<(u64, u64)>,
}

/// What a checker judges, the view already brought up to date.
enum Step<'a> {
    /// Another message of the monitor.
    Recv {
        msg: &'a Value,
    },
    /// An `UpscaleRequest` `msg` at `at`; the one before at `prev`.
    Upscale {
        at: u64,
        prev: Option<u64>,
        msg: &'a Value,
    },
    /// A `DownscaleResult` to the downscale in flight.
    Result {
        msg: &'a Value,
        asked: Downscale,
    },
    Version(&'a Option<Value>),
    HealthCheck {
        echoed: bool,
    },
    Closed,
    Listened,
}

impl View {
    /// Sees `ev` at `t`; what there is to judge.
    fn see<'a>(&mut self, t: u64, ev: &'a Event) -> Option<Step<'a>> {
        ledger_sees(&mut self.ledger, ev);
        match ev {
            Event::Boot { boot, .. } => {
                self.boot = Some(*boot);
                self.exited = false;
                None
            }
            Event::SupervisorExit { .. } => {
                self.exited = true;
                None
            }
            Event::CgroupUsage { bytes } => {
                self.record(t, *bytes);
                None
            }
            Event::Agent(seen) => self.agent(t, seen),
            _ => None,
        }
    }

    fn agent<'a>(&mut self, t: u64, seen: &'a AgentSeen) -> Option<Step<'a>> {
        match seen {
            AgentSeen::Fresh { mem_total, usage } => {
                *self = Self {
                    ledger: std::mem::take(&mut self.ledger),
                    boot: self.boot,
                    exited: self.exited,
                    session: self.session,
                    threshold: rules::threshold(*mem_total),
                    usage: VecDeque::from([(t, *usage)]),
                    ..Self::default()
                };
                None
            }
            AgentSeen::Connecting { boot } => {
                self.session = Some((t, *boot));
                self.over_since = None;
                self.downscale = None;
                // A grant whose confirmation was lost with the connection
                // may have been adopted: the higher threshold, so that no
                // request is expected that the monitor need not send.
                if let Some((_, granted)) = self.grant.take() {
                    self.adopt(t, rules::threshold(rules::usable(granted)));
                }
                None
            }
            AgentSeen::Granted { id, mem } => {
                self.grant = Some((*id, *mem));
                None
            }
            AgentSeen::DownscaleAsked { id, target } => {
                self.downscale = Some(Downscale {
                    id: *id,
                    target: *target,
                    lowest: self.usage.iter().map(|(_, b)| *b).min().unwrap_or(0),
                });
                None
            }
            AgentSeen::Recv { at_us, msg } => Some(self.recv(*at_us, msg)),
            AgentSeen::Version { answer } => Some(Step::Version(answer)),
            AgentSeen::HealthCheck { echoed } => Some(Step::HealthCheck { echoed: *echoed }),
            AgentSeen::Closed => Some(Step::Closed),
            AgentSeen::Listened => Some(Step::Listened),
        }
    }

    fn recv<'a>(&mut self, at: u64, msg: &'a Value) -> Step<'a> {
        match msg["type"].as_str() {
            Some("UpscaleRequest") => {
                let prev = self.last_request.replace(at);
                self.over_since = (self.current() >= self.threshold).then_some(at);
                return Step::Upscale { at, prev, msg };
            }
            Some("DownscaleResult") => {
                if let Some(asked) = self.downscale.take() {
                    if msg["Ok"] == true {
                        self.adopt(at, rules::threshold(rules::usable(asked.target)));
                    }
                    return Step::Result { msg, asked };
                }
            }
            Some("UpscaleConfirmation") => {
                if let Some((id, granted)) = self.grant.take() {
                    if msg["id"] == id {
                        self.adopt(at, rules::threshold(rules::usable(granted)));
                    }
                }
            }
            _ => {}
        }
        Step::Recv { msg }
    }

    fn record(&mut self, t: u64, bytes: u64) {
        self.usage.push_back((t, bytes));
        if let Some(ds) = self.downscale.as_mut() {
            ds.lowest = ds.lowest.min(bytes);
        }
        while self
            .usage
            .front()
            .is_some_and(|(t0, _)| t.saturating_sub(*t0) > SEC_US)
        {
            self.usage.pop_front();
        }
        if bytes >= self.threshold {
            self.over_since.get_or_insert(t);
        } else {
            self.over_since = None;
        }
    }

    fn current(&self) -> u64 {
        self.usage.back().map_or(0, |(_, b)| *b)
    }

    /// A new threshold: pressure is measured against it from `t` on.
    fn adopt(&mut self, t: u64, threshold: u64) {
        self.threshold = threshold;
        self.over_since = (self.current() >= threshold).then_some(t);
    }

    /// Nothing since `since` in the session is judged: a network fault
    /// may have swallowed it, or the session's compute is gone.
    fn excused(&self, since: u64) -> bool {
        let Some((_, boot)) = self.session else {
            return true;
        };
        self.ledger.excuses_lost_request(since) || self.boot != Some(boot) || self.exited
    }

    /// When the session began (none: no session).
    fn session_since(&self) -> Option<u64> {
        self.session.map(|(since, _)| since)
    }
}

/// A (re)connecting agent is served: the version answer and the echo of
/// its health check, each within 2 s, and the monitor keeps its
/// connection on a healthy network.
#[derive(Default)]
pub struct AgentServed(View);

impl Checker for AgentServed {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let Some(step) = self.0.see(t_us, ev) else {
            return;
        };
        let Some(since) = self.0.session_since() else {
            return;
        };
        let excused = self.0.excused(since);
        match step {
            Step::Version(answer) if *answer != Some(json!({"version": 1})) && !excused => {
                out.push(format!(
                    "vm-monitor did not answer the agent's version range with {{\"version\":1}} within {SERVE_DEADLINE:?}: {answer:?}"
                ));
            }
            Step::HealthCheck { echoed: false } if !excused => out.push(format!(
                "vm-monitor did not echo a reconnected agent's health check within {SERVE_DEADLINE:?}"
            )),
            Step::Closed if !excused => {
                out.push("vm-monitor closed the agent's connection on a healthy network".into())
            }
            _ => {}
        }
    }
}

/// Pressure gets an `UpscaleRequest` within a second, and requests come at
/// most once a second.
#[derive(Default)]
pub struct UpscaleOnPressure(View);

impl Checker for UpscaleOnPressure {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        match self.0.see(t_us, ev) {
            Some(Step::Upscale {
                at,
                prev: Some(prev),
                ..
            }) if at + NET_SLACK_US < prev + SEC_US && !self.0.excused(prev) => {
                out.push(format!(
                    "vm-monitor sent two UpscaleRequests {} ms apart (at most one a second)",
                    (at - prev) / 1000
                ));
            }
            Some(Step::Listened) => {
                let (Some(since), Some(conn)) = (self.0.over_since, self.0.session_since()) else {
                    return;
                };
                if t_us > since + SEC_US + NET_SLACK_US && !self.0.excused(since.min(conn)) {
                    out.push(format!(
                        "usage {} MiB has been at or over the threshold {} MiB for {} ms without an UpscaleRequest",
                        self.0.current() / MIB,
                        self.0.threshold / MIB,
                        (t_us - since) / 1000
                    ));
                    self.0.over_since = None;
                }
            }
            _ => {}
        }
    }
}

/// An accepted downscale keeps its threshold at or above the lowest usage
/// of its span plus [`rules::DOWNSCALE_BUFFER`].
#[derive(Default)]
pub struct DownscaleKeepsBuffer(View);

impl Checker for DownscaleKeepsBuffer {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let Some(Step::Result { msg, asked }) = self.0.see(t_us, ev) else {
            return;
        };
        if msg["Ok"] != true {
            return;
        }
        let new = rules::threshold(rules::usable(asked.target));
        if new < asked.lowest + rules::DOWNSCALE_BUFFER {
            out.push(format!(
                "vm-monitor accepted a downscale to {} MiB whose threshold {} MiB is under the usage {} MiB (the lowest from a second before the request until the answer) + {} MiB buffer",
                asked.target / MIB,
                new / MIB,
                asked.lowest / MIB,
                rules::DOWNSCALE_BUFFER / MIB
            ));
        }
    }
}

/// The monitor speaks the protocol: its own requests carry odd ids, a
/// `DownscaleResult` answers the downscale in flight, and it never
/// answers with `InternalError` or `InvalidMessage`.
#[derive(Default)]
pub struct MonitorProtocol(View);

impl Checker for MonitorProtocol {
    fn on_event(&mut self, t_us: u64, ev: &Event, out: &mut Vec<String>) {
        let msg = match self.0.see(t_us, ev) {
            Some(Step::Result { msg, asked }) => {
                if msg["id"] != asked.id {
                    out.push(format!(
                        "DownscaleResult {msg} does not answer id {}",
                        asked.id
                    ));
                }
                return;
            }
            Some(Step::Upscale { msg, .. } | Step::Recv { msg }) => msg,
            _ => return,
        };
        match msg["type"].as_str() {
            Some("UpscaleRequest") if msg["id"].as_u64().is_none_or(|id| id % 2 == 0) => {
                out.push(format!("vm-monitor's UpscaleRequest has no odd id: {msg}"));
            }
            Some("InternalError" | "InvalidMessage") => {
                out.push(format!("vm-monitor answered the agent with {msg}"));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::faults::FaultKind;

    const GIB: u64 = 1024 * MIB;

    fn agent(seen: AgentSeen) -> Event {
        Event::Agent(seen)
    }

    fn recv(at_us: u64, msg: Value) -> (u64, Event) {
        (at_us, agent(AgentSeen::Recv { at_us, msg }))
    }

    /// Compute boot 0 with 8 GiB (threshold 6.8 GiB) and 1 GiB in use;
    /// the agent connects at 0 and the load writes `usage` at 100 ms.
    fn connected(usage: u64) -> Vec<(u64, Event)> {
        let boot = Event::Boot {
            host: crate::names::COMPUTE.into(),
            boot: 0,
        };
        vec![
            (0, boot),
            (
                0,
                agent(AgentSeen::Fresh {
                    mem_total: 8 * GIB,
                    usage: GIB,
                }),
            ),
            (0, agent(AgentSeen::Connecting { boot: 0 })),
            (100_000, Event::CgroupUsage { bytes: usage }),
        ]
    }

    fn judge(c: &mut dyn Checker, evs: &[(u64, Event)]) -> Vec<String> {
        let mut out = Vec::new();
        for (t, ev) in evs {
            c.on_event(*t, ev, &mut out);
        }
        out
    }

    fn with(mut evs: Vec<(u64, Event)>, more: Vec<(u64, Event)>) -> Vec<(u64, Event)> {
        evs.extend(more);
        evs
    }

    #[test]
    fn pressure_without_an_upscale_request_is_reported_unless_the_compute_rebooted() {
        let listened = (1_200_000, agent(AgentSeen::Listened));
        let silent = with(connected(7 * GIB), vec![listened.clone()]);
        let out = judge(&mut UpscaleOnPressure::default(), &silent);
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].starts_with(
                "usage 7168 MiB has been at or over the threshold 6963 MiB for 1100 ms"
            ),
            "{out:?}"
        );
        // Under the threshold: nothing is expected.
        let calm = with(connected(6 * GIB), vec![listened.clone()]);
        assert!(judge(&mut UpscaleOnPressure::default(), &calm).is_empty());
        // A request at 500 ms: the next one is due a second later.
        let asked = with(
            connected(7 * GIB),
            vec![
                recv(500_000, json!({"type": "UpscaleRequest", "id": 1})),
                listened.clone(),
            ],
        );
        assert!(judge(&mut UpscaleOnPressure::default(), &asked).is_empty());
        // The host rebooted under the session: nothing of it is judged.
        let rebooted = Event::Boot {
            host: crate::names::COMPUTE.into(),
            boot: 1,
        };
        let gone = with(connected(7 * GIB), vec![(1_100_000, rebooted), listened]);
        assert!(judge(&mut UpscaleOnPressure::default(), &gone).is_empty());
    }

    #[test]
    fn two_upscale_requests_within_a_second_are_reported_unless_the_network_lost_some() {
        let twice = vec![
            recv(200_000, json!({"type": "UpscaleRequest", "id": 1})),
            recv(500_000, json!({"type": "UpscaleRequest", "id": 3})),
        ];
        let out = judge(
            &mut UpscaleOnPressure::default(),
            &with(connected(7 * GIB), twice.clone()),
        );
        assert_eq!(
            out,
            ["vm-monitor sent two UpscaleRequests 300 ms apart (at most one a second)"]
        );
        let loss = Event::Fault {
            kind: FaultKind::Loss,
            start: true,
            window_ms: (0, Some(400)),
        };
        let lossy = with(with(connected(7 * GIB), vec![(150_000, loss)]), twice);
        assert!(judge(&mut UpscaleOnPressure::default(), &lossy).is_empty());
    }

    #[test]
    fn an_agent_that_is_not_served_is_reported_on_a_healthy_network() {
        let unserved = vec![
            (
                2_000_000,
                agent(AgentSeen::Version {
                    answer: Some(json!({"version": 2})),
                }),
            ),
            (4_000_000, agent(AgentSeen::HealthCheck { echoed: false })),
            (5_000_000, agent(AgentSeen::Closed)),
        ];
        let out = judge(
            &mut AgentServed::default(),
            &with(connected(GIB), unserved.clone()),
        );
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("version range"), "{out:?}");
        assert!(out[1].contains("did not echo"), "{out:?}");
        assert!(out[2].contains("closed the agent's connection"), "{out:?}");
        // The supervisor exited before: its monitor owes the agent nothing.
        let exit = Event::SupervisorExit {
            status: compute_ctl::state::ComputeStatus::Failed,
            reason: "postgres exited".into(),
        };
        let exited = with(with(connected(GIB), vec![(1_000_000, exit)]), unserved);
        assert!(judge(&mut AgentServed::default(), &exited).is_empty());
        let served = with(
            connected(GIB),
            vec![
                (
                    1,
                    agent(AgentSeen::Version {
                        answer: Some(json!({"version": 1})),
                    }),
                ),
                (2, agent(AgentSeen::HealthCheck { echoed: true })),
            ],
        );
        assert!(judge(&mut AgentServed::default(), &served).is_empty());
    }

    #[test]
    fn a_downscale_is_judged_against_the_lowest_usage_of_its_span() {
        // Asked to go from 8 GiB to 6 GiB at 5 GiB of use for over a
        // second: its threshold, 0.85 x (6 GiB - 100 MiB) = 5137 MiB, is
        // under 5 GiB + 100 MiB.
        let downscale = |ok: bool, id: u64| {
            with(
                connected(5 * GIB),
                vec![
                    (1_200_000, Event::CgroupUsage { bytes: 5 * GIB }),
                    (
                        1_300_000,
                        agent(AgentSeen::DownscaleAsked {
                            id: 4,
                            target: 6 * GIB,
                        }),
                    ),
                    recv(
                        1_400_000,
                        json!({"type": "DownscaleResult", "id": id, "Ok": ok}),
                    ),
                ],
            )
        };
        let out = judge(&mut DownscaleKeepsBuffer::default(), &downscale(true, 4));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0].contains(
                "downscale to 6144 MiB whose threshold 5137 MiB is under the usage 5120 MiB"
            ),
            "{out:?}"
        );
        assert!(judge(&mut DownscaleKeepsBuffer::default(), &downscale(false, 4)).is_empty());
        // The same, answered under another id: the protocol checker's.
        let out = judge(&mut MonitorProtocol::default(), &downscale(false, 6));
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(out[0].contains("does not answer id 4"), "{out:?}");
    }

    #[test]
    fn even_ids_and_error_answers_break_the_protocol() {
        let evs = with(
            connected(GIB),
            vec![
                recv(1, json!({"type": "UpscaleRequest", "id": 2})),
                recv(2, json!({"type": "InternalError", "id": 3})),
                recv(3, json!({"type": "UpscaleRequest", "id": 5})),
            ],
        );
        let out = judge(&mut MonitorProtocol::default(), &evs);
        assert_eq!(out.len(), 2, "{out:?}");
        assert!(out[0].contains("has no odd id"), "{out:?}");
        assert!(out[1].contains("answered the agent with"), "{out:?}");
    }
}
