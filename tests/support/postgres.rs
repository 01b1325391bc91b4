//! A throwaway Postgres 15 for integration tests: initdb and postgres run as
//! the `postgres` OS user in a temp dir, on a port of this branch's range
//! (56200-56399), with `cloud_admin` as bootstrap superuser (trust) and md5
//! for every other role over TCP. Killed (SIGQUIT, then SIGKILL) on drop,
//! also when the test panics.
#![allow(clippy::disallowed_methods)]

use std::fs;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use compute_ctl::compute::{ComputeParams, ConnTarget};

/// Where the Postgres 15 server binaries are.
pub const PGBIN: &str = "/usr/lib/postgresql/15/bin";
/// The bootstrap superuser, as in production.
pub const SUPERUSER: &str = "cloud_admin";
const PORT_FIRST: u16 = 56200;
const PORT_LAST: u16 = 56399;
static NEXT_PORT: AtomicU16 = AtomicU16::new(PORT_FIRST);

/// A free port of this branch's range.
pub fn free_port() -> u16 {
    for _ in PORT_FIRST..=PORT_LAST {
        let n = NEXT_PORT.fetch_add(1, Ordering::SeqCst);
        let port = PORT_FIRST + (n - PORT_FIRST) % (PORT_LAST - PORT_FIRST + 1);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {PORT_FIRST}-{PORT_LAST}");
}

fn postgres_user() -> (u32, u32) {
    let u = nix::unistd::User::from_name("postgres")
        .expect("look up the postgres OS user")
        .expect("the postgres OS user exists (useradd postgres)");
    (u.uid.as_raw(), u.gid.as_raw())
}

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
        let dir = tempfile::Builder::new()
            .prefix("cc-catalog-pg-")
            .tempdir_in("/tmp")
            .expect("temp dir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        let data = dir.path().join("data");
        let sock = dir.path().join("sock");
        let (uid, gid) = postgres_user();
        for d in [&data, &sock] {
            fs::create_dir(d).expect("mkdir");
            nix::unistd::chown(
                d,
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .expect("chown");
        }
        let out = Command::new(format!("{PGBIN}/initdb"))
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
                "local all all trust\nhost all {SUPERUSER} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 md5\n"
            ),
        )
        .expect("write pg_hba.conf");
        let port = free_port();
        let log = fs::File::create(dir.path().join("postgres.log")).expect("log file");
        let mut cmd = Command::new(format!("{PGBIN}/postgres"));
        cmd.args(["-D", data.to_str().unwrap(), "-p", &port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", sock.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=40"]);
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let child = cmd
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .current_dir(dir.path())
            .spawn()
            .expect("spawn postgres");
        let mut pg = TestPostgres { port, dir, child };
        pg.wait_ready().await;
        pg
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
        ComputeParams {
            pgdata: self.data_dir(),
            pgbin: PathBuf::from(format!("{PGBIN}/postgres")),
            conn: self.target("postgres"),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            compute_id: None,
            ready_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(10),
            activity_interval: Duration::from_secs(60),
        }
    }

    async fn try_client(
        &self,
        dbname: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        self.login(SUPERUSER, None, dbname).await
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

impl Drop for TestPostgres {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
