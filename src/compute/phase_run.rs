//! How a phase runs: [`Compute::phase`] marks its entry (the failpoint),
//! runs its work inside its span, cut short by a terminate or the
//! postmaster's exit when the phase allows it, and times it. An operation
//! is a sequence of `self.phase(Phase::X, work).await?`; its error,
//! [`Stop`], is either a [`FailReason`] (which the supervisor loop turns
//! into the failed status, in one place) or an interruption.

use std::future::Future;
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use tracing::Instrument;

use super::phase::{Operation, Phase, Stage};
use super::supervisor::Interrupted;
use super::timings::PhaseClock;
use super::{CatalogInterrupted, Compute, FailReason};
use crate::catalog;
use crate::env::Env;
use crate::spec::ComputeSpec;

/// Why an operation ended before it applied.
pub(super) enum Stop {
    /// It failed: the compute goes to `failed` with this reason.
    Failed(FailReason),
    /// A terminate request or the postmaster's exit cut it short.
    Interrupted(Interrupted),
}

impl From<FailReason> for Stop {
    fn from(r: FailReason) -> Self {
        Stop::Failed(r)
    }
}

impl From<Interrupted> for Stop {
    fn from(i: Interrupted) -> Self {
        Stop::Interrupted(i)
    }
}

impl<E: Env> Compute<E> {
    fn clock(&self) -> MutexGuard<'_, PhaseClock> {
        // The clock holds durations only: nothing a panic could break.
        self.phases.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The time spent so far in `stage`'s phases of the operation under way.
    pub(super) fn took(&self, stage: Stage) -> Duration {
        self.clock().stage(stage)
    }

    /// A new operation begins: no phase run yet.
    pub(super) fn begin_phases(&self) {
        *self.clock() = PhaseClock::default();
    }

    /// Runs `phase`: its failpoint, then `work` inside its span, timed.
    pub(super) async fn phase<T>(
        &self,
        phase: Phase,
        work: impl Future<Output = Result<T, FailReason>>,
    ) -> Result<T, Stop> {
        self.env.failpoint(phase.name());
        self.clock().enter(phase, &self.metrics);
        let t0 = self.env.now();
        let work = work.instrument(self.spans.phase(phase));
        let out = if phase.interruptible() {
            self.guarded(work).await?
        } else {
            work.await
        };
        self.clock().leave(phase, self.env.now() - t0);
        Ok(out?)
    }

    /// The last phase of an operation (`*.done`): its failpoint only.
    pub(super) fn done(&self, phase: Phase) {
        self.env.failpoint(phase.name());
        let mut clock = self.clock();
        clock.enter(phase, &self.metrics);
        clock.leave(phase, Duration::ZERO);
    }

    /// The operation completed after `total`: its durations are observed,
    /// and returned for its timings.
    pub(super) fn finish_phases(&self, operation: Operation, total: Duration) -> PhaseClock {
        let mut clock = self.clock();
        clock.finish(operation, total, &self.metrics);
        std::mem::take(&mut *clock)
    }

    /// Runs `work` until a terminate request or the postmaster's exit.
    pub(super) async fn guarded<T>(&self, work: impl Future<Output = T>) -> Result<T, Interrupted> {
        let mut rx = self.subscribe();
        let terminate = rx.wait_for(|st| st.status.is_terminating());
        tokio::select! {
            biased;
            exit = self.postmaster_exit() => Err(Interrupted::PostmasterExited(exit)),
            _ = terminate => Err(Interrupted::Terminate),
            out = work => Ok(out),
        }
    }

    /// The catalog apply as `phase`. When a terminate or the postmaster's
    /// exit cuts it short, `/status.catalog_interrupted` and the log say how
    /// far it got (statements executed of planned, from its progress handle,
    /// counted as each answer is read, so never more than ran); each
    /// statement commits on its own, and the next apply plans from what the
    /// catalog then holds.
    pub(super) async fn catalog_pass(
        &self,
        phase: Phase,
        spec: &ComputeSpec,
    ) -> Result<catalog::CatalogReport, Stop> {
        self.catalog_pass_planned(phase, spec, None).await
    }

    /// [`catalog_pass`](Self::catalog_pass) of a plan made earlier for
    /// `spec` (`catalog::plan_apply`, while the start waited for its
    /// quorum), or of a new one when `planned` is `None`.
    pub(super) async fn catalog_pass_planned(
        &self,
        phase: Phase,
        spec: &ComputeSpec,
        planned: Option<catalog::PlannedApply>,
    ) -> Result<catalog::CatalogReport, Stop> {
        let operation = phase.operation().name();
        let progress = catalog::Progress::new(&self.metrics, operation);
        let applied = self
            .phase(phase, async {
                let planned = match planned {
                    Some(p) => p,
                    None => catalog::plan_apply(&self.env, &self.params, spec)
                        .await
                        .map_err(|e| FailReason::Catalog(e.to_string()))?,
                };
                planned
                    .run(&self.env, &self.params, spec, &progress)
                    .await
                    .map_err(|e| FailReason::Catalog(e.to_string()))
            })
            .await;
        if let Err(Stop::Interrupted(why)) = &applied {
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
        applied
    }
}
