//! `X-Request-Id`: taken from the request when it is a sane token, otherwise
//! generated from the Env's (seeded in the simulator) RNG; put on every
//! response and on the tracing span of the request.

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::AppState;
use crate::env::Env;

/// The header name.
pub const HEADER: &str = "x-request-id";

/// Longest request id taken from a client.
const MAX_LEN: usize = 128;

/// The id of the current request (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// Whether a client-supplied id is usable: 1 to 128 visible ASCII characters.
pub fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh id: 128 random bits as 32 hex digits.
pub fn generate<E: Env>(env: &E) -> String {
    format!("{:016x}{:016x}", env.next_u64(), env.next_u64())
}

/// The middleware.
pub async fn layer<E: Env>(
    State(state): State<AppState<E>>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_string)
        .unwrap_or_else(|| generate(state.compute.env()));
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "http",
        request_id = %id,
        method = %req.method(),
        path = %req.uri().path()
    );
    let mut resp = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_tokens_and_refuses_junk() {
        assert!(acceptable("abc-123_XYZ.7"));
        assert!(!acceptable(""));
        assert!(!acceptable("has space"));
        assert!(!acceptable("ctl\u{7}"));
        assert!(!acceptable(&"x".repeat(MAX_LEN + 1)));
        assert!(acceptable(&"x".repeat(MAX_LEN)));
    }
}
