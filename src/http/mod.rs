//! The HTTP API the control plane drives the compute with (DESIGN §5,
//! `openapi.yaml`).
//!
//! [`router`] is generic over [`Env`] and does no I/O of its own: production
//! serves it on a tokio listener, the simulator on a turmoil one, both
//! through [`serve`]. Layers, outermost first: request id ([`request_id`]),
//! metrics and access log ([`observe`]), JSON errors ([`error`]), body limit;
//! the protected routes add JWT auth ([`auth`]).

pub mod auth;
pub mod error;
pub mod json_body;
pub mod observe;
pub mod request_id;
pub mod rfc3339;
pub mod routes;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};

pub use auth::Auth;
pub use error::ApiError;

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
];

/// Largest request body accepted (a spec with thousands of roles fits).
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// What every handler sees.
pub struct AppState<E: Env> {
    pub compute: Arc<Compute<E>>,
    /// `None`: auth is off.
    pub auth: Option<Arc<Auth>>,
}

impl<E: Env> Clone for AppState<E> {
    fn clone(&self) -> Self {
        Self {
            compute: self.compute.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// The API of `compute`. With `auth`, `/configure`, `/terminate` and
/// `/dbs_and_roles` require a bearer token.
pub fn router<E: Env>(compute: Arc<Compute<E>>, auth: Option<Auth>) -> Router {
    let state = AppState {
        compute,
        auth: auth.map(Arc::new),
    };
    let mut protected = Router::new()
        .route("/configure", post(routes::configure::post::<E>))
        .route("/terminate", post(routes::terminate::post::<E>))
        .route("/dbs_and_roles", get(routes::dbs_and_roles::get::<E>));
    if state.auth.is_some() {
        protected = protected.route_layer(from_fn_with_state(state.clone(), auth::require::<E>));
    }
    Router::new()
        .route("/status", get(routes::status::get::<E>))
        .route("/metrics", get(routes::metrics::text::<E>))
        .route("/metrics.json", get(routes::metrics::json::<E>))
        .route("/health", get(routes::probes::health::<E>))
        .route("/ready", get(routes::probes::ready::<E>))
        .merge(protected)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn(error::json_errors))
        .layer(from_fn_with_state(state.clone(), observe::layer::<E>))
        .layer(from_fn_with_state(state.clone(), request_id::layer::<E>))
        .with_state(state)
}

/// Serves `router` on `listener` (from [`crate::env::Net::bind`]: tokio's in
/// production, turmoil's in the simulator) until `shutdown` completes, then
/// lets the requests in flight finish (graceful shutdown).
pub async fn serve<E: Env>(
    listener: E::Listener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    <E::Listener as axum::serve::Listener>::Addr: std::fmt::Debug,
{
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
