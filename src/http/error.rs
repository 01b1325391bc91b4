//! Every rejection of the API is JSON: `{"error": "..."}` (plus `problems`
//! for an invalid spec). Handlers return [`ApiError`]; the extractors
//! [`ApiJson`] and [`ApiQuery`] turn axum's rejections into it; and the
//! [`json_errors`] middleware rewrites any error response that is not JSON
//! yet (unknown route, wrong method, a rejection from a layer) so that no
//! plain-text error ever leaves the server.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{Method, StatusCode, header, request::Parts};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::spec::SpecProblem;

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Every problem of an invalid spec, each with its JSON path.
    pub problems: Vec<SpecProblem>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[SpecProblem]>::is_empty")]
    problems: &'a [SpecProblem],
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            problems: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 400 for a spec that failed validation, listing every problem.
    pub fn invalid_spec(problems: Vec<SpecProblem>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: format!(
                "spec is invalid ({} problem(s)): {}; nothing was changed, fix the spec and send it again",
                problems.len(),
                SpecProblem::join(&problems)
            ),
            problems,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.status.as_u16(), self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::info!(status = self.status.as_u16(), error = %self.message, "request rejected");
        }
        let body = ErrorBody {
            error: &self.message,
            problems: &self.problems,
        };
        (self.status, Json(body)).into_response()
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s. A body that is JSON but not
/// the expected shape is a 400 (not axum's 422): the control plane sent a bad
/// request either way.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

pub(crate) fn json_rejection(r: JsonRejection) -> ApiError {
    // A body not sent as JSON is a bad request too (Neon's contract for
    // /configure knows 400, not 415).
    let status = match &r {
        JsonRejection::JsonDataError(_)
        | JsonRejection::JsonSyntaxError(_)
        | JsonRejection::MissingJsonContentType(_) => StatusCode::BAD_REQUEST,
        other => other.status(),
    };
    let hint = match (&r, status) {
        (JsonRejection::MissingJsonContentType(_), _) => {
            "; send the body with Content-Type: application/json"
        }
        (_, StatusCode::PAYLOAD_TOO_LARGE) => "; the API accepts bodies up to the documented limit",
        _ => "",
    };
    ApiError::new(status, format!("{}{hint}", r.body_text()))
}

/// `Query<T>` whose rejections are [`ApiError`]s (400).
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>: FromRequestParts<S, Rejection = QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(r) => Err(ApiError::bad_request(r.body_text())),
        }
    }
}

/// Whether a response already carries a JSON body.
fn is_json(resp: &Response) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Rewrites error responses that are not JSON (404 of an unknown route, 405,
/// rejections of layers) into `{"error": ...}`, keeping status and headers.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = describe(status, &method, &path, &text);
    // Keep the original headers (Allow, WWW-Authenticate, ...) but the body's.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let mut fresh = ApiError::new(status, message).into_response();
    fresh.headers_mut().extend(parts.headers);
    fresh
}

fn describe(status: StatusCode, method: &Method, path: &str, text: &str) -> String {
    match status {
        StatusCode::NOT_FOUND => format!(
            "no route {method} {path}; the routes are: {} (see openapi.yaml)",
            super::ROUTES
                .iter()
                .map(|(m, p)| format!("{m} {p}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed: Vec<&str> = super::ROUTES
                .iter()
                .filter(|(_, p)| *p == path)
                .map(|(m, _)| *m)
                .collect();
            format!(
                "method {method} is not allowed on {path}; allowed: {}",
                allowed.join(", ")
            )
        }
        _ if !text.is_empty() => text.to_string(),
        _ => status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_string(),
    }
}
