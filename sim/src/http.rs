//! The control plane's HTTP client: real HTTP/1.1 (hyper) over turmoil TCP,
//! one connection per request, every request with a deadline, and a bearer
//! token as Neon's control plane sends (a JWT with the compute's
//! `compute_id`, no `exp`), signed with the world's test key
//! ([`crate::world::SIGNING_KEY_PEM`]; Ed25519 signatures are
//! deterministic, so the same request is the same bytes on every run).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

use crate::world::env::SimClock;
use crate::world::{FOREIGN_KEY_PEM, SIGNING_KEY_PEM, SIGNING_KID, compute_id};

/// What a request to a compute carries in `Authorization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The control plane's token for that compute: accepted.
    Valid,
    /// No header: 400.
    Missing,
    /// A token with the right claims and kid, signed by a key outside the
    /// compute's key set: 401.
    ForeignKey,
    /// A genuine token issued for another compute: 403.
    OtherCompute,
}

impl Credential {
    /// The status compute_ctl's auth answers this credential with on a
    /// protected route (`src/http/auth.rs`), None when it lets it through.
    pub fn refused_with(self) -> Option<u16> {
        match self {
            Credential::Valid => None,
            Credential::Missing => Some(400),
            Credential::ForeignKey => Some(401),
            Credential::OtherCompute => Some(403),
        }
    }

    /// The `Authorization` header of a request to the compute on `host`.
    pub fn header(self, host: &str) -> Option<String> {
        let (pem, id) = match self {
            Credential::Missing => return None,
            Credential::Valid => (SIGNING_KEY_PEM, compute_id(host)),
            Credential::ForeignKey => (FOREIGN_KEY_PEM, compute_id(host)),
            Credential::OtherCompute => (SIGNING_KEY_PEM, compute_id(&format!("not-{host}"))),
        };
        Some(format!("Bearer {}", sign(pem, &id)))
    }
}

/// A token with claim `compute_id`, signed with the Ed25519 key `pem` under
/// the kid of the world's key. Ed25519 signatures are deterministic, so a
/// token is signed once per thread and reused, as a control plane reuses a
/// token until it expires (these carry no `exp`).
fn sign(pem: &'static [u8], compute_id: &str) -> String {
    type Signed = std::collections::BTreeMap<(&'static [u8], String), String>;
    thread_local! {
        static SIGNED: std::cell::RefCell<Signed> = const { std::cell::RefCell::new(Signed::new()) };
    }
    SIGNED.with_borrow_mut(|signed| {
        signed
            .entry((pem, compute_id.to_owned()))
            .or_insert_with(|| sign_now(pem, compute_id))
            .clone()
    })
}

fn sign_now(pem: &[u8], compute_id: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_ed_pem(pem).expect("the test key is an Ed25519 PEM");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(SIGNING_KID.into());
    let claims = serde_json::json!({ "compute_id": compute_id });
    jsonwebtoken::encode(&header, &claims, &key).expect("a JWT of fixed claims encodes")
}

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

/// Sends one request to `host:port` with the control plane's token and
/// waits at most `deadline`.
pub async fn request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    deadline: Duration,
) -> Outcome {
    request_with(host, port, method, path, body, deadline, Credential::Valid).await
}

/// [`request`] carrying `credential`.
pub async fn request_with(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    body: Option<String>,
    deadline: Duration,
    credential: Credential,
) -> Outcome {
    let authorization = credential.header(host);
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
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json");
        if let Some(a) = &authorization {
            req = req.header("authorization", a.as_str());
        }
        let req = req
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
