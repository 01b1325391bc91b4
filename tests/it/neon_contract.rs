//! Neon's control-plane flow against the real binary on real Postgres 15,
//! every answer checked against Neon's own contract
//! (`../shared/fixtures/neon/openapi_spec.yaml`, a null read as an absent
//! field) and against our `openapi.yaml`:
//! pull the spec (with `NEON_CONTROL_PLANE_TOKEN`, a `mode: null`, a
//! Neon-only field that `/status` lists, and the key set in
//! `compute_ctl_config.jwks`), poll `/status`, notify (a skip-flag
//! `/configure`), read `/metrics.json`, check writability, dump the schema,
//! read insights, install an extension and grant on a schema through the
//! internal listener, read the catalog, terminate and read the `lsn` (equal to
//! what `pg_controldata` says afterwards), terminate again (201).
//!
//! Skipped, with one line, without Neon's contract (see `support::neon`).

// Tests may read the OS clock (token expiry); clippy.toml is for the library.
#![allow(clippy::disallowed_methods)]

use crate::support;
use crate::support::openapi;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts, Reply};
use crate::support::{fixture_op, repo_file};
use axum::extract::State;
use axum::http::HeaderMap;
use openapi::{OpenApi, Seen};
use serde_json::{Value, json};

const COMPUTE_ID: &str = "compute-neon-flow";
const CP_TOKEN: &str = "neon-control-plane-secret";
const WITHIN: Duration = Duration::from_secs(60);

/// When the fake control plane first answered with the spec.
static SPEC_SENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// What the fake control plane holds: its answer and the headers it saw.
type CpState = (Arc<Value>, Arc<Mutex<Vec<Option<String>>>>);

/// A control plane that answers Neon's envelope and records the
/// `Authorization` header of every spec request.
struct ControlPlane {
    port: u16,
    seen_auth: Arc<Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ControlPlane {
    async fn start(envelope: Value) -> Self {
        let seen_auth = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::new(envelope), seen_auth.clone());
        let port = support::ports::free_port();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind the control plane");
        let app = axum::Router::new()
            .route(
                "/compute/api/v2/computes/{id}/spec",
                axum::routing::get(
                    |State((envelope, seen)): State<CpState>, headers: HeaderMap| async move {
                        let auth = headers
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string);
                        seen.lock().unwrap().push(auth);
                        // When the spec left (RFC 3339, as /status writes times).
                        SPEC_SENT.get_or_init(|| {
                            compute_ctl::http::rfc3339::format(std::time::SystemTime::now())
                        });
                        axum::Json((*envelope).clone())
                    },
                ),
            )
            .with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            seen_auth,
            task,
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A token for this compute, signed by the test key of `fixtures/jwt/`.
fn token() -> String {
    let pem = std::fs::read(repo_file("fixtures/jwt/ed25519.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("test-ed25519".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(&h, &json!({"compute_id": COMPUTE_ID, "exp": exp}), &key).unwrap()
}

/// Both documents, and the checks of one answer against both.
struct Contracts {
    neon: OpenApi,
    ours: OpenApi,
}

impl Contracts {
    fn check(&mut self, method: &str, path: &str, r: &Reply) {
        for api in [&mut self.neon, &mut self.ours] {
            let seen = Seen {
                method,
                path,
                status: r.status,
                content_type: r.content_type.as_deref(),
                request_id: r.request_id.as_deref(),
                body: &r.text,
            };
            if let Err(e) = api.check(&seen) {
                panic!("{e}");
            }
        }
    }

    /// Only ours (a route or code Neon's contract does not have).
    fn check_ours(&mut self, method: &str, path: &str, r: &Reply) {
        let seen = Seen {
            method,
            path,
            status: r.status,
            content_type: r.content_type.as_deref(),
            request_id: r.request_id.as_deref(),
            body: &r.text,
        };
        if let Err(e) = self.ours.check(&seen) {
            panic!("{e}");
        }
    }
}

async fn send(c: &Compute, method: &str, path: &str, body: Option<&Value>, auth: bool) -> Reply {
    let url = c.url(path);
    let mut req = match method {
        "POST" => c.client.post(url),
        _ => c.client.get(url),
    };
    if let Some(b) = body {
        req = req.json(b);
    }
    if auth {
        req = req.bearer_auth(token());
    }
    Reply::read(req.send().await.expect("request")).await
}

#[tokio::test]
async fn a_neon_control_plane_drives_the_compute_through_its_flow() {
    let Some(neon_text) = support::neon::text("openapi_spec.yaml") else {
        return;
    };
    let mut api = Contracts {
        neon: OpenApi::neon(&neon_text),
        ours: OpenApi::load(),
    };
    let pg_port = support::ports::free_port();
    // Neon's envelope: the spec (as Neon sends it: `mode: null`, tenant and
    // timeline, fields we do not use) and the key set for the API.
    let mut spec = fixture_op("spec.json", "op-neon-1");
    spec["mode"] = Value::Null;
    spec["tenant_id"] = json!("c9269c359e9a199fad1ea0981246a78f");
    spec["timeline_id"] = json!("ece7de74d4b8cbe5433a68ce4d1b97b4");
    spec["remote_extensions"] = json!({"public_extensions": ["anon"]});
    let jwks: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("fixtures/jwt/jwks.json")).unwrap(),
    )
    .unwrap();
    let cp = ControlPlane::start(json!({
        "status": "attached",
        "spec": spec,
        "compute_ctl_config": {"jwks": jwks},
    }))
    .await;
    let mut opts = ComputeOpts::without_spec().args([
        "--control-plane-uri",
        &format!("http://127.0.0.1:{}", cp.port),
        "--compute-id",
        COMPUTE_ID,
    ]);
    opts.pg_port = Some(pg_port);
    let internal_port = support::ports::free_port();
    opts.args.extend([
        "--internal-http-port".to_string(),
        internal_port.to_string(),
    ]);
    opts.env
        .push(("NEON_CONTROL_PLANE_TOKEN".into(), CP_TOKEN.into()));
    // The key set protects /status and /metrics.json too, as in Neon.
    opts.token = Some(token());
    let c = Compute::serving(opts).await;

    // Pull the spec, with the control plane's token; poll /status until running.
    c.wait_status("running", WITHIN).await;
    let auth_seen = cp.seen_auth.lock().unwrap().clone();
    assert_eq!(
        auth_seen.first().cloned().flatten().as_deref(),
        Some(format!("Bearer {CP_TOKEN}").as_str()),
        "the spec pull carries NEON_CONTROL_PLANE_TOKEN"
    );
    let r = c.get("/status").await;
    api.check("GET", "/status", &r);
    let status = r.json();
    assert_eq!(status["status"], "running");
    // Started empty: start_time counts from the first spec (as Neon), not from the process start.
    let sent = SPEC_SENT.get().expect("the spec was served");
    let start_time = status["start_time"].as_str().unwrap();
    assert!(
        start_time >= sent.as_str(),
        "start_time {start_time} is before the spec arrived ({sent})"
    );
    assert_eq!(status["tenant"], "c9269c359e9a199fad1ea0981246a78f");
    assert_eq!(status["timeline"], "ece7de74d4b8cbe5433a68ce4d1b97b4");
    assert_eq!(
        status["ignored_spec_fields"],
        json!(["$.remote_extensions"]),
        "nothing is dropped silently"
    );

    // The key set came with the spec: a configure without a token is 400 (as Neon).
    let mut notify = fixture_op("spec.json", "op-neon-2");
    notify["skip_pg_catalog_updates"] = json!(true);
    notify["mode"] = Value::Null;
    let body = json!({ "spec": notify });
    let r = send(&c, "POST", "/configure", Some(&body), false).await;
    assert_eq!(r.status, 400, "{}", r.text);
    api.check_ours("POST", "/configure", &r);
    // Notify: configure with the token.
    let r = send(&c, "POST", "/configure", Some(&body), true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check("POST", "/configure", &r);
    assert_eq!(r.json()["operation_uuid"], "op-neon-2");

    // metrics.json: Neon's required fields.
    let r = c.get("/metrics.json").await;
    api.check("GET", "/metrics.json", &r);
    assert!(r.json()["total_startup_ms"].as_u64().unwrap() > 0);

    // Check writability: one row upserted in public.health_check.
    let r = send(&c, "POST", "/check_writability", None, true).await;
    assert_eq!((r.status, r.text.as_str()), (200, "true"));
    api.check("POST", "/check_writability", &r);
    assert_eq!(
        c.sql_value("SELECT count(*) FROM public.health_check WHERE id = 1")
            .await,
        "1"
    );

    // Dump the schema: streamed SQL; an unknown database is 404.
    let r = send(&c, "GET", "/database_schema?database=postgres", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check("GET", "/database_schema", &r);
    assert!(
        r.text.contains("CREATE TABLE public.health_check"),
        "{}",
        r.text
    );
    let r = send(
        &c,
        "GET",
        "/database_schema?database=no_such_db",
        None,
        true,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text);
    api.check("GET", "/database_schema", &r);

    // Liveness: Postgres takes a session (pg::probe::accepts_session); a
    // route of Neon's code, not of its document.
    let r = send(&c, "GET", "/hadron_liveness_probe", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check_ours("GET", "/hadron_liveness_probe", &r);
    assert_eq!(r.json(), json!("ok"));

    // Insights without pg_stat_statements: an empty list, never a 500.
    let r = send(&c, "GET", "/insights", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check("GET", "/insights", &r);
    assert_eq!(r.json()["pg_stat_statements"], json!([]));

    // The internal listener (loopback, no auth): install an extension, move
    // it to another version, grant on a schema.
    let internal = |path: &str| format!("http://127.0.0.1:{internal_port}{path}");
    let old = json!({"extension": "pg_stat_statements", "database": "postgres", "version": "1.9"});
    let r = Reply::read(
        c.client
            .post(internal("/extensions"))
            .json(&old)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(
        c.sql_value("SELECT extversion || ' in ' || extnamespace::regnamespace FROM pg_extension WHERE extname = 'pg_stat_statements'")
            .await,
        "1.9 in public"
    );
    let ext = json!({"extension": "pg_stat_statements", "database": "postgres", "version": "1.10"});
    let r = Reply::read(
        c.client
            .post(internal("/extensions"))
            .json(&ext)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // 201, as Neon's code answers (its openapi_spec.yaml still says 200).
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("application/json")
    );
    assert_eq!(
        c.sql_value("SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_statements'")
            .await,
        "1.10"
    );
    // Created but not preloaded: insights are still an empty list, not a 500.
    let r = send(&c, "GET", "/insights", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["pg_stat_statements"], json!([]));
    let grant = json!({"database": "postgres", "schema": "public", "privileges": ["USAGE", "CREATE"], "role": "alice"});
    let r = Reply::read(
        c.client
            .post(internal("/grants"))
            .json(&grant)
            .send()
            .await
            .unwrap(),
    )
    .await;
    // 201, as Neon's code answers (its openapi_spec.yaml still says 200).
    assert_eq!(r.status, 201, "{}", r.text);
    assert!(
        r.content_type
            .as_deref()
            .unwrap_or("")
            .starts_with("application/json")
    );
    assert_eq!(
        c.sql_value("SELECT has_schema_privilege('alice', 'public', 'CREATE')::text")
            .await,
        "true"
    );
    let bad = json!({"database": "postgres", "schema": "public", "privileges": ["DROP"], "role": "alice"});
    let r = Reply::read(
        c.client
            .post(internal("/grants"))
            .json(&bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text);
    // A role Postgres does not know: 500 with Postgres' own reason.
    let ghost = json!({"database": "postgres", "schema": "public", "privileges": ["usage"], "role": "nobody_here"});
    let r = Reply::read(
        c.client
            .post(internal("/grants"))
            .json(&ghost)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert!(
        r.json()["error"]
            .as_str()
            .is_some_and(|e| e.contains("\"nobody_here\" does not exist")),
        "{}",
        r.text
    );

    // The catalog, in Neon's shape.
    let r = send(&c, "GET", "/dbs_and_roles", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check("GET", "/dbs_and_roles", &r);

    // Terminate and read the lsn; it is the stopped cluster's last position.
    let r = send(&c, "POST", "/terminate?mode=fast", None, true).await;
    assert_eq!(r.status, 200, "{}", r.text);
    api.check("POST", "/terminate", &r);
    let lsn = r.json()["lsn"]
        .as_str()
        .expect("an lsn after a fast stop")
        .to_string();
    let controldata = std::process::Command::new(support::pg_tool("pg_controldata"))
        .arg("-D")
        .arg(&c.pgdata)
        .env("LC_ALL", "C")
        .output()
        .expect("run pg_controldata");
    let text = String::from_utf8_lossy(&controldata.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("Latest checkpoint location:") && l.ends_with(&lsn)),
        "lsn {lsn} is not the shutdown checkpoint:\n{text}"
    );
    // Again, while the API lingers: 201 with the same lsn.
    let r = send(&c, "POST", "/terminate", None, true).await;
    assert_eq!(r.status, 201, "{}", r.text);
    api.check("POST", "/terminate", &r);
    assert_eq!(r.json()["lsn"], lsn.as_str());
    assert_eq!(c.wait_exit(WITHIN).await.code(), Some(0));
}
