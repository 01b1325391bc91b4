//! The auth matrix on the router, with the test keys of `fixtures/jwt/`.

use std::time::UNIX_EPOCH;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::env::Clock;
use crate::http::{Auth, auth::JwksError, router};

fn jwt_fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/jwt")
            .join(name),
    )
    .unwrap()
}

fn auth() -> Auth {
    let jwks = String::from_utf8(jwt_fixture("jwks.json")).unwrap();
    Auth::from_jwks(&jwks, Some(COMPUTE_ID.into())).unwrap()
}

/// Which key signs a token.
#[derive(Clone, Copy)]
enum Key {
    Ed25519,
    Rsa,
    /// An Ed25519 key not in the JWKS, claiming the kid of the one that is.
    Impostor,
}

fn sign(key: Key, claims: &Value) -> String {
    let (alg, kid, enc) = match key {
        Key::Ed25519 => (
            Algorithm::EdDSA,
            "test-ed25519",
            EncodingKey::from_ed_pem(&jwt_fixture("ed25519.pem")).unwrap(),
        ),
        Key::Rsa => (
            Algorithm::RS256,
            "test-rsa",
            EncodingKey::from_rsa_pem(&jwt_fixture("rsa.pem")).unwrap(),
        ),
        Key::Impostor => (
            Algorithm::EdDSA,
            "test-ed25519",
            EncodingKey::from_ed_pem(&jwt_fixture("other_ed25519.pem")).unwrap(),
        ),
    };
    let mut h = Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

fn now_secs(c: &crate::compute::Compute<crate::env::TokioEnv>) -> u64 {
    c.env()
        .wall_clock()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// POST /configure with an invalid spec: 400 once past auth, and never a change.
fn configure(authz: Option<String>) -> Request<Body> {
    let body = configure_body(fixture("invalid_three_mistakes.json"));
    let mut b = Request::builder()
        .method(Method::POST)
        .uri("/configure")
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = authz {
        b = b.header(header::AUTHORIZATION, a);
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn auth_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), Some(auth()));
    let now = now_secs(&c);
    let hour = 3600;
    let admin = json!({"scope": "compute_ctl:admin", "aud": "compute", "exp": now + hour});
    let bearer = |t: String| Some(format!("Bearer {t}"));

    let cases: Vec<(&str, Option<String>, StatusCode, &str)> = vec![
        // 400 without a bearer header at all, as Neon.
        (
            "no token",
            None,
            StatusCode::BAD_REQUEST,
            "missing Authorization",
        ),
        (
            "not bearer",
            Some("Basic YTpi".into()),
            StatusCode::BAD_REQUEST,
            "not a bearer token",
        ),
        (
            "garbled",
            bearer("not.a.jwt".into()),
            StatusCode::UNAUTHORIZED,
            "not a well-formed JWT",
        ),
        (
            "expired",
            bearer(sign(
                Key::Ed25519,
                &json!({"scope": "compute_ctl:admin", "aud": "compute", "exp": now - hour}),
            )),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        // As Neon: no exp is fine (neon_local's tokens have none), nbf is not looked at.
        (
            "admin without exp",
            bearer(sign(
                Key::Ed25519,
                &json!({"scope": "compute_ctl:admin", "aud": ["compute"]}),
            )),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "compute id without exp (neon_local)",
            bearer(sign(Key::Ed25519, &json!({"compute_id": COMPUTE_ID}))),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "nbf in the future",
            bearer(sign(
                Key::Ed25519,
                &json!({"compute_id": COMPUTE_ID, "nbf": now + hour}),
            )),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "wrong key",
            bearer(sign(Key::Impostor, &admin)),
            StatusCode::UNAUTHORIZED,
            "signature",
        ),
        (
            "wrong audience",
            bearer(sign(
                Key::Ed25519,
                &json!({"scope": "compute_ctl:admin", "aud": "other", "exp": now + hour}),
            )),
            StatusCode::UNAUTHORIZED,
            "audience",
        ),
        (
            "admin without audience, even with this compute's id",
            bearer(sign(
                Key::Ed25519,
                &json!({"scope": "compute_ctl:admin", "compute_id": COMPUTE_ID, "exp": now + hour}),
            )),
            StatusCode::UNAUTHORIZED,
            "aud",
        ),
        (
            "wrong compute id",
            bearer(sign(
                Key::Ed25519,
                &json!({"compute_id": "compute-other", "exp": now + hour}),
            )),
            StatusCode::FORBIDDEN,
            "compute_id",
        ),
        (
            "unknown scope",
            bearer(sign(
                Key::Rsa,
                &json!({"scope": "other", "aud": "compute", "exp": now + hour}),
            )),
            StatusCode::UNAUTHORIZED,
            "unknown scope",
        ),
        (
            "no scope, no compute id",
            bearer(sign(
                Key::Rsa,
                &json!({"aud": "compute", "exp": now + hour}),
            )),
            StatusCode::FORBIDDEN,
            "compute_id",
        ),
        (
            "admin for another compute id (admin is not bound to one)",
            bearer(sign(
                Key::Ed25519,
                &json!({"scope": "compute_ctl:admin", "aud": ["compute"], "compute_id": "compute-other"}),
            )),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "valid admin (EdDSA)",
            bearer(sign(Key::Ed25519, &admin)),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "valid admin (RS256)",
            bearer(sign(Key::Rsa, &admin)),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "valid admin, audience list",
            bearer(sign(
                Key::Rsa,
                &json!({"scope": "compute_ctl:admin", "aud": ["x", "compute"], "exp": now + hour}),
            )),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
        (
            "valid compute id",
            bearer(sign(
                Key::Ed25519,
                &json!({"compute_id": COMPUTE_ID, "exp": now + hour}),
            )),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
    ];
    for (name, authz, want, needle) in cases {
        let r = send(&app, configure(authz.clone())).await;
        assert_eq!(r.status, want, "{name}: {}", r.text);
        let err = r.error();
        assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
        if let Some(token) = authz.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
            assert!(
                !r.text.contains(token),
                "{name}: the token leaked into the answer"
            );
        }
        if want == StatusCode::UNAUTHORIZED {
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{name}");
        }
    }
    assert_eq!(c.state().generation, 0, "nothing was configured");
}

#[tokio::test]
async fn require_token_exp_is_stricter() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let strict = auth().with_rules(crate::http::auth::TokenRules { require_exp: true });
    let app = router(c.clone(), Some(strict));
    let now = now_secs(&c);
    for (claims, want, needle) in [
        (
            json!({"compute_id": COMPUTE_ID}),
            StatusCode::UNAUTHORIZED,
            "--require-token-exp",
        ),
        (
            json!({"compute_id": COMPUTE_ID, "exp": now + 7200, "nbf": now + 3600}),
            StatusCode::UNAUTHORIZED,
            "nbf",
        ),
        (
            json!({"compute_id": COMPUTE_ID, "exp": now + 60}),
            StatusCode::BAD_REQUEST,
            "spec is invalid",
        ),
    ] {
        let r = send(
            &app,
            configure(Some(format!("Bearer {}", sign(Key::Ed25519, &claims)))),
        )
        .await;
        assert_eq!(r.status, want, "{claims}: {}", r.text);
        assert!(r.error().contains(needle), "{claims}: {}", r.text);
    }
    // A key set installed later keeps the rules.
    let slot = crate::http::AuthSlot::with_rules(
        None,
        crate::http::auth::TokenRules { require_exp: true },
    );
    let jwks: Value = serde_json::from_slice(&jwt_fixture("jwks.json")).unwrap();
    slot.set_jwks(&jwks, Some(COMPUTE_ID.into())).unwrap();
    let app = crate::http::router_with_auth(c.clone(), slot);
    let r = send(
        &app,
        configure(Some(format!(
            "Bearer {}",
            sign(Key::Ed25519, &json!({"compute_id": COMPUTE_ID}))
        ))),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.text);
}

#[tokio::test]
async fn auth_guards_exactly_neons_protected_routes() {
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), Some(auth()));
    let protected: Vec<(Method, &str)> = crate::http::ROUTES
        .iter()
        .filter(|(_, path)| crate::http::PROTECTED.contains(path))
        .map(|(m, path)| (m.parse().unwrap(), *path))
        .collect();
    let mut paths: Vec<&str> = protected.iter().map(|(_, p)| *p).collect();
    paths.dedup();
    assert_eq!(
        paths.len(),
        crate::http::PROTECTED.len(),
        "every protected route is served"
    );
    for (method, uri) in protected {
        let uri = if uri == "/database_schema" {
            "/database_schema?database=postgres"
        } else {
            uri
        };
        let r = send(&app, request(method.clone(), uri, None)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let bad = sign(
            Key::Impostor,
            &json!({"compute_id": COMPUTE_ID, "exp": now_secs(&c) + 60}),
        );
        let mut req = request(method, uri, None);
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {bad}").parse().unwrap(),
        );
        let r = send(&app, req).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
    }
    assert_eq!(
        c.state().status,
        crate::state::ComputeStatus::Empty,
        "terminate was refused"
    );
    for uri in ["/health", "/metrics"] {
        let r = send(&app, request(Method::GET, uri, None)).await;
        assert_eq!(r.status, StatusCode::OK, "{uri} must stay open");
    }
    // Open as in Neon, and not applicable here.
    let r = send(&app, request(Method::GET, "/autoscaling_metrics", None)).await;
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED, "{}", r.text);
}

#[test]
fn unusable_key_sets_are_refused_at_start() {
    let err = |s: &str| Auth::from_jwks(s, None).unwrap_err();
    assert!(matches!(err("not json"), JwksError::Parse(_)));
    assert!(matches!(err(r#"{"keys": []}"#), JwksError::Empty));
    let ec = r#"{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "kid": "e"}]}"#;
    assert!(err(ec).to_string().contains("only Ed25519"), "{}", err(ec));
    let x25519 = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "RS256", "x": "AA"}]}"#;
    assert!(err(x25519).to_string().contains("EdDSA"));
    // Encryption keys are skipped, not used for signatures.
    let enc_only = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "use": "enc", "x": "D8TAqXfbsqV-gA2JdIECyPxSIuLHg9P4P2DcVGd1EwI"}]}"#;
    assert!(matches!(err(enc_only), JwksError::Empty));
    assert_eq!(auth().key_count(), 2);
}

/// Neon's control plane sends its key set in `compute_ctl_config.jwks` of
/// `/configure`: from then on the protected routes need a token signed by it.
#[tokio::test]
async fn a_key_set_in_configure_turns_auth_on() {
    let dir = tempfile::tempdir().unwrap();
    let (c, app, run) = running(&dir);
    let jwks: Value = serde_json::from_slice(&jwt_fixture("jwks.json")).unwrap();
    // A key set that cannot be used: 400, and nothing changes.
    let bad = json!({"spec": fixture("spec.json"), "compute_ctl_config": {"jwks": {"keys": [{"kty": "EC"}]}}});
    let r = send(&app, request(Method::POST, "/configure", Some(&bad))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.error().contains("compute_ctl_config.jwks"), "{}", r.text);
    assert_eq!(c.state().generation, 0);
    assert_eq!(
        send(&app, request(Method::GET, "/dbs_and_roles", None))
            .await
            .status,
        StatusCode::PRECONDITION_FAILED,
        "auth is still off"
    );
    // A usable one: accepted with the spec (whose start fails here: no postgres binary).
    let mut spec = fixture("spec.json");
    spec["skip_pg_catalog_updates"] = json!(true);
    let good = json!({"spec": spec, "compute_ctl_config": {"jwks": jwks}});
    let r = send(&app, request(Method::POST, "/configure", Some(&good))).await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    let r = send(&app, request(Method::POST, "/terminate", None)).await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "auth is on now: {}",
        r.text
    );
    let token = sign(
        Key::Ed25519,
        &json!({"compute_id": COMPUTE_ID, "exp": now_secs(&c) + 600}),
    );
    let mut req = request(Method::POST, "/terminate", None);
    req.headers_mut().insert(
        header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    let r = send(&app, req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "terminated");
    assert_eq!(r.json()["lsn"], Value::Null, "Postgres never ran");
    let _ = run.await;
}

/// A token verified once is kept, but what depends on the time is checked on
/// every request: a kept token still expires, and a same-claims token signed
/// by a key outside the set is still refused.
#[test]
fn a_verified_token_is_kept_but_still_expires() {
    let a = auth();
    let t0 = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let exp = 1_800_000_000 + 10;
    let claims = json!({"compute_id": COMPUTE_ID, "exp": exp});
    let headers = |token: String| {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    };
    let good = headers(sign(Key::Ed25519, &claims));
    assert!(a.authorize(&good, t0).is_ok());
    assert!(a.authorize(&good, t0).is_ok(), "again, from the cache");
    let past_exp = t0
        + std::time::Duration::from_secs(10)
        + crate::http::auth::LEEWAY
        + std::time::Duration::from_secs(1);
    let late = a.authorize(&good, past_exp).expect_err("expired");
    assert_eq!(late.status, StatusCode::UNAUTHORIZED);
    assert!(late.reason.contains("expired"), "{}", late.reason);
    let impostor = a
        .authorize(&headers(sign(Key::Impostor, &claims)), t0)
        .expect_err("not signed by the set");
    assert_eq!(impostor.status, StatusCode::UNAUTHORIZED);
    assert!(a.authorize(&good, t0).is_ok(), "the kept token is unharmed");
}
