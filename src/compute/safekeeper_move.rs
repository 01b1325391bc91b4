//! A notify that moves a primary to another safekeeper set, with no
//! restart and no acknowledged commit that only the old set holds.
//!
//! Two sets whose majorities need not meet (`abc` → `abd`: `ac` and `bd`)
//! cannot be switched in one reload: a commit acknowledged by `a, c` just
//! before the switch would be missing from a start that syncs `b, d`. So a
//! move passes through the joint quorum of both sets (Neon's RFC 035, with
//! Postgres' own `ANY k (...)`), as a consensus membership change does:
//!
//! 1. **joint**: `pg_hba.conf` lets both sets stream and commits wait for
//!    `ANY k (old ∪ new)`, where every `k` of them hold a majority of
//!    each set ([`JointQuorum`]); reload, and check that it is in force;
//! 2. **announce** to the new members (the old ones stream already);
//! 3. **catch up**: wait until a majority of the new set flushed our WAL up
//!    to where it was once the joint quorum was in force. From then on the
//!    new set alone holds every acknowledged commit;
//! 4. the reconfigure goes on as any other: the new set's config, reload.
//!
//! Until the answer, a restart may sync the old set (every commit is on a
//! majority of it); after it, the new set. A move that does not catch up
//! within `--quorum-deadline-secs` puts the old config back (commits never
//! stopped needing the old majority) and fails with every member's state.

use std::time::Duration;

use super::phase::Phase;
use super::phase_run::Stop;
use super::{Compute, FailReason, durable::is_durable, ms};
use crate::env::{Env, Signal};
use crate::pg;
use crate::spec::{ComputeSpec, JointQuorum, same_members};
use crate::storage::{self, Endpoint, Lsn, Safekeeper};

/// How long the joint config may take to be in force after the reload.
const RELOAD_SEEN: Duration = Duration::from_secs(5);
/// How long a reload may stay unseen before it is signalled again.
const RESIGNAL: Duration = Duration::from_millis(500);
/// How often the catch-up of the new set is checked.
const POLL: Duration = Duration::from_millis(20);
/// One question to our own Postgres.
const ASK: Duration = Duration::from_secs(2);

/// Whether going from `running` to `new` moves a primary to another
/// safekeeper set (both with safekeepers, different members).
pub(super) fn is_move(running: &ComputeSpec, new: &ComputeSpec) -> bool {
    is_durable(running)
        && is_durable(new)
        && !same_members(&running.safekeeper_connstrings, &new.safekeeper_connstrings)
}

impl<E: Env> Compute<E> {
    /// Steps 1 to 3 of a move (see the module), one phase each: once this
    /// returns `Ok`, a majority of the new set holds every commit this
    /// compute acknowledged, and the caller writes the new set's config. A
    /// failure is reported after the old config was put back.
    pub(super) async fn move_safekeepers(
        &self,
        running: &ComputeSpec,
        new: &ComputeSpec,
        pid: u32,
    ) -> Result<(), Stop> {
        let t0 = self.env.now();
        let old_sks = self.safekeepers_of(running)?;
        let new_sks = self.safekeepers_of(new)?;
        let names = |s: &[Safekeeper]| s.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
        let joint = JointQuorum::of(&names(&old_sks), &names(&new_sks));
        // The union, new first: pg_hba.conf admits both sets.
        let mut union = new.clone();
        for (sk, conn) in old_sks.iter().zip(&running.safekeeper_connstrings) {
            if !new_sks.iter().any(|n| n.name == sk.name) {
                union.safekeeper_connstrings.push(conn.clone());
            }
        }
        tracing::info!(from = ?names(&old_sks), to = ?names(&new_sks), joint = %joint.standby_names(), "moving to another safekeeper set through their joint quorum");

        let moved = async {
            let own = self.own_endpoint()?;
            self.phase(
                Phase::ReconfigureSafekeepersJoint,
                self.joint_in_force(&own, &union, &joint, pid),
            )
            .await?;
            let target = self
                .phase(
                    Phase::ReconfigureSafekeepersAnnounce,
                    self.announce_new(&own, &old_sks, &new_sks),
                )
                .await?;
            self.phase(
                Phase::ReconfigureSafekeepersCatchUp,
                self.new_set_catch_up(&new_sks, target),
            )
            .await?;
            Ok::<_, Stop>(target)
        };
        let reason = match moved.await {
            Ok(target) => {
                tracing::info!(caught_up_to = %target, took_ms = ms(self.env.now() - t0), "a majority of the new safekeeper set holds every acknowledged commit");
                return Ok(());
            }
            Err(Stop::Failed(reason)) => reason,
            Err(interrupted) => return Err(interrupted),
        };
        Err(self.put_back_old_set(running, pid, reason).await.into())
    }

    /// A move that failed for `reason`: the old set's config written back
    /// and reloaded (under the joint quorum, commits kept waiting for a
    /// majority of the old set, so it holds every one of them).
    async fn put_back_old_set(
        &self,
        running: &ComputeSpec,
        pid: u32,
        reason: impl std::fmt::Display,
    ) -> FailReason {
        let restored = match pg::write_config(&self.env, &self.params, running).await {
            Ok(()) => self.env.signal(pid, Signal::Hup).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let after = match restored {
            Ok(()) => {
                "the previous safekeeper set's config was put back (its majority still holds every commit); fix the new set and send the spec again".to_string()
            }
            Err(e) => format!("putting the previous config back failed too: {e}"),
        };
        FailReason::SafekeeperMove(format!(
            "moving to the new safekeeper set failed: {reason}; {after}"
        ))
    }

    /// Step 1: the joint config written, reloaded, and shown in force.
    async fn joint_in_force(
        &self,
        own: &Endpoint,
        union: &ComputeSpec,
        joint: &JointQuorum,
        pid: u32,
    ) -> Result<(), FailReason> {
        let failed = FailReason::SafekeeperMove;
        pg::write_config_joint(&self.env, &self.params, union, joint)
            .await
            .map_err(|e| failed(format!("writing the joint config: {e}")))?;
        self.env
            .signal(pid, Signal::Hup)
            .map_err(|e| failed(format!("reloading Postgres (SIGHUP to pid {pid}): {e}")))?;
        self.quorum_in_force(own, &joint.standby_names(), pid, "the joint quorum")
            .await
    }

    /// Step 4's end, after the new set's config was written and reloaded:
    /// its quorum shown in force before the move is answered, the reload
    /// signalled again while it is not. A reload that did not take leaves
    /// the joint quorum in force, which still counts the old members: once
    /// the control plane retires them, commits would wait for every
    /// remaining one. Best effort: the old set is never put back here
    /// (once the new config may be in force, a commit may be on a majority
    /// of the new set only), so a quorum still not seen is logged and the
    /// move answered, as before this check.
    pub(super) async fn new_set_in_force(&self, new: &ComputeSpec, pid: u32) {
        let shown = async {
            let own = self.own_endpoint()?;
            let names: Vec<String> = self
                .safekeepers_of(new)?
                .into_iter()
                .map(|s| s.name)
                .collect();
            let want = crate::spec::synchronous_standby_names(&names);
            self.quorum_in_force(&own, &want, pid, "the new set's quorum")
                .await
        };
        if let Err(e) = shown.await {
            tracing::warn!(error = %e, "the new safekeeper set's quorum is not shown in force; its config is written and Postgres signalled, and until Postgres reads it commits wait for the joint quorum, which holds a majority of the new set");
        }
    }

    /// Polls `SHOW synchronous_standby_names` until it is `want` (`what`
    /// names it in the error), at most [`RELOAD_SEEN`]; the reload is
    /// signalled again every [`RESIGNAL`] while it is not seen (a SIGHUP
    /// re-reads the files on disk, which hold `want`).
    async fn quorum_in_force(
        &self,
        own: &Endpoint,
        want: &str,
        pid: u32,
        what: &str,
    ) -> Result<(), FailReason> {
        let failed = FailReason::SafekeeperMove;
        let t0 = self.env.now();
        let mut signalled = t0;
        loop {
            let row = own
                .query_row(&self.env, "SHOW synchronous_standby_names", ASK)
                .await
                .map_err(|e| failed(format!("checking {what}: {e}")))?;
            if storage::column(&row, 0) == Some(want) {
                return Ok(());
            }
            let now = self.env.now();
            if now >= t0 + RELOAD_SEEN {
                return Err(failed(format!(
                    "Postgres did not take {what} {want} within {RELOAD_SEEN:?}"
                )));
            }
            if now >= signalled + RESIGNAL {
                tracing::warn!(
                    want,
                    "{what} is not in force yet; signalling the reload again"
                );
                self.env.signal(pid, Signal::Hup).map_err(|e| {
                    failed(format!("reloading Postgres (SIGHUP to pid {pid}): {e}"))
                })?;
                signalled = now;
            }
            self.env.sleep(POLL).await;
        }
    }

    /// Step 2: the new members pointed at this compute; returns our flush
    /// LSN, which bounds every commit acknowledged so far.
    async fn announce_new(
        &self,
        own: &Endpoint,
        old_sks: &[Safekeeper],
        new_sks: &[Safekeeper],
    ) -> Result<Lsn, FailReason> {
        let fresh: Vec<Safekeeper> = new_sks
            .iter()
            .filter(|n| !old_sks.iter().any(|o| o.name == n.name))
            .cloned()
            .collect();
        for (sk, r) in fresh.iter().zip(self.announce_all(&fresh).await) {
            if let Err(e) = r {
                tracing::warn!(safekeeper = %sk.endpoint.shown, error = %e, "cannot announce to a new safekeeper yet; retried while the move waits");
            }
        }

        // Every commit acknowledged under the old quorum was flushed here
        // before it was acknowledged, and the old quorum is out of force
        // once the joint one is (checked above; a WAL sender re-reads its
        // config before it handles the next reply): so our flush LSN now
        // bounds them all.
        let failed = |e: String| FailReason::SafekeeperMove(format!("reading our flush LSN: {e}"));
        let row = own
            .query_row(&self.env, "SELECT pg_current_wal_flush_lsn()::text", ASK)
            .await
            .map_err(|e| failed(e.to_string()))?;
        row.first()
            .cloned()
            .flatten()
            .unwrap_or_default()
            .parse::<Lsn>()
            .map_err(|e| failed(e.to_string()))
    }

    /// Step 3: until a majority of the new set flushed up to `target`.
    async fn new_set_catch_up(
        &self,
        new_sks: &[Safekeeper],
        target: Lsn,
    ) -> Result<(), FailReason> {
        let deadline = self.env.now() + self.params.quorum_deadline;
        let mut next_announce = self.env.now() + Duration::from_secs(2);
        let own = self
            .state()
            .safekeepers
            .map(|s| s.quorum.own)
            .unwrap_or_default();
        loop {
            let members = self.sample_safekeepers(new_sks, &own, false).await;
            let reached: Vec<Lsn> = members.iter().filter_map(|m| m.flush_lsn).collect();
            if storage::commit_lsn(new_sks.len(), &reached).is_some_and(|l| l >= target) {
                return Ok(());
            }
            let now = self.env.now();
            if now >= deadline {
                let members = self.sample_safekeepers(new_sks, &own, true).await;
                return Err(FailReason::SafekeeperMove(format!(
                    "no majority of the new safekeeper set flushed up to {target} within {:?} (--quorum-deadline-secs): {}",
                    self.params.quorum_deadline,
                    super::durable::describe(&members)
                )));
            }
            if now >= next_announce {
                next_announce = now + Duration::from_secs(2);
                self.announce_not_streaming(new_sks, &members).await;
            }
            self.env.sleep(POLL).await;
        }
    }
}
