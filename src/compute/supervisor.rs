//! The supervisor loop: waits for specs and terminate requests, starts,
//! reconfigures and stops Postgres, and watches the postmaster.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::Instrument;

use super::phase_run::Stop;
use super::{Compute, FailReason, TerminateMode};
use crate::env::{Child, Env, ExitInfo, Signal, timeout};
use crate::pg;
use crate::spec::{ComputeMode, ComputeSpec};
use crate::state::{ComputeStatus, Event};

/// Each safekeeper's deadline to say where its WAL is.
pub const SAFEKEEPER_TIMEOUT: Duration = std::time::Duration::from_secs(5);
/// How long the storage may take to reach the commit LSN before the base backup.
pub const WAIT_FOR_LSN_TIMEOUT: Duration = std::time::Duration::from_secs(60);

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
            self.fail(FailReason::Abandoned);
        }
        if self.state().status == ComputeStatus::TerminationPending {
            let _ = self.apply_event(Event::Stopped, |_| {});
        }
        outcome
    }

    async fn run_loop(self: &Arc<Self>) -> RunOutcome {
        let created = self.env.now();
        let mut rx = self.subscribe();
        loop {
            let status = rx.borrow_and_update().status;
            match status {
                ComputeStatus::ConfigurationPending => {
                    let started = self.state().postgres_started;
                    let promote = started && self.promote_requested();
                    let op = self.spans.operation(!started, &self.state.borrow());
                    let result = if promote {
                        self.promote().instrument(op.span.clone()).await
                    } else if started {
                        self.reconfigure().instrument(op.span.clone()).await
                    } else {
                        self.start(created).instrument(op.span.clone()).await
                    };
                    let interrupted = match result {
                        Ok(()) => None,
                        // The one place an operation's failure becomes the status.
                        Err(Stop::Failed(reason)) => {
                            self.record_failure(reason, promote);
                            None
                        }
                        Err(Stop::Interrupted(why)) => Some(why),
                    };
                    self.spans.finish(&op, &self.state.borrow());
                    match interrupted {
                        None => {}
                        Some(Interrupted::Terminate) => continue,
                        Some(Interrupted::PostmasterExited(exit)) => {
                            return self.postmaster_died(exit);
                        }
                    }
                    if !started && self.state().status == ComputeStatus::Failed {
                        let reason = self.state().error.unwrap_or_default();
                        self.stop_postgres(TerminateMode::Immediate).await;
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
                    self.stop_postgres(mode).await;
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
                ComputeStatus::Failed if self.postmaster.borrow().is_none() => {
                    return RunOutcome::Failed(self.state().error.unwrap_or_default());
                }
                ComputeStatus::Terminated => return RunOutcome::Terminated,
                _ => {}
            }
            tokio::select! {
                biased;
                exit = self.postmaster_exit() => {
                    if self.state().status == ComputeStatus::TerminationPending {
                        self.postmaster.send_replace(None);
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

    /// Completes when the postmaster exits; never while there is none.
    pub(super) async fn postmaster_exit(&self) -> PostmasterExit {
        let mut rx = self.postmaster.subscribe();
        let pm = match rx.wait_for(Option::is_some).await {
            Ok(pm) => pm.clone(),
            Err(_) => None,
        };
        match pm {
            Some(mut pm) => pm.exited().await,
            None => std::future::pending().await,
        }
    }

    /// The running postmaster's pid.
    pub(super) fn postmaster_pid(&self) -> Option<u32> {
        self.postmaster.borrow().as_ref().map(|p| p.pid)
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
        self.fail(FailReason::PostgresExited(reason.clone()));
        RunOutcome::Failed(reason)
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
    pub(super) fn streams(&self) -> bool {
        self.state()
            .spec
            .is_some_and(|s| s.mode != ComputeMode::Primary)
    }

    /// Starts a task that waits for the postmaster and reports its exit.
    pub(super) fn watch_postmaster(&self, mut child: E::Child) -> Postmaster {
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
    pub(super) async fn stop_postgres(&self, mode: TerminateMode) {
        let Some(mut pm) = self.postmaster.send_replace(None) else {
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
