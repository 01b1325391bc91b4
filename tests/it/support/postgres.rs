//! A throwaway Postgres 15 outside compute_ctl (catalog tests; the source
//! of a base backup): initdb and postgres run as the `postgres` OS user in a
//! temp dir, on a port of the shared test range, with `cloud_admin` as
//! bootstrap superuser (trust, also for replication) and md5 for every other
//! role over TCP. Stopped on drop (immediate shutdown, then SIGKILL), also
//! when the test panics.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use compute_ctl::catalog::{SNAPSHOT_SQL, Snapshot, parse_snapshot};
use compute_ctl::compute::{ComputeParams, ConnTarget};

use super::os::{create_postgres_dir, postgres_user, processes_in, stop_postgres_in, temp_dir};
use super::ports::free_port;
use super::{SUPERUSER, pg_tool, query_value};

/// A running Postgres.
pub struct TestPostgres {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl TestPostgres {
    /// initdb + postgres with `settings` (`-c name=value`); waits until it
    /// accepts connections.
    pub async fn start(settings: &[(&str, &str)]) -> Self {
        let dir = temp_dir();
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let (uid, gid) = postgres_user();
        for d in [&data, &sock] {
            create_postgres_dir(d);
        }
        let out = Command::new(pg_tool("initdb"))
            .args(["-D", data.to_str().unwrap(), "-U", SUPERUSER])
            .args(["-E", "UTF8", "--locale=C", "--auth=trust", "--no-sync"])
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::write(
            data.join("pg_hba.conf"),
            format!(
                "local all all trust\nhost all {SUPERUSER} 127.0.0.1/32 trust\nhost replication {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 md5\n"
            ),
        )
        .expect("write pg_hba.conf");
        Self::launch(dir, settings).await
    }

    /// Starts Postgres on the data directory `dir/data` (made by initdb or a
    /// base backup) with `settings`; waits until it accepts connections.
    pub async fn launch(dir: tempfile::TempDir, settings: &[(&str, &str)]) -> Self {
        let port = free_port();
        let child = spawn(dir.path(), port, settings);
        let mut pg = TestPostgres { port, dir, child };
        pg.wait_ready().await;
        pg
    }

    /// Kills every process of this cluster (SIGKILL), as when its host dies.
    pub fn kill_all(&mut self) {
        for pid in processes_in(&self.data_dir()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts Postgres again on the same data directory and port (after
    /// [`TestPostgres::kill_all`]: with crash recovery), with `settings`.
    pub async fn restart(&mut self, settings: &[(&str, &str)]) {
        self.child = spawn(self.dir.path(), self.port, settings);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.try_client("postgres").await.is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "Postgres exited ({status}) before accepting connections; log:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "Postgres did not accept connections within 30s; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The Postgres log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The superuser's connection target in `dbname`.
    pub fn target(&self, dbname: &str) -> ConnTarget {
        ConnTarget {
            host: "127.0.0.1".into(),
            port: self.port,
            user: SUPERUSER.into(),
            dbname: dbname.into(),
        }
    }

    /// Supervisor parameters pointing at this Postgres (database `postgres`).
    pub fn params(&self) -> ComputeParams {
        super::supervisor::params(self.data_dir(), self.port)
    }

    /// The superuser's libpq connection string (database `postgres`).
    pub fn connstr(&self) -> String {
        super::connstr(self.port)
    }

    async fn try_client(
        &self,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.login(SUPERUSER, None, dbname).await
    }

    /// The catalog snapshot (`SNAPSHOT_SQL`, parsed) from a superuser session.
    pub async fn snapshot(&self) -> Snapshot {
        snapshot(&self.client("postgres").await).await
    }

    /// A superuser session to `dbname`.
    pub async fn client(&self, dbname: &str) -> tokio_postgres::Client {
        self.try_client(dbname).await.expect("superuser session")
    }

    /// Logs in as `user` (md5 over TCP when a password is given).
    pub async fn login(
        &self,
        user: &str,
        password: Option<&str>,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .application_name("catalog-test");
        if let Some(p) = password {
            cfg.password(p);
        }
        let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }
}

/// The catalog snapshot as `client` sees it: `SNAPSHOT_SQL`, parsed.
pub async fn snapshot(client: &tokio_postgres::Client) -> Snapshot {
    let text = query_value(client, SNAPSHOT_SQL)
        .await
        .expect("the snapshot query returns a row");
    parse_snapshot(&text).expect("the snapshot parses")
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        stop_postgres_in(&self.data_dir());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns the postmaster on `dir/data`, listening on `port`, its log
/// appended to `dir/postgres.log`.
fn spawn(dir: &Path, port: u16, settings: &[(&str, &str)]) -> Child {
    let data = dir.join("data");
    let sock = dir.join("sock");
    if !sock.exists() {
        create_postgres_dir(&sock);
    }
    let (uid, gid) = postgres_user();
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("postgres.log"))
        .expect("log file");
    let mut cmd = Command::new(pg_tool("postgres"));
    cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", sock.display()))
        .args(["-c", "fsync=off", "-c", "max_connections=40"]);
    for (k, v) in settings {
        cmd.arg("-c").arg(format!("{k}={v}"));
    }
    cmd.uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .current_dir(dir)
        .spawn()
        .expect("spawn postgres")
}
