//! The real `compute_ctl` binary on real Postgres 15, as a test sees it:
//! ports from the shared test range ([`super::ports`]), a throw-away PGDATA
//! reachable by the `postgres` user, the process's log in a file (complete
//! once it exits; printed when a test fails), its HTTP API (`Reply` keeps
//! status, content type, request id and body), SQL sessions to its Postgres,
//! polling helpers with deadlines, and on drop: compute_ctl killed and every
//! Postgres process of its PGDATA stopped.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use super::os::{postmaster_of, processes_in, stop_postgres_in, temp_dir};
use super::ports::free_port;
use super::{SUPERUSER, connect, postgres_bin, query_value, wait_for};

/// How to start compute_ctl.
#[derive(Debug, Clone)]
pub struct ComputeOpts {
    /// Given with `--spec-json`; `None` starts without a spec.
    pub spec: Option<Value>,
    pub pgbin: PathBuf,
    pub pg_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Run as PID 1 of a new PID namespace (`unshare --pid --fork`).
    pub pid1: bool,
    /// PGDATA elsewhere than in the compute's temp dir (e.g. on a tmpfs).
    pub pgdata: Option<PathBuf>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// A bearer token that [`Compute::get`], [`Compute::status`] and
    /// [`Compute::wait_status`] send (once a key set protects `/status`).
    pub token: Option<String>,
    /// Run compute_ctl itself as this uid/gid instead of root (as in a pod).
    pub run_as: Option<(u32, u32)>,
}

impl ComputeOpts {
    pub fn with_spec(spec: Value) -> Self {
        Self {
            spec: Some(spec),
            ..Self::without_spec()
        }
    }

    /// No spec: it comes later (control plane, `POST /configure`).
    pub fn without_spec() -> Self {
        Self {
            spec: None,
            pgbin: postgres_bin(),
            pg_port: None,
            http_port: None,
            args: Vec::new(),
            pid1: false,
            pgdata: None,
            env: Vec::new(),
            token: None,
            run_as: None,
        }
    }

    /// Adds command-line arguments.
    pub fn args<const N: usize>(mut self, args: [&str; N]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
}

/// A running compute_ctl with its own PGDATA and ports.
pub struct Compute {
    child: Mutex<tokio::process::Child>,
    pub pid: u32,
    pub pg_port: u16,
    pub http_port: u16,
    pub pgdata: PathBuf,
    pub dir: tempfile::TempDir,
    /// How it was started ([`Compute::respawn`] starts it so again).
    opts: ComputeOpts,
    pub client: reqwest::Client,
}

impl Compute {
    /// Starts compute_ctl as `opts` says, without waiting for anything.
    pub fn start(opts: ComputeOpts) -> Self {
        let dir = temp_dir();
        let pgdata = opts
            .pgdata
            .clone()
            .unwrap_or_else(|| dir.path().join("pgdata"));
        let pg_port = opts.pg_port.unwrap_or_else(free_port);
        let http_port = opts.http_port.unwrap_or_else(free_port);
        let child = spawn(&opts, dir.path(), &pgdata, pg_port, http_port);
        let pid = child.id().expect("pid");
        Self {
            child: Mutex::new(child),
            pid,
            pg_port,
            http_port,
            pgdata,
            dir,
            opts,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Starts compute_ctl again, as before: same PGDATA, ports and
    /// arguments (after the last one exited or was killed), with `spec` as
    /// its start spec when given. The log goes on in the same file.
    pub fn respawn(&mut self, spec: Option<Value>) {
        if spec.is_some() {
            self.opts.spec = spec;
        }
        let child = spawn(
            &self.opts,
            self.dir.path(),
            &self.pgdata,
            self.pg_port,
            self.http_port,
        );
        self.pid = child.id().expect("pid");
        *self.child.get_mut().unwrap() = child;
    }

    /// How the next [`Compute::respawn`] starts it.
    pub fn opts_mut(&mut self) -> &mut ComputeOpts {
        &mut self.opts
    }

    /// Starts compute_ctl and waits until its HTTP API answers.
    pub async fn serving(opts: ComputeOpts) -> Self {
        let c = Self::start(opts);
        c.wait_until("the API to answer", Duration::from_secs(30), async |c| {
            c.client.get(c.url("/health")).send().await.is_ok()
        })
        .await;
        c
    }

    /// The `-C` connection string.
    pub fn connstr(&self) -> String {
        super::connstr(self.pg_port)
    }

    /// `http://127.0.0.1:PORT` of the HTTP API.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The URL of `path` on the HTTP API.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http_url())
    }

    /// Everything compute_ctl printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("compute_ctl.log")).unwrap_or_default()
    }

    /// Connects to Postgres with the `-C` string.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        connect(&self.connstr()).await
    }

    /// A superuser session to `dbname` named `application_name`.
    pub async fn sql(&self, dbname: &str, application_name: &str) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.pg_port)
            .user(SUPERUSER)
            .dbname(dbname)
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("connecting to Postgres: {e}"));
        tokio::spawn(conn);
        client
    }

    /// The value of a one-row query, in a new session.
    pub async fn sql_value(&self, sql: &str) -> String {
        let c = self.sql("postgres", "compute-test").await;
        query_value(&c, sql)
            .await
            .unwrap_or_else(|| panic!("no row from {sql}"))
    }

    /// Whether compute_ctl has exited, and how.
    pub fn try_exit(&self) -> Option<ExitStatus> {
        self.child.lock().unwrap().try_wait().expect("try_wait")
    }

    /// Polls `cond` until it holds; panics if compute_ctl exits first or
    /// `within` passes.
    pub async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        cond: impl AsyncFn(&Self) -> bool,
    ) {
        wait_for(within, what, || async {
            if cond(self).await {
                return Some(());
            }
            if let Some(exit) = self.try_exit() {
                panic!("compute_ctl exited ({exit}) while waiting for {what}");
            }
            None
        })
        .await;
    }

    /// Waits until `GET /status` shows `status` (snake_case).
    pub async fn wait_status(&self, status: &str, within: Duration) {
        let what = format!("status {status}");
        self.wait_until(&what, within, async |c| {
            match c.authed(c.client.get(c.url("/status"))).send().await {
                Ok(r) => r.json::<Value>().await.is_ok_and(|v| v["status"] == status),
                Err(_) => false,
            }
        })
        .await;
    }

    /// Waits until Running and returns a session opened with the `-C` string.
    pub async fn wait_running(&self) -> tokio_postgres::Client {
        self.wait_status("running", Duration::from_secs(60)).await;
        match self.connect().await {
            Ok(c) => c,
            Err(e) => panic!("running, but cannot connect: {e}"),
        }
    }

    /// Waits until a line of the log contains `needle`, and returns it.
    pub async fn wait_log(&self, needle: &str, within: Duration) -> String {
        let what = format!("a log line with {needle:?}");
        wait_for(within, &what, || async {
            self.log()
                .lines()
                .find(|l| l.contains(needle))
                .map(str::to_string)
        })
        .await
    }

    /// Waits until compute_ctl exits; panics after `within`.
    pub async fn wait_exit(&self, within: Duration) -> ExitStatus {
        wait_for(within, "compute_ctl to exit", || async { self.try_exit() }).await
    }

    /// Sends `sig` to compute_ctl.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid as i32), sig)
            .expect("signal compute_ctl");
    }

    /// The postmaster's pid, if one runs on this PGDATA.
    pub fn postmaster_pid(&self) -> Option<i32> {
        postmaster_of(&self.pgdata)
    }

    /// Every process working in this PGDATA: the postmaster and its children.
    pub fn postgres_processes(&self) -> Vec<i32> {
        processes_in(&self.pgdata)
    }

    /// `req` with the bearer token of [`ComputeOpts::token`], if any.
    pub fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.opts.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET path` (with [`ComputeOpts::token`]).
    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(
            self.authed(self.client.get(self.url(path)))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// `POST /configure?dry_run=true {spec}` (with [`ComputeOpts::token`]).
    pub async fn dry_run(&self, spec: &Value) -> Reply {
        let req = self
            .client
            .post(self.url("/configure?dry_run=true"))
            .json(&serde_json::json!({ "spec": spec }));
        Reply::read(
            self.authed(req)
                .send()
                .await
                .expect("POST /configure?dry_run=true"),
        )
        .await
    }

    /// `POST /configure {spec}`, with an optional bearer token.
    pub async fn configure(&self, spec: &Value, token: Option<&str>) -> Reply {
        let mut req = self
            .client
            .post(self.url("/configure"))
            .json(&serde_json::json!({ "spec": spec }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.expect("POST /configure")).await
    }

    /// `POST /configure {spec}` on a task of its own: the request is in
    /// flight while the test goes on.
    pub fn spawn_configure(&self, spec: &Value) -> tokio::task::JoinHandle<Reply> {
        let req = self
            .client
            .post(self.url("/configure"))
            .json(&serde_json::json!({ "spec": spec }));
        tokio::spawn(async move { Reply::read(req.send().await.expect("POST /configure")).await })
    }

    /// `POST /configure {spec}` sent into a fault: its answer, if any, is
    /// not the point (the compute may die before it gives one).
    pub fn send_configure_into_fault(&self, spec: &Value) {
        self.send_into_fault("/configure", serde_json::json!({ "spec": spec }));
    }

    /// `POST /promote {spec, wal_flush_lsn}` sent into a fault, as
    /// [`Compute::send_configure_into_fault`].
    pub fn send_promote_into_fault(&self, spec: &Value, wal_flush_lsn: &str) {
        self.send_into_fault(
            "/promote",
            serde_json::json!({ "spec": spec, "wal_flush_lsn": wal_flush_lsn }),
        );
    }

    /// `POST path body` on a task of its own, its answer dropped.
    fn send_into_fault(&self, path: &str, body: Value) {
        let req = self.client.post(self.url(path)).json(&body);
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    }

    /// `POST /terminate?mode=...`, with an optional bearer token.
    pub async fn terminate(&self, mode: &str, token: Option<&str>) -> Reply {
        let mut req = self
            .client
            .post(self.url(&format!("/terminate?mode={mode}")));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        Reply::read(req.send().await.expect("POST /terminate")).await
    }

    /// The status document.
    pub async fn status(&self) -> Value {
        self.get("/status").await.json()
    }
}

/// Spawns compute_ctl with `opts` on `pgdata` and the given ports, its
/// output appended to `dir/compute_ctl.log`.
fn spawn(
    opts: &ComputeOpts,
    dir: &std::path::Path,
    pgdata: &std::path::Path,
    pg_port: u16,
    http_port: u16,
) -> tokio::process::Child {
    // `just chaos` points the suites that measure latency at a release
    // build; everything else runs the test build (with its failpoints).
    let bin = std::env::var("COMPUTE_CTL_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_compute_ctl").to_string());
    let bin = bin.as_str();
    let mut cmd = if opts.pid1 {
        let mut c = tokio::process::Command::new("unshare");
        c.args(["--pid", "--fork", "--kill-child", bin]);
        c
    } else {
        tokio::process::Command::new(bin)
    };
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("compute_ctl.log"))
        .expect("log file");
    cmd.arg("-D")
        .arg(pgdata)
        .arg("-C")
        .arg(format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{pg_port}/postgres"
        ))
        .arg("-b")
        .arg(&opts.pgbin)
        .args(["--http-host", "127.0.0.1", "--http-port"])
        .arg(http_port.to_string())
        .args([
            "--ready-timeout-secs",
            "60",
            "--shutdown-timeout-secs",
            "10",
            "--activity-interval-secs",
            "1",
        ])
        .args(&opts.args)
        .args(
            // Neon's default internal port (3081) would collide between
            // tests: off unless a test asks for it.
            (!opts.args.iter().any(|a| a == "--internal-http-port"))
                .then_some("--no-internal-http"),
        )
        .args(
            // One settings cache per compute (kept across its restarts), so
            // that no test depends on what another taught the host's.
            (!opts.args.iter().any(|a| a.contains("settings-cache")))
                .then(|| {
                    [
                        std::ffi::OsString::from("--settings-cache"),
                        dir.join("settings-cache").into_os_string(),
                    ]
                })
                .into_iter()
                .flatten(),
        )
        .envs(opts.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info,compute_ctl=debug")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log file"))
        .stderr(log)
        .kill_on_drop(true);
    if let Some(spec) = &opts.spec {
        cmd.arg("--spec-json").arg(spec.to_string());
    }
    if let Some((uid, gid)) = opts.run_as {
        // std drops root's supplementary groups before the uid change.
        cmd.uid(uid).gid(gid);
    }
    cmd.spawn().expect("spawn compute_ctl")
}

impl Drop for Compute {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.start_kill();
        }
        stop_postgres_in(&self.pgdata);
        if std::thread::panicking() {
            eprintln!(
                "--- compute_ctl log ({}) ---\n{}",
                self.http_url(),
                self.log()
            );
        }
    }
}

/// An HTTP response, read whole.
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
            text: r.text().await.expect("read the body"),
        }
    }

    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}
