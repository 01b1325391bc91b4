//! compute_ctl itself, the release binary, driven through its HTTP API.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::postgres::{PGBIN, Scratch};

pub const SUPERUSER: &str = "cloud_admin";

/// The compute_ctl benched: this build's, or `COMPETE_COMPUTE_CTL=PATH`
/// (another build kept aside, to compare two builds in alternating runs
/// on the same machine).
fn binary() -> std::ffi::OsString {
    std::env::var_os("COMPETE_COMPUTE_CTL")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_compute_ctl").into())
}

/// The settings cache every compute of this run reads: filled once before
/// the first, by `--write-settings-cache`, as the image build fills it
/// (README, "The settings cache"). `COMPETE_SETTINGS_CACHE=off` runs every
/// compute with `--no-settings-cache` instead, asking the binary at each
/// start as a host's first start does.
fn settings_cache_args() -> anyhow::Result<Vec<String>> {
    static DIR: std::sync::OnceLock<Result<Scratch, String>> = std::sync::OnceLock::new();
    if std::env::var("COMPETE_SETTINGS_CACHE").is_ok_and(|v| v == "off") {
        return Ok(vec!["--no-settings-cache".into()]);
    }
    let dir = DIR.get_or_init(|| {
        let fill = || -> anyhow::Result<Scratch> {
            let scratch = Scratch::new("settings-cache")?;
            let out = Command::new(binary())
                .args(["--write-settings-cache", "-b", &format!("{PGBIN}/postgres")])
                .arg("--settings-cache")
                .arg(scratch.dir.path())
                .output()
                .context("running compute_ctl --write-settings-cache")?;
            if !out.status.success() {
                bail!(
                    "compute_ctl --write-settings-cache failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(scratch)
        };
        fill().map_err(|e| format!("{e:#}"))
    });
    match dir {
        Ok(s) => Ok(vec![
            "--settings-cache".into(),
            s.dir.path().display().to_string(),
        ]),
        Err(e) => bail!("{e}"),
    }
}

/// A running compute_ctl with its own PGDATA, Postgres port and HTTP port.
pub struct Compute {
    pub pg_port: u16,
    pub http: String,
    pub pgdata: PathBuf,
    child: Child,
    client: reqwest::Client,
    _scratch: Scratch,
}

impl Compute {
    /// Starts compute_ctl with `spec` and returns once it is spawned.
    pub fn spawn(spec: &Value, pg_port: u16, http_port: u16) -> anyhow::Result<Self> {
        Self::spawn_env(spec, pg_port, http_port, &[])
    }

    /// [`Compute::spawn`] with environment changes: `(name, Some(value))`
    /// sets a variable, `(name, None)` removes it.
    pub fn spawn_env(
        spec: &Value,
        pg_port: u16,
        http_port: u16,
        vars: &[(&str, Option<&str>)],
    ) -> anyhow::Result<Self> {
        let scratch = Scratch::new("compute")?;
        let spec_path = scratch.path("spec.json");
        std::fs::write(&spec_path, serde_json::to_vec(spec)?)?;
        let pgdata = scratch.path("pgdata");
        let mut command = Command::new(binary());
        for (name, value) in vars {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        command.args(settings_cache_args()?);
        let child = command
            .arg("-D")
            .arg(&pgdata)
            .args([
                "-C",
                &format!("postgresql://{SUPERUSER}@127.0.0.1:{pg_port}/postgres"),
            ])
            .arg("-S")
            .arg(&spec_path)
            .args([
                "-b",
                &format!("{PGBIN}/postgres"),
                "--http-host",
                "127.0.0.1",
                "--http-port",
                &http_port.to_string(),
                "--no-internal-http",
            ])
            .env(
                "RUST_LOG",
                std::env::var("COMPETE_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(
                match std::env::var_os("COMPETE_LOG_DIR") {
                    Some(dir) => {
                        std::path::PathBuf::from(dir).join(format!("compute_ctl-{http_port}.log"))
                    }
                    None => scratch.path("compute_ctl.log"),
                },
            )?)
            .spawn()
            .context("spawning compute_ctl")?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(4)
            .build()?;
        Ok(Self {
            pg_port,
            http: format!("http://127.0.0.1:{http_port}"),
            pgdata,
            child,
            client,
            _scratch: scratch,
        })
    }

    /// The compute_ctl process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self
            .client
            .get(format!("{}{path}", self.http))
            .send()
            .await?
            .json()
            .await?)
    }

    /// Polls /status until `running` (error when failed or after `limit`).
    pub async fn wait_running(&mut self, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(st) = self.get("/status").await {
                match st["status"].as_str() {
                    Some("running") => return Ok(()),
                    Some("failed") => bail!("compute failed: {}", st["error"]),
                    _ => {}
                }
            }
            if let Some(exit) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self._scratch.path("compute_ctl.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!(
                    "compute_ctl exited with {exit} before running; its last lines: {}",
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            if Instant::now() > deadline {
                bail!("compute not running after {limit:?}");
            }
            tokio::task::yield_now().await;
        }
    }

    /// The body of `POST /configure` for `spec`. Benchmarks build it before
    /// the clock starts: a control plane's serialisation is not our cost.
    pub fn configure_body(spec: &Value) -> anyhow::Result<Vec<u8>> {
        Ok(serde_json::to_vec(&serde_json::json!({ "spec": spec }))?)
    }

    /// POST /configure; returns the HTTP status and body.
    pub async fn configure(&self, spec: &Value) -> anyhow::Result<(u16, Value)> {
        self.configure_raw(Self::configure_body(spec)?).await
    }

    /// POST /configure with a body made by [`Compute::configure_body`].
    pub async fn configure_raw(&self, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}/configure", self.http))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.unwrap_or(Value::Null)))
    }
}

impl Drop for Compute {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}
