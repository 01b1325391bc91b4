//! Harness of the container end-to-end tests (`tests/e2e_container.rs`):
//! gating on a Docker daemon and the local image `compute_ctl:dev`, starting a
//! compute from a spec with testcontainers (never a pull), host ports from this
//! suite's own range, and HTTP, SQL and log helpers that poll with deadlines.

use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use compute_ctl::env::{Clock, TokioEnv};
use serde_json::Value;
use testcontainers::core::{ContainerPort, ExecCommand, IntoContainerPort};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

pub const IMAGE_NAME: &str = "compute_ctl";
pub const IMAGE_TAG: &str = "dev";
/// When `1`, a missing daemon or image fails the tests instead of skipping them (CI).
pub const REQUIRE_DOCKER_ENV: &str = "COMPUTE_CTL_REQUIRE_DOCKER";

const HTTP_PORT: u16 = 3080;
const PG_PORT: u16 = 5432;
const SPEC_PATH: &str = "/etc/compute/spec.json";
const PGDATA: &str = "/var/lib/postgresql/compute/pgdata";
const PGBIN: &str = "/usr/lib/postgresql/15/bin/postgres";
/// How long a compute may take from `docker run` to Running.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// This suite's host ports (given to the image developer; other suites use other ranges).
const HOST_PORTS: std::ops::Range<u16> = 38300..38400;
static NEXT_HOST_PORT: AtomicU16 = AtomicU16::new(HOST_PORTS.start);

/// Returns true when the e2e tests can run. Otherwise says loudly that `test`
/// is skipped, or panics when [`REQUIRE_DOCKER_ENV`] is `1`.
pub async fn docker_ready(test: &str) -> bool {
    let Err(why) = probe_docker().await else {
        return true;
    };
    if std::env::var(REQUIRE_DOCKER_ENV).as_deref() == Ok("1") {
        panic!("{test}: {why}; {REQUIRE_DOCKER_ENV}=1 makes this a failure");
    }
    // Straight to fd 2 in one write: the test harness captures eprintln! of
    // passing tests, and tests run in parallel.
    let line = format!("SKIPPED {test}: {why} (set {REQUIRE_DOCKER_ENV}=1 to fail instead)\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    false
}

async fn probe_docker() -> Result<(), String> {
    let info = docker(&["info", "--format", "{{.ServerVersion}}"]).await;
    if let Err(e) = info {
        return Err(format!("no Docker daemon answers ({e})"));
    }
    let image = format!("{IMAGE_NAME}:{IMAGE_TAG}");
    if docker(&["image", "inspect", "--format", "{{.Id}}", &image])
        .await
        .is_err()
    {
        return Err(format!(
            "the image {image} does not exist; build it with `just image`"
        ));
    }
    Ok(())
}

/// Runs the docker CLI; its trimmed stdout, or what failed.
pub async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run `docker`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`docker {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A free host port from this suite's range.
fn host_port() -> u16 {
    loop {
        let p = NEXT_HOST_PORT.fetch_add(1, Ordering::SeqCst);
        assert!(
            HOST_PORTS.contains(&p),
            "the e2e suite ran out of host ports {HOST_PORTS:?}"
        );
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok() {
            return p;
        }
    }
}

/// Polls `probe` until it yields a value or `within` passes; the panic names `what`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let clock = TokioEnv::new();
    let deadline = clock.now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(last) if clock.now() >= deadline => {
                panic!("{what}: not reached within {within:?}; last: {last}")
            }
            Err(_) => clock.sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One compute_ctl container, removed on drop (also on panic).
pub struct Compute {
    pub container: ContainerAsync<GenericImage>,
    pub http: String,
    pub pg_port: u16,
    client: reqwest::Client,
}

impl Compute {
    /// Starts compute_ctl:dev with `spec` mounted as the start spec, waits for Running.
    pub async fn start(spec: &Value) -> Compute {
        Self::start_with(spec, |c| c, &[]).await
    }

    /// As [`Compute::start`], on the Docker network `network` under the
    /// host name `name` (other containers reach it so), with `args` added.
    pub async fn start_on(spec: &Value, network: &str, name: &str, args: &[&str]) -> Compute {
        let (network, name) = (network.to_string(), name.to_string());
        Self::start_with(
            spec,
            move |c| c.with_network(network).with_container_name(name),
            args,
        )
        .await
    }

    async fn start_with(
        spec: &Value,
        wire: impl FnOnce(
            testcontainers::ContainerRequest<GenericImage>,
        ) -> testcontainers::ContainerRequest<GenericImage>,
        args: &[&str],
    ) -> Compute {
        let (http_port, pg_port) = (host_port(), host_port());
        let connstr = format!("postgresql://cloud_admin@127.0.0.1:{PG_PORT}/postgres");
        // No key set, so compute_ctl would listen on 127.0.0.1 only, which
        // Docker's port mapping cannot reach: listen on 0.0.0.0 inside the
        // container (its own network namespace; the host maps the port).
        let mut cmd = vec![
            "-D",
            PGDATA,
            "-C",
            &connstr,
            "-S",
            SPEC_PATH,
            "-b",
            PGBIN,
            "--http-host",
            "0.0.0.0",
        ];
        cmd.extend_from_slice(args);
        let request = GenericImage::new(IMAGE_NAME, IMAGE_TAG)
            .with_exposed_port(HTTP_PORT.tcp())
            .with_exposed_port(PG_PORT.tcp())
            .with_mapped_port(http_port, ContainerPort::Tcp(HTTP_PORT))
            .with_mapped_port(pg_port, ContainerPort::Tcp(PG_PORT))
            .with_copy_to(
                SPEC_PATH,
                serde_json::to_vec(spec).expect("spec serialises"),
            )
            .with_cmd(cmd)
            .with_startup_timeout(START_TIMEOUT);
        let container = wire(request)
            .start()
            .await
            .expect("start the compute_ctl:dev container");
        let compute = Compute {
            container,
            http: format!("http://127.0.0.1:{http_port}"),
            pg_port,
            client: reqwest::Client::new(),
        };
        compute.wait_status("running", START_TIMEOUT).await;
        compute
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<Value, String> {
        let resp = self
            .client
            .get(format!("{}/status", self.http))
            .send()
            .await
            .map_err(|e| format!("GET /status: {e}"))?;
        resp.json()
            .await
            .map_err(|e| format!("GET /status body: {e}"))
    }

    /// Polls `/status` until it reports `want`; on timeout the panic shows the logs.
    pub async fn wait_status(&self, want: &str, within: Duration) -> Value {
        let clock = TokioEnv::new();
        let deadline = clock.now() + within;
        loop {
            let last = self.status().await;
            if let Ok(s) = &last {
                if s["status"] == want {
                    return s.clone();
                }
            }
            // A failed compute or an exited container will not get there: say so now.
            let failed = matches!(&last, Ok(s) if s["status"] == "failed");
            let exited = matches!(self.container.exit_code().await, Ok(Some(_)));
            if failed || exited || clock.now() >= deadline {
                panic!(
                    "status {want:?} not reached (waited at most {within:?}); last: {last:?}\n--- container log ---\n{}",
                    self.logs().await
                );
            }
            clock.sleep(Duration::from_millis(200)).await;
        }
    }

    /// `POST /configure` with `{spec}`: the HTTP status and the JSON body.
    pub async fn configure(&self, spec: &Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/configure", self.http))
            .json(&serde_json::json!({ "spec": spec }))
            .send()
            .await
            .expect("POST /configure");
        let code = resp.status().as_u16();
        (code, resp.json().await.unwrap_or(Value::Null))
    }

    /// `POST /terminate` (fast): the HTTP status.
    pub async fn terminate(&self) -> u16 {
        self.client
            .post(format!("{}/terminate", self.http))
            .send()
            .await
            .expect("POST /terminate")
            .status()
            .as_u16()
    }

    /// A SQL session as `role` with `password` through the mapped Postgres
    /// port, the way a user outside the container connects.
    pub async fn connect_as(
        &self,
        role: &str,
        password: &str,
        application_name: &str,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(self.pg_port)
            .user(role)
            .password(password)
            .dbname("postgres")
            .application_name(application_name)
            .connect_timeout(Duration::from_secs(5));
        let (client, conn) = config.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Runs `sql` with psql inside the container as the supervisor's
    /// superuser over the Unix socket (pg_hba.conf trusts it only locally);
    /// psql's unaligned output.
    pub async fn psql_superuser(&self, sql: &str) -> String {
        let mut exec = self
            .container
            .exec(ExecCommand::new([
                "psql",
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "/var/run/postgresql",
                "-p",
                "5432",
                "-U",
                "cloud_admin",
                "-d",
                "postgres",
                "-c",
                sql,
            ]))
            .await
            .expect("exec psql in the container");
        let out = exec.stdout_to_vec().await.expect("psql output");
        let err = exec.stderr_to_vec().await.unwrap_or_default();
        let code = exec.exit_code().await.ok().flatten();
        assert!(
            matches!(code, Some(0) | None) && err.is_empty(),
            "psql {sql:?} failed ({code:?}): {}",
            String::from_utf8_lossy(&err)
        );
        String::from_utf8_lossy(&out).trim().to_string()
    }

    /// Everything the container wrote so far (compute_ctl and Postgres).
    pub async fn logs(&self) -> String {
        let out = self.container.stdout_to_vec().await.unwrap_or_default();
        let err = self.container.stderr_to_vec().await.unwrap_or_default();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        )
    }

    /// Waits for the container to exit; its exit code.
    pub async fn wait_exit(&self, within: Duration) -> i64 {
        eventually("container exit", within, || async {
            match self.container.exit_code().await {
                Ok(Some(code)) => Ok(code),
                Ok(None) => Err("still running".to_string()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Docker's health state of the container (from the image's HEALTHCHECK).
    pub async fn health(&self) -> Result<String, String> {
        docker(&[
            "inspect",
            "--format",
            "{{.State.Health.Status}}",
            self.container.id(),
        ])
        .await
    }
}

/// A fixture spec as JSON.
pub fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

/// A storage cluster in a container of the image (plain Postgres 15, no
/// compute_ctl): a primary made by initdb, or a streaming standby of
/// another storage made by `pg_basebackup -R`. It trusts every connection
/// (a test network), so the host reaches it through its mapped port as
/// `cloud_admin`, and computes on `network` reach it as `name:5432`.
pub struct Storage {
    /// Kept for its drop (which removes the container).
    _container: ContainerAsync<GenericImage>,
    pub name: String,
    pub port: u16,
}

impl Storage {
    /// Starts a storage named `name` on `network`; a standby of `standby_of` when given.
    pub async fn start(network: &str, name: &str, standby_of: Option<&str>) -> Storage {
        let port = host_port();
        let data = "/var/lib/postgresql/compute/storage";
        let bin = "/usr/lib/postgresql/15/bin";
        let make = match standby_of {
            None => format!(
                "{bin}/initdb -D {data} -U cloud_admin --auth=trust -E UTF8 --locale=C --no-sync >/dev/null && \
                 printf 'host all all 0.0.0.0/0 trust\\nhost replication all 0.0.0.0/0 trust\\n' >> {data}/pg_hba.conf"
            ),
            Some(up) => format!(
                "until {bin}/pg_isready -q -h {up} -p 5432; do sleep 0.2; done && \
                 {bin}/pg_basebackup -D {data} -R -d 'host={up} port=5432 user=cloud_admin' --checkpoint=fast --no-sync"
            ),
        };
        let script = format!(
            "set -e; {make}; exec {bin}/postgres -D {data} -c listen_addresses='*' -c wal_keep_size=256MB \
             -c wal_retrieve_retry_interval=200ms -c unix_socket_directories=/var/run/postgresql"
        );
        let container = GenericImage::new(IMAGE_NAME, IMAGE_TAG)
            .with_entrypoint("bash")
            .with_exposed_port(PG_PORT.tcp())
            .with_mapped_port(port, ContainerPort::Tcp(PG_PORT))
            .with_cmd(["-c", script.as_str()])
            .with_network(network)
            .with_container_name(name)
            .start()
            .await
            .expect("start a storage container");
        let s = Storage {
            _container: container,
            name: name.to_string(),
            port,
        };
        eventually(
            &format!("storage {name} to accept connections"),
            START_TIMEOUT,
            || async { s.client().await.map(|_| ()) },
        )
        .await;
        s
    }

    /// The connection string other containers of the network use.
    pub fn connstr(&self) -> String {
        format!(
            "host={} port=5432 user=cloud_admin dbname=postgres",
            self.name
        )
    }

    /// A superuser session through the mapped port.
    pub async fn client(&self) -> Result<tokio_postgres::Client, String> {
        let (client, conn) = tokio_postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("cloud_admin")
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5))
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Runs statements on it.
    pub async fn exec(&self, sql: &str) {
        let c = self.client().await.expect("a storage session");
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}
