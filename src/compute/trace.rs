//! The spans of the supervisor's operations (see `crate::spans`). Each start
//! and reconfigure is a span, a child of the span that was current when its
//! spec was submitted (the HTTP request, which continues the caller's
//! `traceparent`), and each phase is a span inside it, named as the phase
//! (`Compute::phase` in `phase_run.rs` runs its work inside it).
//!
//! Without an exporter every function here returns at its first check
//! (`spans::exported`): no lock, no span.

use std::sync::{Mutex, MutexGuard};

use tracing::Span;
use tracing::field::Empty;

use super::ComputeState;
use super::phase::Phase;
use crate::spans::{self, TARGET};
use crate::state::ComputeStatus;

/// The supervisor's open spans: one operation runs at a time.
#[derive(Default)]
pub(super) struct Spans {
    /// The span current when the pending spec was submitted.
    parent: Mutex<Option<Span>>,
}

fn lock(m: &Mutex<Option<Span>>) -> MutexGuard<'_, Option<Span>> {
    // A span slot holds no invariant a panic could break.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One operation's span and the generation it applies.
pub(super) struct Operation {
    pub(super) span: Span,
    generation: u64,
    start: bool,
}

impl Spans {
    /// Keeps the current span as the parent of the operation just accepted.
    pub(super) fn keep_parent(&self) {
        if spans::exported() {
            *lock(&self.parent) = Some(Span::current());
        }
    }

    /// The span of the operation about to apply `st.pending`.
    pub(super) fn operation(&self, start: bool, st: &ComputeState) -> Operation {
        let generation = st.generation;
        if !spans::exported() {
            return Operation {
                span: Span::none(),
                generation,
                start,
            };
        }
        let parent = lock(&self.parent).take().and_then(|p| p.id());
        let spec = st.pending.as_deref();
        let operation_uuid = spec.and_then(|s| s.operation_uuid.as_deref());
        let skip = spec.is_some_and(|s| s.skip_pg_catalog_updates);
        let span = if start {
            tracing::info_span!(target: TARGET, parent: parent, "start",
                generation, operation_uuid, skip_pg_catalog_updates = skip,
                wait_for_spec_ms = Empty, sync_safekeepers_ms = Empty, basebackup_ms = Empty,
                basebackup_bytes = Empty, prepare_pgdata_ms = Empty, start_postgres_ms = Empty,
                catch_up_ms = Empty, promote_ms = Empty, announce_ms = Empty, quorum_ms = Empty,
                config_ms = Empty, total_startup_ms = Empty,
                otel.status_code = Empty, otel.status_description = Empty)
        } else {
            tracing::info_span!(target: TARGET, parent: parent, "reconfigure",
                generation, operation_uuid, skip_pg_catalog_updates = skip,
                write_config_ms = Empty, reload_ms = Empty, catalog_ms = Empty,
                catalog_statements = Empty, total_ms = Empty,
                otel.status_code = Empty, otel.status_description = Empty)
        };
        Operation {
            span,
            generation,
            start,
        }
    }

    /// Records how `op` ended: its phase durations when it applied, else
    /// the error.
    pub(super) fn finish(&self, op: &Operation, st: &ComputeState) {
        if op.span.is_disabled() {
            return;
        }
        let span = &op.span;
        if st.applied_generation >= op.generation && st.status == ComputeStatus::Running {
            span.record("otel.status_code", "ok");
            if op.start {
                let t = &st.startup;
                for (k, v) in [
                    ("wait_for_spec_ms", t.wait_for_spec_ms),
                    ("sync_safekeepers_ms", t.sync_safekeepers_ms),
                    ("basebackup_ms", t.basebackup_ms),
                    ("basebackup_bytes", t.basebackup_bytes),
                    ("prepare_pgdata_ms", t.prepare_pgdata_ms),
                    ("start_postgres_ms", t.start_postgres_ms),
                    ("catch_up_ms", t.catch_up_ms),
                    ("promote_ms", t.promote_ms),
                    ("announce_ms", t.announce_ms),
                    ("quorum_ms", t.quorum_ms),
                    ("config_ms", t.config_ms),
                    ("total_startup_ms", t.total_startup_ms),
                ] {
                    span.record(k, v);
                }
            } else if let Some(t) = &st.last_reconfigure {
                for (k, v) in [
                    ("write_config_ms", t.write_config_ms),
                    ("reload_ms", t.reload_ms),
                    ("catalog_ms", t.catalog_ms),
                    ("catalog_statements", t.catalog_statements),
                    ("total_ms", t.total_ms),
                ] {
                    span.record(k, v);
                }
            }
        } else {
            let why = match (&st.error, st.status) {
                (Some(e), ComputeStatus::Failed) => e.clone(),
                (_, s) => format!("not applied: the compute is {s}"),
            };
            span.record("otel.status_code", "error");
            span.record("otel.status_description", why.as_str());
        }
    }

    /// The span of `phase`, a child of the operation's (none for `*.done`):
    /// it lasts as long as the phase's work.
    pub(super) fn phase(&self, phase: Phase) -> Span {
        if !spans::exported() || phase.is_done() {
            return Span::none();
        }
        tracing::info_span!(target: TARGET, "phase", otel.name = phase.name(),
            operation = phase.operation().name(), phase = phase.step())
    }
}
