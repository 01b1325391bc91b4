//! Operating compute_ctl as a platform runs it (`deploy/kubernetes`): as a
//! non-root user, where it runs Postgres and its tools as itself.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::fixture;
use crate::support::os::{create_postgres_dir, postgres_user, temp_dir, uid_of};
use crate::support::postgres::TestPostgres;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(30);

/// As in a pod: compute_ctl itself runs as the `postgres` user (uid 999 in
/// the image), PGDATA inside a directory that user owns (the emptyDir). The
/// start takes a base backup (pg_basebackup as itself), applies the
/// catalog, serves /ready; a notify reloads, and a terminate stops cleanly.
#[tokio::test]
async fn runs_postgres_as_itself_when_not_root() {
    crate::need_postgres!();
    let (uid, gid) = if nix::unistd::geteuid().is_root() {
        postgres_user()
    } else {
        (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    };
    let source = TestPostgres::start(&[]).await;
    source
        .client("postgres")
        .await
        .batch_execute("CREATE TABLE carried (id int); INSERT INTO carried VALUES (7);")
        .await
        .unwrap();
    let mount = temp_dir();
    let parent = mount.path().join("compute");
    create_postgres_dir(&parent);
    let mut spec = fixture("spec.json");
    spec["pageserver_connstring"] = source.connstr().into();
    let mut opts = ComputeOpts::with_spec(spec.clone());
    opts.pgdata = Some(parent.join("pgdata"));
    // Root switches to the postgres user; a runner that is not root already
    // is one, and runs the same path.
    if nix::unistd::geteuid().is_root() {
        opts.run_as = Some((uid, gid));
    }
    let c = Compute::start(opts);
    let client = c.wait_running().await;

    assert_eq!(
        uid_of(c.pid as i32),
        Some(uid),
        "compute_ctl is not the postgres user"
    );
    let procs = c.postgres_processes();
    assert!(
        procs.len() >= 4,
        "expected Postgres processes, found {procs:?}"
    );
    for pid in procs {
        assert_eq!(
            uid_of(pid),
            Some(uid),
            "Postgres process {pid} does not run as compute_ctl's user"
        );
    }
    assert_eq!(std::fs::metadata(&c.pgdata).unwrap().uid(), uid);
    let carried: i32 = client
        .query_one("SELECT id FROM carried", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(carried, 7, "the base backup's rows");
    let roles: i64 = client
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'alice'", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(roles, 1, "the spec's catalog was applied");
    assert_eq!(c.get("/ready").await.status, 200);
    // Neon's downtime figures: a compute that started and runs had none.
    let metrics = c.get("/metrics").await.text;
    for line in [
        "compute_pg_current_downtime_ms 0",
        "compute_pg_downtime_ms_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}:\n{metrics}");
    }

    // A notify: config rewritten by the same user, SIGHUP to its own postmaster.
    let postmaster = c.postmaster_pid();
    let mut notify = spec.clone();
    notify["operation_uuid"] = "ops-notify-1".into();
    notify["skip_pg_catalog_updates"] = true.into();
    notify["cluster"]["settings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "work_mem", "value": "7MB", "vartype": "string"}));
    let r = c.configure(&notify, None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let fresh = c.connect().await.unwrap();
    let work_mem: String = fresh.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(work_mem, "7MB");
    assert_eq!(
        c.postmaster_pid(),
        postmaster,
        "a notify restarted Postgres"
    );

    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["lsn"].is_string(), "{}", r.text);
    let exit = c.wait_exit(Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit}\n{}", c.log());
    assert!(c.postgres_processes().is_empty());
}

/// `--max-ready-lag`: a replica more than the limit behind its source
/// answers 503 on /ready with the lag in the body, and 200 again once it
/// caught up. The lag is the source's position minus the replay LSN, so
/// both ways of falling behind count: (1) replay paused by hand on the
/// replica while the source writes about 2 MB of WAL (received, not
/// replayed); (2) the source's WAL sender stopped (SIGSTOP) while the
/// source writes: the replica still streams and has replayed all it
/// received, yet it is 2 MB behind its source, so it is not ready; once the
/// sender goes on, it catches up and is ready again.
#[tokio::test]
async fn ready_is_false_while_a_replica_lags_more_than_max_ready_lag() {
    crate::need_postgres!();
    let source = TestPostgres::storage().await;
    source.exec("CREATE TABLE filler (b text)").await;
    let mut spec = fixture("spec.json");
    spec["mode"] = "Replica".into();
    spec["pageserver_connstring"] = source.connstr().into();
    let c = Compute::start(ComputeOpts::with_spec(spec).args([
        "--compute-id",
        "ops-replica-1",
        "--max-ready-lag",
        "1MB",
    ]));
    let client = c.wait_running().await;
    c.wait_until("/ready 200 (streaming, no lag)", WITHIN, async |c| {
        c.get("/ready").await.status == 200
    })
    .await;

    client
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    source
        .exec("INSERT INTO filler SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
        .await;
    let body = crate::support::wait_for(WITHIN, "/ready 503 naming the lag", || async {
        let r = c.get("/ready").await;
        (r.status == 503).then_some(r.text)
    })
    .await;
    assert!(
        body.contains("lags its source by") && body.contains("--max-ready-lag 1048576 bytes"),
        "{body}"
    );
    let status = c.status().await;
    assert!(
        status["replication"]["replay_lag_bytes"].as_u64().unwrap() > 1 << 20,
        "{status}"
    );

    client
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    c.wait_until("/ready 200 once replay caught up", WITHIN, async |c| {
        c.get("/ready").await.status == 200
    })
    .await;

    // (2) Received == replayed, but behind the source.
    let senders = source
        .value("SELECT string_agg(pid::text, ',') FROM pg_stat_replication")
        .await;
    let pid: i32 = senders
        .parse()
        .unwrap_or_else(|_| panic!("one WAL sender expected: {senders}"));
    let sender = StoppedProcess::stop(pid);
    source
        .exec("INSERT INTO filler SELECT repeat('y', 1000) FROM generate_series(1, 2000)")
        .await;
    let (body, repl) = crate::support::wait_for(
        WITHIN,
        "/ready 503 while streaming with nothing received left to replay",
        || async {
            let r = c.get("/ready").await;
            let repl = c.status().await["replication"].clone();
            let caught_up_locally = repl["streaming"] == true
                && repl["receive_lsn"].is_string()
                && repl["receive_lsn"] == repl["replay_lsn"];
            (r.status == 503 && caught_up_locally).then_some((r.text, repl))
        },
    )
    .await;
    assert!(
        body.contains("lags its source by") && body.contains("--max-ready-lag 1048576 bytes"),
        "{body}"
    );
    assert!(
        repl["replay_lag_bytes"].as_u64().unwrap() > 1 << 20,
        "{repl}"
    );
    let source_lsn = repl["source_lsn"].as_str().unwrap().to_string();
    assert!(body.contains(&format!("source {source_lsn}")), "{body}");
    assert!(repl["source_error"].is_null(), "{repl}");

    drop(sender);
    c.wait_until(
        "/ready 200 once the replica caught up with its source",
        WITHIN,
        async |c| c.get("/ready").await.status == 200,
    )
    .await;
    let repl = c.status().await["replication"].clone();
    assert!(
        repl["replay_lag_bytes"].as_u64().unwrap() <= 1 << 20,
        "{repl}"
    );
}

/// A process stopped with SIGSTOP, continued (SIGCONT) when dropped, so a
/// failing test leaves nothing stopped behind.
struct StoppedProcess(nix::unistd::Pid);

impl StoppedProcess {
    fn stop(pid: i32) -> Self {
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
        StoppedProcess(pid)
    }
}

impl Drop for StoppedProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// A CA and a leaf for `localhost` signed by it, made here (rcgen).
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    // Distinct names: a leaf whose subject equals its issuer's looks self-signed to libpq.
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "compute_ctl test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// `psql` (libpq) with `sslmode=verify-full` trusting only `ca`: the
/// server's chain and its name (`localhost`) are checked.
fn psql_verify_full(port: u16, ca: &std::path::Path, sql: &str) -> Result<String, String> {
    let conn = format!(
        "host=localhost port={port} user=cloud_admin dbname=postgres sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let out = std::process::Command::new(crate::support::pg_bin_dir().join("psql"))
        .args([conn.as_str(), "-XAtc", sql])
        .output()
        .expect("run psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).to_string())
    }
}

/// `--tls-cert/--tls-key`: Postgres serves TLS with the pair (a libpq
/// `verify-full` client connects); a rotation to a mismatched pair is
/// refused with the reason in /status and the log while the old pair keeps
/// serving; a rotation to a pair of another CA is applied by reload: the
/// postmaster is the same, a TLS session opened before it keeps working,
/// and new clients verify against the new CA only.
#[tokio::test]
async fn tls_pair_is_served_and_rotated_by_reload_under_a_connected_client() {
    crate::need_postgres!();
    let dir = temp_dir();
    let (old, new) = (pki(), pki());
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let old_ca = file("old-ca.pem", &old.ca_pem);
    let new_ca = file("new-ca.pem", &new.ca_pem);
    let cert = file("tls.crt", &old.cert_pem);
    let key = file("tls.key", &old.key_pem);
    let mut opts = ComputeOpts::with_spec(fixture("spec.json"));
    opts.args.extend([
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".to_string(),
        key.display().to_string(),
    ]);
    let c = Compute::start(opts);
    c.wait_running().await;
    let postmaster = c.postmaster_pid();
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(
        psql_verify_full(c.pg_port, &old_ca, sql).as_deref(),
        Ok("t")
    );
    assert!(
        psql_verify_full(c.pg_port, &new_ca, sql).is_err(),
        "trusted a foreign CA"
    );

    // A session over TLS that stays open across both rotations.
    let mut held = HeldPsql::open(c.pg_port, &old_ca).await;
    let backend = held.query("SELECT pg_backend_pid()").await;

    // The new certificate with the old key: refused, the old pair stays.
    std::fs::write(&cert, &new.cert_pem).unwrap();
    let st = crate::support::wait_for(WITHIN, "/status tls.rejected", || async {
        let s = c.status().await;
        s["tls"]["rejected"].is_string().then_some(s)
    })
    .await;
    let why = st["tls"]["rejected"].as_str().unwrap();
    assert!(why.contains("does not belong to the certificate"), "{why}");
    assert_eq!(st["tls"]["rotations"], 0);
    c.wait_log("was refused, the pair in force stays", WITHIN)
        .await;
    assert_eq!(
        psql_verify_full(c.pg_port, &old_ca, sql).as_deref(),
        Ok("t")
    );

    // The matching key arrives: applied by reload.
    std::fs::write(&key, &new.key_pem).unwrap();
    let st = crate::support::wait_for(WITHIN, "/status tls.rotations = 1", || async {
        let s = c.status().await;
        (s["tls"]["rotations"] == 1).then_some(s)
    })
    .await;
    assert!(st["tls"]["rejected"].is_null(), "{st}");
    // Postgres loads the new pair on the SIGHUP; a new client sees it.
    crate::support::wait_for(WITHIN, "a verify-full client of the new CA", || async {
        psql_verify_full(c.pg_port, &new_ca, sql).ok()
    })
    .await;
    let refused = psql_verify_full(c.pg_port, &old_ca, sql).unwrap_err();
    // Same CA name, other key: OpenSSL fails the signature check.
    assert!(refused.contains("SSL error"), "{refused}");
    assert_eq!(
        c.postmaster_pid(),
        postmaster,
        "the rotation restarted Postgres"
    );
    assert_eq!(
        held.query("SELECT pg_backend_pid()").await,
        backend,
        "the session was dropped"
    );
    assert_eq!(held.query(sql).await, "t");
}

/// One psql session kept open, queried line by line through its stdin.
struct HeldPsql {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl HeldPsql {
    async fn open(port: u16, ca: &std::path::Path) -> Self {
        let conn = format!(
            "host=localhost port={port} user=cloud_admin dbname=postgres sslmode=verify-full sslrootcert={}",
            ca.display()
        );
        let mut child = tokio::process::Command::new(crate::support::pg_bin_dir().join("psql"))
            .args([conn.as_str(), "-XAtq", "-v", "ON_ERROR_STOP=1"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn psql");
        let stdin = child.stdin.take().unwrap();
        let stdout = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(
            child.stdout.take().unwrap(),
        ));
        Self {
            child,
            stdin,
            stdout,
        }
    }

    // A test may bound its wait on the OS clock (clippy.toml is for the library).
    #[allow(clippy::disallowed_methods)]
    async fn query(&mut self, sql: &str) -> String {
        use tokio::io::AsyncWriteExt;
        self.stdin
            .write_all(format!("{sql};\n").as_bytes())
            .await
            .expect("the held psql session is gone");
        let line = tokio::time::timeout(WITHIN, self.stdout.next_line())
            .await
            .expect("the held psql session did not answer")
            .expect("read psql");
        line.unwrap_or_else(|| panic!("psql exited: {:?}", self.child.try_wait()))
    }
}

/// A start with an unusable pair (expired) fails before Postgres starts,
/// naming the files and the check that failed.
#[tokio::test]
async fn an_expired_tls_pair_fails_the_start_with_the_reason() {
    crate::need_postgres!();
    let dir = temp_dir();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let mut opts = ComputeOpts::with_spec(fixture("spec.json"));
    opts.args.extend([
        "--tls-cert".to_string(),
        cert_path.display().to_string(),
        "--tls-key".to_string(),
        key_path.display().to_string(),
    ]);
    let c = Compute::start(opts);
    let exit = c.wait_exit(Duration::from_secs(60)).await;
    assert!(!exit.success());
    let log = c.log();
    assert!(
        log.contains("TLS (--tls-cert/--tls-key or compute_ctl_config.tls) cannot be used")
            && log.contains("expired"),
        "{log}"
    );
    assert!(
        c.postmaster_pid().is_none(),
        "Postgres started with an expired pair"
    );
}

/// Neon's `compute_ctl_config.tls` in the `--config` envelope (as
/// neon_local writes `config.json`) turns Postgres' TLS on as
/// `--tls-cert`/`--tls-key` do: a libpq `verify-full` client of the test CA
/// connects, and `/status.tls` names the envelope's files.
#[tokio::test]
async fn compute_ctl_config_tls_serves_postgres_tls() {
    crate::need_postgres!();
    let dir = temp_dir();
    let pki = pki();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ca = file("ca.pem", &pki.ca_pem);
    let cert = file("tls.crt", &pki.cert_pem);
    let key = file("tls.key", &pki.key_pem);
    let config = file(
        "config.json",
        &json!({
            "spec": fixture("spec.json"),
            "compute_ctl_config": {
                "jwks": {"keys": []},
                "tls": {"key_path": key, "cert_path": cert},
            },
        })
        .to_string(),
    );
    let c =
        Compute::start(ComputeOpts::without_spec().args(["--config", config.to_str().unwrap()]));
    c.wait_running().await;
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(psql_verify_full(c.pg_port, &ca, sql).as_deref(), Ok("t"));
    let st = c.status().await;
    assert_eq!(st["tls"]["cert_path"], cert.display().to_string(), "{st}");
    assert_eq!(st["tls"]["key_path"], key.display().to_string(), "{st}");
    assert!(st["tls"]["in_force"]["not_after"].is_i64(), "{st}");
}

/// What an HTTPS GET saw: the status, the body and the leaf certificate
/// the server presented (DER).
struct HttpsReply {
    status: u16,
    body: String,
    leaf: Vec<u8>,
}

/// `GET path` over TLS on a new connection to 127.0.0.1:`port`, trusting
/// only `ca_pem` and checking the name `localhost` (rustls, hyper).
#[allow(clippy::disallowed_methods)] // a test bounds its wait on the OS clock
async fn https_get(port: u16, ca_pem: &str, path: &str) -> Result<HttpsReply, String> {
    use http_body_util::BodyExt;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header("host", "localhost")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(HttpsReply {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            leaf,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
}

fn leaf_der(cert_pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

/// `--http-tls`: the HTTP API answers /status over TLS with the pair of
/// `--tls-cert`/`--tls-key` to a client that trusts the test CA (and checks
/// the name), refuses plain HTTP, and after a rotation of the files a new
/// connection is served the new certificate (the new CA's client
/// verifies, the old CA's no longer does).
#[tokio::test]
async fn http_tls_serves_the_api_with_the_pair_and_rotates_it() {
    crate::need_postgres!();
    let dir = temp_dir();
    let (old, new) = (pki(), pki());
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cert = file("tls.crt", &old.cert_pem);
    let key = file("tls.key", &old.key_pem);
    let mut opts = ComputeOpts::with_spec(fixture("spec.json"));
    opts.args.extend([
        "--tls-cert".to_string(),
        cert.display().to_string(),
        "--tls-key".to_string(),
        key.display().to_string(),
        "--http-tls".to_string(),
    ]);
    let c = Compute::start(opts);
    let port = c.http_port;
    let running =
        crate::support::wait_for(Duration::from_secs(60), "running over https", || async {
            assert!(c.try_exit().is_none(), "compute_ctl exited:\n{}", c.log());
            let r = https_get(port, &old.ca_pem, "/status").await.ok()?;
            let st: serde_json::Value = serde_json::from_str(&r.body).ok()?;
            (r.status == 200 && st["status"] == "running").then_some(r)
        })
        .await;
    assert_eq!(running.leaf, leaf_der(&old.cert_pem));
    let ready = https_get(port, &old.ca_pem, "/ready").await.unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);

    // Plain HTTP on the same port gets no answer.
    let plain = c.client.get(c.url("/status")).send().await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");
    // A client of another CA does not verify the server.
    let foreign = https_get(port, &new.ca_pem, "/status").await.err();
    assert!(
        foreign
            .as_deref()
            .is_some_and(|e| e.contains("TLS handshake")),
        "{foreign:?}"
    );

    // Rotation: the new pair is served to new connections.
    std::fs::write(&key, &new.key_pem).unwrap();
    std::fs::write(&cert, &new.cert_pem).unwrap();
    let rotated = crate::support::wait_for(WITHIN, "the new certificate served", || async {
        https_get(port, &new.ca_pem, "/status").await.ok()
    })
    .await;
    assert_eq!(rotated.leaf, leaf_der(&new.cert_pem));
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    let stale = https_get(port, &old.ca_pem, "/status").await.err();
    assert!(
        stale
            .as_deref()
            .is_some_and(|e| e.contains("TLS handshake")),
        "{stale:?}"
    );
    c.wait_log("HTTP API TLS pair rotated", WITHIN).await;
}

/// `--http-tls` without a certificate pair is refused at start, saying
/// what to give.
#[tokio::test]
async fn http_tls_without_a_pair_fails_the_start() {
    crate::need_postgres!();
    let c = Compute::start(ComputeOpts::with_spec(fixture("spec.json")).args(["--http-tls"]));
    let exit = c.wait_exit(Duration::from_secs(30)).await;
    assert!(!exit.success());
    let log = c.log();
    assert!(log.contains("--http-tls needs a certificate pair"), "{log}");
}
