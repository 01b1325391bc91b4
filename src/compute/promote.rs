//! `POST /promote` (Neon's route and shapes): a Replica compute becomes the
//! primary after its primary terminated (README, "Storage and durability").
//!
//! The handler submits a promote ([`Compute::submit_promote`]) the way a
//! configure is submitted: atomically on the watch channel, as a new
//! generation, `running` -> `configuration_pending`; the supervisor loop
//! picks it up ([`Compute::promote`]) and moves through `configuration`, so
//! a promote, a configure and a terminate never run at once (a configure
//! meanwhile is a 409; a terminate interrupts it). A second call with the
//! same `wal_flush_lsn` joins the one in flight, or, once it completed, gets
//! its answer again.
//!
//! The steps, each timed for Neon's `PromoteState`:
//! 1. `lsn_wait`: wait (at most the request's deadline) until replay
//!    reaches `wal_flush_lsn`, the old primary's `/terminate` `lsn`, and
//!    check that no reachable safekeeper of the request's spec holds WAL of
//!    a newer timeline than the replica's ([`storage::NewerTimeline`]:
//!    promoting would reuse that timeline's number), wait until replay also
//!    reaches what the most advanced safekeeper on its timeline flushed
//!    (acknowledged commits can lie past `wal_flush_lsn`), then claim the
//!    timeline past every one a majority of them knows of
//!    (`storage/timeline_claim.rs`). If any of it fails, nothing was
//!    changed: the compute stays a working replica, `running`, and the
//!    answer says what to do (the LSNs, the safekeeper to follow, or the
//!    safekeepers that did not take the claim).
//! 2. `pg_promote`: `postgresql.conf` as the primary of the request's spec
//!    (for a primary with safekeepers, `synchronous_standby_names` for a
//!    majority of them), SIGHUP, the reload checked as a configure's; then,
//!    with safekeepers, the quorum put in force before any write can come
//!    ([`storage::await_quorum_in_force`]); then `pg_promote()` onto the
//!    claimed timeline ([`storage::reserve_below`]). A config Postgres
//!    refuses, or a `pg_promote()` that leaves it in recovery, puts the
//!    replica's config back: still a replica.
//! 3. `reconfigure`: announce to the safekeepers and wait for a quorum to
//!    stream (`durable.rs`, as a durable start), then the catalog pass
//!    unless `skip_pg_catalog_updates`. A failure here leaves a primary
//!    (Postgres cannot go back to recovery) in `failed`, its commits
//!    waiting for the quorum; `/status` says why.
//!
//! Once promoted, the spec in effect is the request's: `/status` shows a
//! primary, a later `/configure` is judged against it, the safekeeper
//! watcher runs, and `/terminate` answers the LSN a quorum flushed.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::phase::{Operation, Part, Phase, Stage};
use super::phase_run::Stop;
use super::{Compute, FailReason, durable, ms};
use crate::env::{Env, Signal};
use crate::pg;
use crate::spec::{ComputeMode, ComputeSpec, mode_name};
use crate::state::{ComputeStatus, Event, transition};
use crate::storage::{self, Lsn, ReplicationStatus, WaitError};

/// How long the reload of the primary's config may take to show.
const RELOAD_WITHIN: Duration = Duration::from_secs(10);
/// `pg_promote()`'s own deadline.
const PG_PROMOTE_WITHIN: Duration = Duration::from_secs(60);
/// How long each safekeeper may take to take a timeline claim.
const CLAIM_WITHIN: Duration = Duration::from_secs(2);

/// What one promote request asked for and what became of it
/// (`ComputeState::promote`: the last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromoteJob {
    /// The generation it was accepted as.
    pub generation: u64,
    /// The old primary's last LSN, which replay must reach first.
    pub wal_flush_lsn: Lsn,
    /// How long replay may take to reach it.
    pub lsn_wait: Duration,
    /// `None` while it runs.
    pub outcome: Option<PromoteOutcome>,
}

/// How a promote ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteOutcome {
    Completed(PromoteTimings),
    /// Why not; whether the compute is still a replica is said in it.
    Failed(String),
}

/// A completed promote's phases in milliseconds: Neon's three
/// (`lsn_wait_time_ms`, `pg_promote_time_ms`, `reconfigure_time_ms`, which
/// covers everything after `pg_promote()`) and that last one's parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PromoteTimings {
    pub lsn_wait_time_ms: u64,
    /// The primary's config and its reload, the quorum put in force, and
    /// `pg_promote()` itself.
    pub pg_promote_time_ms: u64,
    pub reconfigure_time_ms: u64,
    pub announce_time_ms: u64,
    pub quorum_time_ms: u64,
    pub catalog_time_ms: u64,
    /// The new timeline.
    pub timeline: u32,
}

/// Why a promote request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromoteRefused {
    #[error(
        "compute mode \"{0}\" is not replica: only a Replica compute can be promoted; nothing was changed"
    )]
    NotReplica(&'static str),
    #[error(
        "cannot promote a compute in status {0}: a promote needs a running Replica compute; nothing was changed"
    )]
    WrongState(ComputeStatus),
    #[error(
        "another operation is in progress (status {0}); retry the promote when it has finished"
    )]
    Busy(ComputeStatus),
    #[error(
        "a promote to wal_flush_lsn {0} is in progress; wait for it (send the same wal_flush_lsn to join it)"
    )]
    OtherPromote(Lsn),
}

/// What an accepted promote request waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PromoteTicket {
    /// The promote of this generation (new, or joined).
    Wait(u64),
    /// The same promote already completed: its answer.
    Done(PromoteOutcome),
}

impl<E: Env> Compute<E> {
    /// Accepts a promote of this Replica compute to the primary `spec`
    /// (validated by the handler) once replay reaches `wal_flush_lsn`, or
    /// joins the one in flight with the same LSN.
    pub fn submit_promote(
        &self,
        spec: ComputeSpec,
        wal_flush_lsn: Lsn,
        lsn_wait: Duration,
    ) -> Result<PromoteTicket, PromoteRefused> {
        let spec = Arc::new(spec);
        let mut out = Err(PromoteRefused::WrongState(ComputeStatus::Empty));
        let accepted = self.state.send_if_modified(|st| {
            if let Some(job) = &st.promote {
                let same = job.wal_flush_lsn == wal_flush_lsn;
                match &job.outcome {
                    None if same => {
                        out = Ok(PromoteTicket::Wait(job.generation));
                        return false;
                    }
                    None => {
                        out = Err(PromoteRefused::OtherPromote(job.wal_flush_lsn));
                        return false;
                    }
                    Some(done @ PromoteOutcome::Completed(_)) if same => {
                        out = Ok(PromoteTicket::Done(done.clone()));
                        return false;
                    }
                    Some(_) => {}
                }
            }
            if st.status != ComputeStatus::Running {
                out = Err(if st.status.is_configuring() {
                    PromoteRefused::Busy(st.status)
                } else {
                    PromoteRefused::WrongState(st.status)
                });
                return false;
            }
            match st.spec.as_deref().map(|s| &s.mode) {
                Some(ComputeMode::Replica) => {}
                Some(m) => {
                    out = Err(PromoteRefused::NotReplica(mode_name(m)));
                    return false;
                }
                None => return false,
            }
            let Ok(next) = transition(st.status, Event::SpecDelivered) else {
                return false;
            };
            st.status = next;
            st.generation += 1;
            st.pending = Some(spec.clone());
            st.error = None;
            st.failure = None;
            st.promote = Some(PromoteJob {
                generation: st.generation,
                wal_flush_lsn,
                lsn_wait,
                outcome: None,
            });
            out = Ok(PromoteTicket::Wait(st.generation));
            true
        });
        if accepted {
            tracing::info!(%wal_flush_lsn, operation_uuid = ?spec.operation_uuid, "promote accepted");
            self.metrics.set_status(ComputeStatus::ConfigurationPending);
        }
        out
    }

    /// Waits until the promote of `generation` has ended (or the compute
    /// stops, which abandons it).
    pub async fn wait_promoted(&self, generation: u64) -> PromoteOutcome {
        let mut rx = self.subscribe();
        let outcome = |st: &super::ComputeState| {
            st.promote
                .as_ref()
                .filter(|j| j.generation == generation)
                .and_then(|j| j.outcome.clone())
        };
        let st = rx
            .wait_for(|st| {
                outcome(st).is_some()
                    || st.supervisor_exited
                    || matches!(
                        st.status,
                        ComputeStatus::Failed
                            | ComputeStatus::TerminationPending
                            | ComputeStatus::Terminated
                    )
            })
            .await;
        match st {
            Ok(st) => outcome(&st).unwrap_or_else(|| {
                PromoteOutcome::Failed(format!(
                    "the promote was abandoned: the compute is {}{}",
                    st.status,
                    st.error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ))
            }),
            Err(_) => PromoteOutcome::Failed(
                "the promote was abandoned: the supervisor has stopped".into(),
            ),
        }
    }

    /// Whether the pending operation is a promote (the supervisor loop asks).
    pub(super) fn promote_requested(&self) -> bool {
        let st = self.state.borrow();
        st.promote
            .as_ref()
            .is_some_and(|j| j.outcome.is_none() && j.generation == st.generation)
    }

    /// Runs the accepted promote (see the module docs); called by the
    /// supervisor loop, which owns the postmaster. A failure that leaves a
    /// replica ends the promote with the compute `running`; one that leaves
    /// a primary is returned (`failed`).
    pub(super) async fn promote(self: &Arc<Self>) -> Result<(), Stop> {
        let mut taken = None;
        let _ = self.apply_event(Event::BeginReconfigure, |st| {
            // The replica's spec stays in effect until pg_promote() succeeds.
            let spec = st.pending.take();
            taken = match (spec, st.promote.clone(), st.spec.clone()) {
                (Some(spec), Some(job), Some(previous)) => Some((spec, job, previous)),
                _ => None,
            };
        });
        let Some((spec, job, previous)) = taken else {
            return Err(FailReason::PromoteWithoutSpec.into());
        };
        let generation = job.generation;
        self.begin_phases();
        let mut moved = Moved::Unchanged;
        let reason = match self.run_promote(&spec, &job, &previous, &mut moved).await {
            Ok(timings) => {
                let pending_restart = self
                    .restart_basis
                    .get()
                    .map(|b| pg::pending_restart(&b.contexts, &b.started_with, &spec))
                    .unwrap_or_default();
                tracing::info!(?timings, "promoted: the compute is the primary");
                let _ = self.apply_event(Event::Reconfigured, |st| {
                    st.applied_generation = generation;
                    st.pending_restart = pending_restart;
                    if let Some(j) = st.promote.as_mut() {
                        j.outcome = Some(PromoteOutcome::Completed(timings));
                    }
                });
                return Ok(());
            }
            Err(Stop::Failed(reason)) => reason,
            Err(interrupted) => return Err(interrupted),
        };
        match moved {
            Moved::Unchanged => {
                self.stay_replica(generation, &reason);
                Ok(())
            }
            Moved::ConfigLoaded => self.back_to_replica(generation, &previous, reason).await,
            Moved::Primary => {
                tracing::error!(%reason, "promote failed");
                Err(reason.into())
            }
        }
    }

    /// The steps; `moved` says how far the compute moved when one fails.
    async fn run_promote(
        self: &Arc<Self>,
        spec: &Arc<ComputeSpec>,
        job: &PromoteJob,
        previous: &ComputeSpec,
        moved: &mut Moved,
    ) -> Result<PromoteTimings, Stop> {
        let own = self.own_endpoint()?;
        let t0 = self.env.now();

        // 1. Replay reaches the old primary's last LSN, on the newest
        // timeline a safekeeper holds (`storage::survey_timelines`).
        // With safekeepers, the timeline it will promote onto is claimed on
        // a majority of them (`storage/timeline_claim.rs`).
        let claimed = self
            .phase(Phase::PromoteLsnWait, async {
                storage::wait_for_lsn(
                    &self.env,
                    &own,
                    job.wal_flush_lsn,
                    job.lsn_wait,
                    storage::Polling::Own,
                )
                .await
                .map_err(|e| FailReason::LsnWait(not_caught_up(e, previous)))?;
                if !durable::is_durable(spec) {
                    return Ok(None);
                }
                let sks = self.safekeepers_of(spec)?;
                let deadline = t0 + job.lsn_wait;
                self.claim_promote_timeline(&own, &sks, deadline)
                    .await
                    .map(Some)
            })
            .await?;

        // 2. The primary's config (with the quorum in force), then pg_promote().
        let Some(pid) = self.postmaster_pid() else {
            return Err(FailReason::PostgresNotRunning.into());
        };
        let sks = self
            .phase(
                Phase::PromoteWriteConfig,
                self.load_primary_config(spec, previous, pid, moved),
            )
            .await?;
        if !sks.is_empty() {
            let names: Vec<String> = sks.iter().map(|s| s.name.clone()).collect();
            let expected = storage::synchronous_standby_names(&names);
            self.phase(Phase::PromoteQuorumInForce, async {
                storage::await_quorum_in_force(&self.env, &own, &expected, RELOAD_WITHIN)
                    .await
                    .map_err(|e| {
                        FailReason::Quorum(format!(
                            "the quorum could not be put in force before the promotion: {e}"
                        ))
                    })
            })
            .await?;
        }
        let promoted = self
            .phase(
                Phase::PromotePgPromote,
                self.pg_promote(&own, spec, job.wal_flush_lsn, claimed, moved),
            )
            .await?;
        tracing::info!(timeline = promoted.timeline, fork_lsn = %promoted.fork_lsn, wal_flush_lsn = %job.wal_flush_lsn, "promoted onto a new timeline");

        // 3. Announce, quorum, catalog.
        let timeline = promoted.timeline;
        let after = |stop: Stop| match stop {
            Stop::Failed(cause) => Stop::Failed(FailReason::AfterPromotion {
                timeline,
                cause: Box::new(cause),
            }),
            interrupted => interrupted,
        };
        if !sks.is_empty() {
            let streamed = self
                .announce_and_await_quorum(
                    &sks,
                    promoted,
                    (Phase::PromoteAnnounce, Phase::PromoteQuorum),
                )
                .await;
            if self.state.borrow().safekeepers.is_some() {
                self.watch_safekeepers();
            }
            streamed.map_err(after)?;
        }
        if !spec.skip_pg_catalog_updates {
            self.catalog_pass(Phase::PromoteCatalog, spec)
                .await
                .map_err(after)?;
        }
        self.done(Phase::PromoteDone);
        let clock = self.finish_phases(Operation::Promote, self.env.now() - t0);
        Ok(PromoteTimings {
            lsn_wait_time_ms: ms(clock.stage(Stage::LsnWait)),
            pg_promote_time_ms: ms(clock.stage(Stage::PgPromote)),
            reconfigure_time_ms: ms(clock.stage(Stage::PromoteReconfigure)),
            announce_time_ms: ms(clock.part(Part::Announce)),
            quorum_time_ms: ms(clock.part(Part::Quorum)),
            catalog_time_ms: ms(clock.part(Part::Catalog)),
            timeline,
        })
    }

    /// The primary's config written, checked and reloaded; then its
    /// safekeepers (none without).
    async fn load_primary_config(
        &self,
        spec: &ComputeSpec,
        previous: &ComputeSpec,
        pid: u32,
        moved: &mut Moved,
    ) -> Result<Vec<storage::Safekeeper>, FailReason> {
        pg::write_config(&self.env, &self.params, spec)
            .await
            .map_err(|e| {
                FailReason::WriteConfig(format!(
                    "writing the primary's Postgres configuration failed: {e}"
                ))
            })?;
        *moved = Moved::ConfigLoaded;
        if let Err(reason) = self.check_written(spec, Some(previous), pid).await {
            // Refused or unchecked: check_written put the replica's config back.
            *moved = Moved::Unchanged;
            return Err(reason);
        }
        self.env.signal(pid, Signal::Hup).map_err(|e| {
            FailReason::Reload(format!(
                "reloading Postgres (SIGHUP to pid {pid}) failed: {e}"
            ))
        })?;
        if durable::is_durable(spec) {
            self.safekeepers_of(spec)
        } else {
            Ok(Vec::new())
        }
    }

    /// Step 1's end for a primary with safekeepers: none of them may hold
    /// WAL of a newer timeline than the replica's
    /// ([`storage::NewerTimeline`]); the replica replays (by `deadline`)
    /// what the most advanced of them on its timeline flushed, which can be
    /// past the `wal_flush_lsn` asked for; and the timeline past every one
    /// a majority of them (and the replica) knows of is claimed on them.
    async fn claim_promote_timeline(
        &self,
        own: &storage::Endpoint,
        sks: &[storage::Safekeeper],
        deadline: tokio::time::Instant,
    ) -> Result<u32, FailReason> {
        let survey = storage::survey_timelines(&self.env, own, sks).await;
        if let Some(newer) = survey.newer {
            return Err(FailReason::LsnWait(newer.to_string()));
        }
        if let Some((sk, lsn)) = &survey.ahead {
            let left = deadline.saturating_duration_since(self.env.now());
            storage::wait_for_lsn(&self.env, own, *lsn, left, storage::Polling::Own)
                .await
                .map_err(|e| {
                    FailReason::LsnWait(format!(
                        "safekeeper {sk} holds WAL up to {lsn}, past what this replica replayed, and an acknowledged commit may be there: {e}; point the replica at {sk} (its upstream), let it follow, then send the promote again"
                    ))
                })?;
        }
        let timeline = storage::next_timeline(&survey.known)
            .map_err(|e| FailReason::SafekeeperSync(e.to_string()))?
            .max(survey.own_known.unwrap_or(1) + 1);
        storage::claim_timeline(&self.env, sks, &survey.known, timeline, CLAIM_WITHIN, &[])
            .await
            .map_err(|e| FailReason::SafekeeperSync(e.to_string()))?;
        tracing::info!(
            timeline,
            "timeline claimed on a majority of the safekeepers"
        );
        Ok(timeline)
    }

    /// `pg_promote()` (onto `claimed` when set: the history files below
    /// it are written first, and the timeline it got is checked); once
    /// Postgres left recovery (even when the call failed), the request's
    /// spec is in effect.
    async fn pg_promote(
        &self,
        own: &storage::Endpoint,
        spec: &Arc<ComputeSpec>,
        wal_flush_lsn: Lsn,
        claimed: Option<u32>,
        moved: &mut Moved,
    ) -> Result<storage::Promoted, FailReason> {
        if let Some(t) = claimed {
            storage::reserve_below(&self.env, &self.params.pgdata, 1, t)
                .await
                .map_err(|e| {
                    FailReason::Promote(format!(
                        "writing the history files that make the replica promote onto its claimed timeline {t} failed: {e}"
                    ))
                })?;
        }
        match storage::promote(&self.env, own, PG_PROMOTE_WITHIN).await {
            Ok(promoted) => {
                self.now_primary(spec, wal_flush_lsn);
                *moved = Moved::Primary;
                if let Some(t) = claimed.filter(|t| *t != promoted.timeline) {
                    return Err(FailReason::Promote(format!(
                        "the replica promoted onto timeline {}, not onto timeline {t} claimed on the safekeepers (its pg_wal holds a history file they did not know of); the compute is a primary now: restart it to claim past that timeline",
                        promoted.timeline
                    )));
                }
                Ok(promoted)
            }
            Err(e) => {
                let reason = format!("pg_promote() failed: {e}");
                if self.in_recovery(own).await {
                    return Err(FailReason::Promote(reason));
                }
                self.now_primary(spec, wal_flush_lsn);
                *moved = Moved::Primary;
                Err(FailReason::Promote(format!(
                    "{reason}; Postgres left recovery all the same: the compute is a primary now, check it"
                )))
            }
        }
    }

    /// The promote failed before anything changed (or was put back): the
    /// compute is `running` as the replica it was.
    fn stay_replica(&self, generation: u64, reason: &dyn std::fmt::Display) {
        let reason = format!("{reason}; the compute stays a replica");
        tracing::warn!(%reason, "promote failed");
        let _ = self.apply_event(Event::Reconfigured, |st| {
            if let Some(j) = st.promote.as_mut().filter(|j| j.generation == generation) {
                j.outcome = Some(PromoteOutcome::Failed(reason));
            }
        });
    }

    /// Puts the replica's config back (the primary's was loaded), then
    /// [`Self::stay_replica`]; when that fails, the compute is `failed`.
    async fn back_to_replica(
        &self,
        generation: u64,
        previous: &ComputeSpec,
        reason: FailReason,
    ) -> Result<(), Stop> {
        let put_back = match pg::write_config(&self.env, &self.params, previous).await {
            Ok(()) => match self.postmaster_pid() {
                Some(pid) => self
                    .env
                    .signal(pid, Signal::Hup)
                    .map_err(|e| format!("reloading Postgres (SIGHUP to pid {pid}): {e}")),
                None => Err("Postgres is not running".into()),
            },
            Err(e) => Err(format!("writing it: {e}")),
        };
        match put_back {
            Ok(()) => {
                self.stay_replica(
                    generation,
                    &format_args!("{reason}; the replica's config was put back"),
                );
                Ok(())
            }
            Err(error) => {
                let reason = FailReason::NotPutBack {
                    cause: Box::new(reason),
                    error,
                };
                tracing::error!(%reason, "promote failed");
                Err(reason.into())
            }
        }
    }

    /// Postgres left recovery: the request's spec is in effect from now
    /// on, and `/status.replication` says where it took over.
    fn now_primary(&self, spec: &Arc<ComputeSpec>, took_over_at: Lsn) {
        let durable = durable::is_durable(spec);
        self.state.send_modify(|st| {
            st.spec = Some(spec.clone());
            st.replication = durable.then(|| ReplicationStatus {
                mode: mode_name(&spec.mode).to_string(),
                upstream: spec
                    .pageserver_connstring
                    .as_deref()
                    .map(pg::redact_connstr),
                commit_lsn: Some(took_over_at),
                basebackup_lsn: st.replication.as_ref().and_then(|r| r.basebackup_lsn),
                ..Default::default()
            });
        });
    }

    /// Whether our Postgres says it is still in recovery (`false` when it
    /// cannot be asked).
    async fn in_recovery(&self, own: &storage::Endpoint) -> bool {
        own.query_row(&self.env, storage::IN_RECOVERY_SQL, Duration::from_secs(5))
            .await
            .is_ok_and(|row| storage::column(&row, 0) == Some("t"))
    }
}

/// How far a promote moved the compute (what a failure leaves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moved {
    /// Nothing changed (or the replica's config was put back already).
    Unchanged,
    /// The primary's config is loaded but Postgres is still in recovery:
    /// the replica's config goes back.
    ConfigLoaded,
    /// Postgres left recovery: a primary now.
    Primary,
}

/// Why replay did not reach `wal_flush_lsn`, with both LSNs.
fn not_caught_up(e: WaitError, previous: &ComputeSpec) -> String {
    let upstream = previous
        .pageserver_connstring
        .as_deref()
        .map(pg::redact_connstr)
        .unwrap_or_else(|| "none".into());
    match e {
        WaitError::Behind {
            reached,
            target,
            within,
            ..
        } => format!(
            "this replica replayed WAL up to {reached}, not up to the old primary's wal_flush_lsn {target}, within {within:?}: check that its upstream ({upstream}) has the old primary's WAL up to {target}, then send the promote again"
        ),
        WaitError::Unreachable {
            target,
            within,
            last,
            ..
        } => format!(
            "cannot read this replica's replay LSN (waiting for wal_flush_lsn {target}) within {within:?}: {last}"
        ),
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::compute::{ComputeParams, Submitted};
    use crate::env::TokioEnv;

    fn compute() -> Arc<Compute<TokioEnv>> {
        let params = ComputeParams::unstartable();
        Compute::new(TokioEnv::new(), params)
    }

    fn spec(mode: serde_json::Value, op: &str) -> ComputeSpec {
        serde_json::from_value(serde_json::json!({
            "format_version": 1.0, "operation_uuid": op, "cluster": {}, "mode": mode,
            "pageserver_connstring": "host=127.0.0.1 port=2"
        }))
        .unwrap()
    }

    /// A compute running `mode`, as the supervisor leaves it after a start.
    fn running(mode: serde_json::Value) -> Arc<Compute<TokioEnv>> {
        let c = compute();
        let Ok(Submitted::Accepted(g)) = c.submit(spec(mode, "start")) else {
            panic!("not accepted")
        };
        assert!(c.begin(Event::BeginStart).is_some());
        c.apply_event(Event::Started, |st| st.applied_generation = g)
            .unwrap();
        c
    }

    const WAIT: Duration = Duration::from_secs(1);

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    #[test]
    fn a_replica_takes_a_promote_as_a_new_generation_and_keeps_its_spec() {
        let c = running("Replica".into());
        let t = c.submit_promote(spec("Primary".into(), "p"), lsn("0/10"), WAIT);
        assert_eq!(t, Ok(PromoteTicket::Wait(2)));
        let st = c.state();
        assert_eq!(st.status, ComputeStatus::ConfigurationPending);
        assert_eq!(st.spec.unwrap().mode, ComputeMode::Replica);
        assert_eq!(st.pending.unwrap().mode, ComputeMode::Primary);
        assert!(c.promote_requested());
        // A configure meanwhile is busy, as during any configure.
        assert!(c.submit(spec("Replica".into(), "x")).is_err());
    }

    #[test]
    fn a_second_call_joins_the_one_in_flight_and_another_lsn_is_refused() {
        let c = running("Replica".into());
        let p = || spec("Primary".into(), "p");
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Ok(PromoteTicket::Wait(2))
        );
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Ok(PromoteTicket::Wait(2))
        );
        assert_eq!(
            c.submit_promote(p(), lsn("0/20"), WAIT),
            Err(PromoteRefused::OtherPromote(lsn("0/10")))
        );
        assert_eq!(c.state().generation, 2);
    }

    #[test]
    fn a_completed_promote_answers_again_and_a_primary_refuses_another() {
        let c = running("Replica".into());
        let p = || spec("Primary".into(), "p");
        let Ok(PromoteTicket::Wait(g)) = c.submit_promote(p(), lsn("0/10"), WAIT) else {
            panic!("not accepted")
        };
        let done = PromoteOutcome::Completed(PromoteTimings {
            timeline: 3,
            ..Default::default()
        });
        c.apply_event(Event::BeginReconfigure, |st| {
            st.spec = st.pending.take();
        })
        .unwrap();
        c.apply_event(Event::Reconfigured, |st| {
            st.applied_generation = g;
            st.promote.as_mut().unwrap().outcome = Some(done.clone());
        })
        .unwrap();
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Ok(PromoteTicket::Done(done))
        );
        assert_eq!(
            c.submit_promote(p(), lsn("0/11"), WAIT),
            Err(PromoteRefused::NotReplica("primary"))
        );
    }

    #[test]
    fn a_failed_promote_can_be_sent_again() {
        let c = running("Replica".into());
        let p = || spec("Primary".into(), "p");
        let Ok(PromoteTicket::Wait(g)) = c.submit_promote(p(), lsn("0/10"), WAIT) else {
            panic!("not accepted")
        };
        c.apply_event(Event::BeginReconfigure, |st| {
            st.pending = None;
        })
        .unwrap();
        c.stay_replica(g, &"replay did not reach it");
        let st = c.state();
        assert_eq!(st.status, ComputeStatus::Running);
        assert_eq!(st.spec.unwrap().mode, ComputeMode::Replica);
        assert!(matches!(
            st.promote.unwrap().outcome,
            Some(PromoteOutcome::Failed(ref e)) if e.contains("stays a replica")
        ));
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Ok(PromoteTicket::Wait(g + 1))
        );
    }

    #[test]
    fn primary_static_and_non_running_computes_are_refused() {
        let p = || spec("Primary".into(), "p");
        let c = running("Primary".into());
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Err(PromoteRefused::NotReplica("primary"))
        );
        let c = running(serde_json::json!({"Static": "0/16B3748"}));
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Err(PromoteRefused::NotReplica("static"))
        );
        let c = compute();
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Err(PromoteRefused::WrongState(ComputeStatus::Empty))
        );
        c.submit(spec("Replica".into(), "start")).unwrap();
        assert_eq!(
            c.submit_promote(p(), lsn("0/10"), WAIT),
            Err(PromoteRefused::Busy(ComputeStatus::ConfigurationPending))
        );
        assert_eq!(c.state().generation, 1, "nothing changed");
    }

    #[tokio::test]
    async fn a_configure_joined_to_a_promote_that_left_a_replica_is_answered() {
        // /configure joins an in-flight operation by its operation_uuid.
        let c = running("Replica".into());
        let Ok(PromoteTicket::Wait(g)) =
            c.submit_promote(spec("Primary".into(), "p"), lsn("0/10"), WAIT)
        else {
            panic!("not accepted")
        };
        let joined = tokio::spawn({
            let c = c.clone();
            async move { c.wait_applied(g).await }
        });
        c.apply_event(Event::BeginReconfigure, |st| {
            st.pending = None;
        })
        .unwrap();
        c.stay_replica(g, &"replay did not reach it");
        let e = crate::env::timeout(&c.env, Duration::from_secs(5), joined)
            .await
            .expect("the joined configure is answered, not left waiting")
            .unwrap()
            .unwrap_err();
        assert!(e.contains("stays a replica"), "{e}");
    }

    #[tokio::test]
    async fn a_waiter_sees_the_outcome_or_the_abandon() {
        let c = running("Replica".into());
        let Ok(PromoteTicket::Wait(g)) =
            c.submit_promote(spec("Primary".into(), "p"), lsn("0/10"), WAIT)
        else {
            panic!("not accepted")
        };
        let waiter = tokio::spawn({
            let c = c.clone();
            async move { c.wait_promoted(g).await }
        });
        c.request_terminate(crate::compute::TerminateMode::Fast)
            .unwrap();
        let PromoteOutcome::Failed(e) = waiter.await.unwrap() else {
            panic!("a terminate abandons the promote")
        };
        assert!(e.contains("abandoned"), "{e}");
    }
}
