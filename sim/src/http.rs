//! The control plane's HTTP client: real HTTP/1.1 (hyper) over turmoil TCP,
//! one connection per request, every request with a deadline.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::world::env::SimClock;

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP answer: status and body.
    Answer(u16, String),
    /// No connection, or the connection broke.
    Transport(String),
    /// No answer within the deadline.
    DeadlineExceeded,
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Answer(s, _) => Some(*s),
            _ => None,
        }
    }

    /// A short label for the trace.
    pub fn label(&self) -> String {
        match self {
            Outcome::Answer(s, _) => s.to_string(),
            Outcome::Transport(_) => "transport_error".into(),
            Outcome::DeadlineExceeded => "deadline_exceeded".into(),
        }
    }
}

/// Sends one request to `host:port` and waits at most `deadline`.
pub async fn request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    deadline: Duration,
) -> Outcome {
    let attempt = async {
        let stream = turmoil::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| e.to_string())?;
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    match compute_ctl::env::timeout(&SimClock, deadline, attempt).await {
        Ok(Ok((s, b))) => Outcome::Answer(s, b),
        Ok(Err(e)) => Outcome::Transport(e),
        Err(_) => Outcome::DeadlineExceeded,
    }
}
