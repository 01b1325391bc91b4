//! A reconfigure of running Postgres, phase by phase (`phase.rs` names
//! them): a safekeeper move when the set changes (`safekeeper_move.rs`),
//! the config written, checked, reloaded by signal, then (unless
//! `skip_pg_catalog_updates`, or on a replica) the catalog.

use std::sync::Arc;

use super::phase::{Operation, Phase};
use super::phase_run::Stop;
use super::{Compute, FailReason, ReconfigureTimings, safekeeper_move};
use crate::env::{Env, Signal};
use crate::pg;
use crate::planted::{self, Bug};
use crate::spec::{ComputeMode, ComputeSpec};
use crate::state::Event;

impl<E: Env> Compute<E> {
    pub(super) async fn reconfigure(&self) -> Result<(), Stop> {
        let previous = self.state().spec;
        let Some((spec, generation)) = self.begin(Event::BeginReconfigure) else {
            return Ok(());
        };
        self.begin_phases();
        let t0 = self.env.now();
        let Some(pid) = self.postmaster_pid() else {
            return Err(FailReason::PostgresNotRunning.into());
        };
        // A primary moved to another safekeeper set passes through the
        // joint quorum of both first (safekeeper_move.rs).
        let moved = previous
            .as_deref()
            .filter(|r| safekeeper_move::is_move(r, &spec));
        if let Some(running) = moved {
            if let Err(stop) = self.move_safekeepers(running, &spec, pid).await {
                self.state
                    .send_modify(|st| st.spec = Some(Arc::new(running.clone())));
                return Err(stop);
            }
        }
        let write = self.phase(Phase::ReconfigureWriteConfig, async {
            pg::write_config(&self.env, &self.params, &spec)
                .await
                .map_err(|e| {
                    FailReason::WriteConfig(format!("writing Postgres configuration failed: {e}"))
                })
        });
        // The check's session takes the reloads pending on it while the
        // file is written, not inside the check (pg::absorb_pending_reloads).
        // Polled first: its statement is on its way before the write, whose
        // file calls may block this thread, begins.
        let absorb = pg::absorb_pending_reloads(&self.env, &self.check_session);
        futures::future::join(absorb, write).await.1?;
        self.phase(Phase::ReconfigureReload, async {
            self.reload(&spec, previous.as_deref(), pid).await?;
            if moved.is_some() {
                self.new_set_in_force(&spec, pid).await;
            }
            Ok(())
        })
        .await?;

        // A replica never runs the catalog, whatever the flag.
        let catalog_allowed = !spec.skip_pg_catalog_updates && spec.mode == ComputeMode::Primary;
        let mut catalog_statements = 0;
        if catalog_allowed || planted::active(Bug::CatalogDespiteSkipFlag) {
            let report = self.catalog_pass(Phase::ReconfigureCatalog, &spec).await?;
            catalog_statements = report.executed;
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
        self.done(Phase::ReconfigureDone);
        let total = self.env.now() - t0;
        let clock = self.finish_phases(Operation::Reconfigure, total);
        let timings = ReconfigureTimings::from_phases(&clock, &spec, catalog_statements, total);
        tracing::info!(?timings, "reconfigured");
        let _ = self.apply_event(Event::Reconfigured, |st| {
            st.applied_generation = generation;
            st.last_reconfigure = Some(timings);
            st.pending_restart = pending_restart;
        });
        Ok(())
    }

    /// Whether Postgres takes the written config (one `pg_file_settings`
    /// query; see `config_check.rs`), then SIGHUP to the postmaster.
    async fn reload(
        &self,
        spec: &ComputeSpec,
        previous: Option<&ComputeSpec>,
        pid: u32,
    ) -> Result<(), FailReason> {
        self.check_written(spec, previous, pid).await?;
        let reloaded = if planted::active(Bug::ReloadViaSql) {
            pg::reload_via_sql(&self.env, &self.params.conn).await
        } else {
            self.env.signal(pid, Signal::Hup)
        };
        reloaded.map_err(|e| {
            FailReason::Reload(format!(
                "reloading Postgres (SIGHUP to pid {pid}) failed: {e}"
            ))
        })
    }
}
