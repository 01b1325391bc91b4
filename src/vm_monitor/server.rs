//! The websocket endpoint: `GET /monitor` upgrades to the agent protocol.
//! Served through `http::serve` on an Env listener, like the HTTP API.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::middleware::from_fn;
use axum::response::Response;
use axum::routing::get;

use super::{MAX_MESSAGE_BYTES, VmMonitor, dispatcher};
use crate::env::Env;

/// The monitor's router: `GET /monitor`; errors are JSON like the API's.
pub fn router<E: Env>(mon: Arc<VmMonitor<E>>) -> Router {
    Router::new()
        .route("/monitor", get(upgrade::<E>))
        .layer(from_fn(crate::http::error::json_errors))
        .with_state(mon)
}

async fn upgrade<E: Env>(State(mon): State<Arc<VmMonitor<E>>>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| dispatcher::serve_agent(mon, socket))
}

/// Serves the monitor on `listener` until `shutdown` completes.
pub async fn serve<E: Env>(
    listener: E::Listener,
    mon: Arc<VmMonitor<E>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    <E::Listener as axum::serve::Listener>::Addr: std::fmt::Debug,
{
    crate::http::serve::<E>(listener, router(mon), shutdown).await
}
