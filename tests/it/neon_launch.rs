//! Launched and driven as Neon's `neon_local` does it
//! (`control_plane/src/endpoint.rs` of neondatabase/neon): its endpoint
//! directory with `config.json` (`{spec, compute_ctl_config: {jwks, tls}}`,
//! the key set built as neon_local builds it from its public key), its exact
//! argument list, its `/status` polling with a compute-id token without
//! `exp` (Init: keep polling; Running: done; anything else: a failed
//! start), its reconfigure (the envelope, `postgresql.conf` re-read), its
//! default stop (`pg_ctl -D PGDATA -w -m fast stop`, then wait for
//! compute_ctl to exit, here with 0), and its `immediate-terminate` stop
//! (`POST /terminate?mode=immediate` with an admin token, then SIGTERM).
//! Every answer is checked against Neon's contract (`openapi_spec.yaml`).
//!
//! Skipped, with one line, without Neon's contract (see `crate::support::neon`).

// Tests may read the OS clock; clippy.toml is for the library.
#![allow(clippy::disallowed_methods)]

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::support::compute::Reply;
use crate::support::openapi::{OpenApi, Seen};
use crate::support::{SUPERUSER, pg_bin_dir, repo_file};
use serde_json::{Value, json};

const ENDPOINT_ID: &str = "ep-neon-launch";
const WITHIN: Duration = Duration::from_secs(60);

/// neon_local's endpoint: its directory, ports and the compute_ctl it runs.
struct Endpoint {
    dir: tempfile::TempDir,
    pg_port: u16,
    external_port: u16,
    internal_port: u16,
    child: Option<tokio::process::Child>,
    client: reqwest::Client,
}

impl Endpoint {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn pgdata(&self) -> PathBuf {
        self.path().join("pgdata")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.external_port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path().join("compute.log")).unwrap_or_default()
    }

    /// neon_local's `setup_pg_conf`, less what needs Neon's `neon` extension
    /// (`shared_preload_libraries = neon`, its backpressure settings,
    /// `synchronous_standby_names = pageserver`).
    fn write_postgresql_conf(&self, extra: &str) {
        let conf = format!(
            "max_wal_senders=10\nwal_log_hints=off\nmax_replication_slots=10\nhot_standby=on\n\
             shared_buffers=1MB\neffective_io_concurrency=2\nfsync=off\nmax_connections=100\n\
             wal_level=logical\nwal_sender_timeout='5s'\nlisten_addresses='127.0.0.1'\n\
             port={}\nwal_keep_size=0\nrestart_after_crash=off\n\nsynchronous_commit=remote_write\n{extra}",
            self.pg_port
        );
        std::fs::write(self.path().join("postgresql.conf"), conf).unwrap();
    }

    /// neon_local's `config.json`: the spec it builds (no safekeepers, no
    /// pageserver here: Postgres is initialised with initdb) and the
    /// compute_ctl config with its key set.
    fn write_config(&self) {
        let postgresql_conf = std::fs::read_to_string(self.path().join("postgresql.conf")).unwrap();
        let config = json!({
            "spec": {
                "skip_pg_catalog_updates": true,
                "format_version": 1.0,
                "operation_uuid": null,
                "features": [],
                "swap_size_bytes": null,
                "disk_quota_bytes": null,
                "disable_lfc_resizing": null,
                "cluster": {
                    "cluster_id": null,
                    "name": null,
                    "state": null,
                    "roles": [],
                    "databases": [],
                    "settings": null,
                    "postgresql_conf": postgresql_conf,
                },
                "delta_operations": null,
                "tenant_id": "c9269c359e9a199fad1ea0981246a78f",
                "timeline_id": "ece7de74d4b8cbe5433a68ce4d1b97b4",
                "project_id": null,
                "branch_id": null,
                "endpoint_id": ENDPOINT_ID,
                "mode": "Primary",
                "safekeepers_generation": null,
                "safekeeper_connstrings": [],
                "storage_auth_token": null,
                "remote_extensions": null,
                "pgbouncer_settings": null,
                "local_proxy_config": null,
                "reconfigure_concurrency": 1,
                "drop_subscriptions_before_start": false,
                "audit_log_level": "Disabled",
                "logs_export_host": null,
                "endpoint_storage_addr": "127.0.0.1:9993",
                "endpoint_storage_token": "",
                "autoprewarm": false,
                "offload_lfc_interval_seconds": null,
                "suspend_timeout_seconds": -1,
                "databricks_settings": null,
            },
            "compute_ctl_config": {"jwks": neon_local_jwks(), "tls": null},
        });
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_string_pretty(&config).unwrap(),
        )
        .unwrap();
    }

    /// Starts compute_ctl with neon_local's exact argument list, output
    /// appended to `compute.log`, and waits as neon_local does: Init keeps
    /// it polling, Running ends the wait, any other status is a failure.
    async fn start(&mut self, api: &mut OpenApi) {
        // neon_local removes the data directory before every start.
        let _ = std::fs::remove_dir_all(self.pgdata());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join("compute.log"))
            .unwrap();
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_compute_ctl"));
        cmd.args(["--external-http-port", &self.external_port.to_string()])
            .args(["--internal-http-port", &self.internal_port.to_string()])
            .arg("--pgdata")
            .arg(self.pgdata())
            .args([
                "--connstr",
                &format!(
                    "postgresql://{SUPERUSER}@127.0.0.1:{}/postgres",
                    self.pg_port
                ),
            ])
            .arg("--config")
            .arg(self.path().join("config.json"))
            .arg("--pgbin")
            .arg(pg_bin_dir().join("postgres"))
            .args(["--compute-id", ENDPOINT_ID])
            // neon_local adds `--dev` when started with it.
            .arg("--dev")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().expect("spawn compute_ctl"));
        let token = compute_token();
        let mut seen = Vec::new();
        // neon_local's loop: every 100 ms until its start timeout.
        let deadline = std::time::Instant::now() + WITHIN;
        let last = loop {
            if let Some(exit) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("compute_ctl exited ({exit}) during start:\n{}", self.log());
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not running within {WITHIN:?} (seen {seen:?}):\n{}",
                self.log()
            );
            let req = self.client.get(self.url("/status")).bearer_auth(&token);
            if let Ok(r) = req.send().await {
                let r = Reply::read(r).await;
                check(api, "GET", "/status", &r);
                let status = r.json()["status"].as_str().unwrap_or_default().to_string();
                if seen.last() != Some(&status) {
                    seen.push(status.clone());
                }
                match status.as_str() {
                    "init" => {}
                    "running" => break r,
                    other => panic!(
                        "neon_local would fail the start: unexpected compute status {other:?} (seen {seen:?}): {}\n{}",
                        r.text,
                        self.log()
                    ),
                }
            }
            // The poll interval of a condition with a deadline (neon_local's ATTEMPT_INTERVAL).
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(last.json()["tenant"], "c9269c359e9a199fad1ea0981246a78f");
    }

    async fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        match tokio::time::timeout(WITHIN, child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("compute_ctl did not exit:\n{}", self.log()),
        }
    }

    async fn sql_value(&self, sql: &str) -> String {
        let c = crate::support::connect(&crate::support::connstr(self.pg_port))
            .await
            .expect("connect to Postgres");
        crate::support::query_value(&c, sql).await.expect("a row")
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        crate::support::os::stop_postgres_in(&self.pgdata());
        if std::thread::panicking() {
            eprintln!("--- compute.log ---\n{}", self.log());
        }
    }
}

/// The test key's public half as neon_local writes its JWKS: `use: sig`,
/// `key_ops: [verify]`, `alg: EdDSA`, a kid, an OKP Ed25519 key.
fn neon_local_jwks() -> Value {
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(repo_file("fixtures/jwt/jwks.json")).unwrap(),
    )
    .unwrap();
    let x = fixture["keys"][0]["x"].clone();
    json!({"keys": [{
        "use": "sig",
        "key_ops": ["verify"],
        "alg": "EdDSA",
        "kid": "neon-local-key",
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
    }]})
}

/// A token as neon_local's `generate_jwt` makes it: no `exp`.
fn sign(claims: &Value) -> String {
    let pem = std::fs::read(repo_file("fixtures/jwt/ed25519.pem")).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    h.kid = Some("neon-local-key".into());
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

/// `generate_jwt(None)`: this endpoint's compute id, no scope, no audience.
fn compute_token() -> String {
    sign(&json!({"compute_id": ENDPOINT_ID, "scope": null, "aud": null}))
}

/// `generate_jwt(Some(Admin))`: admin scope, audience `compute`, no compute id.
fn admin_token() -> String {
    sign(&json!({"compute_id": null, "scope": "compute_ctl:admin", "aud": ["compute"]}))
}

fn check(api: &mut OpenApi, method: &str, path: &str, r: &Reply) {
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

#[tokio::test]
async fn neon_local_starts_reconfigures_and_stops_the_compute() {
    crate::need_postgres!();
    let Some(neon_text) = crate::support::neon::text("openapi_spec.yaml") else {
        return;
    };
    let mut api = OpenApi::neon(&neon_text);
    let mut ep = Endpoint {
        dir: crate::support::os::temp_dir(),
        pg_port: crate::support::ports::free_port(),
        external_port: crate::support::ports::free_port(),
        internal_port: crate::support::ports::free_port(),
        child: None,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap(),
    };
    ep.write_postgresql_conf("");
    ep.write_config();

    // Start: neon_local's command line and config.json, unchanged.
    ep.start(&mut api).await;
    let log = ep.log();
    assert!(
        log.contains("--dev is accepted and ignored"),
        "one line says why --dev does nothing:\n{log}"
    );
    // With the key set, the token is needed (400 without, as Neon's).
    let r = Reply::read(ep.client.get(ep.url("/status")).send().await.unwrap()).await;
    assert_eq!(r.status, 400, "{}", r.text);
    // Neon's compute_ctl_up, read by Neon's test_compute_reconfigure.
    let metrics = Reply::read(ep.client.get(ep.url("/metrics")).send().await.unwrap()).await;
    assert!(
        metrics
            .text
            .lines()
            .any(|l| l.starts_with("compute_ctl_up{")
                && l.contains("status=\"running\"")
                && l.ends_with(" 1")),
        "{}",
        metrics.text
    );

    // Reconfigure as neon_local does: config.json's spec and compute_ctl
    // config, postgresql.conf re-read, POST /configure with the compute token.
    ep.write_postgresql_conf("work_mem='5MB'\n");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(ep.path().join("config.json")).unwrap())
            .unwrap();
    let mut spec = config["spec"].clone();
    spec["cluster"]["postgresql_conf"] = std::fs::read_to_string(ep.path().join("postgresql.conf"))
        .unwrap()
        .into();
    let body = json!({"spec": spec, "compute_ctl_config": config["compute_ctl_config"]});
    let r = Reply::read(
        ep.client
            .post(ep.url("/configure"))
            .bearer_auth(compute_token())
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    check(&mut api, "POST", "/configure", &r);
    assert_eq!(ep.sql_value("SHOW work_mem").await, "5MB");

    // /database_schema for any name: one pg_dump would read as a connection
    // string with --dbname, and one over Postgres' 63-byte limit.
    let odd = "dbname=postgres host=nowhere";
    let c = crate::support::connect(&crate::support::connstr(ep.pg_port))
        .await
        .unwrap();
    c.batch_execute(&format!("CREATE DATABASE \"{odd}\""))
        .await
        .unwrap();
    let schema = |name: &str| {
        ep.client
            .get(ep.url("/database_schema"))
            .query(&[("database", name)])
            .bearer_auth(compute_token())
            .send()
    };
    let r = Reply::read(schema(odd).await.unwrap()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    check(&mut api, "GET", "/database_schema", &r);
    assert!(r.text.contains("PostgreSQL database dump"), "{}", r.text);
    let r = Reply::read(schema(&"x".repeat(64)).await.unwrap()).await;
    assert_eq!(r.status, 404, "{}", r.text);
    check(&mut api, "GET", "/database_schema", &r);
    assert!(r.text.contains("63-byte limit"), "{}", r.text);

    // neon_local's default stop: pg_ctl -D PGDATA -w -m fast stop, as the
    // owner of PGDATA; then compute_ctl exits, with 0.
    let (uid, gid) = crate::support::os::postgres_user();
    let out = std::process::Command::new(pg_bin_dir().join("pg_ctl"))
        .arg("-D")
        .arg(ep.pgdata())
        .args(["-w", "-m", "fast", "stop"])
        .uid(uid)
        .gid(gid)
        .output()
        .expect("run pg_ctl");
    assert!(
        out.status.success(),
        "pg_ctl stop: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exit = ep.wait_exit().await;
    assert_eq!(exit.code(), Some(0), "after pg_ctl stop:\n{}", ep.log());

    // Start again, stop with neon_local's immediate-terminate: an admin
    // token without exp, then SIGTERM, and wait for the exit.
    ep.start(&mut api).await;
    let r = Reply::read(
        ep.client
            .post(ep.url("/terminate?mode=immediate"))
            .bearer_auth(admin_token())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Neon's TerminateResponse: `lsn` is null after an immediate stop, as
    // Neon's own server answers (`Option<Lsn>`). Its openapi_spec.yaml marks
    // `lsn` required without `nullable`, and the checker reads a null as an
    // absent field, so Neon's own answer would fail it: check what
    // neon_local deserialises instead (the key, null).
    let body = r.json();
    assert!(
        body.as_object().unwrap().contains_key("lsn") && body["lsn"].is_null(),
        "{}",
        r.text
    );
    assert_eq!(body["status"], "terminated", "{}", r.text);
    let pid = ep.child.as_ref().unwrap().id().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = ep.wait_exit().await;
    assert_eq!(exit.code(), Some(0), "after terminate:\n{}", ep.log());
    assert!(
        crate::support::os::postmaster_of(&ep.pgdata()).is_none(),
        "Postgres is stopped"
    );
}
