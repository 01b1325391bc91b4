//! The supervisor core: the compute's shared state and the operations the
//! HTTP API and the binary call on it. The long-running loop that starts,
//! reconfigures and stops Postgres is in [`supervisor`].

mod config_check;
mod deprecations;
mod durable;
mod failure;
mod internal_ops;
mod phase;
mod phase_run;
mod promote;
mod reconfigure;
mod replication;
mod safekeeper_move;
mod settings_memory;
mod source_major;
mod start;
mod supervisor;
mod timings;
mod tls;
mod trace;

pub use tls::{TLS_POLL, TlsStatus};

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

pub use crate::env::ms;
pub use crate::params::{ComputeParams, ConnTarget, ConnstrError};
pub use config_check::ConfigRefused;
pub use deprecations::deprecations;
pub use durable::SafekeepersState;
pub use failure::FailReason;
pub use phase::{Operation, Part, Phase, Stage};
pub use promote::{PromoteJob, PromoteOutcome, PromoteRefused, PromoteTicket, PromoteTimings};
pub use settings_memory::FillCacheError;
pub use supervisor::RunOutcome;
pub use timings::{CatalogInterrupted, ReconfigureTimings, StartupTimings};

use crate::env::Env;
use crate::metrics::Metrics;
use crate::spec::ComputeSpec;
use crate::state::{ComputeStatus, Event, IllegalTransition, transition};

/// How to stop Postgres.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TerminateMode {
    /// SIGINT: roll back transactions, disconnect, shut down cleanly.
    #[default]
    Fast,
    /// SIGQUIT: stop at once (recovery on next start).
    Immediate,
}

/// Everything observable about the compute; published on a watch channel.
#[derive(Debug, Clone)]
pub struct ComputeState {
    pub status: ComputeStatus,
    /// Why the compute is Failed (`failure`'s words).
    pub error: Option<String>,
    /// Why the compute is Failed, typed (`/status.failure_kind` is its kind).
    pub failure: Option<FailReason>,
    pub start_time: SystemTime,
    /// Last time a client (not the supervisor) was seen active.
    pub last_active: Option<SystemTime>,
    /// The spec in effect (last applied, or being applied).
    pub spec: Option<Arc<ComputeSpec>>,
    /// A spec accepted but not yet picked up by the supervisor.
    pub pending: Option<Arc<ComputeSpec>>,
    /// Counts accepted specs; a configure request waits for its generation.
    pub generation: u64,
    /// The generation that was last applied successfully.
    pub applied_generation: u64,
    /// Whether Postgres was started (reconfigure vs first start).
    pub postgres_started: bool,
    pub terminate_mode: Option<TerminateMode>,
    pub startup: StartupTimings,
    pub last_reconfigure: Option<ReconfigureTimings>,
    /// Settings that changed but take effect only after a restart.
    pub pending_restart: Vec<String>,
    /// The supervisor loop has returned; Postgres is not running any more.
    pub supervisor_exited: bool,
    /// The last WAL position once terminated after a clean shutdown
    /// (`/terminate`'s `lsn`; see `pg::shutdown_checkpoint_lsn`).
    pub terminate_lsn: Option<String>,
    /// Storage as this compute sees it: the commit LSN and base backup at
    /// start and, for a replica or static compute, what its WAL receiver
    /// does (sampled). `None` for a primary without safekeepers.
    pub replication: Option<crate::storage::ReplicationStatus>,
    /// The last catalog apply, when a terminate or the postmaster's exit cut
    /// it short; cleared by the next apply that completes.
    pub catalog_interrupted: Option<CatalogInterrupted>,
    /// The first spec came with the launch (command line, `--config`, the
    /// control plane's pull), not by `POST /configure`: `/status` then shows
    /// Neon's order, `init` until Postgres runs, never `configuration_pending`.
    pub start_spec: bool,
    /// A primary with safekeepers: each safekeeper's state and the quorum
    /// (sampled every second once running). `None` otherwise.
    pub safekeepers: Option<SafekeepersState>,
    /// The last configure whose config Postgres refused (pg_file_settings)
    /// (rolled back); cleared by the next configure that applies.
    pub config_refused: Option<ConfigRefused>,
    /// The major of the Postgres binary, once its settings catalogue was read.
    pub pg_major: Option<u32>,
    /// Postgres' TLS pair in force and the last refused rotation (`--tls-cert`).
    pub tls: Option<TlsStatus>,
    /// The last `POST /promote` and its outcome (`promote.rs`).
    pub promote: Option<PromoteJob>,
}

/// Why a spec was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("another configuration is in progress (status {0}); retry when it has finished")]
    Busy(ComputeStatus),
    #[error(
        "cannot configure a compute in status {0}; configure is allowed when empty, running, or failed with Postgres still running"
    )]
    WrongState(ComputeStatus),
    /// The spec's safekeeper set is older than the one in effect.
    #[error("{0}; nothing was changed")]
    StaleSafekeepers(String),
}

/// What happened to an accepted spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    /// Queued as this generation.
    Accepted(u64),
    /// Its `operation_uuid` is the one in effect: nothing to do.
    AlreadyApplied,
}

/// The supervisor of one compute.
pub struct Compute<E: Env> {
    env: E,
    params: ComputeParams,
    metrics: Metrics,
    state: watch::Sender<ComputeState>,
    /// What a reconfigure compares against to report pending restarts; set
    /// once, when Postgres is started.
    restart_basis: std::sync::OnceLock<supervisor::RestartBasis>,
    /// The settings of `params.pgbin`, read once (`None`: it could not be read).
    settings_catalogue: tokio::sync::OnceCell<Option<Arc<crate::pg::SettingsCatalogue>>>,
    /// The binary's listing and cache entry, when `--settings-cache` is on.
    binary_listing: std::sync::OnceLock<settings_memory::KeptListing>,
    /// Names `--describe-config` does not list, and whether Postgres knows them.
    unlisted_settings: std::sync::Mutex<std::collections::BTreeMap<String, bool>>,
    /// What the binary said of (name, value) pairs only it can judge
    /// (`config_check`: enum values, numbers with units).
    judged_settings: std::sync::Mutex<config_check::Judged>,
    /// The base unit of integer settings met in specs (`None`: it takes
    /// none, or the binary could not say), learnt once per name.
    setting_units:
        std::sync::Mutex<std::collections::BTreeMap<String, Option<crate::pg::BaseUnit>>>,
    /// The session the check of every written config runs on, held open.
    check_session: crate::pg::HeldSession,
    /// The session the safekeepers' watcher asks `pg_stat_replication` on.
    watch_session: crate::pg::HeldSession,
    /// The spans of the operation under way (exported over OpenTelemetry).
    spans: trace::Spans,
    /// The running postmaster; set and cleared by the supervisor loop only.
    postmaster: watch::Sender<Option<supervisor::Postmaster>>,
    /// The phases of the operation under way and how long they took.
    phases: std::sync::Mutex<timings::PhaseClock>,
}

/// The activity monitor's view of the compute (the monitor sits below
/// `compute/` and sees it through this trait only).
impl<E: Env + Send + Sync + 'static> crate::monitor::Watched for Compute<E> {
    type Env = E;

    fn env(&self) -> &E {
        &self.env
    }

    fn conn(&self) -> &crate::params::ConnTarget {
        &self.params.conn
    }

    fn activity_interval(&self) -> std::time::Duration {
        self.params.activity_interval
    }

    fn lifecycle(&self) -> (ComputeStatus, bool) {
        let st = self.state.borrow();
        (st.status, st.postgres_started)
    }

    fn terminating(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        let mut rx = self.subscribe();
        async move {
            // An error: the compute is gone, which ends the monitor too.
            let _ = rx.wait_for(|st| st.status.is_terminating()).await;
        }
    }

    fn record_activity(&self, at: SystemTime) {
        Compute::record_activity(self, at);
    }
}

impl<E: Env> Compute<E> {
    pub fn new(env: E, params: ComputeParams) -> Arc<Self> {
        let state = ComputeState {
            status: ComputeStatus::Empty,
            error: None,
            failure: None,
            start_time: env.wall_clock(),
            last_active: None,
            spec: None,
            pending: None,
            generation: 0,
            applied_generation: 0,
            postgres_started: false,
            terminate_mode: None,
            startup: StartupTimings::default(),
            last_reconfigure: None,
            pending_restart: Vec::new(),
            supervisor_exited: false,
            terminate_lsn: None,
            replication: None,
            catalog_interrupted: None,
            start_spec: false,
            safekeepers: None,
            config_refused: None,
            pg_major: None,
            tls: None,
            promote: None,
        };
        let clock = env.clone();
        let metrics = Metrics::with_clock(Box::new(move || clock.now()));
        metrics.set_status(ComputeStatus::Empty);
        Arc::new(Self {
            env,
            params,
            metrics,
            state: watch::Sender::new(state),
            restart_basis: std::sync::OnceLock::new(),
            settings_catalogue: tokio::sync::OnceCell::new(),
            binary_listing: std::sync::OnceLock::new(),
            unlisted_settings: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            judged_settings: std::sync::Mutex::new(config_check::Judged::new()),
            setting_units: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            check_session: crate::pg::HeldSession::default(),
            watch_session: crate::pg::HeldSession::default(),
            spans: trace::Spans::default(),
            postmaster: watch::Sender::new(None),
            phases: std::sync::Mutex::new(timings::PhaseClock::default()),
        })
    }

    /// The environment every effect of this compute goes through.
    pub fn env(&self) -> &E {
        &self.env
    }

    /// What is not in the spec (paths, the `-C` target, timeouts); fixed
    /// once the compute is made.
    pub fn params(&self) -> &ComputeParams {
        &self.params
    }

    /// The compute's metrics (`/metrics`), for the edges that count into
    /// them or render them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A copy of the current state.
    pub fn state(&self) -> ComputeState {
        self.state.borrow().clone()
    }

    /// The parameter contexts and the spec Postgres was started with, once
    /// it was (for dry runs, which judge reload against restart).
    pub fn restart_basis(&self) -> Option<(&crate::pg::SettingContexts, &ComputeSpec)> {
        self.restart_basis
            .get()
            .map(|b| (&b.contexts, b.started_with.as_ref()))
    }

    /// A receiver that sees every state change.
    pub fn subscribe(&self) -> watch::Receiver<ComputeState> {
        self.state.subscribe()
    }

    /// Applies a state-machine event; the state is untouched when it is illegal.
    fn apply_event(
        &self,
        event: Event,
        f: impl FnOnce(&mut ComputeState),
    ) -> Result<ComputeStatus, IllegalTransition> {
        let mut result = Err(IllegalTransition {
            from: ComputeStatus::Empty,
            event,
        });
        self.state
            .send_if_modified(|st| match transition(st.status, event) {
                Ok(next) => {
                    tracing::info!(from = %st.status, to = %next, ?event, "status change");
                    st.status = next;
                    f(st);
                    result = Ok(next);
                    true
                }
                Err(e) => {
                    result = Err(e);
                    false
                }
            });
        if let Ok(s) = result {
            self.metrics.set_status(s);
        }
        result
    }

    /// [`Compute::submit`] of the spec the compute was launched with (see
    /// [`ComputeState::start_spec`]).
    pub fn submit_start_spec(&self, spec: ComputeSpec) -> Result<Submitted, SubmitError> {
        let submitted = self.submit(spec)?;
        self.state.send_modify(|st| st.start_spec = true);
        Ok(submitted)
    }

    /// Accepts a validated spec for the supervisor to apply (first start or reconfigure).
    pub fn submit(&self, spec: ComputeSpec) -> Result<Submitted, SubmitError> {
        let mut out = Err(SubmitError::WrongState(ComputeStatus::Empty));
        let spec = Arc::new(spec);
        self.state.send_if_modified(|st| {
            let stale = st
                .spec
                .as_deref()
                .and_then(|running| crate::spec::stale_safekeepers(running, &spec));
            out = if st.status == ComputeStatus::Running
                && same_operation(st.spec.as_deref(), &spec)
            {
                Ok(Submitted::AlreadyApplied)
            } else if let Some(why) = stale {
                Err(SubmitError::StaleSafekeepers(why))
            } else {
                // A failed reconfigure leaves Postgres running with the config
                // it had (a write that failed changed nothing): a new spec may
                // repair it. A failed start or a dead postmaster may not.
                let recoverable = st.status != ComputeStatus::Failed
                    || (st.postgres_started && !st.supervisor_exited);
                match transition(st.status, Event::SpecDelivered)
                    .ok()
                    .filter(|_| recoverable)
                {
                    Some(next) => {
                        if st.status == ComputeStatus::Empty {
                            // As Neon: a compute started empty counts from its first spec.
                            st.start_time = self.env.wall_clock();
                        }
                        st.status = next;
                        st.generation += 1;
                        st.pending = Some(spec.clone());
                        // Before the supervisor can see the spec.
                        self.spans.keep_parent();
                        st.error = None;
                        st.failure = None;
                        Ok(Submitted::Accepted(st.generation))
                    }
                    None if st.status.is_configuring() => Err(SubmitError::Busy(st.status)),
                    None => Err(SubmitError::WrongState(st.status)),
                }
            };
            matches!(out, Ok(Submitted::Accepted(_)))
        });
        if let Ok(Submitted::Accepted(g)) = out {
            tracing::info!(generation = g, operation_uuid = ?spec.operation_uuid, "spec accepted");
            if !spec.ignored_fields.is_empty() {
                tracing::info!(fields = ?spec.ignored_fields, "spec fields not used by this compute (Neon-only); see /status ignored_spec_fields");
            }
            self.metrics.set_status(ComputeStatus::ConfigurationPending);
        }
        out
    }

    /// Waits until generation `generation` is applied (Ok) or the compute
    /// failed or is stopping (Err with the reason).
    pub async fn wait_applied(&self, generation: u64) -> Result<ComputeState, String> {
        let mut rx = self.subscribe();
        let st = rx
            .wait_for(|st| {
                (st.applied_generation >= generation && st.status == ComputeStatus::Running)
                    || st
                        .promote
                        .as_ref()
                        .is_some_and(|j| j.generation == generation && j.outcome.is_some())
                    || matches!(
                        st.status,
                        ComputeStatus::Failed
                            | ComputeStatus::TerminationPending
                            | ComputeStatus::Terminated
                    )
            })
            .await
            .map_err(|_| "the supervisor has stopped".to_string())?
            .clone();
        // A promote that failed before the promotion leaves the replica
        // running without applying its generation (`promote.rs`).
        if let Some(PromoteOutcome::Failed(e)) = st
            .promote
            .as_ref()
            .filter(|j| j.generation == generation)
            .and_then(|j| j.outcome.clone())
        {
            return Err(e);
        }
        match st.status {
            ComputeStatus::Running => Ok(st),
            ComputeStatus::Failed => Err(st.error.unwrap_or_else(|| "configuration failed".into())),
            s => Err(format!(
                "the compute is {s}; the configuration was abandoned"
            )),
        }
    }

    /// Asks the supervisor to stop Postgres.
    pub fn request_terminate(
        &self,
        mode: TerminateMode,
    ) -> Result<ComputeStatus, IllegalTransition> {
        let status = self.apply_event(Event::TerminateRequested, |st| {
            // An immediate request upgrades a fast one already under way.
            if st.terminate_mode != Some(TerminateMode::Immediate) {
                st.terminate_mode = Some(mode);
            }
        })?;
        if self.state().supervisor_exited {
            // Nobody is left to stop Postgres, and it is not running: done.
            return Ok(self.apply_event(Event::Stopped, |_| {}).unwrap_or(status));
        }
        Ok(status)
    }

    /// Waits until the compute is Terminated.
    pub async fn wait_terminated(&self) -> ComputeState {
        let mut rx = self.subscribe();
        let r = rx
            .wait_for(|st| st.status == ComputeStatus::Terminated)
            .await;
        match r {
            Ok(st) => st.clone(),
            Err(_) => self.state(),
        }
    }

    /// Records client activity seen by the monitor; `last_active` only moves forward.
    pub fn record_activity(&self, at: SystemTime) {
        self.state.send_if_modified(|st| {
            if st.last_active.is_none_or(|prev| at > prev) {
                st.last_active = Some(at);
                true
            } else {
                false
            }
        });
    }

    /// Sets Failed with a reason (a no-op when already stopping).
    pub fn fail(&self, reason: FailReason) {
        self.record_failure(reason, false);
    }

    /// The one place a [`FailReason`] becomes the failed status (and, for
    /// a promote under way, its outcome): `/status.error` shows its words,
    /// `/status.failure_kind` its kind.
    fn record_failure(&self, reason: FailReason, promote: bool) {
        let text = reason.to_string();
        tracing::error!(reason = %text, kind = reason.kind(), "compute failed");
        let _ = self.apply_event(Event::Fail, |st| {
            if let Some(job) = st
                .promote
                .as_mut()
                .filter(|j| promote && j.outcome.is_none())
            {
                job.outcome = Some(PromoteOutcome::Failed(text.clone()));
            }
            st.error = Some(text);
            st.failure = Some(reason);
        });
    }
}

fn same_operation(applied: Option<&ComputeSpec>, new: &ComputeSpec) -> bool {
    match (
        applied.and_then(|s| s.operation_uuid.as_deref()),
        new.operation_uuid.as_deref(),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
