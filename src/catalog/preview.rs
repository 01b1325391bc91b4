//! The catalog part of a dry run: the exact statements an apply of a spec
//! would run now, read from the live catalog without changing it.
//!
//! It makes the plan [`super::apply`] makes, from the same snapshot query,
//! and reads the extensions of each database the apply would visit (the
//! same [`super::extension_targets`] decide). Its sessions are read-only
//! (`SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY` first), so even
//! a bug here cannot write; it takes no lock and does not wait for a
//! configure in flight. The snapshot is one statement, so it is consistent
//! in itself; extensions are read afterwards, one database at a time.
//!
//! A database the plan creates does not exist yet: its extensions are
//! predicted from its template (read when the template accepts
//! connections; `template0` holds none that a spec asks for).

use serde::Serialize;

use super::execute;
use super::plan::{extension_targets, plan_extensions};
use super::snapshot::{
    EXTENSIONS_SQL, InstalledExtension, SNAPSHOT_SQL, parse_extensions, parse_snapshot,
};
use super::{CatalogError, Model, Op, plan, render_redacted};
use crate::env::Env;
use crate::params::ConnTarget;
use crate::spec::ComputeSpec;

/// Makes a session refuse every write.
pub const READ_ONLY_SQL: &str = "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY";

/// One statement of a plan, as it would be sent (passwords redacted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedStatement {
    /// The database whose session runs it.
    pub database: String,
    pub sql: String,
}

impl PlannedStatement {
    fn of(op: &Op, own_database: &str) -> Self {
        Self {
            database: op.database().unwrap_or(own_database).to_string(),
            sql: render_redacted(op),
        }
    }
}

/// What an apply of the spec would do to the catalog now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Preview {
    /// In the order the apply issues them (databases' sessions run
    /// concurrently, so their statements interleave in the server's log).
    pub statements: Vec<PlannedStatement>,
    /// Databases whose extensions would be skipped (missing, invalid or
    /// not accepting connections).
    pub skipped_databases: Vec<String>,
}

async fn open_read_only<E: Env>(
    env: &E,
    target: &ConnTarget,
) -> Result<tokio_postgres::Client, CatalogError> {
    let client = execute::open(env, target).await?;
    execute::simple(
        env,
        &client,
        &target.dbname,
        "read-only session",
        READ_ONLY_SQL,
    )
    .await?;
    Ok(client)
}

async fn installed_in<E: Env>(
    env: &E,
    target: &ConnTarget,
    database: &str,
) -> Result<Vec<InstalledExtension>, CatalogError> {
    let client = open_read_only(env, &target.with_dbname(database)).await?;
    let text = execute::query_text(
        env,
        &client,
        database,
        "installed extensions",
        EXTENSIONS_SQL,
    )
    .await?;
    Ok(parse_extensions(&text)?)
}

/// The plan of `spec` against the catalog at `target` (the supervisor's
/// own database), changing nothing.
pub async fn preview<E: Env>(
    env: &E,
    target: &ConnTarget,
    spec: &ComputeSpec,
) -> Result<Preview, CatalogError> {
    let own_db = target.dbname.as_str();
    let main = open_read_only(env, target).await?;
    let text = execute::query_text(env, &main, own_db, "catalog snapshot", SNAPSHOT_SQL).await?;
    let snapshot = parse_snapshot(&text)?;
    let ops = plan(&snapshot, spec, own_db)?;
    let mut out = Preview {
        statements: ops
            .iter()
            .map(|op| PlannedStatement::of(op, own_db))
            .collect(),
        skipped_databases: Vec::new(),
    };
    let mut model = Model::from_snapshot(&snapshot);
    for op in &ops {
        let _ = model.apply(op);
    }
    let (targets, skipped) = extension_targets(spec, &model);
    out.skipped_databases = skipped;
    let before = Model::from_snapshot(&snapshot);
    for t in targets {
        // Where its extensions are now: itself (perhaps under its name
        // before a rename), or, when the plan creates it, its template.
        let source = t
            .origin
            .clone()
            .or_else(|| t.template.clone())
            .filter(|db| before.databases.get(db).is_some_and(|d| d.connectable()));
        let installed = match source {
            Some(db) => installed_in(env, target, &db).await?,
            None => Vec::new(),
        };
        let mut ext_ops = plan_extensions(&t.database, &installed, &t.wanted);
        ext_ops.push(t.marker_op());
        out.statements
            .extend(ext_ops.iter().map(|op| PlannedStatement::of(op, own_db)));
    }
    Ok(out)
}
