//! Catalog reconciliation: snapshot -> plan -> render -> execute.
//!
//! [`snapshot`] reads roles and databases in one round trip, [`plan`] diffs
//! them purely against the spec and its delta operations into typed
//! [`Op`]s, [`render`] turns each op into one SQL statement, and
//! [`execute`] runs them over the simple query protocol, pipelined, with
//! bounded per-database concurrency. [`apply`] ties them together;
//! [`preview`] makes the same plan over read-only sessions (dry runs).

pub mod execute;
pub mod model;
pub mod ops;
pub mod plan;
pub mod preview;
pub mod quote;
pub mod render;
pub mod snapshot;

#[cfg(test)]
mod plan_props;

pub use crate::spec::role_options::{RoleAttrs, RoleOptionError, parse_role_options};
pub use model::Model;
pub use ops::{DbOption, Op, RoleAttr, SchemaPrivilege, Secret};
pub use plan::{
    ExtensionTarget, PlanError, extension_targets, plan, plan_extensions, stored_password,
    wanted_extensions,
};
pub use preview::{PlannedStatement, Preview, READ_ONLY_SQL, preview};
pub use render::{EXTENSIONS_MARKER, render, render_redacted};
pub use snapshot::{
    DatabaseInfo, EXTENSIONS_SQL, InstalledExtension, MemberGrant, RoleInfo, SNAPSHOT_SQL,
    Snapshot, SnapshotError, parse_extensions, parse_snapshot,
};

use std::sync::atomic::{AtomicU64, Ordering};

use crate::env::Env;
use crate::metrics::Metrics;
use crate::params::ComputeParams;
use crate::spec::ComputeSpec;

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CatalogReport {
    /// Statements planned.
    pub planned: u64,
    /// Statements that succeeded.
    pub executed: u64,
    /// Statements that failed (at most one per session: a failure stops it).
    pub failed: u64,
    /// Databases skipped by per-database phases (invalid or not connectable).
    pub skipped_databases: Vec<String>,
}

/// A failure of catalog work. Statements are shown with passwords redacted.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open a session to database {database:?} for catalog work: {source}")]
    Connect {
        database: String,
        #[source]
        source: crate::pg::ConnectError,
    },
    #[error("reading the {what} in database {database:?} failed: {message}")]
    Query {
        what: &'static str,
        database: String,
        message: String,
    },
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot plan the catalog changes: {0}")]
    Plan(#[from] PlanError),
    #[error(
        "{statement} (in database {database:?}) failed: {message}; what ran before it stays applied, re-apply the spec once the cause is fixed"
    )]
    Statement {
        statement: String,
        database: String,
        message: String,
    },
    #[error(
        "{statement} (in database {database:?}) did not finish within {after:?}; is Postgres overloaded or stuck?"
    )]
    Timeout {
        statement: String,
        database: String,
        after: std::time::Duration,
    },
}

/// How far an apply got, counted as it runs: statements planned, and
/// statements whose answers were read (each committed on its own). The
/// counts also go to the metrics, labelled with the operation. The caller
/// keeps the handle, so it still knows how far the apply got when it stops
/// waiting for it (a terminate, the postmaster's exit).
pub struct Progress<'a> {
    metrics: &'a Metrics,
    operation: &'static str,
    planned: AtomicU64,
    executed: AtomicU64,
}

impl<'a> Progress<'a> {
    /// A handle for an apply of `operation` ("start", "reconfigure",
    /// "promote"), counting into `metrics` too.
    pub fn new(metrics: &'a Metrics, operation: &'static str) -> Self {
        Self {
            metrics,
            operation,
            planned: AtomicU64::new(0),
            executed: AtomicU64::new(0),
        }
    }

    /// Statements planned so far (per-database extension work is planned as
    /// each database is visited).
    pub fn planned(&self) -> u64 {
        self.planned.load(Ordering::Relaxed)
    }

    /// Statements whose answers were read so far.
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }

    fn count_planned(&self, n: u64) {
        self.planned.fetch_add(n, Ordering::Relaxed);
        self.metrics.count_statements(self.operation, "planned", n);
    }

    /// One statement answered (see [`execute::Tick`]).
    fn count_executed(&self) {
        self.executed.fetch_add(1, Ordering::Relaxed);
        self.metrics.count_statements(self.operation, "executed", 1);
    }
}

/// Counts statements into the report and the progress handle.
struct Tally<'p, 'm> {
    progress: &'p Progress<'m>,
    report: CatalogReport,
}

impl Tally<'_, '_> {
    fn planned(&mut self, n: usize) {
        self.report.planned += n as u64;
        self.progress.count_planned(n as u64);
    }

    /// Adds an outcome (its executed statements were counted as they
    /// ran); returns its error.
    fn outcome(&mut self, o: execute::RunOutcome) -> Option<CatalogError> {
        self.report.executed += o.executed;
        self.report.failed += o.failed;
        self.progress
            .metrics
            .count_statements(self.progress.operation, "failed", o.failed);
        o.error
    }
}

/// Reads what the catalog holds now (for `GET /dbs_and_roles`): one
/// session, one statement.
pub async fn read_snapshot<E: Env>(
    env: &E,
    target: &crate::params::ConnTarget,
) -> Result<Snapshot, CatalogError> {
    let client = execute::open(env, target).await?;
    let text = execute::query_text(
        env,
        &client,
        &target.dbname,
        "catalog snapshot",
        SNAPSHOT_SQL,
    )
    .await?;
    Ok(parse_snapshot(&text)?)
}

/// Brings roles, databases and extensions in line with the spec: one
/// snapshot, one plan, then its statements; then the extensions of each
/// database. `progress` counts how far it got as it runs (and labels the
/// metrics with its operation).
pub async fn apply<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    progress: &Progress<'_>,
) -> Result<CatalogReport, CatalogError> {
    plan_apply(env, params, spec)
        .await?
        .run(env, params, spec, progress)
        .await
}

/// The first half of [`apply`]: its session, the snapshot read on it and
/// the plan, with nothing written. A start takes it while it waits for
/// something else (a quorum of safekeepers), then runs it.
pub async fn plan_apply<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
) -> Result<PlannedApply, CatalogError> {
    let own_db = params.conn.dbname.as_str();
    let main = execute::open(env, &params.conn).await?;
    // The snapshot is read on the session the plan then runs on.
    let text = execute::query_text(env, &main, own_db, "catalog snapshot", SNAPSHOT_SQL).await?;
    let mut snapshot = parse_snapshot(&text)?;
    if crate::planted::active(crate::planted::Bug::NonIdempotentApply) {
        snapshot.roles.retain(|r| r.builtin);
        snapshot
            .databases
            .retain(|d| d.name == own_db || d.is_template);
    }
    let ops = plan(&snapshot, spec, own_db)?;
    Ok(PlannedApply {
        main,
        snapshot,
        ops,
    })
}

/// [`plan_apply`]'s result: what [`PlannedApply::run`] executes.
pub struct PlannedApply {
    main: tokio_postgres::Client,
    snapshot: Snapshot,
    ops: Vec<Op>,
}

impl PlannedApply {
    /// The second half of [`apply`]: the plan's statements, then the
    /// extensions, for the `spec` it was planned from.
    pub async fn run<E: Env>(
        self,
        env: &E,
        params: &ComputeParams,
        spec: &ComputeSpec,
        progress: &Progress<'_>,
    ) -> Result<CatalogReport, CatalogError> {
        let concurrency =
            execute::concurrency(spec.reconfigure_concurrency, self.snapshot.max_connections);
        let mut tally = Tally {
            progress,
            report: CatalogReport::default(),
        };
        tally.planned(self.ops.len());
        tracing::info!(
            operation = progress.operation,
            statements = self.ops.len(),
            concurrency,
            "catalog plan"
        );
        run_planned(env, params, spec, &self, concurrency, &mut tally).await?;
        Ok(tally.report)
    }
}

/// The statements of `planned` run by kind, then the extensions.
async fn run_planned<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    planned: &PlannedApply,
    concurrency: usize,
    tally: &mut Tally<'_, '_>,
) -> Result<(), CatalogError> {
    let PlannedApply {
        main,
        snapshot,
        ops,
    } = planned;
    let own_db = params.conn.dbname.as_str();
    let progress = tally.progress;
    let tick = || progress.count_executed();
    let tick: execute::Tick<'_> = &tick;
    for (kind, run) in execute::runs(ops) {
        let error = match kind {
            execute::RunKind::PerDatabase => {
                let jobs: Vec<_> = execute::by_database(run)
                    .into_iter()
                    .map(|(db, ops)| execute::database_ops(env, &params.conn, db, ops, tick))
                    .collect();
                let at_once = execute::per_database_concurrency(run, concurrency);
                let outcomes = execute::bounded(jobs, at_once).await;
                let mut first = None;
                for o in outcomes {
                    let e = tally.outcome(o);
                    first = first.or(e);
                }
                first
            }
            execute::RunKind::Concurrent => {
                let jobs: Vec<_> = execute::deal(run, concurrency)
                    .into_iter()
                    .map(|ops| {
                        execute::database_ops(env, &params.conn, own_db.to_string(), ops, tick)
                    })
                    .collect();
                let mut first = None;
                for o in execute::bounded(jobs, concurrency).await {
                    let e = tally.outcome(o);
                    first = first.or(e);
                }
                first
            }
            _ => {
                let pipelined = kind == execute::RunKind::Pipelined;
                let o = execute::run_ops(env, main, own_db, run, pipelined, tick).await;
                tally.outcome(o)
            }
        };
        if let Some(e) = error {
            return Err(e);
        }
    }

    apply_extensions(env, params, spec, snapshot, ops, concurrency, tally).await
}

/// Creates, moves or updates the wanted extensions of each database whose
/// snapshot shows work (see [`extension_targets`]), after the plan ran;
/// databases that are missing, invalid or refuse connections are skipped.
async fn apply_extensions<E: Env>(
    env: &E,
    params: &ComputeParams,
    spec: &ComputeSpec,
    snapshot: &Snapshot,
    ops: &[Op],
    concurrency: usize,
    tally: &mut Tally<'_, '_>,
) -> Result<(), CatalogError> {
    let progress = tally.progress;
    let tick = || progress.count_executed();
    let tick: execute::Tick<'_> = &tick;
    let mut model = Model::from_snapshot(snapshot);
    for op in ops {
        // The plan was built by applying these very ops to this model.
        let _ = model.apply(op);
    }
    let (targets, skipped) = extension_targets(spec, &model);
    for db in &skipped {
        tracing::warn!(database = %db, "database missing, invalid or not connectable; its extensions are skipped");
    }
    tally.report.skipped_databases.extend(skipped);
    let jobs: Vec<_> = targets
        .into_iter()
        .map(|t| execute::database_extensions(env, &params.conn, t, tick))
        .collect();
    let mut first = None;
    for (planned, o) in execute::bounded(jobs, concurrency).await {
        tally.planned(planned);
        let e = tally.outcome(o);
        first = first.or(e);
    }
    first.map_or(Ok(()), Err)
}
