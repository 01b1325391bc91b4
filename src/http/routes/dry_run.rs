//! `POST /configure?dry_run=true`: what a configure with this spec would do,
//! changing nothing.
//!
//! No file is written, no signal sent, no state changed, and the catalog is
//! read over read-only sessions (see [`crate::catalog::preview`]); so a dry
//! run may run while another configure is in flight, and answers 200 even
//! for an invalid spec (its problems are the answer). The body holds:
//! - `problems`: every validation problem (the plan is made only without);
//! - `catalog`: the exact statements an apply would run now, passwords
//!   redacted (`skipped` and no statements with `skip_pg_catalog_updates`,
//!   which opens no session at all, as the apply would);
//! - `settings`: every value of `postgresql.conf` that would change (name,
//!   old, new; connection strings redacted), old from the spec in effect;
//! - `restart_required`: the changed settings of `postmaster` context
//!   (`postgres --describe-config`), against the spec Postgres started with;
//! - `apply`: `start` (no Postgres yet), `restart`, `reload` or `none`;
//! - `statement_count`: the number of catalog statements.

use std::collections::BTreeSet;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::catalog::{self, PlannedStatement};
use crate::env::Env;
use crate::http::AppState;
use crate::pg;
use crate::spec::{ComputeSpec, SpecProblem, ValidationContext, validate};
use crate::state::ComputeStatus;

/// The query string of `POST /configure`.
#[derive(Debug, Default, Deserialize)]
pub struct ConfigureQuery {
    /// Only show what the configure would do.
    #[serde(default)]
    pub dry_run: bool,
}

/// One setting whose value would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingChange {
    pub name: String,
    /// `None`: not set now.
    pub old: Option<String>,
    /// `None`: no longer set.
    pub new: Option<String>,
}

/// The catalog part of the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CatalogPlan {
    /// `skip_pg_catalog_updates`: no catalog work, no session.
    pub skipped: bool,
    /// Why no plan could be made (Postgres not running, unreachable, a
    /// spec the catalog cannot take).
    pub error: Option<String>,
    pub statements: Vec<PlannedStatement>,
    pub skipped_databases: Vec<String>,
}

/// The answer of a dry run (`POST /configure?dry_run=true`), and what
/// `compute_ctl --plan` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DryRunBody {
    pub dry_run: bool,
    pub valid: bool,
    pub problems: Vec<SpecProblem>,
    /// The compute's status when the dry run was made; absent from
    /// `--plan`, which runs beside no compute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<ComputeStatus>,
    pub catalog: CatalogPlan,
    pub settings: Vec<SettingChange>,
    pub restart_required: Vec<String>,
    /// `start`, `restart`, `reload` or `none`; `unknown` from `--plan`,
    /// which does not know the configuration Postgres runs with.
    pub apply: &'static str,
    pub statement_count: usize,
}

impl DryRunBody {
    /// The answer once the spec is validated, before anything is read.
    fn validated(spec: &ComputeSpec, status: Option<ComputeStatus>) -> Self {
        Self {
            dry_run: true,
            valid: true,
            problems: Vec::new(),
            status,
            catalog: CatalogPlan {
                skipped: spec.skip_pg_catalog_updates,
                ..Default::default()
            },
            settings: Vec::new(),
            restart_required: Vec::new(),
            apply: "none",
            statement_count: 0,
        }
    }

    fn with_problems(mut self, problems: Vec<SpecProblem>) -> Self {
        self.valid = problems.is_empty();
        self.problems = problems;
        if !self.valid {
            self.catalog.error = Some("the spec is invalid; see problems".into());
        }
        self
    }

    fn with_catalog(mut self, preview: catalog::Preview) -> Self {
        self.statement_count = preview.statements.len();
        self.catalog.statements = preview.statements;
        self.catalog.skipped_databases = preview.skipped_databases;
        self
    }
}

/// `compute_ctl --plan`: the dry run of `spec` against a Postgres that no
/// compute_ctl of this process supervises: validation problems and the
/// catalog plan (read-only sessions; none without `conn`); `apply` is
/// `unknown` and `settings` empty, as the configuration Postgres runs with
/// is not known here.
pub async fn plan_only<E: Env>(
    env: &E,
    conn: Option<&crate::params::ConnTarget>,
    spec: &ComputeSpec,
    ctx: &ValidationContext,
) -> Result<DryRunBody, catalog::CatalogError> {
    let mut body = DryRunBody::validated(spec, None).with_problems(validate(spec, ctx));
    body.apply = "unknown";
    let Some(conn) = conn.filter(|_| body.valid && !spec.skip_pg_catalog_updates) else {
        return Ok(body);
    };
    let preview = catalog::preview(env, conn, spec).await?;
    Ok(body.with_catalog(preview))
}

/// Values that may hold a password: redacted as connection strings.
fn sensitive(name: &str) -> bool {
    name.contains("connstring") || name.contains("conninfo") || name.contains("safekeepers")
}

/// The `postgresql.conf` values that differ between `old` and `new`, sorted by name.
pub fn settings_diff(
    old: Option<&ComputeSpec>,
    new: &ComputeSpec,
    conn: &crate::params::ConnTarget,
) -> Vec<SettingChange> {
    let values = |s: &ComputeSpec| pg::conf_values(&pg::render_postgresql_conf(s, conn).text);
    let before = old.map(values).unwrap_or_default();
    let after = values(new);
    let names: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let show = |name: &str, v: Option<&String>| {
        v.map(|v| {
            if sensitive(name) {
                pg::redact_connstr(v)
            } else {
                v.clone()
            }
        })
    };
    names
        .into_iter()
        .filter(|n| before.get(*n) != after.get(*n))
        .map(|n| SettingChange {
            name: n.clone(),
            old: show(n, before.get(n)),
            new: show(n, after.get(n)),
        })
        .collect()
}

/// Makes the dry run of `spec`.
pub async fn dry_run<E: Env>(state: &AppState<E>, spec: &ComputeSpec) -> DryRunBody {
    let compute = &state.compute;
    let mut problems = super::configure::spec_problems(compute, spec);
    let refused = compute.setting_problems(spec, &problems).await;
    problems.extend(refused);
    let st = compute.state();
    let mut body = DryRunBody::validated(spec, Some(st.status)).with_problems(problems);
    if !body.valid {
        return body;
    }
    body.settings = settings_diff(st.spec.as_deref(), spec, &compute.params().conn);
    let running = st.postgres_started && !st.supervisor_exited;
    if let Some((contexts, started_with)) = compute.restart_basis() {
        body.restart_required = pg::pending_restart(contexts, started_with, spec);
    }
    body.apply = if !running {
        "start"
    } else if !body.restart_required.is_empty() {
        "restart"
    } else if !body.settings.is_empty() {
        "reload"
    } else {
        "none"
    };
    if spec.skip_pg_catalog_updates {
        return body;
    }
    if !running {
        body.catalog.error = Some(format!(
            "Postgres is not running (status {}); the catalog plan is made against a running Postgres",
            st.status
        ));
        return body;
    }
    match catalog::preview(compute.env(), &compute.params().conn, spec).await {
        Ok(p) => body.with_catalog(p),
        Err(e) => {
            body.catalog.error = Some(e.to_string());
            body
        }
    }
}

/// The response of `POST /configure?dry_run=true`: always 200.
pub async fn respond<E: Env>(state: &AppState<E>, spec: &ComputeSpec) -> Response {
    tracing::info!(operation_uuid = ?spec.operation_uuid, "dry run");
    Json(dry_run(state, spec).await).into_response()
}
