//! The internal listener's routes (`--internal-http-port`, loopback only,
//! no auth, as Neon's internal server): what processes on the compute
//! itself ask for.
//!
//! - `POST /extensions` `{extension, database, version}`: `CREATE EXTENSION
//!   IF NOT EXISTS ... VERSION ...` in that database, or `ALTER EXTENSION
//!   ... UPDATE TO` when another version is installed; answers
//!   `{extension, version}`.
//! - `POST /grants` `{database, schema, privileges, role}`: `GRANT
//!   privileges ON SCHEMA schema TO role` (privileges `USAGE` and `CREATE`,
//!   as Neon's); answers the request.
//! - `POST /refresh_configuration`: pull the spec from the control plane
//!   again and apply it if it moves storage (`crate::refresh`). As Neon's,
//!   it answers 200 (no body) once the request is handed over, without
//!   waiting for the pull; 412 without `--control-plane-uri`, or when the
//!   compute is in no state to apply a spec (empty, stopping, or failed
//!   without Postgres).
//! - `/extension_server/{*filename}`: Neon's remote extension storage: 501.
//!
//! `/extensions` and `/grants`: 412 unless the compute is running, 400 for
//! a bad request, 500 with Postgres' reason when the statement fails.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use crate::catalog::SchemaPrivilege;
use crate::env::{Env, timeout};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiJson};
use crate::refresh::{self, RefreshHandle};

/// Bounds one request's SQL.
pub const INTERNAL_TIMEOUT: Duration = Duration::from_secs(30);

/// Neon's `ExtensionInstallRequest`.
#[derive(Debug, Deserialize)]
pub struct ExtensionRequest {
    pub extension: String,
    pub database: String,
    pub version: String,
}

/// Neon's `ExtensionInstallResult`.
#[derive(Debug, Serialize)]
pub struct ExtensionResult {
    pub extension: String,
    pub version: String,
}

/// Neon's `SetRoleGrantsRequest` (and, echoed, its response).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GrantsRequest {
    pub database: String,
    pub schema: String,
    pub privileges: Vec<String>,
    pub role: String,
}

fn running<E: Env>(state: &AppState<E>) -> Result<(), ApiError> {
    let status = state.compute.subscribe().borrow().status;
    super::require_running(status, "retry once it runs")
}

fn name_ok(what: &str, v: &str) -> Result<(), ApiError> {
    if v.is_empty() || v.contains('\0') || v.len() > crate::spec::MAX_NAME_BYTES {
        return Err(ApiError::bad_request(format!(
            "{what} {v:?} is not a valid Postgres name (1-{} bytes, no NUL)",
            crate::spec::MAX_NAME_BYTES
        )));
    }
    Ok(())
}

/// A catalog failure of an internal request: 500 with Postgres' reason.
fn failed(what: &str, database: &str, e: crate::catalog::CatalogError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("{what} in database {database:?} failed: {e}"),
    )
}

/// `POST /extensions`.
pub async fn extensions<E: Env>(
    State(state): State<AppState<E>>,
    ApiJson(req): ApiJson<ExtensionRequest>,
) -> Result<(StatusCode, Json<ExtensionResult>), ApiError> {
    running(&state)?;
    name_ok("extension", &req.extension)?;
    name_ok("database", &req.database)?;
    if req.version.is_empty() || req.version.contains('\0') {
        return Err(ApiError::bad_request("version must be a non-empty string"));
    }
    let work = state
        .compute
        .install_extension(&req.database, &req.extension, &req.version);
    bounded(&state, work)
        .await?
        .map_err(|e| failed("installing the extension", &req.database, e))?;
    tracing::info!(extension = %req.extension, database = %req.database, version = %req.version, "extension installed");
    // 201, as Neon's.
    Ok((
        StatusCode::CREATED,
        Json(ExtensionResult {
            extension: req.extension,
            version: req.version,
        }),
    ))
}

/// `POST /grants`.
pub async fn grants<E: Env>(
    State(state): State<AppState<E>>,
    ApiJson(req): ApiJson<GrantsRequest>,
) -> Result<(StatusCode, Json<GrantsRequest>), ApiError> {
    running(&state)?;
    name_ok("database", &req.database)?;
    name_ok("schema", &req.schema)?;
    name_ok("role", &req.role)?;
    let mut privileges = Vec::new();
    for p in &req.privileges {
        let Some(privilege) = SchemaPrivilege::parse(p) else {
            let names: Vec<&str> = SchemaPrivilege::ALL.iter().map(|p| p.keyword()).collect();
            return Err(ApiError::bad_request(format!(
                "privilege {p:?} cannot be granted on a schema here; use {}",
                names.join(" or ")
            )));
        };
        if !privileges.contains(&privilege) {
            privileges.push(privilege);
        }
    }
    if privileges.is_empty() {
        return Err(ApiError::bad_request(
            "privileges is empty; name USAGE and/or CREATE",
        ));
    }
    let work =
        state
            .compute
            .grant_schema_privileges(&req.database, &req.schema, privileges, &req.role);
    bounded(&state, work)
        .await?
        .map_err(|e| failed("the schema grant", &req.database, e))?;
    tracing::info!(database = %req.database, schema = %req.schema, role = %req.role, "schema privileges granted");
    Ok((StatusCode::CREATED, Json(req)))
}

/// Bounds an internal request's catalog work by [`INTERNAL_TIMEOUT`].
async fn bounded<E: Env, T>(
    state: &AppState<E>,
    work: impl std::future::Future<Output = T>,
) -> Result<T, ApiError> {
    timeout(state.compute.env(), INTERNAL_TIMEOUT, work)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the request's catalog work: {e} (is a lock held? see pg_locks)"),
            )
        })
}

/// `POST /refresh_configuration`: hands a refresh request to the refresher
/// (`None`: no control plane to pull from).
pub async fn refresh_configuration<E: Env>(
    State(state): State<AppState<E>>,
    Extension(handle): Extension<Option<RefreshHandle>>,
) -> Result<StatusCode, ApiError> {
    let Some(handle) = handle else {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "no control plane to refresh the configuration from: compute_ctl was started without --control-plane-uri and --compute-id; deliver specs with POST /configure instead",
        ));
    };
    if let Some(why) = refresh::refusal(&state.compute.subscribe().borrow()) {
        return Err(ApiError::new(StatusCode::PRECONDITION_FAILED, why));
    }
    handle.request();
    tracing::info!("configuration refresh requested");
    Ok(StatusCode::OK)
}

/// Neon's internal routes that need Neon's storage.
pub async fn not_applicable(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{} is Neon-specific (remote extension storage) and not applicable here; see README, \"Neon's routes\"",
            uri.path()
        ),
    )
}
