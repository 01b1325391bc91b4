//! Runs the real `compute_ctl` binary with a real Postgres 15 and talks to
//! it over real HTTP. Ports come from this test suite's own ranges (HTTP
//! 38100-38299, Postgres 56400-56599), allocated atomically and checked by
//! binding. Dropping a [`Proc`] stops compute_ctl (SIGTERM, then SIGKILL)
//! and kills a postmaster it may have left behind, also when a test fails.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const PGBIN: &str = "/usr/lib/postgresql/15/bin/postgres";
pub const SUPERUSER: &str = "cloud_admin";

static NEXT_HTTP: AtomicU16 = AtomicU16::new(38_100);
static NEXT_PG: AtomicU16 = AtomicU16::new(56_400);

/// A free port from `[*next, end]`.
fn free_port(next: &AtomicU16, end: u16) -> u16 {
    loop {
        let p = next.fetch_add(1, Ordering::SeqCst);
        assert!(p <= end, "test port range exhausted");
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
}

pub fn http_port() -> u16 {
    free_port(&NEXT_HTTP, 38_299)
}

pub fn pg_port() -> u16 {
    free_port(&NEXT_PG, 56_599)
}

/// Whether real-Postgres tests can run here.
pub fn have_postgres() -> bool {
    Path::new(PGBIN).is_file()
}

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A fixture spec with this `operation_uuid`.
pub fn spec(fixture: &str, operation_uuid: &str) -> Value {
    let mut s: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file(fixture)).unwrap()).unwrap();
    s["operation_uuid"] = Value::from(operation_uuid);
    s
}

/// Options of one run.
#[derive(Default, Clone)]
pub struct Opts {
    pub jwks: Option<PathBuf>,
    pub compute_id: Option<String>,
    pub http_port: Option<u16>,
}

/// A running compute_ctl.
pub struct Proc {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub http: u16,
    pub pg: u16,
    pub base: String,
    pub client: reqwest::Client,
}

impl Proc {
    /// Starts compute_ctl without a spec (status `empty`) and waits for its API.
    pub async fn start(opts: Opts) -> Proc {
        let dir = tempfile::Builder::new()
            .prefix("compute_ctl-api-")
            .tempdir_in("/tmp")
            .unwrap();
        // Postgres runs as the postgres user and must reach PGDATA.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let http = opts.http_port.unwrap_or_else(http_port);
        let pg = pg_port();
        let log = std::fs::File::create(dir.path().join("compute_ctl.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_compute_ctl"));
        cmd.arg("-D")
            .arg(dir.path().join("pgdata"))
            .arg("-C")
            .arg(format!("postgresql://{SUPERUSER}@127.0.0.1:{pg}/postgres"))
            .arg("-b")
            .arg(PGBIN)
            .args(["--http-host", "127.0.0.1", "--http-port", &http.to_string()])
            .args([
                "--activity-interval-secs",
                "1",
                "--shutdown-timeout-secs",
                "10",
            ])
            .env("RUST_LOG", "info,compute_ctl=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if let Some(j) = &opts.jwks {
            cmd.arg("--jwks").arg(j);
        }
        if let Some(id) = &opts.compute_id {
            cmd.args(["--compute-id", id]);
        }
        let child = cmd.spawn().expect("compute_ctl starts");
        let p = Proc {
            child: Some(child),
            dir,
            http,
            pg,
            base: format!("http://127.0.0.1:{http}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        };
        p.wait_for(
            "the API to answer",
            Duration::from_secs(30),
            |p| async move { p.client.get(p.url("/health")).send().await.is_ok() },
        )
        .await;
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Polls `cond` until it holds; panics with the log after `deadline`.
    pub async fn wait_for<'a, F, Fut>(&'a self, what: &str, deadline: Duration, cond: F)
    where
        F: Fn(&'a Proc) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let t0 = Instant::now();
        loop {
            if cond(self).await {
                return;
            }
            if t0.elapsed() > deadline {
                panic!("timed out waiting for {what}\n--- log ---\n{}", self.log());
            }
            // Polling interval of a condition with a deadline, not a synchronisation sleep.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// compute_ctl's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("compute_ctl.log")).unwrap_or_default()
    }

    pub fn pgdata(&self) -> PathBuf {
        self.dir.path().join("pgdata")
    }

    /// GET, returning (status, headers, body text).
    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    /// POST /configure {spec}, with an optional bearer token.
    pub async fn configure(&self, spec: &Value, token: Option<&str>) -> Reply {
        let mut req = self
            .client
            .post(self.url("/configure"))
            .json(&serde_json::json!({ "spec": spec }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    /// POST /terminate?mode=...
    pub async fn terminate(&self, mode: &str, token: Option<&str>) -> Reply {
        let mut req = self
            .client
            .post(self.url(&format!("/terminate?mode={mode}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.unwrap()).await
    }

    /// The status document.
    pub async fn status(&self) -> Value {
        self.get("/status").await.json()
    }

    /// A SQL session to the compute's Postgres as the superuser.
    pub async fn sql(&self, dbname: &str, application_name: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to Postgres: {e}\n--- log ---\n{}", self.log()));
        tokio::spawn(conn);
        client
    }

    /// One value of a one-row query.
    pub async fn sql_value(&self, sql: &str) -> String {
        let c = self.sql("postgres", "api-test").await;
        let rows = c.simple_query(sql).await.unwrap();
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap()
    }

    /// The postmaster's pid from postmaster.pid.
    pub fn postmaster_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pgdata().join("postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// Waits for compute_ctl to exit; returns its exit code.
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<i32> {
        let t0 = Instant::now();
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if t0.elapsed() > deadline {
                panic!("compute_ctl did not exit\n--- log ---\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether a process exists.
pub fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pm = self.postmaster_pid();
        if let Some(mut child) = self.child.take() {
            if child.try_wait().ok().flatten().is_none() {
                let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let t0 = Instant::now();
                while child.try_wait().ok().flatten().is_none()
                    && t0.elapsed() < Duration::from_secs(15)
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if let Some(pm) = pm {
            if alive(pm) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pm),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if std::thread::panicking() {
            eprintln!("--- compute_ctl log ({}) ---\n{}", self.base, self.log());
        }
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    pub text: String,
}

impl Reply {
    pub async fn read(r: reqwest::Response) -> Reply {
        let h = |name: &str| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (content_type, request_id) = (h("content-type"), h("x-request-id"));
        Reply {
            status: r.status().as_u16(),
            content_type,
            request_id,
            text: r.text().await.unwrap(),
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}
