//! The supervisor library in-process on the production Env and a real
//! Postgres 15 (the same code the binary runs; the HTTP route only calls
//! `submit`): its own PGDATA and port, the run loop on a task, specs
//! submitted and waited for, and every Postgres process of its PGDATA
//! stopped on drop, also when a test fails.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compute_ctl::compute::{
    Compute, ComputeParams, ComputeState, ConnTarget, RunOutcome, Submitted, TerminateMode,
};
use compute_ctl::env::TokioEnv;
use compute_ctl::spec::ComputeSpec;

use super::os::{stop_postgres_in, temp_dir};
use super::ports::free_port;
use super::{SUPERUSER, postgres_bin};

/// Supervisor parameters for Postgres on 127.0.0.1:`port` with `pgdata`.
/// The activity monitor samples once an hour: it stays out of the way of
/// tests that count the supervisor's sessions.
pub fn params(pgdata: PathBuf, port: u16) -> ComputeParams {
    ComputeParams {
        pgdata,
        pgbin: postgres_bin(),
        conn: ConnTarget {
            host: "127.0.0.1".into(),
            port,
            user: SUPERUSER.into(),
            dbname: "postgres".into(),
        },
        http_addr: "127.0.0.1:0".parse().unwrap(),
        compute_id: None,
        ready_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_secs(10),
        activity_interval: Duration::from_secs(3600),
        cgroup_procs: None,
        advertise: None,
        quorum_deadline: compute_ctl::params::DEFAULT_QUORUM_DEADLINE,
        max_ready_lag: None,
        tls: None,
        // Each test asks the binary, as the first start on a host does
        // (tests/it/settings_cache.rs covers the cache).
        settings_cache: None,
    }
}

/// A supervisor running in this process.
pub struct Supervisor {
    pub compute: Arc<Compute<TokioEnv>>,
    pub port: u16,
    pub pgdata: PathBuf,
    runner: Option<tokio::task::JoinHandle<RunOutcome>>,
    _dir: tempfile::TempDir,
}

impl Supervisor {
    /// Starts the run loop, waiting for a first spec.
    pub fn start() -> Self {
        let dir = temp_dir();
        let pgdata = dir.path().join("pgdata");
        let port = free_port();
        let compute = Compute::new(TokioEnv::new(), params(pgdata.clone(), port));
        let runner = tokio::spawn({
            let c = compute.clone();
            async move { c.run().await }
        });
        Self {
            compute,
            port,
            pgdata,
            runner: Some(runner),
            _dir: dir,
        }
    }

    /// Submits `spec` and waits until it is applied.
    pub async fn apply(&self, spec: serde_json::Value) -> ComputeState {
        let spec: ComputeSpec = serde_json::from_value(spec).expect("the test spec parses");
        match self.compute.submit(spec).expect("submit") {
            Submitted::Accepted(g) => self.compute.wait_applied(g).await.expect("applied"),
            other => panic!("{other:?}"),
        }
    }

    /// The superuser's libpq connection string.
    pub fn connstr(&self) -> String {
        super::connstr(self.port)
    }

    /// A fast terminate; returns how the run loop ended (within 30 s).
    pub async fn terminate(&mut self) -> RunOutcome {
        self.compute
            .request_terminate(TerminateMode::Fast)
            .expect("terminate");
        let runner = self.runner.take().expect("terminated once");
        tokio::time::timeout(Duration::from_secs(30), runner)
            .await
            .expect("terminates within 30 s")
            .expect("the run loop does not panic")
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if let Some(r) = self.runner.take() {
            r.abort();
        }
        stop_postgres_in(&self.pgdata);
    }
}
