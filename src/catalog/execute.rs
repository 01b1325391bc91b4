//! Runs ops over the simple query protocol (never prepared statements: the
//! simulator's Postgres speaks only simple query).
//!
//! Ops run in plan order, split into runs:
//! - independent ops of the supervisor's session (`CREATE ROLE`, password
//!   and owner changes) are pipelined: sent without waiting for each answer,
//!   each its own `Query` message, so each is its own implicit transaction;
//! - renames and drops run one at a time, each alone in its `Query`
//!   message (`DROP DATABASE` refuses transaction blocks);
//! - `CREATE DATABASE`s (each alone in its `Query` message too) are spread
//!   over up to [`concurrency`] sessions: copying the template dominates
//!   start-up with many databases and runs twice as fast 8-wide on 2 cores;
//! - per-database ops run in a session to that database, with at most
//!   [`concurrency`] databases at once.
//!
//! The first failure stops its session and ends the apply with an error
//! naming the statement (passwords redacted); what ran before stays.

use std::time::Duration;

use futures::{StreamExt, stream};

use super::CatalogError;
use super::ops::{DbOption, Op};
use super::render::render;
use crate::env::{Env, timeout};
use crate::params::ConnTarget;
use crate::pg;

/// How long opening a session may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Server-side `statement_timeout` of the supervisor's catalog sessions.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(120);
/// Client-side bound on one statement, queueing in the pipeline included:
/// covers a server that ignores its statement_timeout (stuck, partitioned).
pub const CLIENT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);
/// At most this many statements in flight on one session.
pub const PIPELINE_DEPTH: usize = 64;
/// Connections kept free for others: superuser_reserved_connections and our
/// own main session.
const RESERVED_CONNECTIONS: usize = 4;
/// Per-database concurrency when the spec asks for none.
const DEFAULT_CONCURRENCY: usize = 8;

/// How many databases per-database phases work on at once: the spec's
/// `reconfigure_concurrency` (default 8), never more than a quarter of the
/// connections Postgres has left after reserved ones, never less than one.
pub fn concurrency(requested: Option<usize>, max_connections: u32) -> usize {
    let cap = ((max_connections as usize).saturating_sub(RESERVED_CONNECTIONS) / 4).max(1);
    requested.unwrap_or(DEFAULT_CONCURRENCY).clamp(1, cap)
}

/// How a run of ops is executed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    /// On the supervisor's session, pipelined.
    Pipelined,
    /// On the supervisor's session, one statement at a time.
    Sequential,
    /// Spread over several sessions to the supervisor's database.
    Concurrent,
    /// In sessions to the ops' databases, databases concurrently.
    PerDatabase,
}

fn run_kind(op: &Op) -> RunKind {
    match op {
        _ if op.database().is_some() => RunKind::PerDatabase,
        Op::CreateRole { .. }
        | Op::AlterRolePassword { .. }
        | Op::AlterRoleAttributes { .. }
        | Op::GrantRole { .. }
        | Op::RevokeRole { .. }
        | Op::AlterDatabaseOwner { .. }
        | Op::AlterDatabaseOptions { .. } => RunKind::Pipelined,
        Op::CreateDatabase { .. } => RunKind::Concurrent,
        _ => RunKind::Sequential,
    }
}

/// How many databases of a per-database `run` may run at once. `REASSIGN
/// OWNED` and `DROP OWNED` also act on shared objects (the role's
/// privileges on and ownership of databases, tablespaces, parameters), so
/// two of them in different databases update the same shared catalog rows
/// and one fails with "tuple concurrently updated" (seen on 16): a run with
/// either goes one database at a time.
pub fn per_database_concurrency(run: &[Op], concurrency: usize) -> usize {
    let shared = run
        .iter()
        .any(|op| matches!(op, Op::ReassignOwned { .. } | Op::DropOwned { .. }));
    if shared { 1 } else { concurrency }
}

/// Whether `op` creates a database from a template that an op of `run`
/// creates (so it must wait for it).
fn depends_on(op: &Op, run: &[Op]) -> bool {
    let Op::CreateDatabase { options, .. } = op else {
        return false;
    };
    options.iter().any(|o| match o {
        DbOption::Template(t) => run
            .iter()
            .any(|r| matches!(r, Op::CreateDatabase { name, .. } if name == t)),
        _ => false,
    })
}

/// Splits a plan into maximal runs of the same [`RunKind`], in order; a
/// concurrent run also ends before an op that depends on one of its ops.
pub fn runs(ops: &[Op]) -> Vec<(RunKind, &[Op])> {
    let mut out: Vec<(RunKind, &[Op])> = Vec::new();
    let mut start = 0;
    for i in 1..=ops.len() {
        if i == ops.len()
            || run_kind(&ops[i]) != run_kind(&ops[start])
            || depends_on(&ops[i], &ops[start..i])
        {
            if start < i {
                out.push((run_kind(&ops[start]), &ops[start..i]));
            }
            start = i;
        }
    }
    out
}

/// Groups per-database ops by database, keeping first-seen database order
/// and each database's op order.
pub fn by_database(ops: &[Op]) -> Vec<(String, Vec<Op>)> {
    let mut out: Vec<(String, Vec<Op>)> = Vec::new();
    for op in ops {
        let db = op.database().unwrap_or_default();
        match out.iter_mut().find(|(d, _)| d == db) {
            Some((_, v)) => v.push(op.clone()),
            None => out.push((db.to_string(), vec![op.clone()])),
        }
    }
    out
}

/// Deals `ops` round-robin into at most `n` lists (each keeps plan order).
pub fn deal(ops: &[Op], n: usize) -> Vec<Vec<Op>> {
    let n = n.clamp(1, ops.len().max(1));
    let mut out = vec![Vec::new(); n];
    for (i, op) in ops.iter().enumerate() {
        out[i % n].push(op.clone());
    }
    out.retain(|v| !v.is_empty());
    out
}

/// Opens a supervisor session to `target`.
pub async fn open<E: Env>(
    env: &E,
    target: &ConnTarget,
) -> Result<tokio_postgres::Client, CatalogError> {
    pg::connect(env, target, STATEMENT_TIMEOUT, CONNECT_TIMEOUT)
        .await
        .map_err(|source| CatalogError::Connect {
            database: target.dbname.clone(),
            source,
        })
}

/// A query that Postgres did not answer in time, with what to check.
fn no_answer(e: crate::env::Elapsed) -> String {
    format!(
        "Postgres gave no answer within {:?}; is it overloaded, or is a lock held (see pg_locks)? The next configure retries",
        e.0
    )
}

/// A Postgres error as one line, without the statement text: message,
/// SQLSTATE, detail and hint.
fn describe(e: &tokio_postgres::Error) -> String {
    pg::describe_error(e)
}

/// Runs a one-row, one-text-column query (the snapshot queries).
pub async fn query_text<E: Env>(
    env: &E,
    client: &tokio_postgres::Client,
    database: &str,
    what: &'static str,
    sql: &str,
) -> Result<String, CatalogError> {
    let query_err = |message: String| CatalogError::Query {
        what,
        database: database.to_string(),
        message,
    };
    let msgs = timeout(env, CLIENT_STATEMENT_TIMEOUT, client.simple_query(sql))
        .await
        .map_err(|e| query_err(no_answer(e)))?
        .map_err(|e| query_err(describe(&e)))?;
    crate::pg::first_value(&msgs).ok_or_else(|| query_err("it returned no row".into()))
}

/// Runs one statement that returns no rows (session settings).
pub async fn simple<E: Env>(
    env: &E,
    client: &tokio_postgres::Client,
    database: &str,
    what: &'static str,
    sql: &str,
) -> Result<(), CatalogError> {
    let query_err = |message: String| CatalogError::Query {
        what,
        database: database.to_string(),
        message,
    };
    timeout(env, CLIENT_STATEMENT_TIMEOUT, client.batch_execute(sql))
        .await
        .map_err(|e| query_err(no_answer(e)))?
        .map_err(|e| query_err(describe(&e)))
}

/// Outcome of a run on one session: statements that succeeded, and the
/// first failure if any.
#[derive(Debug, Default)]
pub struct RunOutcome {
    pub executed: u64,
    pub failed: u64,
    pub error: Option<CatalogError>,
}

async fn one<E: Env>(
    env: &E,
    client: &tokio_postgres::Client,
    database: &str,
    op: &Op,
) -> Result<(), CatalogError> {
    tracing::debug!(database, statement = %op, "catalog statement");
    let sql = render(op);
    match timeout(env, CLIENT_STATEMENT_TIMEOUT, client.batch_execute(&sql)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(CatalogError::Statement {
            statement: op.to_string(),
            database: database.to_string(),
            message: describe(&e),
        }),
        Err(_) => Err(CatalogError::Timeout {
            statement: op.to_string(),
            database: database.to_string(),
            after: CLIENT_STATEMENT_TIMEOUT,
        }),
    }
}

/// Called once per statement as its success is read, so that an apply cut
/// short (a terminate, a postmaster exit) knows how far it got: the runs'
/// totals arrive only when a run ends.
pub type Tick<'a> = &'a (dyn Fn() + Sync);

/// Runs `ops` on `client` one at a time (`pipelined == false`) or with up
/// to [`PIPELINE_DEPTH`] in flight. Stops at the first failure (in a
/// pipeline, statements already sent still run; they are counted).
pub async fn run_ops<E: Env>(
    env: &E,
    client: &tokio_postgres::Client,
    database: &str,
    ops: &[Op],
    pipelined: bool,
    tick: Tick<'_>,
) -> RunOutcome {
    let depth = if pipelined { PIPELINE_DEPTH } else { 1 };
    let span = tracing::info_span!(target: crate::spans::TARGET, "catalog.batch",
        db.name = database, statements = ops.len(), pipelined,
        executed = tracing::field::Empty, failed = tracing::field::Empty);
    // Made as the pipeline takes them: at most `depth` statements' futures
    // exist at once, not one per op (a 5,000-role pass would allocate them
    // all up front). A concrete queue, not a closure over `ops`, keeps the
    // whole thing `Send`.
    let mut pending = ops.iter();
    let mut in_flight = stream::FuturesOrdered::new();
    let mut out = RunOutcome::default();
    loop {
        while in_flight.len() < depth {
            match pending.next() {
                Some(op) => in_flight.push_back(one(env, client, database, op)),
                None => break,
            }
        }
        let Some(r) = in_flight.next().await else {
            break;
        };
        match r {
            Ok(()) => {
                out.executed += 1;
                tick();
            }
            Err(e) => {
                out.failed += 1;
                if out.error.is_none() {
                    out.error = Some(e);
                }
                if !pipelined {
                    break;
                }
            }
        }
    }
    span.record("executed", out.executed);
    span.record("failed", out.failed);
    out
}

/// Runs `ops` in a session to `database` (opened here), one at a time.
pub async fn database_ops<E: Env>(
    env: &E,
    target: &ConnTarget,
    database: String,
    ops: Vec<Op>,
    tick: Tick<'_>,
) -> RunOutcome {
    match open(env, &target.with_dbname(&database)).await {
        Ok(client) => run_ops(env, &client, &database, &ops, false, tick).await,
        Err(e) => RunOutcome {
            error: Some(e),
            ..Default::default()
        },
    }
}

/// Creates, moves or updates the wanted extensions of `t.database` (in a
/// session opened here) after reading what it has, then records the marker;
/// returns how many statements it planned and how they went. A failure
/// stops the session before the marker, so the next apply visits again.
pub async fn database_extensions<E: Env>(
    env: &E,
    target: &ConnTarget,
    t: super::ExtensionTarget,
    tick: Tick<'_>,
) -> (usize, RunOutcome) {
    let marker = t.marker_op();
    extensions_in(env, target, &t.database, &t.wanted, Some(marker), tick).await
}

/// Creates or updates `wanted` in `database` (a session opened here, the
/// installed ones read first, planned by [`super::plan_extensions`]), then
/// runs `marker` if given; returns how many statements it planned and how
/// they went.
pub async fn extensions_in<E: Env>(
    env: &E,
    target: &ConnTarget,
    database: &str,
    wanted: &[crate::spec::Extension],
    marker: Option<Op>,
    tick: Tick<'_>,
) -> (usize, RunOutcome) {
    let failed = |e| {
        (
            0,
            RunOutcome {
                error: Some(e),
                ..Default::default()
            },
        )
    };
    let client = match open(env, &target.with_dbname(database)).await {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let installed = match query_text(
        env,
        &client,
        database,
        "installed extensions",
        super::EXTENSIONS_SQL,
    )
    .await
    .and_then(|t| Ok(super::parse_extensions(&t)?))
    {
        Ok(i) => i,
        Err(e) => return failed(e),
    };
    let mut ops = super::plan_extensions(database, &installed, wanted);
    ops.extend(marker);
    (
        ops.len(),
        run_ops(env, &client, database, &ops, false, tick).await,
    )
}

/// Runs `jobs` (one per database), at most `concurrency` at once; results
/// come back in job order.
pub async fn bounded<F: std::future::Future>(jobs: Vec<F>, concurrency: usize) -> Vec<F::Output> {
    stream::iter(jobs)
        .buffered(concurrency.max(1))
        .collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_bounded_by_max_connections() {
        assert_eq!(concurrency(None, 100), 8);
        assert_eq!(concurrency(Some(2), 100), 2);
        assert_eq!(concurrency(Some(500), 100), 24);
        assert_eq!(concurrency(Some(500), 5), 1);
        assert_eq!(concurrency(Some(0), 100), 1);
        assert_eq!(concurrency(None, 0), 1);
    }

    #[test]
    fn runs_split_by_kind_and_databases_keep_op_order() {
        let role = |n: &str| Op::CreateRole {
            name: n.into(),
            password: None,
            attrs: vec![],
        };
        let reassign = |db: &str| Op::ReassignOwned {
            database: db.into(),
            role: "r".into(),
            to: "o".into(),
        };
        let drop_owned = |db: &str| Op::DropOwned {
            database: db.into(),
            role: "r".into(),
        };
        let ops = vec![
            reassign("a"),
            drop_owned("a"),
            reassign("b"),
            drop_owned("b"),
            Op::DropRole { name: "r".into() },
            role("x"),
            role("y"),
            Op::CreateDatabase {
                name: "d".into(),
                owner: "x".into(),
                options: vec![],
            },
        ];
        let kinds: Vec<(RunKind, usize)> = runs(&ops).iter().map(|(k, r)| (*k, r.len())).collect();
        assert_eq!(
            kinds,
            [
                (RunKind::PerDatabase, 4),
                (RunKind::Sequential, 1),
                (RunKind::Pipelined, 2),
                (RunKind::Concurrent, 1)
            ]
        );
        assert_eq!(
            per_database_concurrency(&ops[..4], 8),
            1,
            "drops go one database at a time"
        );
        let groups = by_database(&ops[..4]);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[0],
            ("a".to_string(), vec![reassign("a"), drop_owned("a")])
        );
        assert!(runs(&[]).is_empty());
        let create = |n: &str, template: &str| Op::CreateDatabase {
            name: n.into(),
            owner: "x".into(),
            options: vec![DbOption::Template(template.into())],
        };
        let dbs = [
            create("a", "template1"),
            create("b", "template1"),
            create("c", "a"),
        ];
        let lens: Vec<usize> = runs(&dbs).iter().map(|(_, r)| r.len()).collect();
        assert_eq!(lens, [2, 1], "c waits for its template a");
        let dealt = deal(&dbs, 2);
        assert_eq!(
            dealt,
            [vec![dbs[0].clone(), dbs[2].clone()], vec![dbs[1].clone()]]
        );
        assert_eq!(deal(&dbs, 8).len(), 3);
    }
}
