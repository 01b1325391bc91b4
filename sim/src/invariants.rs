//! The invariants checked on every seed.
//!
//! - A skip-flag notify issues no catalog statement and no SQL reload, and
//!   at most one statement at all: the `pg_file_settings` check after the
//!   reload (issue 24); it reloads Postgres by signal, and its reconfigure finishes within
//!   [`NOTIFY_BOUND`] of simulated time, whatever the number of roles.
//! - Every status transition the watch channel shows is legal.
//! - After the faults stop, the compute converges to the last accepted spec
//!   (catalog model equals the spec, the running config points at the spec's
//!   storage) or is Failed with a reason that a fault explains.
//! - No HTTP request outlives its deadline on a healthy network (checked in
//!   the driver).
//! - A re-send of an applied `operation_uuid` does no work.
//! - A dry run changes nothing (no catalog write, no reload, the same
//!   catalog and compute state), and the apply of the same spec right after
//!   it sends exactly the statements it predicted.

use std::collections::BTreeMap;
use std::time::Duration;

use compute_ctl::spec::ComputeSpec;
use compute_ctl::state::ComputeStatus;

use crate::shared::Shared;
use crate::specgen::SpecShape;

/// The bound on a skip-flag reconfigure (write config + SIGHUP), in
/// simulated time. It does not depend on the number of roles.
pub const NOTIFY_BOUND: Duration = Duration::from_millis(250);

/// Catalog statements (reads, writes) and SQL reloads the supervisor's own
/// sessions sent in `[from, to]` (µs).
pub fn supervisor_statements(shared: &Shared, from: u64, to: u64) -> Vec<String> {
    shared
        .lock()
        .statements
        .iter()
        .filter(|s| {
            s.application_name == compute_ctl::pg::APPLICATION_NAME
                && s.kind.is_notify_forbidden()
                && s.t_us >= from
                && s.t_us <= to
        })
        .map(|s| s.sql.clone())
        .collect()
}

/// Checks an answered (200) skip-flag notify sent at `t0` and answered at `t1`.
pub fn check_notify(shared: &Shared, shape: &SpecShape, t0: u64, t1: u64, reloads_before: usize) {
    let op = shape.operation;
    shared
        .lock()
        .notify_round_trips_us
        .push(t1.saturating_sub(t0));
    let stmts = supervisor_statements(shared, t0, t1);
    if let Some(first) = stmts.first() {
        shared.violation(format!(
            "skip-flag notify (op {op}) issued {} catalog/reload statement(s); first: {}",
            stmts.len(),
            first.chars().take(80).collect::<String>()
        ));
    }
    let checks = shared
        .lock()
        .statements
        .iter()
        .filter(|s| {
            s.application_name == compute_ctl::pg::APPLICATION_NAME
                && s.t_us >= t0
                && s.t_us <= t1
                && s.sql == compute_ctl::pg::FILE_SETTINGS_QUERY
        })
        .count();
    if checks > 1 {
        shared.violation(format!(
            "skip-flag notify (op {op}) read pg_file_settings {checks} times (one check after its reload)"
        ));
    }
    let Some(compute) = shared.compute() else {
        return;
    };
    let st = compute.state();
    let this_op = Some(shape.operation_uuid());
    if let Some(r) = st
        .last_reconfigure
        .as_ref()
        .filter(|r| r.operation_uuid == this_op)
    {
        if u128::from(r.total_ms) > NOTIFY_BOUND.as_millis()
            && !shared.lock().ledger.excuses_slow_notify(t0, t1)
        {
            shared.violation(format!(
                "skip-flag notify (op {op}) took {} ms of simulated time (bound {} ms)",
                r.total_ms,
                NOTIFY_BOUND.as_millis()
            ));
        }
        if r.catalog_statements != 0 {
            shared.violation(format!(
                "skip-flag notify (op {op}) reports {} catalog statements",
                r.catalog_statements
            ));
        }
        let excused = shared.lock().ledger.excuses_missing_reload();
        if shared.lock().reloads.len() == reloads_before && !excused {
            shared.violation(format!(
                "skip-flag notify (op {op}) did not reload Postgres by SIGHUP"
            ));
        }
    }
}

/// Checks that a re-send of an applied operation did no work in `[t0, t1]`.
pub fn check_resend(shared: &Shared, op: u64, t0: u64, t1: u64, reloads_before: usize) {
    let stmts = supervisor_statements(shared, t0, t1);
    let reloads = shared.lock().reloads.len() - reloads_before;
    if !stmts.is_empty() || reloads != 0 {
        shared.violation(format!(
            "re-send of applied operation {op} did work: {} statement(s), {reloads} reload(s)",
            stmts.len()
        ));
    }
}

/// The catalog the spec asks for: roles with passwords, databases with owners.
pub fn expected_catalog(
    spec: &ComputeSpec,
) -> (BTreeMap<String, Option<String>>, BTreeMap<String, String>) {
    let roles = spec
        .cluster
        .roles
        .iter()
        .map(|r| {
            let pw = r.encrypted_password.as_ref().map(|p| {
                if p.starts_with("SCRAM-SHA-256$") {
                    p.clone()
                } else {
                    format!("md5{p}")
                }
            });
            (r.name.clone(), pw)
        })
        .collect();
    let dbs = spec
        .cluster
        .databases
        .iter()
        .map(|d| (d.name.clone(), d.owner.clone()))
        .collect();
    (roles, dbs)
}

/// The commit LSN the supervisor recorded is what a majority of the
/// safekeepers acknowledged: the highest LSN at least a majority reached
/// (from the last answer of each during the sync).
pub fn check_commit_lsn(shared: &Shared, total: usize) {
    let Some(compute) = shared.compute() else {
        return;
    };
    let Some(commit) = compute.state().replication.and_then(|r| r.commit_lsn) else {
        return;
    };
    let acks = shared.lock().safekeeper_acks.clone();
    let mut last: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for (h, l) in acks {
        last.insert(h, l);
    }
    let reached: Vec<compute_ctl::storage::Lsn> = last
        .values()
        .map(|l| compute_ctl::storage::Lsn(*l))
        .collect();
    shared.event(
        "commit_lsn",
        serde_json::json!({"commit": commit.to_string(), "acks": last.len()}),
    );
    match compute_ctl::storage::commit_lsn(total, &reached) {
        Some(majority) if commit < majority => shared.violation(format!(
            "commit LSN {commit} is below {majority}, which a majority of the safekeepers acknowledged"
        )),
        Some(majority) if commit > majority => shared.violation(format!(
            "commit LSN {commit} is above {majority}: no majority acknowledged it"
        )),
        None => shared.violation(format!("commit LSN {commit} without a quorum of answers")),
        _ => {}
    }
}

/// How soon after a move's answer the replica must stream from the new source.
pub const MOVE_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// The end state: settled, converged to the spec in effect or Failed for a reason.
pub fn check_final(shared: &Shared) {
    let (terminate_sent, terminate_answered) = {
        let sh = shared.lock();
        (sh.terminate_sent, sh.terminate_answered)
    };
    let Some(compute) = shared.compute() else {
        shared.violation("the compute host never booted");
        return;
    };
    let st = compute.state();
    let ledger = shared.lock().ledger.clone();
    match st.status {
        ComputeStatus::Running => {
            if terminate_answered {
                shared.violation("the compute is running after a terminate was answered");
            }
            let Some(spec) = st.spec.as_deref() else {
                shared.violation("running without a spec");
                return;
            };
            if st.pending.is_some() {
                shared.violation("running with a spec still pending");
            }
            // A skip-flag spec leaves the catalog as the last spec that did
            // not skip made it.
            let catalog_spec = shared.lock().catalog_spec.clone();
            if let Some(c) = catalog_spec {
                check_catalog(shared, &c);
            }
            check_storage(shared, spec, &ledger);
        }
        ComputeStatus::Failed => {
            let reason = st.error.unwrap_or_default();
            if reason.trim().is_empty() {
                shared.violation("failed without a reason");
            } else if ledger.explains_failure().is_none() {
                shared.violation(format!(
                    "failed although no fault could explain it: {reason}"
                ));
            }
        }
        ComputeStatus::Terminated => {
            if !terminate_sent {
                shared.violation("terminated although nobody asked");
            }
        }
        // A host restarted after a terminate waits for a spec nobody sends.
        ComputeStatus::Empty if terminate_sent => {}
        other => shared.violation(format!("did not settle: still {other} at the end")),
    }
}

fn check_catalog(shared: &Shared, spec: &ComputeSpec) {
    let (want_roles, want_dbs) = expected_catalog(spec);
    let (have_roles, have_dbs) = {
        let sh = shared.lock();
        (sh.catalog.user_roles(), sh.catalog.user_databases())
    };
    if have_roles != want_roles {
        let missing: Vec<_> = want_roles
            .keys()
            .filter(|k| !have_roles.contains_key(*k))
            .take(3)
            .collect();
        let extra: Vec<_> = have_roles
            .keys()
            .filter(|k| !want_roles.contains_key(*k))
            .take(3)
            .collect();
        let wrong: Vec<_> = want_roles
            .iter()
            .filter(|(k, v)| have_roles.get(*k).is_some_and(|h| h != *v))
            .map(|(k, _)| k)
            .take(3)
            .collect();
        shared.violation(format!(
            "catalog roles differ from the spec in effect: missing {missing:?}, extra {extra:?}, wrong password {wrong:?}"
        ));
    }
    if have_dbs != want_dbs {
        shared.violation(format!(
            "catalog databases differ from the spec in effect: have {:?}, want {:?}",
            have_dbs.iter().take(4).collect::<Vec<_>>(),
            want_dbs.iter().take(4).collect::<Vec<_>>()
        ));
    }
}

fn check_storage(shared: &Shared, spec: &ComputeSpec, ledger: &crate::ledger::FaultLedger) {
    if ledger.excuses_stale_config() {
        return;
    }
    let Some(want) = spec.pageserver_connstring.as_deref() else {
        return;
    };
    let loaded = shared.lock().loaded_config.clone().unwrap_or_default();
    let conf = crate::pg::guc::parse_conf(&loaded);
    if !conf.values().any(|v| v == want) {
        shared.violation(format!(
            "running Postgres does not point at the spec's storage ({want}); it loaded: {:?}",
            conf.iter()
                .filter(|(k, _)| k.contains("pageserver"))
                .collect::<Vec<_>>()
        ));
    }
}

/// What a dry run must leave as it found it.
#[derive(Debug, Clone)]
pub struct DryRunBefore {
    boot: u64,
    catalog: crate::pg::catalog::CatalogModel,
    reloads: usize,
    /// (status, generation, applied generation)
    state: Option<(ComputeStatus, u64, u64)>,
}

impl DryRunBefore {
    pub fn take(shared: &Shared) -> Self {
        let state = shared
            .compute()
            .map(|c| c.state())
            .map(|st| (st.status, st.generation, st.applied_generation));
        let sh = shared.lock();
        Self {
            boot: sh.boot,
            catalog: sh.catalog.clone(),
            reloads: sh.reloads.len(),
            state,
        }
    }
}

/// Catalog writes the supervisor's sessions sent in `[from, to]`, each as
/// (database, statement with passwords redacted as a plan shows them).
pub fn catalog_writes(shared: &Shared, from: u64, to: u64) -> Vec<(String, String)> {
    shared
        .lock()
        .statements
        .iter()
        .filter(|s| {
            s.application_name == compute_ctl::pg::APPLICATION_NAME
                && s.kind == crate::shared::StmtKind::CatalogWrite
                && s.t_us >= from
                && s.t_us <= to
        })
        .map(|s| {
            let sql = match crate::pg::sql::parse_op(&s.sql, &s.db) {
                Ok(Some(op)) => compute_ctl::catalog::render_redacted(&op),
                _ => s.sql.clone(),
            };
            (s.db.clone(), sql)
        })
        .collect()
}

/// A dry run answered in `[t0, t1]` changed nothing: no catalog write, no
/// reload, the same catalog and the same compute state (on the same boot
/// of the compute host, with no configure in flight).
pub fn check_dry_run(shared: &Shared, before: &DryRunBefore, t0: u64, t1: u64) {
    let after = DryRunBefore::take(shared);
    if after.boot != before.boot {
        return;
    }
    if let Some((_, first)) = catalog_writes(shared, t0, t1).first() {
        shared.violation(format!(
            "a dry run issued catalog writes; first: {}",
            first.chars().take(80).collect::<String>()
        ));
    }
    if after.reloads != before.reloads {
        shared.violation("a dry run reloaded Postgres");
    }
    if after.catalog != before.catalog {
        shared.violation("the catalog changed during a dry run");
    }
    if after.state != before.state {
        shared.violation(format!(
            "a dry run changed the compute's state: {:?} -> {:?}",
            before.state, after.state
        ));
    }
}

/// The statements an apply sent in `[t0, t1]` are exactly those the dry run
/// just before it predicted (as multisets: databases run concurrently).
pub fn check_plan_matches(shared: &Shared, predicted: &[(String, String)], t0: u64, t1: u64) {
    let mut sent = catalog_writes(shared, t0, t1);
    let mut want = predicted.to_vec();
    sent.sort();
    want.sort();
    if sent != want {
        let missing: Vec<_> = want.iter().filter(|w| !sent.contains(w)).take(2).collect();
        let extra: Vec<_> = sent.iter().filter(|s| !want.contains(s)).take(2).collect();
        shared.violation(format!(
            "the apply sent {} catalog statement(s), the dry run predicted {}: predicted but not sent {missing:?}, sent but not predicted {extra:?}",
            sent.len(),
            want.len()
        ));
    }
}
