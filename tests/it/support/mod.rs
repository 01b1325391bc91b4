//! Shared helpers of the integration tests: where Postgres lives, fixtures,
//! ports, polling with deadlines, and the harnesses built on them.
#![allow(dead_code)]
// Tests may use the OS clock and sleep between polls (clippy.toml is for the library).
#![allow(clippy::disallowed_methods)]

pub mod chaos;
pub mod compute;
pub mod control_plane;
pub mod neon;
pub mod openapi;
pub mod os;
pub mod ports;
pub mod postgres;
pub mod safekeepers;
pub mod storage;
pub mod supervisor;

/// Returns from the calling test (loudly) where the Postgres of `PGBIN_DIR`
/// (default Debian's 15) is not installed; fails it instead when `COMPUTE_CTL_REQUIRE_POSTGRES=1` (set
/// by `.ci/run`), so that CI cannot pass without having run it.
#[macro_export]
macro_rules! need_postgres {
    () => {
        if !$crate::support::have_postgres(module_path!()) {
            return;
        }
    };
}

/// The switch that turns every Postgres skip into a failure.
pub const REQUIRE_POSTGRES_ENV: &str = "COMPUTE_CTL_REQUIRE_POSTGRES";

/// Whether the Postgres 15 server binary is there. Without it: `false`
/// after a `SKIPPED` line, or a panic under [`REQUIRE_POSTGRES_ENV`]`=1`.
pub fn have_postgres(test: &str) -> bool {
    skip_unless(postgres_bin().is_file(), test, || {
        format!("{} not found; run `just deps`", postgres_bin().display())
    })
}

/// `ok`, or a skip of `test` saying why: a `SKIPPED` line (returns
/// `false`), or a failure under [`REQUIRE_POSTGRES_ENV`]`=1`.
pub fn skip_unless(ok: bool, test: &str, why: impl FnOnce() -> String) -> bool {
    if ok {
        return true;
    }
    let why = why();
    if std::env::var(REQUIRE_POSTGRES_ENV).as_deref() == Ok("1") {
        panic!("{test}: {why}; {REQUIRE_POSTGRES_ENV}=1 makes this a failure");
    }
    eprintln!("SKIPPED {test}: {why} (set {REQUIRE_POSTGRES_ENV}=1 to fail instead)");
    false
}

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Debian's Postgres 15, the default major.
pub const DEFAULT_PG_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";
/// The superuser compute_ctl connects as.
pub const SUPERUSER: &str = "cloud_admin";

/// The server binaries the tests run: `$PGBIN_DIR` (as every `just` recipe;
/// `scripts/install-pg.sh MAJOR` prints it), else Debian's 15.
pub fn pg_bin_dir() -> PathBuf {
    match std::env::var_os("PGBIN_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(DEFAULT_PG_BIN_DIR),
    }
}

/// A program of [`pg_bin_dir`], e.g. `pg_tool("initdb")`.
pub fn pg_tool(name: &str) -> PathBuf {
    pg_bin_dir().join(name)
}

/// The `postgres` server binary.
pub fn postgres_bin() -> PathBuf {
    pg_tool("postgres")
}

/// The major version of [`postgres_bin`] (`postgres --version`), e.g. 17.
pub fn pg_major() -> u32 {
    let out = std::process::Command::new(postgres_bin())
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("run {} --version: {e}", postgres_bin().display()));
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find_map(|w| w.split('.').next().and_then(|m| m.parse().ok()))
        .unwrap_or_else(|| panic!("no major version in {text:?}"))
}

/// A file of the repository.
pub fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `fixtures/NAME` as JSON.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = repo_file("fixtures").join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// `fixtures/NAME` as JSON, as operation `operation_uuid`.
pub fn fixture_op(name: &str, operation_uuid: &str) -> serde_json::Value {
    let mut s = fixture(name);
    s["operation_uuid"] = operation_uuid.into();
    s
}

/// Polls `cond` until it yields `Some`, failing with `what` at the deadline.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, cond: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    poll_until(within, cond)
        .await
        .unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Polls `cond` until it yields `Some`, or `None` at the deadline (for a
/// test that measures whether something happened rather than requiring it).
pub async fn poll_until<T, F, Fut>(within: Duration, mut cond: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = cond().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // The polling interval of a condition with a deadline, not a synchronisation sleep.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What Neon sends as `encrypted_password`: md5(password || role name) hex.
pub fn md5_hex(password: &str, role: &str) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(format!("{password}{role}").as_bytes()))
}

/// A libpq key=value connection string for the superuser on `port`.
pub fn connstr(port: u16) -> String {
    format!("host=127.0.0.1 port={port} user={SUPERUSER} dbname=postgres")
}

/// Opens a session with `connstr`, its connection driven in the background.
pub async fn connect(connstr: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(connstr, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The first column of the first row of `sql` (simple query protocol).
pub async fn query_value(client: &tokio_postgres::Client, sql: &str) -> Option<String> {
    let rows = client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    })
}
