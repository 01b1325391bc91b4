//! Command-line flags (clap). Every flag can also come from an environment
//! variable, named in `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// compute_ctl: prepares, starts and supervises one Postgres compute, shaped by a spec.
#[derive(Debug, Clone, Parser)]
#[command(name = "compute_ctl", version, about, long_about = None)]
pub struct Args {
    /// The data directory. It is removed and recreated on every start.
    #[arg(
        short = 'D',
        long,
        env = "COMPUTE_CTL_PGDATA",
        required_unless_present_any = ["validate_spec", "plan"]
    )]
    pub pgdata: Option<PathBuf>,

    /// The supervisor's superuser connection string, e.g. postgresql://cloud_admin@127.0.0.1:55432/postgres
    #[arg(
        short = 'C',
        long,
        env = "COMPUTE_CTL_CONNSTR",
        required_unless_present = "validate_spec"
    )]
    pub connstr: Option<String>,

    /// A spec file to start with.
    #[arg(short = 'S', long, env = "COMPUTE_CTL_SPEC_PATH", conflicts_with_all = ["spec_json", "control_plane_uri"])]
    pub spec_path: Option<PathBuf>,

    /// A spec as JSON text to start with.
    #[arg(
        long,
        env = "COMPUTE_CTL_SPEC_JSON",
        conflicts_with = "control_plane_uri"
    )]
    pub spec_json: Option<String>,

    /// The postgres binary; initdb, pg_basebackup and friends are found beside it.
    #[arg(
        short = 'b',
        long,
        env = "COMPUTE_CTL_PGBIN",
        default_value = "postgres"
    )]
    pub pgbin: PathBuf,

    /// HTTP API port.
    #[arg(long, env = "COMPUTE_CTL_HTTP_PORT", default_value_t = 3080)]
    pub http_port: u16,

    /// Port of the internal HTTP listener (loopback only, no auth, as Neon's):
    /// `POST /extensions`, `POST /grants`. Off when not given.
    #[arg(long, env = "COMPUTE_CTL_INTERNAL_HTTP_PORT")]
    pub internal_http_port: Option<u16>,

    /// HTTP API listen address.
    #[arg(long, env = "COMPUTE_CTL_HTTP_HOST", default_value = "0.0.0.0")]
    pub http_host: std::net::IpAddr,

    /// Control plane base URL to fetch the spec from (needs --compute-id).
    #[arg(long, env = "COMPUTE_CTL_CONTROL_PLANE_URI", requires = "compute_id")]
    pub control_plane_uri: Option<String>,

    /// This compute's id.
    #[arg(long, env = "COMPUTE_CTL_COMPUTE_ID")]
    pub compute_id: Option<String>,

    /// JSON Web Key Set file; when given, mutating routes need a bearer token.
    #[arg(long, env = "COMPUTE_CTL_JWKS")]
    pub jwks: Option<PathBuf>,

    /// Only validate this spec file: print every problem, exit 0 if valid, 2 if not.
    #[arg(long, value_name = "FILE")]
    pub validate_spec: Option<PathBuf>,

    /// Only show the catalog plan of this spec file against the running
    /// Postgres of -C, as JSON (a dry run: nothing is changed); exit 0, 2 if
    /// the spec is invalid, 1 if Postgres cannot be read.
    #[arg(long, value_name = "FILE", conflicts_with = "validate_spec")]
    pub plan: Option<PathBuf>,

    /// Log format.
    #[arg(
        long,
        env = "COMPUTE_CTL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Seconds Postgres may take to accept connections after it is spawned.
    #[arg(long, env = "COMPUTE_CTL_READY_TIMEOUT", default_value_t = 60)]
    pub ready_timeout_secs: u64,

    /// Seconds a shutdown may take before it is escalated.
    #[arg(long, env = "COMPUTE_CTL_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Seconds an HTTP client has to send a whole request head; also how long
    /// an idle keep-alive connection is kept open.
    #[arg(long, env = "COMPUTE_CTL_HTTP_HEADER_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_secs: u64,

    /// Most HTTP connections open at once; more are closed on accept.
    #[arg(long, env = "COMPUTE_CTL_HTTP_MAX_CONNECTIONS", default_value_t = 16_384, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub http_max_connections: u64,

    /// Seconds the HTTP API keeps answering after a terminate requested over
    /// HTTP (so that the control plane can read the `lsn`, and a repeated
    /// terminate gets its 201), as Neon does; a second SIGTERM/SIGINT ends it.
    #[arg(long, env = "COMPUTE_CTL_TERMINATED_LINGER_SECS", default_value_t = 5)]
    pub terminated_linger_secs: u64,

    /// Seconds between two reads of client activity (pg_stat_activity).
    #[arg(long, env = "COMPUTE_CTL_ACTIVITY_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub activity_interval_secs: u64,

    /// Start the vm-monitor (Neon's autoscaler-agent protocol on --vm-monitor-addr) and
    /// Postgres inside --cgroup. Also on when the AUTOSCALING environment variable is set.
    #[arg(long)]
    pub autoscaling: bool,

    /// Where the vm-monitor listens for the autoscaler-agent (websocket at GET /monitor).
    #[arg(long, env = "COMPUTE_CTL_VM_MONITOR_ADDR", default_value = crate::vm_monitor::DEFAULT_ADDR)]
    pub vm_monitor_addr: std::net::SocketAddr,

    /// The cgroup Postgres runs in and the vm-monitor watches (it must exist).
    #[arg(long, env = "COMPUTE_CTL_CGROUP", default_value = crate::vm_monitor::DEFAULT_CGROUP)]
    pub cgroup: String,

    /// Where cgroupfs (v1 or v2) is mounted.
    #[arg(long, env = "COMPUTE_CTL_CGROUP_ROOT", default_value = crate::vm_monitor::DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: PathBuf,

    // ---- Operating in a fleet: readiness, TLS (README "Deploying on Kubernetes", "TLS").
    /// A replica lagging its source by more than this is not ready (`/ready`
    /// answers 503 with the lag): WAL bytes received but not replayed
    /// (16777216, 16MB) or the age of the last replayed transaction while
    /// replay is behind (10s, 500ms). Off when not given.
    #[arg(
        long,
        env = "COMPUTE_CTL_MAX_READY_LAG",
        help_heading = "Fleet operation"
    )]
    pub max_ready_lag: Option<crate::health::MaxLag>,

    /// PEM certificate (leaf first, then its chain) Postgres serves TLS with
    /// (`ssl = on`); watched, and a valid new one is applied by reload.
    #[arg(
        long,
        env = "COMPUTE_CTL_TLS_CERT",
        requires = "tls_key",
        help_heading = "Fleet operation"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of --tls-cert.
    #[arg(
        long,
        env = "COMPUTE_CTL_TLS_KEY",
        requires = "tls_cert",
        help_heading = "Fleet operation"
    )]
    pub tls_key: Option<PathBuf>,
}

/// Whether the vm-monitor runs: `--autoscaling`, or `AUTOSCALING` set to
/// anything (as Neon's compute_ctl checks it).
pub fn autoscaling(flag: bool, env_var: Option<&std::ffi::OsStr>) -> bool {
    flag || env_var.is_some()
}

impl Args {
    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn terminated_linger(&self) -> Duration {
        Duration::from_secs(self.terminated_linger_secs)
    }

    /// `--tls-cert` and `--tls-key` (clap makes them come together).
    pub fn tls_paths(&self) -> Option<crate::params::TlsPaths> {
        Some(crate::params::TlsPaths {
            cert_path: self.tls_cert.clone()?,
            key_path: self.tls_key.clone()?,
        })
    }

    pub fn activity_interval(&self) -> Duration {
        Duration::from_secs(self.activity_interval_secs)
    }

    /// The HTTP server's limits: the flags, hyper's defaults for the rest.
    pub fn serve_limits(&self) -> crate::http::ServeLimits {
        crate::http::ServeLimits {
            header_read_timeout: Duration::from_secs(self.http_header_timeout_secs),
            max_connections: usize::try_from(self.http_max_connections).unwrap_or(usize::MAX),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_flags_match_neon_habits() {
        let a = Args::try_parse_from([
            "compute_ctl",
            "-D",
            "/pgdata",
            "-C",
            "postgresql://cloud_admin@127.0.0.1:55432/postgres",
            "-S",
            "spec.json",
            "-b",
            "/usr/bin/postgres",
        ])
        .unwrap();
        assert_eq!(a.pgdata.as_deref(), Some(std::path::Path::new("/pgdata")));
        assert_eq!(a.http_port, 3080);
        assert_eq!(a.pgbin, PathBuf::from("/usr/bin/postgres"));
    }

    #[test]
    fn vm_monitor_flags_default_to_neons() {
        let a =
            Args::try_parse_from(["compute_ctl", "-D", "/d", "-C", "postgresql://u@h/postgres"])
                .unwrap();
        assert!(!a.autoscaling);
        assert_eq!(a.vm_monitor_addr.to_string(), "0.0.0.0:10301");
        assert_eq!(a.cgroup, "neon-postgres");
        assert_eq!(a.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert!(!autoscaling(false, None));
        assert!(autoscaling(false, Some(std::ffi::OsStr::new(""))));
        assert!(autoscaling(false, Some(std::ffi::OsStr::new("true"))));
        assert!(autoscaling(true, None));
    }

    #[test]
    fn pgdata_and_connstr_are_required_unless_validating() {
        assert!(Args::try_parse_from(["compute_ctl", "-S", "x.json"]).is_err());
        assert!(Args::try_parse_from(["compute_ctl", "--validate-spec", "x.json"]).is_ok());
    }

    #[test]
    fn plan_needs_only_the_connection_string() {
        let plan = |extra: &[&str]| {
            Args::try_parse_from(
                ["compute_ctl", "--plan", "s.json"]
                    .iter()
                    .chain(extra)
                    .copied(),
            )
        };
        assert!(plan(&[]).is_err(), "-C is required");
        let a = plan(&["-C", "postgresql://u@h/postgres"]).unwrap();
        assert_eq!(a.plan.as_deref(), Some(std::path::Path::new("s.json")));
    }

    #[test]
    fn control_plane_needs_compute_id_and_excludes_spec_file() {
        let base = ["compute_ctl", "-D", "/d", "-C", "postgresql://u@h/postgres"];
        let with = |extra: &[&str]| Args::try_parse_from(base.iter().chain(extra).copied());
        assert!(with(&["--control-plane-uri", "http://cp"]).is_err());
        assert!(with(&["--control-plane-uri", "http://cp", "--compute-id", "c1"]).is_ok());
        assert!(
            with(&[
                "--control-plane-uri",
                "http://cp",
                "--compute-id",
                "c1",
                "-S",
                "s.json"
            ])
            .is_err()
        );
    }
}
