//! The HTTP API of the real binary with a real Postgres 15, over real HTTP:
//! first spec via /configure from empty, reconfigure, the rejections
//! (400/409/412) each leaving the compute untouched, terminate in both
//! modes, the auth matrix, parallel configures, a client that goes away,
//! a busy port, activity. Every response is also checked against
//! `openapi.yaml`.
#![allow(clippy::disallowed_methods)]

use crate::support;
use crate::support::openapi;

use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts, Reply};
use crate::support::os::alive;
use crate::support::{fixture_op, repo_file};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(60);

/// Checks a reply against openapi.yaml.
fn conforms(method: &str, path: &str, r: &Reply) {
    let mut api = openapi::OpenApi::load();
    let seen = openapi::Seen {
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

/// A spec that needs no catalog work, with one setting we can observe.
fn quick_spec(op: &str, work_mem: &str) -> Value {
    let mut s = fixture_op("spec_minimal.json", op);
    s["skip_pg_catalog_updates"] = json!(true);
    s["cluster"]["settings"] =
        json!([{"name": "work_mem", "value": work_mem, "vartype": "string"}]);
    s
}

/// Configures `spec` and expects 200 running with its operation id.
async fn configure_ok(p: &Compute, s: &Value) -> Value {
    let r = p.configure(s, None).await;
    assert_eq!(r.status, 200, "{}\n--- log ---\n{}", r.text, p.log());
    conforms("POST", "/configure", &r);
    let v = r.json();
    assert_eq!(v["status"], "running");
    assert_eq!(v["operation_uuid"], s["operation_uuid"]);
    v
}

/// Postgres serves and `work_mem` (a new session's) is `want`.
async fn assert_serving_with(p: &Compute, want: &str) {
    p.wait_until(&format!("work_mem = {want}"), LONG, async |p| {
        p.sql_value("SHOW work_mem").await == want
    })
    .await;
}

async fn reconfigure_count(p: &Compute) -> u64 {
    let text = p.get("/metrics").await.text;
    text.lines()
        .find(|l| {
            l.starts_with("compute_ctl_phase_duration_seconds_count")
                && l.contains("operation=\"reconfigure\"")
                && l.contains("phase=\"total\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .map(|n| n.parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn first_spec_via_configure_then_reconfigure_and_repeat() {
    crate::need_postgres!();
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    assert!(
        p.log().contains("authentication is OFF"),
        "without --jwks a warning says auth is off"
    );
    let r = p.get("/status").await;
    conforms("GET", "/status", &r);
    assert_eq!(r.json()["status"], "empty");
    let r = p.get("/ready").await;
    assert_eq!(r.status, 503);
    conforms("GET", "/ready", &r);

    configure_ok(&p, &quick_spec("op-first", "5MB")).await;
    assert_serving_with(&p, "5MB").await;
    let r = p.get("/ready").await;
    assert_eq!(r.status, 200, "{}", r.text);
    conforms("GET", "/ready", &r);
    let r = p.get("/metrics.json").await;
    conforms("GET", "/metrics.json", &r);
    let m = r.json();
    assert!(m["total_startup_ms"].as_u64().unwrap() > 0, "{m}");
    assert_eq!(m["last_reconfigure"], Value::Null);

    // Reconfigure: the setting changes by reload, nothing else is touched.
    let pm = p.postmaster_pid().unwrap();
    configure_ok(&p, &quick_spec("op-second", "7MB")).await;
    assert_serving_with(&p, "7MB").await;
    assert_eq!(p.postmaster_pid(), Some(pm), "a reload, not a restart");
    let m = p.get("/metrics.json").await.json();
    assert_eq!(m["last_reconfigure"]["operation_uuid"], "op-second");
    assert_eq!(m["last_reconfigure"]["catalog_statements"], 0);
    assert_eq!(reconfigure_count(&p).await, 1);

    // The same operation again: 200 without work.
    configure_ok(&p, &quick_spec("op-second", "7MB")).await;
    assert_eq!(reconfigure_count(&p).await, 1, "a repeat is not re-applied");

    // With catalog work: the roles and databases show in /dbs_and_roles.
    let full = fixture_op("spec.json", "op-catalog");
    configure_ok(&p, &full).await;
    let r = p.get("/dbs_and_roles").await;
    assert_eq!(r.status, 200, "{}", r.text);
    conforms("GET", "/dbs_and_roles", &r);
    let v = r.json();
    let names = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(names("roles").contains(&"alice".to_string()), "{v}");
    assert!(names("databases").contains(&"app".to_string()), "{v}");
    assert!(
        !r.text.contains("md5"),
        "password hashes never leave the compute"
    );
}

/// `count(expr)` over the supervisor's sessions waiting on a lock.
async fn lock_waiters(p: &Compute, expr: &str) -> u64 {
    p.sql_value(&format!(
        "SELECT count({expr}) FROM pg_stat_activity WHERE application_name = '{}' AND wait_event_type = 'Lock'",
        compute_ctl::pg::APPLICATION_NAME
    ))
    .await
    .parse()
    .unwrap()
}

/// 400 and 409 while running, then a failed reconfigure: each leaves
/// Postgres serving and the spec in effect as it was; the next configure
/// repairs the failed one.
#[tokio::test]
async fn rejections_leave_the_compute_untouched() {
    crate::need_postgres!();
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    let base = fixture_op("spec.json", "op-base");
    configure_ok(&p, &base).await;
    let work_mem = p.sql_value("SHOW work_mem").await;

    // 400: every problem listed, nothing changes.
    let bad = fixture_op("invalid_three_mistakes.json", "op-bad");
    let r = p.configure(&bad, None).await;
    assert_eq!(r.status, 400, "{}", r.text);
    conforms("POST", "/configure", &r);
    assert_eq!(r.json()["problems"].as_array().unwrap().len(), 3);
    let st = p.status().await;
    assert_eq!(
        (st["status"].as_str(), st["operation_uuid"].as_str()),
        (Some("running"), Some("op-base"))
    );
    assert_serving_with(&p, &work_mem).await;

    // 409: hold alice's catalog row so that the next reconfigure (which
    // changes her password) blocks inside Postgres, provably in flight.
    let blocker = p.sql("postgres", "api-test-blocker").await;
    blocker
        .batch_execute("BEGIN; ALTER ROLE alice CONNECTION LIMIT 7")
        .await
        .unwrap();
    let mut slow = base.clone();
    slow["operation_uuid"] = json!("op-slow");
    slow["cluster"]["roles"][0]["encrypted_password"] = json!("0123456789abcdef0123456789abcdef");
    let in_flight = p.spawn_configure(&slow);
    p.wait_until("the supervisor to wait on the row lock", LONG, async |p| {
        lock_waiters(p, "*").await > 0
    })
    .await;
    let r = p.configure(&quick_spec("op-other", "9MB"), None).await;
    assert_eq!(r.status, 409, "{}", r.text);
    conforms("POST", "/configure", &r);
    let r = p.get("/status").await;
    assert_eq!(
        r.json()["status"],
        "configuration",
        "/status answers during a configure"
    );
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        p.status().await["operation_uuid"],
        "op-slow",
        "the 409 request was not applied"
    );
    assert_serving_with(&p, &work_mem).await;

    // 500: the same blocked reconfigure, its session killed.
    blocker
        .batch_execute("BEGIN; ALTER ROLE alice CONNECTION LIMIT 8")
        .await
        .unwrap();
    // Back to the base spec: alice's password changes again, so it blocks too.
    let mut doomed = base.clone();
    doomed["operation_uuid"] = json!("op-doomed");
    let in_flight = p.spawn_configure(&doomed);
    p.wait_until(
        "the supervisor to block again and be terminated",
        LONG,
        async |p| lock_waiters(p, "pg_terminate_backend(pid)").await > 0,
    )
    .await;
    let r = in_flight.await.unwrap();
    assert_eq!(r.status, 500, "{}", r.text);
    conforms("POST", "/configure", &r);
    blocker.batch_execute("ROLLBACK").await.unwrap();
    let st = p.status().await;
    assert_eq!(st["status"], "failed");
    assert_eq!(st["operation_uuid"], "op-doomed");
    assert_serving_with(&p, &work_mem).await;
    // The failed reconfigure left Postgres running: the next configure (the
    // control plane's retry) repairs the compute.
    let repair = quick_spec("op-after-failure", "11MB");
    let r = p.configure(&repair, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    conforms("POST", "/configure", &r);
    let st = p.status().await;
    assert_eq!(
        (st["status"].as_str(), st["operation_uuid"].as_str()),
        (Some("running"), Some("op-after-failure"))
    );
    assert_serving_with(&p, "11MB").await;
}

#[tokio::test]
async fn terminate_fast_and_immediate() {
    crate::need_postgres!();
    for mode in ["fast", "immediate"] {
        let p = Compute::serving(ComputeOpts::without_spec()).await;
        configure_ok(&p, &quick_spec(&format!("op-{mode}"), "4MB")).await;
        let pm = p.postmaster_pid().unwrap();
        assert!(alive(pm));
        let r = p.terminate(mode, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        conforms("POST", "/terminate", &r);
        assert_eq!(r.json()["status"], "terminated");
        // The last WAL position after a clean stop; none is claimed after SIGQUIT.
        let lsn = &r.json()["lsn"];
        match mode {
            "fast" => assert!(lsn.as_str().is_some_and(|l| l.contains('/')), "{lsn}"),
            _ => assert!(lsn.is_null(), "{lsn}"),
        }
        assert!(
            !alive(pm),
            "{mode}: the postmaster is gone when /terminate answers"
        );
        assert_eq!(
            p.wait_exit(LONG).await.code(),
            Some(0),
            "{mode}: exit 0\n{}",
            p.log()
        );
    }
}

/// A first configure that fails: the client gets the 500 with the reason
/// before the process exits (non-zero).
#[tokio::test]
async fn failed_first_configure_is_answered_before_exit() {
    crate::need_postgres!();
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    let mut s = quick_spec("op-broken", "4MB");
    s["cluster"]["postgresql_conf"] = json!("this is not a setting\n");
    let r = p.configure(&s, None).await;
    assert_eq!(r.status, 500, "{}", r.text);
    conforms("POST", "/configure", &r);
    assert!(!r.json()["error"].as_str().unwrap().is_empty());
    assert_eq!(p.wait_exit(LONG).await.code(), Some(1));
}

fn sign(key: &str, alg: jsonwebtoken::Algorithm, kid: &str, claims: &Value) -> String {
    let pem = std::fs::read(repo_file(&format!("fixtures/jwt/{key}"))).unwrap();
    let enc = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(&pem),
        _ => jsonwebtoken::EncodingKey::from_ed_pem(&pem),
    }
    .unwrap();
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = Some(kid.into());
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

#[tokio::test]
async fn auth_matrix_on_the_real_binary() {
    crate::need_postgres!();
    use jsonwebtoken::Algorithm::{EdDSA, RS256};
    let jwks = repo_file("fixtures/jwt/jwks.json");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut opts = ComputeOpts::without_spec().args([
        "--jwks",
        jwks.to_str().unwrap(),
        "--compute-id",
        "compute-api-1",
    ]);
    // /status is protected too (as Neon's): the helpers send this compute's token.
    opts.token = Some(sign(
        "ed25519.pem",
        EdDSA,
        "test-ed25519",
        &json!({"compute_id": "compute-api-1"}),
    ));
    let p = Compute::serving(opts).await;
    let admin = |aud: &str, exp: u64| json!({"scope": "compute_ctl:admin", "aud": aud, "exp": exp});
    let s = quick_spec("op-auth", "4MB");
    let cases = [
        // No bearer header: 400, as Neon.
        ("no token", None, 400),
        ("garbled", Some("garbage".to_string()), 401),
        (
            "expired",
            Some(sign(
                "ed25519.pem",
                EdDSA,
                "test-ed25519",
                &admin("compute", now - 3600),
            )),
            401,
        ),
        (
            "wrong key",
            Some(sign(
                "other_ed25519.pem",
                EdDSA,
                "test-ed25519",
                &admin("compute", now + 600),
            )),
            401,
        ),
        (
            "wrong audience",
            Some(sign(
                "ed25519.pem",
                EdDSA,
                "test-ed25519",
                &admin("pageserver", now + 600),
            )),
            401,
        ),
        (
            "wrong compute id",
            Some(sign(
                "rsa.pem",
                RS256,
                "test-rsa",
                &json!({"compute_id": "compute-api-2", "exp": now + 600}),
            )),
            403,
        ),
    ];
    for (name, token, want) in cases {
        let r = p.configure(&s, token.as_deref()).await;
        assert_eq!(r.status, want, "{name}: {}", r.text);
        conforms("POST", "/configure", &r);
        if let Some(t) = &token {
            assert!(
                !p.log().contains(t.as_str()),
                "{name}: the token was logged"
            );
        }
    }
    assert_eq!(
        p.status().await["status"],
        "empty",
        "nothing was configured"
    );
    let r = p
        .configure(
            &s,
            Some(&sign(
                "rsa.pem",
                RS256,
                "test-rsa",
                &admin("compute", now + 600),
            )),
        )
        .await;
    assert_eq!(r.status, 200, "valid admin: {}", r.text);
    let own = sign(
        "ed25519.pem",
        EdDSA,
        "test-ed25519",
        &json!({"compute_id": "compute-api-1", "exp": now + 600}),
    );
    let r = Reply::read(p.client.get(p.url("/dbs_and_roles")).send().await.unwrap()).await;
    assert_eq!(r.status, 400, "no token: {}", r.text);
    let r = p.terminate("fast", Some(&own)).await;
    assert_eq!(r.status, 200, "valid compute id: {}", r.text);
}

/// Many parallel configures and status calls against the real supervisor:
/// each configure is 200 (applied, or joined) or 409; reconfigures run one
/// at a time (one per 200 of a distinct operation); nothing hangs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_configures_and_status_calls() {
    crate::need_postgres!();
    const ROUNDS: usize = 4;
    const OPS: usize = 4;
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    configure_ok(&p, &quick_spec("op-0", "4MB")).await;
    // Distinct operations that got a 200 (each sent twice: a duplicate
    // joins its operation in flight or finds it applied).
    let mut applied = std::collections::BTreeSet::new();
    let mut conflicts = 0;
    let mut answered_200 = 0u64;
    for round in 0..ROUNDS {
        let mut tasks = Vec::new();
        for i in 0..OPS * 2 {
            let op = format!("op-{round}-{}", i % OPS);
            let spec = quick_spec(&op, &format!("{}MB", 5 + i % OPS));
            tasks.push((op, p.spawn_configure(&spec)));
        }
        let mut statuses = Vec::new();
        for _ in 0..8 {
            let (client, url) = (p.client.clone(), p.url("/status"));
            statuses.push(tokio::spawn(async move {
                client.get(url).send().await.unwrap().status().as_u16()
            }));
        }
        for (op, t) in tasks {
            let r = tokio::time::timeout(LONG, t)
                .await
                .expect("a configure hung")
                .unwrap();
            match r.status {
                200 => {
                    applied.insert(op);
                    answered_200 += 1;
                }
                409 => {
                    conforms("POST", "/configure", &r);
                    conflicts += 1;
                }
                other => panic!("{op}: unexpected {other}: {}", r.text),
            }
        }
        for s in statuses {
            assert_eq!(tokio::time::timeout(LONG, s).await.unwrap().unwrap(), 200);
        }
    }
    eprintln!(
        "parallel configures: {} operations applied, {conflicts} requests answered 409",
        applied.len()
    );
    assert!(
        applied.len() >= ROUNDS,
        "each round applied at least one operation"
    );
    // Every operation answered 200 was reconfigured at least once; a 409
    // caused none, and a 200 that joined or found its operation in effect
    // caused none either. A duplicate that arrives after ANOTHER operation
    // took effect is a new request for its spec and is applied again (the
    // dedup is against the spec in effect, not a history: the control plane
    // re-sends its latest intent and must get it applied), hence a range.
    let reconfigures = reconfigure_count(&p).await;
    assert!(
        (applied.len() as u64..=answered_200).contains(&reconfigures),
        "{reconfigures} reconfigures for {} operations and {answered_200} answers of 200; none for a 409",
        applied.len()
    );
    let st = p.status().await;
    assert_eq!(st["status"], "running");
    assert!(applied.contains(st["operation_uuid"].as_str().unwrap()));
}

/// A client that disconnects while its configure is in flight leaves the
/// supervisor to finish the work.
#[tokio::test]
async fn a_client_that_goes_away_does_not_wedge_the_compute() {
    crate::need_postgres!();
    use tokio::io::AsyncWriteExt;
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    let body = json!({"spec": quick_spec("op-gone", "6MB")}).to_string();
    let mut sock = tokio::net::TcpStream::connect(("127.0.0.1", p.http_port))
        .await
        .unwrap();
    let req = format!(
        "POST /configure HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(req.as_bytes()).await.unwrap();
    p.wait_until("the spec to be accepted", LONG, async |p| {
        p.status().await["status"] != "empty"
    })
    .await;
    drop(sock);
    p.wait_until("running", LONG, async |p| {
        p.status().await["status"] == "running"
    })
    .await;
    assert_eq!(p.status().await["operation_uuid"], "op-gone");
    assert_serving_with(&p, "6MB").await;
}

/// Client sessions move last_active forward; the supervisor's own do not.
#[tokio::test]
async fn activity_shows_in_status() {
    crate::need_postgres!();
    let p = Compute::serving(ComputeOpts::without_spec()).await;
    configure_ok(&p, &quick_spec("op-activity", "4MB")).await;
    let before = p.status().await["last_active"].clone();
    let client = p.sql("postgres", "some-app").await;
    client.simple_query("SELECT pg_sleep(0)").await.unwrap();
    p.wait_until("last_active to move", LONG, async |p| {
        let now = p.status().await["last_active"].clone();
        now.is_string() && now != before
    })
    .await;
}

#[tokio::test]
async fn a_busy_http_port_is_a_clear_error() {
    let port = support::ports::free_port();
    let _held = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_compute_ctl"))
        .args(["-D", "/tmp/compute_ctl-api-never-created", "-C"])
        .arg(format!(
            "postgresql://cloud_admin@127.0.0.1:{}/postgres",
            support::ports::free_port()
        ))
        .args([
            "-b",
            "/bin/true",
            "--http-host",
            "127.0.0.1",
            "--http-port",
            &port.to_string(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("--http-port"), "{err}");
}
