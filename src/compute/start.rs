//! The first start, phase by phase (`phase.rs` names them): an earlier
//! run's processes stopped, the commit LSN from the safekeepers (while the
//! old PGDATA is removed), PGDATA at it (while the binary judges the spec's
//! settings, `config_check.rs`), the config, Postgres, for a primary
//! with safekeepers its catch-up, promotion, announce and quorum
//! (`durable.rs`), then the catalog.

use std::sync::Arc;

use tokio::time::Instant;

use super::phase::{Operation, Phase};
use super::phase_run::Stop;
use super::supervisor::{RestartBasis, SAFEKEEPER_TIMEOUT, WAIT_FOR_LSN_TIMEOUT};
use super::{Compute, FailReason, StartupTimings, durable, ms};
use crate::env::Env;
use crate::pg;
use crate::spec::{ComputeMode, ComputeSpec, SpecProblem, mode_name};
use crate::state::Event;
use crate::storage::{self, CatchUpPlan, Lsn, ReplicationStatus};

/// What a start's sync gives: the commit LSN, a durable primary's
/// catch-up plan, and the sessions its sync kept (one per safekeeper).
type Synced = (
    Option<Lsn>,
    Option<CatchUpPlan>,
    Vec<Option<storage::OpenSession>>,
);

impl<E: Env> Compute<E> {
    /// The first start; `created` is when the supervisor began waiting
    /// for a spec.
    pub(super) async fn start(&self, created: Instant) -> Result<(), Stop> {
        let wait_for_spec = self.env.now() - created;
        let Some((spec, generation)) = self.begin(Event::BeginStart) else {
            return Ok(());
        };
        self.state
            .send_modify(|st| st.startup.wait_for_spec_ms = ms(wait_for_spec));
        self.begin_phases();
        let t0 = self.env.now();

        // The spec's settings are judged by the binary while the storage is
        // read and PGDATA made: nothing is started before the verdict.
        let storage = async {
            // An earlier run's postmaster is stopped before the safekeepers
            // are asked: left running (compute_ctl killed alone), it is a
            // primary that goes on committing past the LSN the sync reads.
            // Its old PGDATA goes while the safekeepers answer (a removal
            // is never dropped half done: a failed sync waits for it).
            pg::stop_leftovers(&self.env, &self.params)
                .await
                .map_err(|e| pgdata_failed(&spec, e))?;
            let (synced, cleared) = tokio::join!(
                self.sync_storage(&spec),
                pg::clear_pgdata(&self.env, &self.params)
            );
            let (commit_lsn, catch_up, held) = synced?;
            cleared.map_err(|e| pgdata_failed(&spec, e))?;
            // The source's major is checked while the copy runs: a mismatch
            // stops the copy (its process is killed when dropped). The
            // claim runs beside it on the sync's sessions.
            let prepared = self
                .phase(Phase::StartPreparePgdata, async {
                    let ((), prepared, ()) = tokio::try_join!(
                        self.check_source_major(
                            &spec,
                            catch_up
                                .as_ref()
                                .map(|p| (p.backup_source.as_str(), p.backup_major))
                        ),
                        self.prepare(&spec, catch_up.as_ref()),
                        async {
                            match &catch_up {
                                Some(plan) => self.claim_timeline(&spec, plan, held).await,
                                None => Ok(()),
                            }
                        }
                    )?;
                    Ok(prepared)
                })
                .await?;
            Ok::<_, Stop>((commit_lsn, catch_up, prepared))
        };
        let (problems, storage) = tokio::join!(self.setting_problems(&spec, &[]), storage);
        if !problems.is_empty() && !matches!(storage, Err(Stop::Interrupted(_))) {
            return Err(self.refuse_start_settings(&problems).await.into());
        }
        let (commit_lsn, catch_up, prepared) = storage?;
        let backup = prepared.basebackup.clone().unwrap_or_default();
        tracing::info!(source = %prepared.source, elapsed_ms = ms(self.env.now() - t0), bytes = backup.bytes, end_lsn = ?backup.end_lsn, "PGDATA prepared");
        self.record_storage(&spec, commit_lsn, &backup)?;

        self.phase(Phase::StartWriteConfig, self.write_start_config(&spec))
            .await?;
        let ready = self
            .phase(Phase::StartPostgres, self.start_postgres())
            .await?;
        // A replica or static compute is read-only: its catalog is the storage's.
        let catalog = !spec.skip_pg_catalog_updates && spec.mode == ComputeMode::Primary;
        let planned = match &catch_up {
            Some(plan) => {
                self.promote_and_announce(&spec, plan, catalog, ready)
                    .await?
            }
            None => {
                // Nothing asks more of it: no idle session through the start.
                drop(ready);
                None
            }
        };
        if catalog {
            self.catalog_pass_planned(Phase::StartCatalog, &spec, planned)
                .await?;
        }
        self.done(Phase::StartDone);
        let total = self.env.now() - t0 + wait_for_spec;
        let clock = self.finish_phases(Operation::Start, total);
        let timings =
            StartupTimings::from_phases(&clock, wait_for_spec, total, prepared.basebackup.as_ref());
        let _ = self.apply_event(Event::Started, |st| {
            st.applied_generation = generation;
            st.startup = timings;
        });
        tracing::info!(timings = ?self.state().startup, "Postgres is running");
        Ok(())
    }

    /// A spec whose settings the binary refuses: PGDATA, made meanwhile, is
    /// removed (nothing ran in it), and the start fails naming them. A
    /// launch spec comes here; one sent over HTTP was refused with a 400
    /// before it was submitted.
    async fn refuse_start_settings(&self, problems: &[SpecProblem]) -> FailReason {
        if let Err(e) = pg::remove_pgdata(&self.env, &self.params.pgdata).await {
            tracing::warn!(error = %e, pgdata = %self.params.pgdata.display(), "cannot remove the PGDATA made for a refused spec; the next start removes it");
        }
        FailReason::SpecSettings(SpecProblem::join(problems))
    }

    /// With safekeepers: the commit LSN from a majority of them, then the
    /// storage at that LSN (when there is a source; the wait counts as base
    /// backup time, as a pageserver waits for the LSN), or for a primary its
    /// catch-up plan (`durable.rs`) and the sessions its sync kept for the
    /// claim. Nothing without safekeepers.
    async fn sync_storage(&self, spec: &ComputeSpec) -> Result<Synced, Stop> {
        if spec.safekeeper_connstrings.is_empty() {
            return Ok((None, None, Vec::new()));
        }
        let (sks, user) = (&spec.safekeeper_connstrings, &self.params.conn.user);
        if durable::is_durable(spec) {
            let synced = self
                .phase(Phase::StartSyncSafekeepers, async {
                    storage::sync_for_start(&self.env, sks, user, SAFEKEEPER_TIMEOUT)
                        .await
                        .map_err(|e| FailReason::SafekeeperSync(e.to_string()))
                })
                .await?;
            let commit = synced.outcome.commit_lsn;
            tracing::info!(commit_lsn = %commit, answers = ?synced.outcome.answers, "safekeepers synced");
            let plan = self
                .phase(
                    Phase::StartBackupSource,
                    self.plan_catch_up(spec, &synced.outcome),
                )
                .await?;
            return Ok((Some(commit), Some(plan), synced.sessions));
        }
        let synced = self
            .phase(Phase::StartSyncSafekeepers, async {
                storage::sync_safekeepers(&self.env, sks, user, SAFEKEEPER_TIMEOUT)
                    .await
                    .map_err(|e| FailReason::SafekeeperSync(e.to_string()))
            })
            .await?;
        let commit = synced.commit_lsn;
        tracing::info!(commit_lsn = %commit, answers = ?synced.answers, "safekeepers synced");
        if spec.mode != ComputeMode::Primary && spec.mode != ComputeMode::Replica {
            // A static compute stops at its own LSN.
            return Ok((Some(commit), None, Vec::new()));
        }
        let Some(source) = spec
            .pageserver_connstring
            .as_deref()
            .filter(|c| !c.trim().is_empty())
        else {
            return Ok((Some(commit), None, Vec::new()));
        };
        self.phase(Phase::StartBackupSource, self.storage_at(source, commit))
            .await?;
        Ok((Some(commit), None, Vec::new()))
    }

    /// Waits until the storage at `source` holds `commit`.
    async fn storage_at(&self, source: &str, commit: Lsn) -> Result<(), FailReason> {
        let ep = storage::Endpoint::parse(source, &self.params.conn.user)
            .map_err(|e| FailReason::Connstr(format!("pageserver_connstring: {e}")))?;
        tracing::info!(storage = %ep.shown, commit_lsn = %commit, "waiting for the storage to reach the commit LSN");
        let reached = storage::wait_for_lsn(
            &self.env,
            &ep,
            commit,
            WAIT_FOR_LSN_TIMEOUT,
            storage::Polling::Storage,
        )
        .await
        .map_err(|e| {
            FailReason::BackupSource(format!("the base backup must hold the commit LSN: {e}"))
        })?;
        tracing::info!(storage = %ep.shown, %reached, commit_lsn = %commit, "the storage holds the commit LSN");
        Ok(())
    }

    /// The cleared PGDATA filled by initdb or base backup; for a primary
    /// with safekeepers from its planned source, as a standby of the most
    /// advanced safekeeper.
    async fn prepare(
        &self,
        spec: &ComputeSpec,
        catch_up: Option<&CatchUpPlan>,
    ) -> Result<pg::Prepared, FailReason> {
        match catch_up {
            Some(plan) => self.prepare_durable_pgdata(spec, plan).await,
            None => pg::fill_pgdata(&self.env, &self.params, spec, None)
                .await
                .map_err(|e| pgdata_failed(spec, e)),
        }
    }

    /// A static compute's LSN checked against the backup's end, and
    /// `/status.replication` as the start left it.
    fn record_storage(
        &self,
        spec: &ComputeSpec,
        commit_lsn: Option<Lsn>,
        backup: &pg::BaseBackup,
    ) -> Result<(), FailReason> {
        let backup_end: Option<Lsn> = backup.end_lsn.as_deref().and_then(|l| l.parse().ok());
        let static_lsn = match &spec.mode {
            ComputeMode::Static(l) => l.parse::<Lsn>().ok(),
            _ => None,
        };
        if let (Some(target), Some(end)) = (static_lsn, backup_end) {
            if target <= end {
                return Err(FailReason::StaticLsn { target, end });
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
        Ok(())
    }

    /// The config files, the TLS pair, and what later reconfigures compare
    /// against for pending restarts.
    async fn write_start_config(&self, spec: &Arc<ComputeSpec>) -> Result<(), FailReason> {
        pg::write_config(&self.env, &self.params, spec)
            .await
            .map_err(|e| {
                FailReason::WriteConfig(format!("writing Postgres configuration failed: {e}"))
            })?;
        pg::write_override_placeholder(&self.env, &self.params)
            .await
            .map_err(|e| {
                FailReason::WriteConfig(format!("writing Postgres configuration failed: {e}"))
            })?;
        self.install_tls_at_start().await.map_err(FailReason::Tls)?;
        // The listing read at launch (a second `--describe-config` cost a
        // start 25 ms).
        let contexts = match self.settings_catalogue().await.map(|c| c.contexts()) {
            Some(c) if !c.is_empty() => c,
            _ => {
                tracing::warn!(
                    "the binary's setting contexts are unknown (its settings catalogue could not be read); pending restarts are judged from a built-in list"
                );
                pg::SettingContexts::builtin()
            }
        };
        let _ = self.restart_basis.set(RestartBasis {
            contexts,
            started_with: spec.clone(),
        });
        Ok(())
    }

    /// Spawns the postmaster (from then on the supervisor owns it) and
    /// waits until it lets the supervisor in; returns the session that got
    /// in (`pg::wait_ready`).
    async fn start_postgres(&self) -> Result<Option<tokio_postgres::Client>, FailReason> {
        let child = pg::spawn_postgres(&self.env, &self.params)
            .await
            .map_err(|e| FailReason::PostgresStart(e.to_string()))?;
        // In the poll that spawned it: a terminate cannot drop it unowned.
        self.postmaster
            .send_replace(Some(self.watch_postmaster(child)));
        self.state.send_modify(|st| st.postgres_started = true);
        pg::wait_ready(&self.env, &self.params)
            .await
            .map_err(|e| FailReason::PostgresNotReady(e.to_string()))
    }
}

/// A failed PGDATA, as initdb's or the base backup's failure.
fn pgdata_failed(spec: &ComputeSpec, e: pg::PgError) -> FailReason {
    let backup = spec
        .pageserver_connstring
        .as_deref()
        .is_some_and(|c| !c.trim().is_empty());
    if backup {
        FailReason::BaseBackup(e.to_string())
    } else {
        FailReason::Initdb(e.to_string())
    }
}
