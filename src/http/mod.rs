//! The HTTP API the control plane drives the compute with (DESIGN §5,
//! `openapi.yaml`).
//!
//! [`router`] is generic over [`Env`] and does no I/O of its own: production
//! serves it on a tokio listener, the simulator on a turmoil one, both
//! through [`serve`]. Layers, outermost first: request id ([`request_id`]),
//! metrics and access log ([`observe`]), JSON errors ([`error`]), body limit,
//! the W3C trace context ([`trace_context`]: the request's span, when spans
//! are exported); the protected routes add JWT auth ([`auth`]).

pub mod auth;
pub mod error;
pub mod json_body;
pub mod observe;
pub mod request_id;
pub mod rfc3339;
pub mod routes;
mod serve;
pub mod tls;
pub mod trace_context;
pub mod verified_tokens;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

pub use auth::{Auth, AuthSlot};
pub use error::ApiError;
pub use serve::{ServeLimits, serve, serve_tls_with_limits, serve_with_limits};
pub use tls::HttpTls;

use crate::compute::Compute;
use crate::env::Env;

/// Every route, (method, path); error messages list them, a test checks
/// that each one is served.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/status"),
    ("POST", "/configure"),
    ("POST", "/terminate"),
    ("GET", "/metrics"),
    ("GET", "/metrics.json"),
    ("GET", "/dbs_and_roles"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("POST", "/check_writability"),
    ("GET", "/database_schema"),
    ("GET", "/insights"),
    ("GET", "/hadron_liveness_probe"),
    ("GET", "/lfc/prewarm"),
    ("POST", "/lfc/prewarm"),
    ("DELETE", "/lfc/prewarm"),
    ("GET", "/lfc/offload"),
    ("POST", "/lfc/offload"),
    ("POST", "/promote"),
    ("GET", "/autoscaling_metrics"),
];

/// The routes that need a bearer token once a key set is configured:
/// exactly those of Neon's authenticated external router
/// (`compute_tools/src/http/server.rs`). `/metrics`,
/// `/autoscaling_metrics` (as Neon) and our `/health` and `/ready` stay open.
pub const PROTECTED: &[&str] = &[
    "/check_writability",
    "/configure",
    "/database_schema",
    "/dbs_and_roles",
    "/hadron_liveness_probe",
    "/insights",
    "/lfc/offload",
    "/lfc/prewarm",
    "/metrics.json",
    "/promote",
    "/status",
    "/terminate",
];

/// Largest request body accepted (a spec with thousands of roles fits).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What every handler sees.
pub struct AppState<E: Env> {
    pub compute: Arc<Compute<E>>,
    /// Empty: auth is off.
    pub auth: AuthSlot,
}

impl<E: Env> Clone for AppState<E> {
    fn clone(&self) -> Self {
        Self {
            compute: self.compute.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// The API of `compute`. With `auth`, the [`PROTECTED`] routes require a
/// bearer token.
pub fn router<E: Env>(compute: Arc<Compute<E>>, auth: Option<Auth>) -> Router {
    router_with_auth(compute, AuthSlot::new(auth))
}

/// [`router`] with a key set that can change while it serves (a control
/// plane's `compute_ctl_config.jwks`).
pub fn router_with_auth<E: Env>(compute: Arc<Compute<E>>, auth: AuthSlot) -> Router {
    let state = AppState { compute, auth };
    let protected = Router::new()
        .route("/configure", post(routes::configure::post::<E>))
        .route("/terminate", post(routes::terminate::post::<E>))
        .route("/dbs_and_roles", get(routes::dbs_and_roles::get::<E>))
        .route(
            "/check_writability",
            post(routes::check_writability::post::<E>),
        )
        .route("/database_schema", get(routes::database_schema::get::<E>))
        .route("/insights", get(routes::insights::get::<E>))
        .route("/hadron_liveness_probe", get(routes::neon::liveness::<E>))
        .route("/status", get(routes::status::get::<E>))
        .route("/metrics.json", get(routes::metrics::json::<E>))
        // Neon-only routes (Neon's storage extension): 501 on the methods
        // Neon serves, 405 on others.
        .route(
            "/lfc/prewarm",
            get(routes::neon::not_applicable)
                .post(routes::neon::not_applicable)
                .delete(routes::neon::not_applicable),
        )
        .route(
            "/lfc/offload",
            get(routes::neon::not_applicable).post(routes::neon::not_applicable),
        )
        .route("/promote", post(routes::promote::post::<E>))
        .route_layer(from_fn_with_state(state.clone(), auth::require::<E>));
    Router::new()
        .route("/metrics", get(routes::metrics::text::<E>))
        .route("/autoscaling_metrics", get(routes::neon::not_applicable))
        .route("/health", get(routes::probes::health::<E>))
        .route("/ready", get(routes::probes::ready::<E>))
        .merge(protected)
        .layer(from_fn(trace_context::layer))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(error::json_errors))
        .layer(from_fn_with_state(state.clone(), observe::layer::<E>))
        .layer(from_fn_with_state(state.clone(), request_id::layer::<E>))
        .with_state(state)
}

/// The routes of the internal listener (`--internal-http-port`, loopback
/// only, no auth, as Neon's internal server): `/extensions`, `/grants`,
/// `/refresh_configuration` (handed to `refresh`, `None` without a control
/// plane), and 501 for Neon's `/extension_server/...`.
pub fn internal_router<E: Env>(
    compute: Arc<Compute<E>>,
    refresh: Option<crate::refresh::RefreshHandle>,
) -> Router {
    let state = AppState {
        compute,
        auth: AuthSlot::default(),
    };
    Router::new()
        .route("/extensions", post(routes::internal::extensions::<E>))
        .route("/grants", post(routes::internal::grants::<E>))
        .route(
            "/extension_server/{*filename}",
            post(routes::internal::not_applicable),
        )
        .route(
            "/refresh_configuration",
            post(routes::internal::refresh_configuration::<E>),
        )
        .layer(axum::Extension(refresh))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(error::json_errors))
        .layer(from_fn_with_state(state.clone(), observe::layer::<E>))
        .layer(from_fn_with_state(state.clone(), request_id::layer::<E>))
        .with_state(state)
}
