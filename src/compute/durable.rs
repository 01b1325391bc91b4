//! A primary with safekeepers: the steps of its start that make an
//! acknowledged commit survive the compute (ARCHITECTURE.md, "Storage"):
//! catch up to the most advanced safekeeper, promote onto a new timeline,
//! announce to every safekeeper, wait for a quorum to stream. Also the
//! watcher that keeps `/status.safekeepers` current (and re-announces to a
//! safekeeper that came back), and the `/terminate` LSN a quorum flushed.
//! The supervisor only calls these.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde::Serialize;

use super::phase::{Phase, Stage};
use super::phase_run::Stop;
use super::{Compute, FailReason, ms};
use crate::env::Env;
use crate::spec::{ComputeMode, ComputeSpec};
use crate::storage::{
    self, CatchUpPlan, Endpoint, Lsn, QuorumStatus, Safekeeper, SafekeeperStatus,
};

/// How long one question to a safekeeper or our own Postgres may take.
const ASK: Duration = Duration::from_secs(2);
/// The catch-up's settings reset on the promoted primary (an `ALTER SYSTEM`,
/// which fsyncs, then a reload).
const RESET_WITHIN: Duration = Duration::from_secs(30);
/// How long the new primary may take to replay up to the most advanced
/// safekeeper before it promotes.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// How often a safekeeper without a WAL sender is announced to again.
const REANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// How often the watcher samples the safekeepers.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The reason a safekeeper has until it is asked why it has no WAL sender.
const ABSENT: &str = "no WAL sender on this compute";

/// `/status.safekeepers` and `/status.quorum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SafekeepersState {
    pub members: Vec<SafekeeperStatus>,
    pub quorum: QuorumStatus,
}

/// Whether `spec` is a primary whose commits wait for safekeepers.
pub(super) fn is_durable(spec: &ComputeSpec) -> bool {
    spec.mode == ComputeMode::Primary && !spec.safekeeper_connstrings.is_empty()
}

impl<E: Env> Compute<E> {
    /// Our own Postgres, as a storage endpoint (the `-C` target).
    pub(super) fn own_endpoint(&self) -> Result<Endpoint, FailReason> {
        let c = &self.params.conn;
        Endpoint::parse(
            &format!(
                "host={} port={} user={} dbname={}",
                c.host, c.port, c.user, c.dbname
            ),
            &c.user,
        )
        .map_err(|e| FailReason::Connstr(format!("the -C target cannot be used: {e}")))
    }

    pub(super) fn safekeepers_of(&self, spec: &ComputeSpec) -> Result<Vec<Safekeeper>, FailReason> {
        storage::safekeepers(&spec.safekeeper_connstrings, &self.params.conn.user)
            .map_err(|e| FailReason::Connstr(format!("safekeeper_connstrings: {e}")))
    }

    /// Step 2 of a durable start: the base backup source and the safekeeper
    /// to catch up from, from the sync's answers.
    pub(super) async fn plan_catch_up(
        &self,
        spec: &ComputeSpec,
        synced: &storage::SyncOutcome,
    ) -> Result<CatchUpPlan, FailReason> {
        let sks = self.safekeepers_of(spec)?;
        let name = self.params.compute_id.as_deref().unwrap_or("compute_ctl");
        tracing::debug!(timelines = ?synced.timelines, known = ?synced.known, histories = ?synced.histories, "what the safekeepers said of their timelines");
        let plan = storage::plan_catch_up(
            &self.env,
            spec.pageserver_connstring.as_deref(),
            &sks,
            synced,
            &self.params.conn.user,
            name,
        )
        .await
        .map_err(FailReason::BackupSource)?;
        tracing::info!(backup_from = %plan.backup_shown, catch_up_from = %plan.stream_shown, target = %plan.target, joins_timeline = ?plan.branch.as_ref().map(|b| b.0), "catch-up planned: the new primary replays up to the most advanced safekeeper before it promotes");
        Ok(plan)
    }

    /// Beside step 3: the plan's timeline claimed on a majority of the
    /// safekeepers (`storage/timeline_claim.rs`), so that no later start
    /// promotes onto it again; on the sessions the sync kept (`held`, in
    /// the order of the safekeepers), which close when it is done.
    pub(super) async fn claim_timeline(
        &self,
        spec: &ComputeSpec,
        plan: &CatchUpPlan,
        held: Vec<Option<storage::OpenSession>>,
    ) -> Result<(), FailReason> {
        if crate::planted::active(crate::planted::Bug::UnclaimedTimeline) {
            return Ok(());
        }
        let sks = self.safekeepers_of(spec)?;
        storage::claim_timeline(&self.env, &sks, &plan.known, plan.timeline, ASK, &held)
            .await
            .map_err(|e| FailReason::SafekeeperSync(e.to_string()))?;
        tracing::info!(
            timeline = plan.timeline,
            "timeline claimed on a majority of the safekeepers"
        );
        Ok(())
    }

    /// Step 3: the cleared PGDATA filled from the planned source, as a
    /// standby of the most advanced safekeeper.
    pub(super) async fn prepare_durable_pgdata(
        &self,
        spec: &ComputeSpec,
        plan: &CatchUpPlan,
    ) -> Result<crate::pg::Prepared, FailReason> {
        let prepared =
            crate::pg::fill_pgdata(&self.env, &self.params, spec, Some(&plan.backup_source))
                .await
                .map_err(|e| FailReason::BaseBackup(e.to_string()))?;
        storage::prepare_catch_up(&self.env, &self.params.pgdata, plan)
            .await
            .map_err(|e| {
                FailReason::CatchUp(format!(
                    "preparing the catch-up of the new primary failed: {e}"
                ))
            })?;
        Ok(prepared)
    }

    /// Steps 4 to 6, once Postgres accepts connections as a standby: replay
    /// up to the plan's target, promote onto a new timeline, announce to
    /// every safekeeper, wait (at most `--quorum-deadline-secs`) for a quorum to
    /// stream. A failure's reason has each safekeeper's state.
    ///
    /// With `plan_catalog`, the catalog pass's session, snapshot and plan
    /// are made while the quorum is awaited (reading needs no quorum; its
    /// writes do, so they wait for the pass) and returned; `None` when
    /// that failed (the pass then plans again, and reports what fails).
    pub(super) async fn promote_and_announce(
        &self,
        spec: &ComputeSpec,
        plan: &CatchUpPlan,
        plan_catalog: bool,
        ready: Option<tokio_postgres::Client>,
    ) -> Result<Option<crate::catalog::PlannedApply>, Stop> {
        let own = self.own_endpoint()?;
        let sks = self.safekeepers_of(spec)?;

        // The wait and the promotion share one session: the one that found
        // Postgres ready (`ready`) when there is one.
        let ready = ready.map(|client| storage::OpenSession::adopt(client, &own));
        let (session, caught_up) = self
            .phase(Phase::StartCatchUp, async {
                storage::wait_for_lsn_held(
                    &self.env,
                    &own,
                    ready,
                    plan.target,
                    CATCH_UP_TIMEOUT,
                    storage::Polling::Own,
                )
                    .await
                    .map_err(|e| {
                        FailReason::CatchUp(format!(
                            "the new primary did not replay the WAL of the most advanced safekeeper {} up to {}: {e}",
                            plan.stream_shown, plan.target
                        ))
                    })
            })
            .await?;
        let (promoted, checkpointed) = self
            .phase(
                Phase::StartPromote,
                self.promote_onto_claim(&session, caught_up, plan),
            )
            .await?;
        tracing::info!(timeline = promoted.timeline, fork_lsn = %promoted.fork_lsn, "promoted onto a new timeline");

        let (quorum, planned) = tokio::join!(
            self.announce_and_await_quorum(
                &sks,
                promoted,
                (Phase::StartAnnounce, Phase::StartQuorum)
            ),
            async {
                if !plan_catalog {
                    return None;
                }
                crate::catalog::plan_apply(&self.env, &self.params, spec)
                    .await
                    .inspect_err(|e| tracing::debug!(error = %e, "planning the catalog pass beside the quorum wait failed; the pass plans again"))
                    .ok()
            },
        );
        quorum?;
        // The catch-up's settings are reset once a quorum streams (a
        // primary reads none of them): the reload this takes has every
        // process of our Postgres re-read its configuration, which beside
        // the announce slowed the WAL senders' start.
        storage::reset_catch_up(&self.env, &session, RESET_WITHIN)
            .await
            .map_err(|e| {
                FailReason::Promote(format!(
                    "resetting the catch-up's settings (primary_conninfo) on the promoted primary failed: {e}"
                ))
            })?;
        drop(session);
        if !plan.empty_timelines.is_empty() {
            self.restart_safekeepers_past_fork(&own, checkpointed, &sks)
                .await;
        }
        tracing::info!(
            catch_up_ms = ms(self.took(Stage::CatchUp)),
            promote_ms = ms(self.took(Stage::Promote)),
            announce_ms = ms(self.took(Stage::Announce)),
            quorum_ms = ms(self.took(Stage::Quorum)),
            "a quorum of safekeepers streams from this primary"
        );
        Ok(planned)
    }

    /// After a start that joined an empty branch, once a quorum streams:
    /// a restartpoint past the fork on each safekeeper the quorum wait
    /// found streaming or catching up (`storage::restart_past_fork`), at
    /// the checkpoint the promotion made (`checkpointed`; made now on a
    /// session of its own when that failed); one that is down or diverged
    /// would hold `running` back for the wait. Not a failure of the start:
    /// the next base backup of a safekeeper left out fails, naming the
    /// empty timeline's segment, until it replays a checkpoint of ours.
    async fn restart_safekeepers_past_fork(
        &self,
        own: &Endpoint,
        checkpointed: Option<Lsn>,
        sks: &[Safekeeper],
    ) {
        let following: Vec<Safekeeper> = {
            let st = self.state.borrow();
            let follows = |sk: &Safekeeper| {
                let Some(s) = &st.safekeepers else {
                    return true;
                };
                s.members.iter().any(|m| {
                    m.name == sk.name && (m.state == "streaming" || m.state == "catching_up")
                })
            };
            sks.iter().filter(|sk| follows(sk)).cloned().collect()
        };
        let checkpointed = match checkpointed {
            Some(lsn) => Ok(lsn),
            None => match own.open(&self.env, ASK).await {
                Ok(session) => storage::checkpoint_past_fork(&self.env, &session, ASK * 5).await,
                Err(e) => Err(format!("a session to the new primary: {e}")),
            },
        };
        let restarted = match checkpointed {
            Ok(lsn) => storage::restart_past_fork(&self.env, lsn, &following, ASK * 5).await,
            Err(e) => Err(e),
        };
        if let Err(e) = restarted {
            tracing::warn!(error = %e, "a safekeeper did not make a restartpoint past the empty timeline this primary joined; a base backup of it fails until it replays a checkpoint of this timeline");
        }
    }

    /// Step 4's promotion in a durable start: our own Postgres (on
    /// `session`, caught up at `caught_up`) promoted onto the plan's
    /// claimed timeline: the history files below it first
    /// (`storage::reserve_below`), then the timeline it got checked, then
    /// the segment files of the empty timelines it joined
    /// (`storage::fill_empty_timelines`) and, when it joined any, a
    /// checkpoint before any safekeeper streams from it
    /// (`storage::checkpoint_past_fork`; its flushed LSN after it, `None`
    /// when that failed).
    async fn promote_onto_claim(
        &self,
        session: &storage::OpenSession,
        caught_up: storage::WalPosition,
        plan: &CatchUpPlan,
    ) -> Result<(storage::Promoted, Option<Lsn>), FailReason> {
        let timeline = plan.timeline;
        let unclaimed = crate::planted::active(crate::planted::Bug::UnclaimedTimeline);
        if !unclaimed {
            storage::reserve_below(
                &self.env,
                &self.params.pgdata,
                plan.lowest_timeline,
                timeline,
            )
                .await
                .map_err(|e| {
                    FailReason::Promote(format!(
                        "writing the history files that make the new primary promote onto its claimed timeline {timeline} failed: {e}"
                    ))
                })?;
        }
        let promoted = storage::promote_on(&self.env, session, caught_up, Duration::from_secs(60))
            .await
            .map_err(|e| FailReason::Promote(format!("promoting the new primary failed: {e}")))?;
        // The planted SkipTimelineSwitch does not promote at all.
        let skipped = crate::planted::active(crate::planted::Bug::SkipTimelineSwitch);
        if promoted.timeline != timeline && !skipped && !unclaimed {
            return Err(FailReason::Promote(format!(
                "the new primary promoted onto timeline {}, not onto timeline {timeline} claimed on the safekeepers (its pg_wal holds a history file the safekeepers did not know of); start again to claim past it",
                promoted.timeline
            )));
        }
        if let Err(e) = storage::fill_empty_timelines(
            &self.env,
            &self.params.pgdata,
            session,
            promoted.fork_lsn,
            &plan.empty_timelines,
            ASK,
        )
        .await
        {
            // The quorum wait reports the safekeepers this leaves behind.
            tracing::warn!(error = %e, timelines = ?plan.empty_timelines, "the segment files of the empty timelines this primary joined could not be written; a safekeeper below its fork cannot catch up from it");
        }
        if plan.empty_timelines.is_empty() {
            return Ok((promoted, None));
        }
        let checkpointed = storage::checkpoint_past_fork(&self.env, session, ASK * 5)
            .await
            .inspect_err(|e| tracing::warn!(error = %e, "no checkpoint on the new primary before the announce; it is made again once a quorum streams"))
            .ok();
        Ok((promoted, checkpointed))
    }

    /// Steps 5 and 6 (also of `POST /promote`, `promote.rs`), once
    /// `promoted` takes writes, as the `phases` given: points every
    /// safekeeper at this compute, then waits (at most
    /// `--quorum-deadline-secs`) until a quorum streams from it, announcing
    /// again to those that do not; records `/status.safekeepers`. A
    /// failure's reason has each safekeeper's state.
    pub(super) async fn announce_and_await_quorum(
        &self,
        sks: &[Safekeeper],
        promoted: storage::Promoted,
        phases: (Phase, Phase),
    ) -> Result<(), Stop> {
        self.phase(phases.0, async {
            let announced = self.announce_all(sks).await;
            for (sk, r) in sks.iter().zip(&announced) {
                match r {
                    Ok(()) => {
                        tracing::info!(safekeeper = %sk.endpoint.shown, name = %sk.name, "announced")
                    }
                    Err(e) => {
                        tracing::warn!(safekeeper = %sk.endpoint.shown, error = %e, "cannot announce to a safekeeper; retried while it does not stream")
                    }
                }
            }
            Ok(())
        })
        .await?;
        self.phase(phases.1, self.await_quorum(sks, promoted)).await
    }

    /// Step 6: until a quorum streams, or `--quorum-deadline-secs` passed.
    async fn await_quorum(
        &self,
        sks: &[Safekeeper],
        promoted: storage::Promoted,
    ) -> Result<(), FailReason> {
        let t3 = self.env.now();
        let deadline = t3 + self.params.quorum_deadline;
        let mut next_announce = t3 + REANNOUNCE_EVERY;
        // Our own `pg_stat_replication`, as often as our own Postgres is asked.
        let mut pace = storage::Polling::Own.pace(t3);
        loop {
            let members = self.sample_safekeepers(sks, &promoted, false).await;
            let quorum = QuorumStatus::of(&members, &promoted);
            let holds = quorum.holds;
            let now = self.env.now();
            if holds || now >= deadline {
                let members = if holds {
                    members
                } else {
                    self.sample_safekeepers(sks, &promoted, true).await
                };
                let quorum = QuorumStatus::of(&members, &promoted);
                let shown = describe(&members);
                self.state.send_modify(|st| {
                    st.safekeepers = Some(SafekeepersState {
                        members,
                        quorum: quorum.clone(),
                    })
                });
                if !holds {
                    return Err(FailReason::Quorum(format!(
                        "no quorum of safekeepers streams from this primary within {:?} (--quorum-deadline-secs): {} of {} needed, {} streaming; {shown}",
                        self.params.quorum_deadline, quorum.need, quorum.total, quorum.streaming
                    )));
                }
                return Ok(());
            }
            if now >= next_announce {
                next_announce = now + REANNOUNCE_EVERY;
                self.announce_not_streaming(sks, &members).await;
            }
            self.env.sleep(pace.next(now)).await;
        }
    }

    /// Points again at this compute each of `sks` whose state in `members`
    /// (in the same order) is not `streaming`; a failure is retried by the
    /// caller's next round.
    pub(super) async fn announce_not_streaming(
        &self,
        sks: &[Safekeeper],
        members: &[SafekeeperStatus],
    ) {
        let absent: Vec<Safekeeper> = sks
            .iter()
            .zip(members)
            .filter(|(_, m)| m.state != "streaming")
            .map(|(s, _)| s.clone())
            .collect();
        let _ = self.announce_all(&absent).await;
    }

    /// Points each of `sks` at this compute, in parallel.
    pub(super) async fn announce_all(
        &self,
        sks: &[Safekeeper],
    ) -> Vec<Result<(), storage::AnnounceError>> {
        let advertised = self.params.advertised();
        let user = &self.params.conn.user;
        join_all(sks.iter().map(|sk| {
            let conninfo = storage::conninfo_for(&advertised, user, sk);
            async move { storage::announce(&self.env, sk, &conninfo, ASK).await }
        }))
        .await
    }

    /// Each safekeeper's state: from our WAL senders, and for those without
    /// one (when `explain`) from asking the safekeeper itself.
    pub(super) async fn sample_safekeepers(
        &self,
        sks: &[Safekeeper],
        own: &storage::Promoted,
        explain: bool,
    ) -> Vec<SafekeeperStatus> {
        // A held session: a new one every second forked a backend beside
        // the client's commits (issue 21's commit p99).
        let asked = self
            .watch_session
            .query_value(
                &self.env,
                &self.params.conn,
                storage::STAT_REPLICATION_SQL,
                ASK,
            )
            .await;
        let senders = match asked {
            Ok(text) => storage::parse_senders(&text.unwrap_or_default()).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot read pg_stat_replication");
                Vec::new()
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read pg_stat_replication");
                Vec::new()
            }
        };
        let members = storage::states_from_senders(sks, &senders, ABSENT, own);
        if !explain {
            return members;
        }
        self.explain(sks, own, members).await
    }

    /// `members` (of `sks`, in order), each that does not stream asked
    /// why: one without a WAL sender gets the answer; one whose sender is
    /// not streaming keeps its sender's state unless the answer is
    /// `diverged` (a diverged safekeeper's receiver connects, is refused
    /// and connects again, so its sender comes and goes: judged by its
    /// sender alone it read as `catching_up` most of the time).
    async fn explain(
        &self,
        sks: &[Safekeeper],
        own: &storage::Promoted,
        members: Vec<SafekeeperStatus>,
    ) -> Vec<SafekeeperStatus> {
        join_all(sks.iter().zip(members).map(|(sk, m)| async move {
            if m.state == "streaming" {
                return m;
            }
            let asked = storage::explain_absent(&self.env, sk, own, ASK).await;
            if m.reason.as_deref() == Some(ABSENT) || asked.state == "diverged" {
                asked
            } else {
                m
            }
        }))
        .await
    }

    /// Starts the task that keeps `/status.safekeepers` current and
    /// announces again to a safekeeper that does not stream (one that was
    /// down at start and came back still points at the old primary).
    pub(super) fn watch_safekeepers(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move { this.safekeepers_loop().await });
    }

    async fn safekeepers_loop(self: Arc<Self>) {
        let mut diverged_logged: Vec<String> = Vec::new();
        loop {
            let st = self.state();
            if st.supervisor_exited
                || matches!(
                    st.status,
                    crate::state::ComputeStatus::TerminationPending
                        | crate::state::ComputeStatus::Terminated
                )
            {
                return;
            }
            let (Some(spec), Some(prev)) = (st.spec, st.safekeepers) else {
                return;
            };
            let Ok(sks) = self.safekeepers_of(&spec) else {
                return;
            };
            let own = prev.quorum.own;
            // A safekeeper without a WAL sender is pointed at us again (one
            // question when it already is), then asked why.
            let quick = self.sample_safekeepers(&sks, &own, false).await;
            let absent: Vec<Safekeeper> = sks
                .iter()
                .zip(&quick)
                .filter(|(_, m)| m.reason.as_deref() == Some(ABSENT))
                .map(|(s, _)| s.clone())
                .collect();
            let members = if !absent.is_empty() {
                let _ = self.announce_all(&absent).await;
                self.sample_safekeepers(&sks, &own, true).await
            } else if quick.iter().any(|m| m.state != "streaming") {
                self.explain(&sks, &own, quick).await
            } else {
                quick
            };
            for m in members.iter().filter(|m| m.state == "diverged") {
                if !diverged_logged.contains(&m.name) {
                    diverged_logged.push(m.name.clone());
                    tracing::error!(safekeeper = %m.safekeeper, reason = ?m.reason, "a safekeeper diverged from this compute's timeline; compute_ctl never rewinds or re-clones it (the storage's job); the quorum goes on with the others");
                }
            }
            let quorum = QuorumStatus::of(&members, &own);
            let next = SafekeepersState { members, quorum };
            self.state.send_if_modified(|st| {
                if st.safekeepers.as_ref() == Some(&next) {
                    false
                } else {
                    st.safekeepers = Some(next);
                    true
                }
            });
            self.env.sleep(SAMPLE_EVERY).await;
        }
    }

    /// `/terminate`'s `lsn` for a primary with safekeepers, once Postgres
    /// stopped (a fast shutdown waits for its WAL senders): the highest
    /// LSN a majority of the safekeepers flushed, where the next start
    /// resumes. `None` without safekeepers or without a quorum's answer.
    pub(super) async fn quorum_flushed_lsn(&self) -> Option<Lsn> {
        let spec = self.state().spec?;
        if !is_durable(&spec) {
            return None;
        }
        match storage::sync_safekeepers(
            &self.env,
            &spec.safekeeper_connstrings,
            &self.params.conn.user,
            super::supervisor::SAFEKEEPER_TIMEOUT,
        )
        .await
        {
            Ok(s) => Some(s.commit_lsn),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell which LSN a quorum of safekeepers flushed; /terminate answers the shutdown checkpoint");
                None
            }
        }
    }
}

/// Each safekeeper's state on one line, for an error.
pub(super) fn describe(members: &[SafekeeperStatus]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "{} ({}): {}{}",
                m.name,
                m.safekeeper,
                m.state,
                m.reason
                    .as_deref()
                    .map(|r| format!(", {r}"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
