//! `openapi.yaml` against the live router (in process, no Postgres): every
//! route is documented and vice versa, and every response we can provoke
//! here has a declared status code, content type and body shape. The
//! responses that need Postgres (200 of /configure, /dbs_and_roles, /ready)
//! are checked the same way by `tests/api.rs` against the real binary.

use crate::support;
use crate::support::openapi;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, header};
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, RunOutcome, TerminateMode};
use compute_ctl::env::{Clock, TokioEnv};
use compute_ctl::http::{Auth, ROUTES, router};
use openapi::{OpenApi, Seen};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower::ServiceExt;

fn compute(dir: &tempfile::TempDir) -> Arc<Compute<TokioEnv>> {
    Compute::new(
        TokioEnv::new(),
        ComputeParams {
            pgdata: dir.path().join("pgdata"),
            pgbin: PathBuf::from("/nonexistent/compute_ctl-openapi-test/postgres"),
            conn: ConnTarget {
                host: "127.0.0.1".into(),
                // Nobody listens there, and Postgres never starts.
                port: support::ports::free_port(),
                user: "cloud_admin".into(),
                dbname: "postgres".into(),
            },
            http_addr: "127.0.0.1:0".parse().unwrap(),
            compute_id: Some("compute-openapi".into()),
            ready_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            activity_interval: Duration::from_secs(1),
            cgroup_procs: None,
            advertise: None,
            quorum_deadline: compute_ctl::params::DEFAULT_QUORUM_DEADLINE,
            max_ready_lag: None,
            tls: None,
            settings_cache: None,
        },
    )
}

/// A compute whose first start fails, its router and its run loop on a task.
fn running(dir: &tempfile::TempDir) -> (Arc<Compute<TokioEnv>>, Router, JoinHandle<RunOutcome>) {
    let c = compute(dir);
    let app = router(c.clone(), None);
    let run = tokio::spawn({
        let c = c.clone();
        async move { c.run().await }
    });
    (c, app, run)
}

fn spec(op: &str) -> Value {
    let mut s = support::fixture_op("spec.json", op);
    s["skip_pg_catalog_updates"] = json!(true);
    s
}

/// Sends a request and checks the response against the document.
async fn check(api: &mut OpenApi, app: &Router, req: Request<Body>) -> (u16, String) {
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let seen = Seen {
        method: &method,
        path: &path,
        status,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()),
        body: &body,
    };
    if let Err(e) = api.check(&seen) {
        panic!("{e}");
    }
    (status, body)
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, ct: Option<&str>, body: String) -> Request<Body> {
    let mut b = Request::builder().method(Method::POST).uri(uri);
    if let Some(ct) = ct {
        b = b.header(header::CONTENT_TYPE, ct);
    }
    b.body(Body::from(body)).unwrap()
}

fn configure(body: Value) -> Request<Body> {
    post(
        "/configure",
        Some("application/json"),
        json!({ "spec": body }).to_string(),
    )
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let api = OpenApi::load();
    let mut documented = api.operations();
    documented.sort();
    let mut served: Vec<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn responses_without_postgres_match_the_document() {
    let mut api = OpenApi::load();
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let app = router(c.clone(), None);
    let mut seen = Vec::new();
    let mut expect = |got: (u16, String), want: u16| {
        assert_eq!(got.0, want, "{}", got.1);
        seen.push(want);
    };
    expect(check(&mut api, &app, get("/status")).await, 200);
    expect(check(&mut api, &app, get("/health")).await, 200);
    expect(check(&mut api, &app, get("/ready")).await, 503);
    expect(check(&mut api, &app, get("/metrics")).await, 200);
    expect(check(&mut api, &app, get("/metrics.json")).await, 200);
    expect(check(&mut api, &app, get("/dbs_and_roles")).await, 412);
    expect(check(&mut api, &app, get("/no/such/route")).await, 404);
    expect(check(&mut api, &app, get("/configure")).await, 405);
    let invalid = support::fixture("invalid_three_mistakes.json");
    expect(check(&mut api, &app, configure(invalid)).await, 400);
    expect(
        check(
            &mut api,
            &app,
            post("/configure", Some("application/json"), "{".into()),
        )
        .await,
        400,
    );
    // Not sent as JSON: 400 (Neon's contract for /configure has no 415).
    expect(
        check(
            &mut api,
            &app,
            post("/configure", Some("text/plain"), "{}".into()),
        )
        .await,
        400,
    );
    let huge = format!(
        "{{\"spec\": \"{}\"}}",
        "x".repeat(compute_ctl::http::MAX_BODY_BYTES)
    );
    expect(
        check(
            &mut api,
            &app,
            post("/configure", Some("application/json"), huge),
        )
        .await,
        413,
    );
    expect(
        check(
            &mut api,
            &app,
            post("/terminate?mode=slow", None, String::new()),
        )
        .await,
        400,
    );

    // 409: one configure waits (no supervisor yet), a second is refused.
    let waiting = tokio::spawn({
        let app = app.clone();
        async move { app.oneshot(configure(spec("op-1"))).await.unwrap() }
    });
    let mut rx = c.subscribe();
    rx.wait_for(|st| st.generation == 1).await.unwrap();
    expect(check(&mut api, &app, configure(spec("op-2"))).await, 409);

    // 500: the supervisor takes the spec and fails (no postgres binary).
    let run = tokio::spawn({
        let c = c.clone();
        async move { c.run().await }
    });
    let resp = waiting.await.unwrap();
    assert_eq!(resp.status().as_u16(), 500);
    let _ = run.await.unwrap();
    // Check the 500 through the document too, with a fresh failing compute.
    let dir2 = tempfile::tempdir().unwrap();
    let (_c2, app2, run2) = running(&dir2);
    expect(check(&mut api, &app2, configure(spec("op-3"))).await, 500);
    let _ = run2.await.unwrap();
    // Its /status says what failed, by kind too.
    let (code, body) = check(&mut api, &app2, get("/status")).await;
    expect((code, body.clone()), 200);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["status"], "failed", "{body}");
    assert_eq!(status["failure_kind"], "initdb", "{body}");
    // 412: failed accepts no configure.
    expect(check(&mut api, &app2, configure(spec("op-4"))).await, 412);

    // 200 of /terminate.
    let dir3 = tempfile::tempdir().unwrap();
    let (c3, app3, run3) = running(&dir3);
    expect(
        check(
            &mut api,
            &app3,
            post("/terminate?mode=fast", None, String::new()),
        )
        .await,
        200,
    );
    let _ = run3.await.unwrap();
    assert_eq!(c3.state().terminate_mode, Some(TerminateMode::Fast));
    // 201: already terminated.
    expect(
        check(&mut api, &app3, post("/terminate", None, String::new())).await,
        201,
    );
    // Neon's routes that need Neon's storage extension: 501, JSON.
    for (m, p) in [
        ("GET", "/lfc/prewarm"),
        ("POST", "/lfc/prewarm"),
        ("DELETE", "/lfc/prewarm"),
        ("GET", "/lfc/offload"),
        ("POST", "/lfc/offload"),
    ] {
        let req = Request::builder()
            .method(m)
            .uri(p)
            .body(Body::empty())
            .unwrap();
        expect(check(&mut api, &app3, req).await, 501);
    }
    // /promote: a terminated compute is no running replica (412); bad input 400.
    let promote = |body: Value| post("/promote", Some("application/json"), body.to_string());
    expect(
        check(
            &mut api,
            &app3,
            promote(json!({ "spec": spec("op-p"), "wal_flush_lsn": "0/16B3748" })),
        )
        .await,
        412,
    );
    expect(
        check(
            &mut api,
            &app3,
            promote(json!({ "spec": spec("op-p"), "wal_flush_lsn": "nope" })),
        )
        .await,
        400,
    );
    // Neon's routes that need a running Postgres: 412 before it runs.
    expect(
        check(
            &mut api,
            &app,
            post("/check_writability", None, String::new()),
        )
        .await,
        412,
    );
    expect(check(&mut api, &app, get("/insights")).await, 412);
    expect(
        check(&mut api, &app, get("/database_schema?database=postgres")).await,
        412,
    );
    expect(
        check(&mut api, &app, get("/hadron_liveness_probe")).await,
        500,
    );
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen,
        [200, 201, 400, 404, 405, 409, 412, 413, 500, 501, 503]
    );
}

/// `/status.failure_kind` declares exactly the kinds the library names.
#[test]
fn failure_kinds_are_declared() {
    let api = OpenApi::load();
    let declared: Vec<Value> = api.doc["components"]["schemas"]["FailureKind"]["enum"]
        .as_array()
        .expect("FailureKind lists its values")
        .clone();
    let mut want: Vec<Value> = compute_ctl::compute::FailReason::KINDS
        .iter()
        .map(|k| Value::from(*k))
        .collect();
    want.push(Value::Null);
    assert_eq!(declared, want);
}

/// The checker itself catches drift: undeclared codes, wrong content types,
/// missing or extra fields, wrong enum values.
#[test]
fn the_checker_rejects_responses_that_do_not_match() {
    let mut api = OpenApi::load();
    let status = json!({"status": "running", "start_time": "2026-11-25T18:00:00.000Z",
        "last_active": null, "error": null, "failure_kind": null, "operation_uuid": null, "pending_restart": [],
        "tenant": null, "timeline": null, "ignored_spec_fields": [], "replication": null,
        "catalog_interrupted": null, "safekeepers": null, "quorum": null,
        "config_refused": null, "deprecations": [], "pg_major": 15});
    let seen = |status: u16, ct: &'static str, body: &str| -> Result<(), String> {
        let body = body.to_string();
        let mut api2 = OpenApi::load();
        api2.check(&Seen {
            method: "GET",
            path: "/status",
            status,
            content_type: Some(ct),
            request_id: Some("r"),
            body: &body,
        })
    };
    assert!(
        api.check(&Seen {
            method: "GET",
            path: "/status",
            status: 200,
            content_type: Some("application/json"),
            request_id: Some("r"),
            body: &status.to_string()
        })
        .is_ok()
    );
    assert!(
        seen(201, "application/json", &status.to_string())
            .unwrap_err()
            .contains("does not declare")
    );
    assert!(
        seen(200, "text/plain", &status.to_string())
            .unwrap_err()
            .contains("content type")
    );
    let mut extra = status.clone();
    extra["surprise"] = json!(1);
    assert!(seen(200, "application/json", &extra.to_string()).is_err());
    let mut wrong = status.clone();
    wrong["status"] = json!("Running");
    assert!(seen(200, "application/json", &wrong.to_string()).is_err());
    let mut missing = status.clone();
    missing.as_object_mut().unwrap().remove("last_active");
    assert!(seen(200, "application/json", &missing.to_string()).is_err());
    let mut bad_time = status;
    bad_time["start_time"] = json!("yesterday");
    assert!(seen(200, "application/json", &bad_time.to_string()).is_err());
}

#[tokio::test]
async fn auth_rejections_match_the_document() {
    let mut api = OpenApi::load();
    let dir = tempfile::tempdir().unwrap();
    let c = compute(&dir);
    let auth = Auth::from_jwks(
        &std::fs::read_to_string(support::repo_file("fixtures/jwt/jwks.json")).unwrap(),
        Some("compute-openapi".into()),
    )
    .unwrap();
    let app = router(c.clone(), Some(auth));
    let exp = c
        .env()
        .wall_clock()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let key = jsonwebtoken::EncodingKey::from_ed_pem(
        &std::fs::read(support::repo_file("fixtures/jwt/ed25519.pem")).unwrap(),
    )
    .unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("test-ed25519".into());
    let other =
        jsonwebtoken::encode(&h, &json!({"compute_id": "someone-else", "exp": exp}), &key).unwrap();
    for (method, uri) in [
        ("POST", "/configure"),
        ("POST", "/terminate"),
        ("GET", "/dbs_and_roles"),
        ("POST", "/check_writability"),
        ("GET", "/database_schema"),
        ("GET", "/insights"),
    ] {
        let req = |authz: Option<String>| {
            let mut b = Request::builder().method(method).uri(uri);
            if let Some(a) = authz {
                b = b.header(header::AUTHORIZATION, a);
            }
            b.body(Body::empty()).unwrap()
        };
        // No bearer header: 400, as Neon.
        assert_eq!(check(&mut api, &app, req(None)).await.0, 400);
        assert_eq!(
            check(&mut api, &app, req(Some(format!("Bearer {other}"))))
                .await
                .0,
            403
        );
    }
}

/// `openapi.yaml` stays a superset of Neon's contract on the routes both
/// serve: every operation, every response code, every content type's media
/// kind and every property of Neon's response bodies is in ours too.
#[test]
fn ours_is_a_superset_of_neons_contract_on_the_shared_routes() {
    let Some(text) = support::neon::text("openapi_spec.yaml") else {
        return;
    };
    let neon = OpenApi::neon(&text);
    let ours = OpenApi::load();
    // Not shared: Neon's internal routes (on our internal listener, not in
    // openapi.yaml) and the local file cache's (501 here).
    let internal = [
        "/extensions",
        "/grants",
        "/extension_server",
        "/lfc/prewarm",
        "/lfc/offload",
    ];
    // Follows `$ref`s (and one `allOf`-free level of nesting) to an object's properties.
    fn props(doc: &Value, schema: &Value) -> Vec<(String, Value)> {
        let schema = match schema["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => schema.clone(),
        };
        let mut out: Vec<(String, Value)> = schema["properties"]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        // A body that is one of several shapes (/configure: Status or, for
        // a dry run, DryRun) has the fields of each.
        for alt in ["oneOf", "anyOf"]
            .iter()
            .filter_map(|k| schema[*k].as_array())
            .flatten()
        {
            out.extend(props(doc, alt));
        }
        out
    }
    fn resolve(doc: &Value, v: &Value) -> Value {
        match v["$ref"].as_str() {
            Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap().clone(),
            None => v.clone(),
        }
    }
    let mut checked = 0;
    for (path, item) in neon.doc["paths"].as_object().unwrap() {
        if internal.contains(&path.as_str()) {
            continue;
        }
        for (method, op) in item.as_object().unwrap() {
            let ours_op = ours.doc["paths"][path].get(method).unwrap_or_else(|| {
                panic!("{method} {path} of Neon's contract is not in openapi.yaml")
            });
            for (code, resp) in op["responses"].as_object().unwrap() {
                let mine = resolve(&ours.doc, &ours_op["responses"][code]);
                assert!(
                    !mine.is_null(),
                    "{method} {path}: Neon declares {code}, openapi.yaml does not"
                );
                let resp = resolve(&neon.doc, resp);
                let Some(content) = resp["content"].as_object() else {
                    continue;
                };
                for (media, body) in content {
                    let kind = media.split(';').next().unwrap();
                    let (_, mine_body) = mine["content"]
                        .as_object()
                        .and_then(|c| c.iter().find(|(m, _)| m.split(';').next() == Some(kind)))
                        .unwrap_or_else(|| {
                            panic!("{method} {path} {code}: openapi.yaml lacks {media}")
                        });
                    let mine_props: Vec<String> = props(&ours.doc, &mine_body["schema"])
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect();
                    for (name, schema) in props(&neon.doc, &body["schema"]) {
                        assert!(
                            mine_props.contains(&name),
                            "{method} {path} {code}: Neon's field {name} is not in openapi.yaml"
                        );
                        // One level down: the items of arrays of objects (roles, databases).
                        let neon_items = props(&neon.doc, &schema["items"]);
                        if neon_items.is_empty() {
                            continue;
                        }
                        let mine_schema = props(&ours.doc, &mine_body["schema"])
                            .into_iter()
                            .find(|(k, _)| *k == name)
                            .unwrap()
                            .1;
                        let mine_items: Vec<String> = props(&ours.doc, &mine_schema["items"])
                            .into_iter()
                            .map(|(k, _)| k)
                            .collect();
                        for (sub, _) in neon_items {
                            assert!(
                                mine_items.contains(&sub),
                                "{method} {path} {code}: Neon's field {name}[].{sub} is not in openapi.yaml"
                            );
                        }
                    }
                }
                checked += 1;
            }
        }
    }
    // The 18 responses of the 10 operations both serve (Neon at 6a35a3e9; /promote: 200 and 500).
    assert!(checked >= 18, "only {checked} responses compared");
}
