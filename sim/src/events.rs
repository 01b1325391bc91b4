//! The typed event log of one world: what the simulated hosts (compute
//! boots, the postmaster, the supervisor's status channel, the fault
//! schedule) did, in simulated-time order. Checkers read it as it grows
//! ([`crate::checkers`]); the trace is its serialised form.

use compute_ctl::state::ComputeStatus;
use serde::Serialize;

use std::sync::Arc;

use crate::faults::FaultKind;
pub use crate::observed::{Request, Seen, WorldEnd};
use crate::pgmodel::StmtKind;

/// How a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReloadVia {
    /// SIGHUP to the postmaster (what the supervisor must do).
    Signal,
    /// `SELECT pg_reload_conf()` (what it must not).
    Sql,
}

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
    /// A fault started (`start`) or ended: one of the schedule, or a
    /// partition the scenario made itself through its driver. Its window
    /// (ms); a scenario's partition starts with an open end (`null`), and
    /// its end event gives the end it had.
    Fault {
        #[serde(flatten)]
        kind: FaultKind,
        start: bool,
        window_ms: (u64, Option<u64>),
    },
    /// The fault schedule is over and everything was repaired.
    Healed,
    /// The client load saw its commit `id` acknowledged at `lsn`.
    CommitAcked { id: u64, lsn: u64 },
    /// A safekeeper flushed a batch: its WAL now ends at `lsn` on `tli`,
    /// with `chain`; the batch extended the chain `prev` and held the
    /// commits `ids` (see `crate::wal`).
    SafekeeperFlushed {
        name: String,
        lsn: u64,
        tli: u32,
        prev: u64,
        chain: u64,
        ids: Vec<u64>,
    },
    /// The storage re-cloned a diverged safekeeper from another one: its
    /// WAL now ends at `lsn` with `chain` and holds the commits `ids`.
    SafekeeperRecloned {
        name: String,
        lsn: u64,
        chain: u64,
        ids: Vec<u64>,
    },
    /// The compute's `/status` put safekeeper `name` in `state` (a change,
    /// or each one's at a start that failed without a quorum: `at_failure`);
    /// `follows` is the model's truth then: its WAL stays on the compute's
    /// history, so it can stream from it (`checkers/diverged_report.rs`).
    SafekeeperReported {
        boot: u64,
        name: String,
        state: String,
        follows: bool,
        at_failure: bool,
    },
    /// A safekeeper answered `POSITION_SQL` (the sync of a start) during
    /// compute boot `boot`.
    PositionAnswered { name: String, boot: u64, lsn: u64 },
    /// A primary with `safekeepers` safekeepers became `running` on
    /// `timeline`, writing from `fork_lsn` on.
    ComputeStarted {
        host: String,
        boot: u64,
        timeline: u32,
        fork_lsn: u64,
        safekeepers: usize,
    },
    /// The client sent its read-back to the primary of `boot`: every
    /// commit acknowledged so far must be in its answer.
    ReadbackSent { boot: u64 },
    /// The client read back the commits a running primary holds.
    Readback { boot: u64, ids: Vec<u64> },
    /// The control plane sent the primary of `boot` a notify (`op`) that
    /// moves it from the safekeepers `from` to `to` (host names); `killed`:
    /// the host is killed while the notify is in flight.
    SafekeeperMoveSent {
        boot: u64,
        op: u64,
        from: Vec<String>,
        to: Vec<String>,
        generation: Option<u32>,
        killed: bool,
    },
    /// That notify's answer (`status`: the HTTP status, none when it got
    /// none): with 200, a restart syncs `to` from now on.
    SafekeeperMoveAnswered {
        boot: u64,
        op: u64,
        status: Option<u16>,
    },
    /// The simulated Postgres received a statement (client load excluded).
    #[serde(rename = "sql")]
    Statement {
        /// The session's `application_name`.
        app: Arc<str>,
        db: Arc<str>,
        kind: StmtKind,
        sql: Arc<str>,
        ok: bool,
    },
    /// Postgres re-read (or failed to re-read) its config: on SIGHUP, or
    /// asked by `SELECT pg_reload_conf()` (which a sim Postgres answers
    /// without re-reading).
    #[serde(rename = "pg_reload")]
    Reload {
        via: ReloadVia,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
    },
    /// A safekeeper answered the position query of a sync with its flush
    /// LSN (the storage host's safekeepers, not `crate::world::safekeeper`'s).
    SafekeeperAcked { name: String, lsn: u64 },
    /// The control plane sent request `req`; `seen` is the compute host
    /// just before (left out of the trace).
    #[serde(rename = "http_send")]
    RequestSent {
        req: u64,
        kind: Request,
        path: String,
        op: u64,
        #[serde(skip)]
        seen: Option<Box<Seen>>,
    },
    /// Request `req` ended with `outcome` (an HTTP status, or why not);
    /// its window runs from its [`Event::RequestSent`] to now, and `seen`
    /// is the compute host right after.
    #[serde(rename = "http_answer")]
    Answered {
        req: u64,
        kind: Request,
        path: String,
        op: u64,
        outcome: String,
        code: Option<u16>,
        ms: u64,
        #[serde(skip)]
        seen: Option<Box<Seen>>,
    },
    /// The control plane's request `req` (`POST path` of operation `op`,
    /// sent at `sent_us`) got no answer within its deadline: one the
    /// driver sends itself and bounds (configure, notify, re-send, dry
    /// run, terminate, the unauthenticated probe), logged before its
    /// [`Event::Answered`] (`checkers/deadline.rs`).
    #[serde(rename = "http_deadline")]
    DeadlineExceeded {
        req: u64,
        path: String,
        op: u64,
        sent_us: u64,
    },
    /// A replica's first configure was answered 200 and its supervisor
    /// reports `commit` as the commit LSN of its `safekeepers`.
    #[serde(rename = "commit_lsn")]
    CommitLsnReported { commit: u64, safekeepers: usize },
    /// The apply in `window_us` (the same boot, applied, right after a dry
    /// run of the same spec) should have sent the statements `predicted`
    /// (database, redacted SQL).
    PlanApplied {
        window_us: (u64, u64),
        predicted: Vec<(String, String)>,
    },
    /// A reconfigure that moved storage and changed the catalog was
    /// answered 200 on the same running Postgres in `window_us`.
    StorageMoveApplied { window_us: (u64, u64) },
    /// The run is over: the world as it ends.
    #[serde(rename = "end")]
    End(Box<WorldEnd>),
    /// A compute of a fleet (`host`) answered the control plane's
    /// `request` with `outcome` (an HTTP status, or why not); a storm
    /// notify `round_trip_us` after the storm began (0 for others).
    FleetAnswered {
        host: String,
        request: FleetRequest,
        outcome: String,
        code: Option<u16>,
        round_trip_us: u64,
    },
    /// Every notify of a fleet's storm was answered.
    StormOver { computes: usize },
    /// The client load's memory use, written to the compute's cgroup (when
    /// a compute runs): what the vm-monitor measures.
    CgroupUsage { bytes: u64 },
    /// What the memory scenario's autoscaler-agent did or was sent
    /// (`checkers/vm_monitor.rs`).
    Agent(AgentSeen),
    /// The promote scenario's control plane asked `call` at `sent_us` and
    /// got `code` with `body` (`outcome`: the status, or why none);
    /// `failed_with`: the failure kind of the compute asked, when it is
    /// Failed (`checkers/promote.rs`).
    PromoteAnswered {
        call: PromoteCall,
        outcome: String,
        code: Option<u16>,
        body: String,
        sent_us: u64,
        failed_with: Option<String>,
    },
    /// The promoted compute's status as the promote scenario ends (none:
    /// no supervisor runs on its host).
    PromotedStatus { status: Option<ComputeStatus> },
    /// A storage host was promoted: it stops following and writes on
    /// timeline 2 (the scenario plays the storage's part).
    StoragePromoted { host: String },
    /// A notify that moved a replica to the storage host `to` was answered
    /// 200 at `answered_us`; the control plane then waited up to
    /// `bound_ms` for the replica's WAL receiver, which, now, streams from
    /// `sender` (`host:port`; none: from nowhere) on `timeline`.
    ReplicaMoveWaited {
        to: String,
        answered_us: u64,
        bound_ms: u64,
        sender: Option<String>,
        timeline: u32,
    },
    /// The client gave up reading back the commits of the primary of
    /// `boot`, which answered 200 to the start it was sent at `since_us`
    /// (the answer may have left a host that crashed before it arrived).
    ReadbackGaveUp { boot: u64, since_us: u64 },
    /// The client gave up reading back the commits of the running primary
    /// on `host` after `tries` tries (`checkers/readback_running.rs`).
    ReadbackFailed { host: String, tries: u32 },
    /// The compute had not settled `deadline_ms` after the fault schedule
    /// was over (running the spec the control plane wants, Failed or
    /// Terminated); `status`: what the harness saw of it then (none: no
    /// supervisor runs) (`checkers/settled.rs`).
    SettleGaveUp {
        status: Option<ComputeStatus>,
        deadline_ms: u64,
    },
    /// The harness looked at the compute host: Postgres runs with a
    /// loaded config (`running`), or not.
    PostgresSeen { running: bool },
    /// The control plane has confirmed the primary's safekeeper set: the
    /// spec of operation `op` with `safekeepers` (connection strings) and
    /// `generation` is the one it wants in effect (its first start, or a
    /// safekeeper move answered 200).
    SafekeeperSetConfirmed {
        op: u64,
        safekeepers: Vec<String>,
        generation: Option<u32>,
    },
    /// The harness looked at the primary (no network), around a
    /// safekeeper move: its status (none: no supervisor runs) and failure
    /// kind, whether its supervisor exited, Postgres' loaded
    /// `synchronous_standby_names`, and the spec in effect.
    PrimarySeen {
        status: Option<ComputeStatus>,
        failure_kind: Option<String>,
        exited: bool,
        standby_names: Option<String>,
        spec: Option<SpecInEffect>,
    },
}

/// The safekeeper part of a spec in effect, as [`Event::PrimarySeen`]
/// shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecInEffect {
    pub operation_uuid: Option<String>,
    pub safekeepers: Vec<String>,
    pub generation: Option<u32>,
}

/// A fleet control plane's request to one compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FleetRequest {
    /// The first `/configure` of a cold compute.
    FirstConfigure,
    /// The skip-flag notify of the shard-split storm.
    StormNotify,
}

/// What the memory scenario's autoscaler-agent did, or received from the
/// vm-monitor, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "saw", rename_all = "snake_case")]
pub enum AgentSeen {
    /// It starts over with a compute that (re)booted: the cgroup's
    /// MemTotal is `mem_total`, its use `usage`.
    Fresh { mem_total: u64, usage: u64 },
    /// It (re)connects to the vm-monitor of compute boot `boot`.
    Connecting { boot: u64 },
    /// The vm-monitor's answer to its version range (none in time).
    Version { answer: Option<serde_json::Value> },
    /// Whether the vm-monitor echoed its health check in time.
    HealthCheck { echoed: bool },
    /// It granted the VM `mem` bytes (`UpscaleNotification` `id`).
    Granted { id: u64, mem: u64 },
    /// It asked for a downscale to `target` bytes (`DownscaleRequest` `id`).
    DownscaleAsked { id: u64, target: u64 },
    /// A message of the vm-monitor, which arrived at `at_us`.
    Recv { at_us: u64, msg: serde_json::Value },
    /// The vm-monitor closed the connection.
    Closed,
    /// It listened for a step of the load on a live connection.
    Listened,
}

/// What the promote scenario's control plane asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteCall {
    /// The replica's first `/configure`: it follows safekeeper `follows`.
    ReplicaStart { follows: String },
    /// A skip-flag `/configure` moving the replica to safekeeper `follows`.
    ReplicaMove { follows: String },
    /// `POST /promote` to the primary.
    PromotePrimary,
    /// `POST /terminate` of the primary (its answer carries the `lsn`).
    TerminatePrimary,
    /// `POST /promote` to the replica (`concurrent`: the second of two
    /// sent at once, logged after the first).
    Promote { concurrent: bool },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pgmodel::PgPhase;

    #[test]
    fn an_event_serialises_flat_with_its_name() {
        let ev = Event::Fault {
            kind: FaultKind::PgCrash {
                phase: PgPhase::Reload,
            },
            start: true,
            window_ms: (10, Some(60)),
        };
        let v = serde_json::to_value(&ev).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ev": "fault", "kind": "pg_crash", "phase": "reload", "start": true, "window_ms": [10, 60]})
        );
        // A scenario's partition starts open.
        let cut = Event::Fault {
            kind: FaultKind::PartitionStorage,
            start: true,
            window_ms: (10, None),
        };
        assert_eq!(
            serde_json::to_value(&cut).unwrap(),
            serde_json::json!({"ev": "fault", "kind": "partition_storage", "start": true, "window_ms": [10, null]})
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
