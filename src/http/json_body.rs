//! [`SpecJson`]: the JSON body extractor of `POST /configure`, the one route
//! whose body grows with the catalog (about 100 bytes per role).
//!
//! axum's `Json` parses through `serde_path_to_error`, which copies every
//! object key it visits into a fresh `String` so that an error can name its
//! path: three allocations per role of a spec, on every request. A body
//! that parses needs no path, so this extractor parses with plain
//! `serde_json` first and only re-runs axum's own parser when that fails,
//! to give exactly the rejection (status, message, JSON path) axum gives.
//! The content-type check and the body limit are axum's too.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, ApiJson, json_rejection};

/// `ApiJson<T>` with a fast path for bodies that parse.
pub struct SpecJson<T>(pub T);

/// Whether the request says its body is JSON, as axum's `Json` decides it
/// (`application/json` or an `application/*+json` type).
fn json_content_type(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == "application"
                && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
}

impl<S, T> FromRequest<S> for SpecJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            // axum's 415, with our hint.
            return ApiJson::<T>::from_request(req, state)
                .await
                .map(|ApiJson(v)| Self(v));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r| json_rejection(JsonRejection::from(r)))?;
        match serde_json::from_slice::<T>(&bytes) {
            Ok(v) => Ok(Self(v)),
            // The slow path names the JSON path of the problem.
            Err(_) => match Json::<T>::from_bytes(&bytes) {
                Ok(Json(v)) => Ok(Self(v)),
                Err(r) => Err(json_rejection(r)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;
    use crate::http::routes::configure::ConfigureRequest;

    fn request(content_type: Option<&str>, body: impl Into<Body>) -> Request {
        let mut b = Request::post("/configure");
        if let Some(ct) = content_type {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        b.body(body.into()).unwrap()
    }

    /// Both extractors on the same request: (fast, axum's).
    async fn both(
        content_type: Option<&str>,
        body: &[u8],
    ) -> (
        Result<ConfigureRequest, ApiError>,
        Result<ConfigureRequest, ApiError>,
    ) {
        let fast =
            SpecJson::<ConfigureRequest>::from_request(request(content_type, body.to_vec()), &())
                .await
                .map(|SpecJson(v)| v);
        let slow =
            ApiJson::<ConfigureRequest>::from_request(request(content_type, body.to_vec()), &())
                .await
                .map(|ApiJson(v)| v);
        (fast, slow)
    }

    const GOOD: &str = r#"{"spec": {"format_version": 1.0, "operation_uuid": "op", "skip_pg_catalog_updates": true,
        "cluster": {"roles": [{"name": "alice", "encrypted_password": "0123456789abcdef0123456789abcdef"}],
                    "databases": [{"name": "app", "owner": "alice"}]}}, "unknown": [1, 2]}"#;

    #[tokio::test]
    async fn a_good_body_parses_to_what_axum_parses() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            let (fast, slow) = both(Some(ct), GOOD.as_bytes()).await;
            let (fast, slow) = (fast.expect("fast parses"), slow.expect("axum parses"));
            assert_eq!(fast.spec, slow.spec);
            assert_eq!(fast.spec.cluster.roles[0].name, "alice");
        }
    }

    #[tokio::test]
    async fn every_rejection_is_axums_own() {
        let cases: Vec<(Option<&str>, Vec<u8>)> = vec![
            // Syntax: truncated, trailing garbage, not UTF-8.
            (Some("application/json"), GOOD.as_bytes()[..40].to_vec()),
            (Some("application/json"), format!("{GOOD} x").into_bytes()),
            (Some("application/json"), b"{\"spec\": \"\xff\"}".to_vec()),
            // Data: wrong type deep inside (the path is named), missing field.
            (
                Some("application/json"),
                GOOD.replace("\"alice\", \"encrypted", "7, \"encrypted")
                    .into_bytes(),
            ),
            (
                Some("application/json"),
                br#"{"spec": {"format_version": 1.0}}"#.to_vec(),
            ),
            (Some("application/json"), b"[]".to_vec()),
            // Content type: missing, wrong, malformed.
            (None, GOOD.as_bytes().to_vec()),
            (Some("text/plain"), GOOD.as_bytes().to_vec()),
            (Some("application/json garbage"), GOOD.as_bytes().to_vec()),
            // Over axum's default body limit (the router raises it).
            (Some("application/json"), vec![b' '; 3 * 1024 * 1024]),
        ];
        for (ct, body) in cases {
            let (fast, slow) = both(ct, &body).await;
            let (fast, slow) = (
                fast.expect_err("fast rejects"),
                slow.expect_err("axum rejects"),
            );
            assert_eq!(fast, slow, "content type {ct:?}");
            assert!(fast.status.is_client_error());
        }
        let (fast, _) = both(
            Some("application/json"),
            GOOD.replace("\"alice\", \"encrypted", "7, \"encrypted")
                .as_bytes(),
        )
        .await;
        let e = fast.expect_err("rejected");
        // The role list is decoded on its own (spec/catalog_list.rs), so the
        // place inside it follows the list's own path.
        assert!(
            e.message
                .contains("spec.cluster.roles: [0].name: invalid type"),
            "{}",
            e.message
        );
    }
}
