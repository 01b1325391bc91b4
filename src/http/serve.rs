//! Serving the router on a listener, with the limits a hostile network needs.
//!
//! `axum::serve` gives hyper no timer, so a client that sends its headers a
//! byte at a time (slowloris) or opens a keep-alive connection and goes quiet
//! holds a task and a file descriptor for ever. Here every connection gets
//! hyper's own HTTP/1 settings ([`ServeLimits`]):
//! - `header_read_timeout`: the whole request head must arrive within it.
//!   hyper starts that clock whenever it waits for a request head, so it also
//!   closes keep-alive connections that stay idle that long;
//! - `max_header_size` and `max_headers`: larger heads get 431;
//! - a cap on open connections: past it a new connection is closed at once,
//!   so a flood costs the flooder, not the compute's memory;
//! - tower-http's body timeout: a request body that pauses longer than
//!   `body_frame_timeout` between two frames fails (the handler answers 400).
//!
//! With `--http-tls` each connection first completes a TLS handshake
//! (tokio-rustls, the pair of [`super::tls::HttpTls`]) within
//! `header_read_timeout`, on the connection's own task.
//!
//! On `shutdown`, idle connections close and requests in flight finish
//! (hyper's graceful shutdown of each connection).
//!
//! The timer is tokio's, which under turmoil is the simulation's clock.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper::rt::Timer;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use crate::env::Env;

/// Limits on what one client may hold of the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeLimits {
    /// Time a client has to send a whole request head; also the longest a
    /// keep-alive connection may stay idle.
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers), in bytes.
    pub max_header_size: usize,
    /// Most headers in one request.
    pub max_headers: usize,
    /// Most connections open at once; more are closed on accept.
    pub max_connections: usize,
    /// Longest pause between two frames of a request body.
    pub body_frame_timeout: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 64 * 1024,
            max_headers: 100,
            // Under the 20,000-descriptor limits of container runtimes, with
            // room for Postgres sessions, files and the monitor.
            max_connections: 16_384,
            body_frame_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves `router` on `listener` (from [`crate::env::Net::bind`]: tokio's in
/// production, turmoil's in the simulator) with the default [`ServeLimits`]
/// until `shutdown` completes, then lets the requests in flight finish
/// (graceful shutdown).
pub async fn serve<E: Env>(
    listener: E::Listener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_limits(listener, router, ServeLimits::default(), shutdown).await
}

/// [`serve`] with explicit limits.
pub async fn serve_with_limits<L>(
    listener: L,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
{
    serve_tls_with_limits(listener, router, limits, None, shutdown).await
}

/// [`serve_with_limits`], over TLS when `tls` is given (`--http-tls`): each
/// accepted connection's handshake runs on its own task and must finish
/// within `header_read_timeout` (a client that stalls it holds a slot no
/// longer than one that stalls its request head).
pub async fn serve_tls_with_limits<L>(
    mut listener: L,
    router: Router,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_size)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Shutdown is announced on `stop`; every connection task holds a clone
    // of `open`, so `closed()` completes when the last one has finished.
    let (stop, stop_rx) = watch::channel(());
    let (open_tx, open) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    let mut refused: u64 = 0;
    let frame_timeout = limits.body_frame_timeout;
    loop {
        let (io, _peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused,
                    "HTTP connection limit reached; closing new connections"
                );
            }
            drop(io);
            continue;
        };
        let http = http.clone();
        let router = router.clone();
        let tls = tls.clone();
        let mut stopping = stop_rx.clone();
        let open = open.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(&http, io, router, frame_timeout, stopping).await,
                Some(acceptor) => {
                    let handshake = tokio::select! {
                        biased;
                        _ = stopping.changed() => None,
                        () = TokioTimer::new().sleep(handshake_timeout) => {
                            tracing::debug!("TLS handshake not finished in time; connection closed");
                            None
                        }
                        done = acceptor.accept(io) => match done {
                            Ok(tls_io) => Some(tls_io),
                            Err(e) => {
                                tracing::debug!(error = %e, "TLS handshake failed");
                                None
                            }
                        },
                    };
                    if let Some(tls_io) = handshake {
                        serve_connection(&http, tls_io, router, frame_timeout, stopping).await;
                    }
                }
            }
            drop((slot, open));
        });
    }
    drop(listener);
    let _ = stop.send(());
    drop(open);
    open_tx.closed().await;
    Ok(())
}

/// Serves one connection until it ends, or until shutdown is announced on
/// `stopping` (then: idle closes now, busy after the response in flight).
async fn serve_connection<I>(
    http: &hyper::server::conn::http1::Builder,
    io: I,
    router: Router,
    frame_timeout: Duration,
    mut stopping: watch::Receiver<()>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(
        router
            .map_request(move |req: hyper::Request<Incoming>| {
                req.map(|b| Body::new(TimeoutBody::new(frame_timeout, b)))
            })
            .map_err(|e: Infallible| match e {}),
    );
    let conn = http
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        biased;
        ended = conn.as_mut() => ended,
        _ = stopping.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}
