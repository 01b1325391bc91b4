//! `GET /dbs_and_roles`: the roles and databases Postgres holds now, read
//! with the catalog's one-round-trip snapshot ([`catalog::SNAPSHOT_SQL`]).
//! Password hashes are not returned, only whether a role has one.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;

use crate::catalog::{self, Snapshot};
use crate::env::{Env, timeout};
use crate::http::AppState;
use crate::http::error::ApiError;

/// How long reading the catalog may take.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize)]
pub struct RoleBody {
    pub name: String,
    pub has_password: bool,
    pub superuser: bool,
    /// Created by initdb (bootstrap superuser, `pg_*` roles).
    pub builtin: bool,
}

#[derive(Debug, Serialize)]
pub struct DatabaseBody {
    pub name: String,
    pub owner: String,
    pub allow_connections: bool,
    pub is_template: bool,
    /// False for an invalid database (an interrupted `DROP DATABASE`).
    pub valid: bool,
    /// Neon's name for `!allow_connections`.
    pub restrict_conn: bool,
    /// Neon's name for `!valid`.
    pub invalid: bool,
}

/// The answer.
#[derive(Debug, Serialize)]
pub struct DbsAndRoles {
    pub roles: Vec<RoleBody>,
    pub databases: Vec<DatabaseBody>,
}

impl From<Snapshot> for DbsAndRoles {
    fn from(s: Snapshot) -> Self {
        Self {
            roles: s
                .roles
                .into_iter()
                .map(|r| RoleBody {
                    name: r.name,
                    has_password: r.password.is_some(),
                    superuser: r.superuser,
                    builtin: r.builtin,
                })
                .collect(),
            databases: s
                .databases
                .into_iter()
                .map(|d| DatabaseBody {
                    name: d.name,
                    owner: d.owner,
                    allow_connections: d.allow_connections,
                    is_template: d.is_template,
                    valid: d.valid,
                    restrict_conn: !d.allow_connections,
                    invalid: !d.valid,
                })
                .collect(),
        }
    }
}

/// The handler: 412 while Postgres is not up, 503 if it cannot be read.
pub async fn get<E: Env>(State(state): State<AppState<E>>) -> Result<Json<DbsAndRoles>, ApiError> {
    let compute = &state.compute;
    let (status, started) = {
        let rx = compute.subscribe();
        let st = rx.borrow();
        (st.status, st.postgres_started)
    };
    if !started || status.is_terminating() {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "Postgres is not running (the compute is {status}); configure the compute first"
            ),
        ));
    }
    let read = catalog::read_snapshot(compute.env(), &compute.params().conn);
    let unavailable = |reason: String| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the catalog: {reason}; retry once Postgres is healthy"),
        )
    };
    match timeout(compute.env(), SNAPSHOT_TIMEOUT, read).await {
        Ok(Ok(snapshot)) => Ok(Json(snapshot.into())),
        Ok(Err(e)) => Err(unavailable(e.to_string())),
        Err(e) => Err(unavailable(e.to_string())),
    }
}
