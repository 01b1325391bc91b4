//! Fetching the spec from a control plane (`--control-plane-uri` +
//! `--compute-id`), through the Env seam: HTTP/1.1 with hyper over
//! `Env::connect`, backoff on the Env clock, jitter from the Env RNG.
//!
//! `GET {uri}/compute/api/v2/computes/{compute_id}/spec` answers either
//! Neon's shape `{"status": ..., "spec": {...} | null, ...}` or a bare spec.
//! Neon's envelope may carry `compute_ctl_config.jwks`, the key set the
//! API's bearer tokens are verified with from then on ([`Fetched::jwks`]).
//! When `NEON_CONTROL_PLANE_TOKEN` is set the request carries
//! `Authorization: Bearer $NEON_CONTROL_PLANE_TOKEN` ([`SpecSource::with_token`]).
//! `"spec": null` means "no spec for you yet" (a pre-warmed compute waiting
//! to be attached): we keep polling at `poll_interval`, without limit, since
//! the control plane is reachable and asked us to wait.
//!
//! Failures (connection errors, timeouts, 404, 408, 429, 5xx) are retried
//! with exponential backoff and equal jitter (half fixed, half random), and
//! give up once no answer has been had for `give_up_after`. Answers that will
//! not improve by asking again fail at once: 400/401/403 and other 4xx, a
//! body that is not a spec, a spec that does not validate.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::env::{Env, timeout};
use crate::spec::{ComputeSpec, SpecError, ValidationContext};

/// Specs of thousands of roles are a few MB; this bounds a runaway body.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How often and how long to try.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// First pause after a failure; doubled after each further failure.
    pub initial_backoff: Duration,
    /// Largest pause between attempts.
    pub max_backoff: Duration,
    /// Give up when nothing but failures were seen for this long.
    pub give_up_after: Duration,
    /// Bounds one request (connect, send, read the body).
    pub request_timeout: Duration,
    /// Pause between polls while the control plane answers `spec: null`.
    pub poll_interval: Duration,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            give_up_after: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// Why no spec could be had from the control plane.
#[derive(Debug, thiserror::Error)]
pub enum SpecFetchError {
    #[error("invalid --control-plane-uri {uri:?}: {reason}")]
    BadUri { uri: String, reason: String },
    #[error(
        "the control plane at {url} rejected the request (HTTP {status}): {body}; check --compute-id and the control plane's configuration"
    )]
    Rejected {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the control plane at {url} sent a spec that cannot be used: {source}")]
    BadSpec { url: String, source: SpecError },
    #[error("the control plane at {url} did not answer: {reason}; compute_ctl asks again later")]
    Unanswered { url: String, reason: String },
    #[error(
        "gave up fetching the spec from {url} after {attempts} failed attempt(s) over {elapsed:?}; last error: {last}"
    )]
    GaveUp {
        url: String,
        attempts: u32,
        elapsed: Duration,
        last: String,
    },
}

/// Where the spec is fetched from.
#[derive(Clone, PartialEq, Eq)]
pub struct SpecSource {
    host: String,
    port: u16,
    /// Host header value.
    authority: String,
    /// Path and query of the request.
    path: String,
    /// The full URL, for messages.
    url: String,
    /// Sent as `Authorization: Bearer ...`; never logged.
    token: Option<String>,
}

impl SpecSource {
    /// The spec URL of `compute_id` under the control plane base `uri`.
    pub fn new(uri: &str, compute_id: &str) -> Result<Self, SpecFetchError> {
        let bad = |reason: &str| SpecFetchError::BadUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let mut url = url::Url::parse(uri).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad(
                "only http:// is supported; terminate TLS in a sidecar or use the control plane's internal http address",
            ));
        }
        if compute_id.is_empty() {
            return Err(bad("--compute-id is empty"));
        }
        let host = url
            .host_str()
            .ok_or_else(|| bad("it has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        url.path_segments_mut()
            .map_err(|_| bad("it cannot be a base URL"))?
            .pop_if_empty()
            .extend(["compute", "api", "v2", "computes", compute_id, "spec"]);
        let mut path = url.path().to_string();
        if let Some(q) = url.query() {
            path.push('?');
            path.push_str(q);
        }
        let authority = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        Ok(Self {
            host,
            port,
            authority,
            path,
            url: url.to_string(),
            token: None,
        })
    }

    /// Sends `Authorization: Bearer token` with every request (Neon's
    /// `NEON_CONTROL_PLANE_TOKEN`); an empty token sends nothing.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// The URL the spec is fetched from.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl std::fmt::Debug for SpecSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecSource")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A spec from the control plane and what came with it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub spec: ComputeSpec,
    /// `compute_ctl_config.jwks` of Neon's envelope, when it holds keys.
    pub jwks: Option<serde_json::Value>,
}

/// What one answer of the control plane means.
#[derive(Debug)]
pub enum Answer {
    Spec(Box<Fetched>),
    /// `spec: null`: keep polling.
    NotYet,
}

/// Interprets a 200 body: Neon's `{"spec": ...}` envelope or a bare spec.
pub fn parse_answer(body: &[u8], ctx: &ValidationContext) -> Result<Answer, SpecError> {
    let value: serde_json::Value = serde_json::from_slice(body)?;
    let (spec_value, jwks) = match value {
        serde_json::Value::Object(mut o) if o.contains_key("spec") => {
            let jwks = o
                .get("compute_ctl_config")
                .and_then(|c| c.get("jwks"))
                .filter(|j| j["keys"].as_array().is_some_and(|k| !k.is_empty()))
                .cloned();
            match o.remove("spec").unwrap_or_default() {
                serde_json::Value::Null => return Ok(Answer::NotYet),
                spec => (spec, jwks),
            }
        }
        bare => (bare, None),
    };
    let text = spec_value.to_string();
    let spec = ComputeSpec::parse_and_validate(&text, ctx)?;
    Ok(Answer::Spec(Box::new(Fetched { spec, jwks })))
}

/// Fetches the spec, retrying as [`FetchPolicy`] says.
pub async fn fetch_spec<E: Env>(
    env: &E,
    source: &SpecSource,
    ctx: &ValidationContext,
    policy: &FetchPolicy,
) -> Result<ComputeSpec, SpecFetchError> {
    fetch(env, source, ctx, policy).await.map(|f| f.spec)
}

/// [`fetch_spec`], with what came beside the spec (the key set).
pub async fn fetch<E: Env>(
    env: &E,
    source: &SpecSource,
    ctx: &ValidationContext,
    policy: &FetchPolicy,
) -> Result<Fetched, SpecFetchError> {
    let mut last_answer = env.now();
    let mut failures: u32 = 0;
    loop {
        let attempt = timeout(env, policy.request_timeout, get(env, source)).await;
        let failure = match attempt {
            Err(_) => format!("no answer within {:?}", policy.request_timeout),
            Ok(Err(e)) => e,
            Ok(Ok((200, body))) => match parse_answer(&body, ctx) {
                Ok(Answer::Spec(fetched)) => {
                    tracing::info!(url = %source.url, operation_uuid = ?fetched.spec.operation_uuid, jwks = fetched.jwks.is_some(), "spec received from the control plane");
                    return Ok(*fetched);
                }
                Ok(Answer::NotYet) => {
                    tracing::debug!(url = %source.url, "no spec yet; polling");
                    failures = 0;
                    env.sleep(policy.poll_interval).await;
                    last_answer = env.now();
                    continue;
                }
                Err(e) => {
                    return Err(SpecFetchError::BadSpec {
                        url: source.url.clone(),
                        source: e,
                    });
                }
            },
            Ok(Ok((status, body))) if retryable(status) => {
                format!("HTTP {status}: {}", body_text(&body))
            }
            Ok(Ok((status, body))) => {
                return Err(SpecFetchError::Rejected {
                    url: source.url.clone(),
                    status,
                    body: body_text(&body),
                });
            }
        };
        failures += 1;
        let elapsed = env.now() - last_answer;
        if elapsed >= policy.give_up_after {
            return Err(SpecFetchError::GaveUp {
                url: source.url.clone(),
                attempts: failures,
                elapsed,
                last: failure,
            });
        }
        let pause = backoff(env, policy, failures).min(policy.give_up_after - elapsed);
        tracing::warn!(url = %source.url, attempt = failures, error = %failure, retry_in_ms = crate::env::ms(pause), "fetching the spec failed; retrying");
        env.sleep(pause).await;
    }
}

/// One request, without retries or polling (a configuration refresh, whose
/// caller paces its own attempts): the control plane's answer, `spec: null`
/// included, or why there was none.
pub async fn fetch_once<E: Env>(
    env: &E,
    source: &SpecSource,
    ctx: &ValidationContext,
    request_timeout: Duration,
) -> Result<Answer, SpecFetchError> {
    let unanswered = |reason: String| SpecFetchError::Unanswered {
        url: source.url.clone(),
        reason,
    };
    match timeout(env, request_timeout, get(env, source)).await {
        Err(_) => Err(unanswered(format!("no answer within {request_timeout:?}"))),
        Ok(Err(e)) => Err(unanswered(e)),
        Ok(Ok((200, body))) => parse_answer(&body, ctx).map_err(|e| SpecFetchError::BadSpec {
            url: source.url.clone(),
            source: e,
        }),
        Ok(Ok((status, body))) if retryable(status) => {
            Err(unanswered(format!("HTTP {status}: {}", body_text(&body))))
        }
        Ok(Ok((status, body))) => Err(SpecFetchError::Rejected {
            url: source.url.clone(),
            status,
            body: body_text(&body),
        }),
    }
}

/// Whether an HTTP status may change by asking again.
fn retryable(status: u16) -> bool {
    matches!(status, 404 | 408 | 425 | 429) || status >= 500
}

/// The pause after the `failures`-th failure: exponential, capped, with
/// equal jitter from the Env RNG.
fn backoff<E: Env>(env: &E, policy: &FetchPolicy, failures: u32) -> Duration {
    let exp = 2u32.saturating_pow(failures.saturating_sub(1).min(20));
    let full = policy
        .initial_backoff
        .saturating_mul(exp)
        .min(policy.max_backoff);
    let half = full / 2;
    let half_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(env.next_u64() % half_ns.saturating_add(1))
}

/// A short printable excerpt of a body.
fn body_text(body: &[u8]) -> String {
    let t = String::from_utf8_lossy(body);
    let t = t.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None if t.is_empty() => "(empty body)".to_string(),
        None => t.to_string(),
    }
}

/// One GET: status and body, or why there was none.
async fn get<E: Env>(env: &E, source: &SpecSource) -> Result<(u16, Bytes), String> {
    let stream = env
        .connect(&source.host, source.port)
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", source.host, source.port))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "control plane connection ended");
        }
    });
    let mut req = hyper::Request::get(source.path.as_str())
        .header(hyper::header::HOST, source.authority.as_str())
        .header(hyper::header::ACCEPT, "application/json")
        .header(hyper::header::USER_AGENT, "compute_ctl");
    if let Some(token) = &source.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("cannot build the request: {e}"))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status().as_u16();
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?
        .to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../fixtures/spec_minimal.json");

    #[test]
    fn url_is_built_under_the_base_path_with_an_encoded_id() {
        let s = SpecSource::new("http://cp.local:9090/base/", "comp 1/x").unwrap();
        assert_eq!(s.host, "cp.local");
        assert_eq!(s.port, 9090);
        assert_eq!(s.authority, "cp.local:9090");
        assert_eq!(s.path, "/base/compute/api/v2/computes/comp%201%2Fx/spec");
        let s = SpecSource::new("http://127.0.0.1", "c1").unwrap();
        assert_eq!(
            (s.port, s.path.as_str()),
            (80, "/compute/api/v2/computes/c1/spec")
        );
        assert!(
            SpecSource::new("https://cp", "c1")
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(SpecSource::new("not a url", "c1").is_err());
        assert!(SpecSource::new("http://cp", "").is_err());
    }

    #[test]
    fn envelope_bare_spec_and_null_spec_are_understood() {
        let ctx = ValidationContext::default();
        let envelope = format!(r#"{{"status": "attached", "spec": {SPEC}}}"#);
        assert!(matches!(
            parse_answer(envelope.as_bytes(), &ctx),
            Ok(Answer::Spec(f)) if f.jwks.is_none()
        ));
        let keys = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}"#;
        let with_keys = format!(
            r#"{{"status": "attached", "spec": {SPEC}, "compute_ctl_config": {{"jwks": {keys}}}}}"#
        );
        match parse_answer(with_keys.as_bytes(), &ctx) {
            Ok(Answer::Spec(f)) => assert_eq!(f.jwks.unwrap()["keys"][0]["kty"], "OKP"),
            other => panic!("{other:?}"),
        }
        let no_keys =
            format!(r#"{{"spec": {SPEC}, "compute_ctl_config": {{"jwks": {{"keys": []}}}}}}"#);
        assert!(matches!(
            parse_answer(no_keys.as_bytes(), &ctx),
            Ok(Answer::Spec(f)) if f.jwks.is_none()
        ));
        assert!(matches!(
            parse_answer(SPEC.as_bytes(), &ctx),
            Ok(Answer::Spec(_))
        ));
        let empty = br#"{"status": "empty", "spec": null}"#;
        assert!(matches!(parse_answer(empty, &ctx), Ok(Answer::NotYet)));
        assert!(parse_answer(b"<html>", &ctx).is_err());
        let invalid = br#"{"spec": {"format_version": 2.0, "cluster": {}}}"#;
        assert!(matches!(
            parse_answer(invalid, &ctx),
            Err(SpecError::Invalid(_))
        ));
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for s in [404, 408, 429, 500, 502, 503] {
            assert!(retryable(s), "{s}");
        }
        for s in [400, 401, 403, 410] {
            assert!(!retryable(s), "{s}");
        }
    }
}
