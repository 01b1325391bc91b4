//! The supervisor loop: waits for specs and terminate requests, starts,
//! reconfigures and stops Postgres, and watches the postmaster.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument;

use super::{
    CatalogInterrupted, Compute, ReconfigureTimings, TerminateMode, durable, ms, safekeeper_move,
};
use crate::catalog;
use crate::env::{Child, Env, ExitInfo, Signal, timeout};
use crate::pg;
use crate::planted::{self, Bug};
use crate::spec::{ComputeMode, ComputeSpec, mode_name};
use crate::state::{ComputeStatus, Event};
use crate::storage::{self, Lsn, ReplicationStatus};

/// Each safekeeper's deadline to say where its WAL is.
pub const SAFEKEEPER_TIMEOUT: Duration = std::time::Duration::from_secs(5);
/// How long the storage may take to reach the commit LSN before the base backup.
pub const WAIT_FOR_LSN_TIMEOUT: Duration = std::time::Duration::from_secs(60);

/// The commit LSN, how long the sync took, and a primary with
/// safekeepers' catch-up plan.
type Synced = (Option<Lsn>, Duration, Option<storage::CatchUpPlan>);

/// How the supervisor loop ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// Stopped on request; exit 0.
    Terminated,
    /// Start failed or Postgres died; exit non-zero with this reason.
    Failed(String),
}

/// What a reconfigure compares against to report settings that need a
/// restart: the parameter contexts and the spec Postgres was started with.
pub(super) struct RestartBasis {
    pub(super) contexts: pg::SettingContexts,
    pub(super) started_with: Arc<ComputeSpec>,
}

/// How the postmaster ended, with its last output lines (to say why).
#[derive(Debug, Clone)]
pub(super) struct PostmasterExit {
    info: ExitInfo,
    last_lines: Vec<String>,
}

impl PostmasterExit {
    fn unknown() -> Self {
        Self {
            info: ExitInfo {
                code: None,
                signal: None,
            },
            last_lines: Vec::new(),
        }
    }
}

/// The running postmaster: its pid and a channel that reports its exit.
#[derive(Clone)]
pub(super) struct Postmaster {
    pub(super) pid: u32,
    exit: watch::Receiver<Option<PostmasterExit>>,
}

impl Postmaster {
    /// Completes when the postmaster has exited.
    async fn exited(&mut self) -> PostmasterExit {
        match self.exit.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_else(PostmasterExit::unknown),
            Err(_) => PostmasterExit::unknown(),
        }
    }
}

/// Completes when `pm` exits; never when there is none.
async fn postmaster_exit(pm: &mut Option<Postmaster>) -> PostmasterExit {
    match pm {
        Some(pm) => pm.exited().await,
        None => std::future::pending().await,
    }
}

/// What interrupted a phase.
pub(super) enum Interrupted {
    PostmasterExited(PostmasterExit),
    Terminate,
}

impl<E: Env> Compute<E> {
    /// Runs the compute until it is terminated or fails for good.
    ///
    /// When it returns, Postgres is not running. A terminate request that
    /// raced with a failure (or comes later, while the binary drains its HTTP
    /// requests) is then answered at once: the compute reaches Terminated.
    pub async fn run(self: &Arc<Self>) -> RunOutcome {
        let outcome = self.run_loop().await;
        self.state.send_modify(|st| st.supervisor_exited = true);
        if self.state().status == ComputeStatus::ConfigurationPending {
            // Accepted as the loop ended (a postmaster death racing a retry
            // of a failed reconfigure): nobody is left to apply it.
            self.fail("the supervisor stopped before it could apply the spec".into());
        }
        if self.state().status == ComputeStatus::TerminationPending {
            let _ = self.apply_event(Event::Stopped, |_| {});
        }
        outcome
    }

    async fn run_loop(self: &Arc<Self>) -> RunOutcome {
        let created = self.env.now();
        let mut rx = self.subscribe();
        let mut postmaster: Option<Postmaster> = None;
        loop {
            let status = rx.borrow_and_update().status;
            match status {
                ComputeStatus::ConfigurationPending => {
                    let started = self.state().postgres_started;
                    let op = self.spans.operation(!started, &self.state.borrow());
                    let result = if started && self.promote_requested() {
                        self.promote(&mut postmaster)
                            .instrument(op.span.clone())
                            .await
                    } else if started {
                        self.reconfigure(&mut postmaster)
                            .instrument(op.span.clone())
                            .await
                    } else {
                        self.start(created, &mut postmaster)
                            .instrument(op.span.clone())
                            .await
                    };
                    self.spans.finish(&op, &self.state.borrow());
                    match result {
                        Ok(()) => {}
                        Err(Interrupted::Terminate) => continue,
                        Err(Interrupted::PostmasterExited(exit)) => {
                            return self.postmaster_died(exit);
                        }
                    }
                    if !started && self.state().status == ComputeStatus::Failed {
                        let reason = self.state().error.unwrap_or_default();
                        self.stop_postgres(&mut postmaster, TerminateMode::Immediate)
                            .await;
                        return RunOutcome::Failed(reason);
                    }
                    if !started && self.state().postgres_started && self.streams() {
                        self.watch_replication();
                    }
                    if !started && self.state().safekeepers.is_some() {
                        self.watch_safekeepers();
                    }
                    continue;
                }
                ComputeStatus::TerminationPending => {
                    let mode = self.state().terminate_mode.unwrap_or_default();
                    self.stop_postgres(&mut postmaster, mode).await;
                    let lsn = if self.state().postgres_started {
                        match self.quorum_flushed_lsn().await {
                            Some(l) => Some(l.to_string()),
                            None => self.last_lsn().await,
                        }
                    } else {
                        None
                    };
                    let _ = self.apply_event(Event::Stopped, |st| st.terminate_lsn = lsn);
                    return RunOutcome::Terminated;
                }
                ComputeStatus::Failed if postmaster.is_none() => {
                    return RunOutcome::Failed(self.state().error.unwrap_or_default());
                }
                ComputeStatus::Terminated => return RunOutcome::Terminated,
                _ => {}
            }
            tokio::select! {
                biased;
                exit = postmaster_exit(&mut postmaster) => {
                    if self.state().status == ComputeStatus::TerminationPending {
                        postmaster = None;
                        continue;
                    }
                    return self.postmaster_died(exit);
                }
                changed = rx.changed() => {
                    if changed.is_err() {
                        return RunOutcome::Failed("state channel closed".into());
                    }
                }
            }
        }
    }

    fn postmaster_died(&self, exit: PostmasterExit) -> RunOutcome {
        let status = self.state().status;
        if status == ComputeStatus::TerminationPending {
            let _ = self.apply_event(Event::Stopped, |_| {});
            return RunOutcome::Terminated;
        }
        if status == ComputeStatus::Running && exit.info.success() {
            return self.stopped_from_outside();
        }
        let reason = pg::describe_exit(&exit.info, &exit.last_lines, status == ComputeStatus::Init);
        self.fail(reason.clone());
        RunOutcome::Failed(reason)
    }

    /// Runs a phase, interrupted by postmaster exit or a terminate request.
    pub(super) async fn guarded<T>(
        &self,
        postmaster: &mut Option<Postmaster>,
        phase: impl std::future::Future<Output = T>,
    ) -> Result<T, Interrupted> {
        let mut rx = self.subscribe();
        let terminate = rx.wait_for(|st| {
            matches!(
                st.status,
                ComputeStatus::TerminationPending | ComputeStatus::Terminated
            )
        });
        let mut pm = postmaster.clone();
        tokio::select! {
            biased;
            exit = postmaster_exit(&mut pm) => Err(Interrupted::PostmasterExited(exit)),
            _ = terminate => Err(Interrupted::Terminate),
            out = phase => Ok(out),
        }
    }

    /// The catalog apply as a guarded phase. When a terminate or a
    /// postmaster exit interrupts it, the log says how far it got (statements
    /// executed of planned, from its progress handle, counted per statement
    /// as each answer is read, so never more than ran), so the partial state
    /// is known; the next apply plans from what the catalog then holds.
    pub(super) async fn guarded_catalog(
        &self,
        postmaster: &mut Option<Postmaster>,
        spec: &ComputeSpec,
        operation: &'static str,
    ) -> Result<Result<catalog::CatalogReport, catalog::CatalogError>, Interrupted> {
        let progress = catalog::Progress::new(&self.metrics, operation);
        let out = self
            .guarded(
                postmaster,
                catalog::apply(&self.env, &self.params, spec, &progress)
                    .instrument(self.spans.current_phase()),
            )
            .await;
        if let Err(why) = &out {
            let (planned, executed) = (progress.planned(), progress.executed());
            let (by, cause) = match why {
                Interrupted::Terminate => ("a terminate request", "terminate"),
                Interrupted::PostmasterExited(_) => ("the postmaster's exit", "postmaster_exit"),
            };
            self.state.send_modify(|st| {
                st.catalog_interrupted = Some(CatalogInterrupted {
                    operation,
                    by: cause,
                    planned,
                    executed,
                })
            });
            tracing::warn!(
                operation,
                planned,
                executed,
                "catalog apply interrupted by {by} after {executed} of {planned} statements \
                 (phase catalog of {operation}); each statement commits on its own, so those \
                 stay, and the next apply of the same spec plans from what the catalog then holds"
            );
        } else if self.state.borrow().catalog_interrupted.is_some() {
            self.state.send_modify(|st| st.catalog_interrupted = None);
        }
        out
    }

    /// Takes the pending spec and moves to `event`'s state.
    pub(super) fn begin(&self, event: Event) -> Option<(Arc<ComputeSpec>, u64)> {
        let mut taken = None;
        let _ = self.apply_event(event, |st| {
            taken = st.pending.take().map(|s| (s, st.generation));
            if let Some((s, _)) = &taken {
                st.spec = Some(s.clone());
            }
        });
        taken
    }

    /// Whether the spec in effect makes this compute a standby of its storage.
    fn streams(&self) -> bool {
        self.state()
            .spec
            .is_some_and(|s| s.mode != ComputeMode::Primary)
    }

    /// Steps 1 and 2 of a start: the commit LSN from the safekeepers (when
    /// there are any), then the storage at that LSN (when there is a
    /// source). `Ok(None)` without safekeepers; `Err` is the failure reason.
    /// Also says how long the sync itself took (the wait for the storage
    /// counts as base backup time, as a pageserver waits for the LSN).
    /// A primary with safekeepers gets its catch-up plan instead of the
    /// wait (`compute/durable.rs`).
    async fn sync_storage(&self, spec: &ComputeSpec) -> Result<Synced, String> {
        if spec.safekeeper_connstrings.is_empty() {
            return Ok((None, Duration::ZERO, None));
        }
        self.phase("start.sync_safekeepers");
        let t0 = self.env.now();
        let synced = storage::sync_safekeepers(
            &self.env,
            &spec.safekeeper_connstrings,
            &self.params.conn.user,
            SAFEKEEPER_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
        let commit = synced.commit_lsn;
        let took = self.env.now() - t0;
        tracing::info!(commit_lsn = %commit, answers = ?synced.answers, "safekeepers synced");
        if durable::is_durable(spec) {
            let plan = self.plan_catch_up(spec, &synced.answers).await?;
            return Ok((Some(commit), took, Some(plan)));
        }
        if spec.mode != ComputeMode::Primary && spec.mode != ComputeMode::Replica {
            // A static compute stops at its own LSN.
            return Ok((Some(commit), took, None));
        }
        let Some(source) = spec
            .pageserver_connstring
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        else {
            return Ok((Some(commit), took, None));
        };
        let ep = storage::Endpoint::parse(source, &self.params.conn.user)
            .map_err(|e| format!("pageserver_connstring: {e}"))?;
        tracing::info!(storage = %ep.shown, commit_lsn = %commit, "waiting for the storage to reach the commit LSN");
        let reached = storage::wait_for_lsn(&self.env, &ep, commit, WAIT_FOR_LSN_TIMEOUT)
            .await
            .map_err(|e| format!("the base backup must hold the commit LSN: {e}"))?;
        tracing::info!(storage = %ep.shown, %reached, commit_lsn = %commit, "the storage holds the commit LSN");
        Ok((Some(commit), took, None))
    }

    /// The first start: commit LSN, PGDATA at it, config, Postgres, catalog.
    async fn start(
        &self,
        created: Instant,
        postmaster: &mut Option<Postmaster>,
    ) -> Result<(), Interrupted> {
        let wait_for_spec = self.env.now() - created;
        let Some((spec, generation)) = self.begin(Event::BeginStart) else {
            return Ok(());
        };
        self.state
            .send_modify(|st| st.startup.wait_for_spec_ms = ms(wait_for_spec));
        let t0 = self.env.now();

        let synced = self.guarded(postmaster, self.sync_storage(&spec)).await?;
        let (commit_lsn, sync_took, catch_up) = match synced {
            Ok(c) => c,
            Err(e) => {
                self.fail(e);
                return Ok(());
            }
        };
        let t_synced = t0 + sync_took;

        // A source of another major is refused before the copy (source_major.rs).
        if let Err(e) = self.check_source_major(&spec).await {
            self.fail(e);
            return Ok(());
        }
        self.phase("start.prepare_pgdata");
        let prepared = match &catch_up {
            Some(plan) => {
                self.guarded(postmaster, self.prepare_durable_pgdata(&spec, plan))
                    .await?
            }
            None => self
                .guarded(
                    postmaster,
                    pg::prepare_pgdata(&self.env, &self.params, &spec),
                )
                .await?
                .map_err(|e| format!("preparing PGDATA failed: {e}")),
        };
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                self.fail(e);
                return Ok(());
            }
        };
        let t_pgdata = self.env.now();
        let source = prepared.source;
        let backup = prepared.basebackup.clone().unwrap_or_default();
        let backup_end: Option<Lsn> = backup.end_lsn.as_deref().and_then(|l| l.parse().ok());
        tracing::info!(%source, elapsed_ms = ms(t_pgdata - t0), bytes = backup.bytes, end_lsn = ?backup.end_lsn, "PGDATA prepared");
        let static_lsn = match &spec.mode {
            ComputeMode::Static(l) => l.parse::<Lsn>().ok(),
            _ => None,
        };
        if let (Some(target), Some(end)) = (static_lsn, backup_end) {
            if target <= end {
                self.fail(format!(
                    "the static LSN {target} is not after the end of the base backup ({end}): vanilla Postgres can only stop recovery after the point where its base backup becomes consistent; ask for an LSN after {end}"
                ));
                return Ok(());
            }
        }
        if spec.mode != ComputeMode::Primary || commit_lsn.is_some() {
            let initial = ReplicationStatus {
                mode: mode_name(&spec.mode).to_string(),
                upstream: spec
                    .pageserver_connstring
                    .as_deref()
                    .map(pg::redact_connstr),
                static_lsn,
                commit_lsn,
                basebackup_lsn: backup_end,
                ..Default::default()
            };
            self.state.send_modify(|st| st.replication = Some(initial));
        }
        self.metrics
            .observe_phase("start", "prepare_pgdata", t_pgdata - t0);

        self.phase("start.write_config");
        if let Err(e) = pg::write_config(&self.env, &self.params, &spec).await {
            self.fail(format!("writing Postgres configuration failed: {e}"));
            return Ok(());
        }
        if let Err(e) = self.install_tls_at_start().await {
            self.fail(e);
            return Ok(());
        }
        let contexts = match pg::read_setting_contexts(&self.env, &self.params).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read parameter contexts; pending restarts are judged from a built-in list");
                pg::SettingContexts::builtin()
            }
        };
        let _ = self.restart_basis.set(RestartBasis {
            contexts,
            started_with: spec.clone(),
        });
        self.phase("start.start_postgres");
        match pg::spawn_postgres(&self.env, &self.params).await {
            Ok(child) => *postmaster = Some(self.watch_postmaster(child)),
            Err(e) => {
                self.fail(format!("starting Postgres failed: {e}"));
                return Ok(());
            }
        }
        self.state.send_modify(|st| st.postgres_started = true);
        let ready = self
            .guarded(postmaster, pg::wait_ready(&self.env, &self.params))
            .await?;
        if let Err(e) = ready {
            self.fail(format!("Postgres did not become ready: {e}"));
            return Ok(());
        }
        let t_ready = self.env.now();
        self.metrics
            .observe_phase("start", "start_postgres", t_ready - t_pgdata);
        let mut durable_took = durable::DurableTimings::default();
        if let Some(plan) = &catch_up {
            match self
                .guarded(postmaster, self.promote_and_announce(&spec, plan))
                .await?
            {
                Ok(t) => durable_took = t,
                Err(e) => {
                    self.fail(e);
                    return Ok(());
                }
            }
            for (label, took) in [
                ("catch_up", durable_took.catch_up),
                ("promote", durable_took.promote),
                ("announce", durable_took.announce),
                ("quorum", durable_took.quorum),
            ] {
                self.metrics.observe_phase("start", label, took);
            }
        }
        let t_started = self.env.now();

        // A replica or static compute is read-only: its catalog is the storage's.
        if !spec.skip_pg_catalog_updates && spec.mode == ComputeMode::Primary {
            self.phase("start.catalog");
            let applied = self.guarded_catalog(postmaster, &spec, "start").await?;
            if let Err(e) = applied {
                self.fail(format!("applying the spec to the catalog failed: {e}"));
                return Ok(());
            }
        }
        self.phase("start.done");
        let t_done = self.env.now();
        self.metrics
            .observe_phase("start", "config", t_done - t_started);
        self.metrics
            .observe_phase("start", "total", t_done - t0 + wait_for_spec);
        let _ = self.apply_event(Event::Started, |st| {
            st.applied_generation = generation;
            st.startup.sync_safekeepers_ms = ms(t_synced - t0);
            if prepared.basebackup.is_some() {
                st.startup.basebackup_ms = ms(t_pgdata - t_synced);
                st.startup.basebackup_bytes = backup.bytes;
            }
            st.startup.prepare_pgdata_ms = ms(t_pgdata - t0);
            st.startup.start_postgres_ms = ms(t_ready - t_pgdata);
            st.startup.catch_up_ms = ms(durable_took.catch_up);
            st.startup.promote_ms = ms(durable_took.promote);
            st.startup.announce_ms = ms(durable_took.announce);
            st.startup.quorum_ms = ms(durable_took.quorum);
            st.startup.config_ms = ms(t_done - t_started);
            st.startup.total_startup_ms = ms(t_done - t0 + wait_for_spec);
        });
        tracing::info!(timings = ?self.state().startup, "Postgres is running");
        Ok(())
    }

    /// A reconfigure of running Postgres: config, reload by signal, then
    /// (unless `skip_pg_catalog_updates`) the catalog.
    async fn reconfigure(&self, postmaster: &mut Option<Postmaster>) -> Result<(), Interrupted> {
        let previous = self.state().spec;
        let Some((spec, generation)) = self.begin(Event::BeginReconfigure) else {
            return Ok(());
        };
        let t0 = self.env.now();
        let mut timings = ReconfigureTimings {
            operation_uuid: spec.operation_uuid.clone(),
            skip_pg_catalog_updates: spec.skip_pg_catalog_updates,
            ..Default::default()
        };
        let Some(pid) = postmaster.as_ref().map(|p| p.pid) else {
            self.fail("Postgres is not running; cannot reload".into());
            return Ok(());
        };
        // A primary moved to another safekeeper set passes through the
        // joint quorum of both first (safekeeper_move.rs).
        let t_begin = t0;
        let mut t0 = t0;
        if let Some(running) = previous
            .as_deref()
            .filter(|r| safekeeper_move::is_move(r, &spec))
        {
            match self.move_safekeepers(running, &spec, pid).await {
                Ok(took) => timings.safekeeper_move_ms = ms(took),
                Err(reason) => {
                    self.state
                        .send_modify(|st| st.spec = Some(Arc::new(running.clone())));
                    self.fail(reason);
                    return Ok(());
                }
            }
            t0 = self.env.now();
        }
        self.phase("reconfigure.write_config");
        if let Err(e) = pg::write_config(&self.env, &self.params, &spec).await {
            self.fail(format!("writing Postgres configuration failed: {e}"));
            return Ok(());
        }
        let t_written = self.env.now();
        timings.write_config_ms = ms(t_written - t0);
        self.phase("reconfigure.reload");
        let reloaded = if planted::active(Bug::ReloadViaSql) {
            pg::reload_via_sql(&self.env, &self.params.conn).await
        } else {
            self.env.signal(pid, Signal::Hup)
        };
        if let Err(e) = reloaded {
            self.fail(format!(
                "reloading Postgres (SIGHUP to pid {pid}) failed: {e}"
            ));
            return Ok(());
        }
        // Did Postgres take it? (one pg_file_settings query; see config_check)
        if let Err(reason) = self.verify_reload(&spec, previous.as_deref(), pid).await {
            self.fail(reason);
            return Ok(());
        }
        let t_reloaded = self.env.now();
        timings.reload_ms = ms(t_reloaded - t_written);
        self.metrics
            .observe_phase("reconfigure", "write_config", t_written - t0);
        self.metrics
            .observe_phase("reconfigure", "reload", t_reloaded - t_written);

        // A replica never runs the catalog, whatever the flag.
        let catalog_allowed = !spec.skip_pg_catalog_updates && spec.mode == ComputeMode::Primary;
        if catalog_allowed || planted::active(Bug::CatalogDespiteSkipFlag) {
            self.phase("reconfigure.catalog");
            let applied = self
                .guarded_catalog(postmaster, &spec, "reconfigure")
                .await?;
            match applied {
                Ok(report) => timings.catalog_statements = report.executed,
                Err(e) => {
                    self.fail(format!("applying the spec to the catalog failed: {e}"));
                    return Ok(());
                }
            }
            timings.catalog_ms = ms(self.env.now() - t_reloaded);
            self.metrics
                .observe_phase("reconfigure", "catalog", self.env.now() - t_reloaded);
        }
        let pending_restart = self
            .restart_basis
            .get()
            .map(|b| pg::pending_restart(&b.contexts, &b.started_with, &spec))
            .unwrap_or_default();
        if !pending_restart.is_empty() {
            tracing::warn!(
                settings = ?pending_restart,
                "settings changed that take effect only after a restart"
            );
        }
        self.phase("reconfigure.done");
        timings.total_ms = ms(self.env.now() - t_begin);
        self.metrics
            .observe_phase("reconfigure", "total", self.env.now() - t_begin);
        tracing::info!(?timings, "reconfigured");
        let _ = self.apply_event(Event::Reconfigured, |st| {
            st.applied_generation = generation;
            st.last_reconfigure = Some(timings);
            st.pending_restart = pending_restart;
        });
        Ok(())
    }

    /// Starts a task that waits for the postmaster and reports its exit.
    fn watch_postmaster(&self, mut child: E::Child) -> Postmaster {
        let pid = child.pid();
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let info = child.wait().await.unwrap_or(ExitInfo {
                code: None,
                signal: None,
            });
            tracing::info!(pid, exit = %info, "postmaster exited");
            let last_lines = child.recent_output();
            let _ = tx.send(Some(PostmasterExit { info, last_lines }));
        });
        Postmaster { pid, exit: rx }
    }

    /// The last WAL position of the stopped Postgres, for `/terminate`.
    async fn last_lsn(&self) -> Option<String> {
        match pg::shutdown_checkpoint_lsn(&self.env, &self.params).await {
            Ok(lsn) => lsn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the last WAL position; /terminate answers lsn null");
                None
            }
        }
    }

    /// Stops Postgres: `mode`'s signal, then SIGQUIT and SIGKILL if it lingers.
    async fn stop_postgres(&self, postmaster: &mut Option<Postmaster>, mode: TerminateMode) {
        let Some(mut pm) = postmaster.take() else {
            return;
        };
        let first = match mode {
            TerminateMode::Fast => Signal::Int,
            TerminateMode::Immediate => Signal::Quit,
        };
        for sig in [first, Signal::Quit, Signal::Kill] {
            if pm.exit.borrow().is_some() {
                return;
            }
            if let Err(e) = self.env.signal(pm.pid, sig) {
                tracing::warn!(pid = pm.pid, ?sig, error = %e, "signalling Postgres failed");
            }
            if let Ok(exit) = timeout(&self.env, self.params.shutdown_timeout, pm.exited()).await {
                tracing::info!(exit = %exit.info, "Postgres stopped");
                return;
            }
            tracing::warn!(?sig, "Postgres did not stop in time; escalating");
        }
    }
}

impl<E: Env> Compute<E> {
    /// A running Postgres shut down cleanly (exit code 0) without our asking:
    /// `pg_ctl stop` from outside, neon_local's default stop. As Neon's
    /// compute_ctl, end with it, exit 0 (not a failure).
    fn stopped_from_outside(&self) -> RunOutcome {
        tracing::info!(
            "Postgres was shut down from outside (e.g. pg_ctl stop) and exited cleanly; compute_ctl stops too"
        );
        let _ = self.apply_event(Event::TerminateRequested, |_| {});
        let _ = self.apply_event(Event::Stopped, |_| {});
        RunOutcome::Terminated
    }
}
