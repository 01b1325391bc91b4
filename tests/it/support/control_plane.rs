//! A fake control plane (axum) serving
//! `GET /compute/api/v2/computes/{id}/spec` from a script of replies, on a
//! port of the shared test range.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// One reply of the fake control plane.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A status with a text body.
    Status(u16, &'static str),
    /// 200 with this JSON body.
    Json(serde_json::Value),
}

struct Inner {
    script: Vec<Reply>,
    then: Mutex<Reply>,
    requests: AtomicUsize,
    ids: Mutex<Vec<String>>,
}

/// The running fake; stops when dropped.
pub struct FakeControlPlane {
    pub port: u16,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

async fn spec(State(inner): State<Arc<Inner>>, Path(id): Path<String>) -> Response {
    let n = inner.requests.fetch_add(1, Ordering::SeqCst);
    inner.ids.lock().unwrap().push(id);
    let reply = match inner.script.get(n) {
        Some(r) => r.clone(),
        None => inner.then.lock().unwrap().clone(),
    };
    match reply {
        Reply::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Reply::Json(v) => axum::Json(v).into_response(),
    }
}

impl FakeControlPlane {
    /// Serves `script` in order, then `then` for every later request.
    pub async fn start(script: Vec<Reply>, then: Reply) -> Self {
        let inner = Arc::new(Inner {
            script,
            then: Mutex::new(then),
            requests: AtomicUsize::new(0),
            ids: Mutex::new(Vec::new()),
        });
        // free_port only saw the port free: another process of the run
        // can take it before this bind, so a taken one is passed over.
        let mut attempt = 0;
        let (port, listener) = loop {
            let port = super::ports::free_port();
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break (port, l),
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempt < 10 => {
                    attempt += 1;
                }
                Err(e) => panic!("bind fake control plane on {port}: {e}"),
            }
        };
        let app = axum::Router::new()
            .route(
                "/compute/api/v2/computes/{id}/spec",
                axum::routing::get(spec),
            )
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { port, inner, task }
    }

    /// The base URI to pass as `--control-plane-uri`.
    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answers `reply` from now on, once the script is used up (a spec
    /// that changed in the control plane).
    pub fn set_reply(&self, reply: Reply) {
        *self.inner.then.lock().unwrap() = reply;
    }

    /// How many spec requests were served.
    pub fn requests(&self) -> usize {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// The compute ids requested, in order.
    pub fn ids(&self) -> Vec<String> {
        self.inner.ids.lock().unwrap().clone()
    }
}

impl Drop for FakeControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}
