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

/// The `--help` heading of the flags that Neon's compute_ctl also has.
pub const NEON_HEADING: &str = "Neon's compute_ctl flags (same names, short names and variables)";
/// The `--help` heading of Neon's flags that do nothing on vanilla Postgres.
pub const NEON_NA_HEADING: &str =
    "Neon-only flags (accepted for Neon's launchers; do nothing on vanilla Postgres)";

/// compute_ctl: prepares, starts and supervises one Postgres compute, shaped by a spec.
#[derive(Debug, Clone, Parser)]
#[command(name = "compute_ctl", version, about, long_about = None)]
pub struct Args {
    /// The data directory. It is removed and recreated on every start.
    #[arg(
        short = 'D',
        long,
        help_heading = NEON_HEADING,
        env = "COMPUTE_CTL_PGDATA",
        required_unless_present_any = ["validate_spec", "plan", "write_settings_cache"]
    )]
    pub pgdata: Option<PathBuf>,

    /// The supervisor's superuser connection string, e.g. postgresql://cloud_admin@127.0.0.1:55432/postgres
    #[arg(
        short = 'C',
        long,
        help_heading = NEON_HEADING,
        env = "COMPUTE_CTL_CONNSTR",
        required_unless_present_any = ["validate_spec", "write_settings_cache"]
    )]
    pub connstr: Option<String>,

    /// A spec file to start with.
    #[arg(short = 'S', long, env = "COMPUTE_CTL_SPEC_PATH", conflicts_with_all = ["spec_json", "control_plane_uri", "config"])]
    pub spec_path: Option<PathBuf>,

    /// A spec as JSON text to start with.
    #[arg(
        long,
        env = "COMPUTE_CTL_SPEC_JSON",
        conflicts_with_all = ["control_plane_uri", "config"]
    )]
    pub spec_json: Option<String>,

    /// The postgres binary; initdb, pg_basebackup and friends are found
    /// beside it. Default: $POSTGRES_PATH (Neon's variable), else `postgres`
    /// looked up in PATH and /usr/lib/postgresql/*/bin.
    #[arg(short = 'b', long, env = "COMPUTE_CTL_PGBIN", help_heading = NEON_HEADING)]
    pub pgbin: Option<PathBuf>,

    /// HTTP API port (the external listener: control plane, metrics scraper).
    /// `--http-port` is the same flag.
    #[arg(
        long = "external-http-port",
        visible_alias = "http-port",
        env = "COMPUTE_CTL_HTTP_PORT",
        default_value_t = 3080,
        help_heading = NEON_HEADING
    )]
    pub http_port: u16,

    /// Port of the internal HTTP listener (loopback only, no auth, as Neon's):
    /// `POST /extensions`, `POST /grants`, `POST /refresh_configuration`.
    #[arg(
        long = "internal-http-port",
        env = "COMPUTE_CTL_INTERNAL_HTTP_PORT",
        default_value_t = DEFAULT_INTERNAL_HTTP_PORT,
        help_heading = NEON_HEADING
    )]
    pub internal_port: u16,

    /// Do not open the internal HTTP listener.
    #[arg(long, env = "COMPUTE_CTL_NO_INTERNAL_HTTP")]
    pub no_internal_http: bool,

    /// HTTP API listen address. Default: 0.0.0.0 when a key set is given
    /// (--jwks or the --config envelope's compute_ctl_config.jwks), else
    /// 127.0.0.1, so that an API without authentication is not reachable
    /// from other hosts unless asked for.
    #[arg(long, env = "COMPUTE_CTL_HTTP_HOST")]
    pub http_host: Option<std::net::IpAddr>,

    /// Control plane base URL to fetch the spec from (needs --compute-id).
    #[arg(
        short = 'p',
        long,
        env = "COMPUTE_CTL_CONTROL_PLANE_URI",
        requires = "compute_id",
        value_name = "CONTROL_PLANE_API_BASE_URL",
        help_heading = NEON_HEADING
    )]
    pub control_plane_uri: Option<String>,

    /// This compute's id (the `compute_id` claim of tokens, the spec pull).
    #[arg(short = 'i', long, env = "COMPUTE_CTL_COMPUTE_ID", help_heading = NEON_HEADING)]
    pub compute_id: Option<String>,

    /// Neon's config file, as neon_local writes it (`config.json`):
    /// `{"spec": SPEC or null, "compute_ctl_config": {"jwks": JWKS}}`. A null
    /// spec waits for `POST /configure`; the key set turns auth on.
    #[arg(
        short = 'c',
        long,
        env = "COMPUTE_CTL_CONFIG",
        value_name = "FILE",
        conflicts_with = "control_plane_uri",
        help_heading = NEON_HEADING
    )]
    pub config: Option<PathBuf>,

    /// Seconds from the spec's arrival until Postgres must be running; past
    /// it the compute fails with an error saying so. Default: no limit
    /// beyond --ready-timeout-secs.
    #[arg(long, env = "COMPUTE_CTL_PG_INIT_TIMEOUT", value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), help_heading = NEON_HEADING)]
    pub pg_init_timeout: Option<u64>,

    /// Seconds between two refreshes of the `compute_installed_extensions`
    /// metric (every database's pg_extension).
    #[arg(long, env = "COMPUTE_CTL_INSTALLED_EXTENSIONS_INTERVAL", value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..), help_heading = NEON_HEADING)]
    pub installed_extensions_collection_interval: u64,

    /// Neon's privileged role (lowercase letters and underscores). Neon
    /// creates it and grants it to the spec's roles; vanilla Postgres has no
    /// such role here, so the name is only validated and logged.
    #[arg(long, default_value = "neon_superuser", value_parser = parse_privileged_role_name, help_heading = NEON_HEADING)]
    pub privileged_role_name: String,

    /// Neon: remote extension storage gateway. n/a: extensions come from the
    /// Postgres installation.
    #[arg(short = 'r', long, value_name = "URL", help_heading = NEON_NA_HEADING)]
    pub remote_ext_base_url: Option<String>,

    /// Neon: development mode (skips VM-only steps). n/a: there are none.
    #[arg(long, help_heading = NEON_NA_HEADING)]
    pub dev: bool,

    /// Neon: resize the VM's swap to the spec's swap_size_bytes. n/a.
    #[arg(long, help_heading = NEON_NA_HEADING)]
    pub resize_swap_on_bind: bool,

    /// Neon: set a disk quota on this mount point from disk_quota_bytes. n/a.
    #[arg(long, value_name = "MOUNTPOINT", help_heading = NEON_NA_HEADING)]
    pub set_disk_quota_for_fs: Option<String>,

    /// Neon (Databricks Lakebase): Hadron mode. n/a.
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set, help_heading = NEON_NA_HEADING)]
    pub lakebase_mode: bool,

    /// Neon: the vm-monitor's connection for the local file cache. n/a:
    /// vanilla Postgres has no file cache to resize.
    #[arg(long, value_name = "CONNSTR", help_heading = NEON_NA_HEADING)]
    pub filecache_connstr: Option<String>,

    /// JSON Web Key Set file; when given, the protected routes need a bearer token.
    #[arg(long, env = "COMPUTE_CTL_JWKS")]
    pub jwks: Option<PathBuf>,

    /// Refuse tokens without an `exp` claim (and check `nbf`). Neon's rule,
    /// the default, accepts them (an expired one is always refused).
    #[arg(long, env = "COMPUTE_CTL_REQUIRE_TOKEN_EXP")]
    pub require_token_exp: bool,

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
    #[arg(long, env = "COMPUTE_CTL_VM_MONITOR_ADDR", default_value = crate::vm_monitor::DEFAULT_ADDR, help_heading = NEON_HEADING)]
    pub vm_monitor_addr: std::net::SocketAddr,

    /// The cgroup Postgres runs in and the vm-monitor watches (it must exist).
    #[arg(long, env = "COMPUTE_CTL_CGROUP", default_value = crate::vm_monitor::DEFAULT_CGROUP, help_heading = NEON_HEADING)]
    pub cgroup: String,

    /// Where cgroupfs (v1 or v2) is mounted.
    #[arg(long, env = "COMPUTE_CTL_CGROUP_ROOT", default_value = crate::vm_monitor::DEFAULT_CGROUP_ROOT)]
    pub cgroup_root: PathBuf,

    /// host:port where the safekeepers reach this compute's Postgres (their
    /// primary_conninfo); default: the -C host and port.
    #[arg(long, env = "COMPUTE_CTL_ADVERTISE_ADDR")]
    pub advertise_addr: Option<crate::params::AdvertiseAddr>,

    /// Seconds a primary with safekeepers waits at start for a quorum of them
    /// to stream from it; then it fails with each safekeeper's state.
    #[arg(long, env = "COMPUTE_CTL_QUORUM_DEADLINE", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub quorum_deadline_secs: u64,

    /// With --control-plane-uri: a replica whose WAL receiver has not
    /// streamed for this many seconds pulls its spec from the control plane
    /// again and applies it if storage moved (as POST /refresh_configuration
    /// does; a lost storage notification). 0 turns this off.
    #[arg(
        long,
        env = "COMPUTE_CTL_REFRESH_AFTER_SECS",
        value_name = "SECS",
        default_value_t = 30
    )]
    pub refresh_after_secs: u64,

    // ---- Operating in a fleet: readiness, TLS (README "Deploying on Kubernetes", "TLS").
    /// A replica lagging its source by more than this is not ready (`/ready`
    /// answers 503 with the lag): bytes of the source's WAL not yet
    /// replayed (16777216, 16MB) or how long ago the source was last where
    /// replay is now (10s, 500ms; sampled every second). Off when not given.
    #[arg(
        long,
        env = "COMPUTE_CTL_MAX_READY_LAG",
        help_heading = "Fleet operation"
    )]
    pub max_ready_lag: Option<crate::params::MaxLag>,

    /// PEM certificate (leaf first, then its chain) Postgres serves TLS with
    /// (`ssl = on`); watched, and a valid new one is applied by reload.
    /// `compute_ctl_config.tls` (`cert_path`, `key_path`) in --config does
    /// the same; these flags win when both are given.
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

    /// Serve the HTTP API (--http-port) over TLS with the same certificate
    /// pair (--tls-cert/--tls-key or compute_ctl_config.tls), rotated with
    /// it: new connections get a valid new pair. The internal port stays
    /// plain HTTP on loopback.
    #[arg(long, env = "COMPUTE_CTL_HTTP_TLS", help_heading = "Fleet operation")]
    pub http_tls: bool,

    /// Directory where what the postgres binary says about its settings
    /// (`--version`, `--describe-config`, base units, verdicts on values) is
    /// kept across starts: one file per binary, used only while the binary
    /// has the same path, size and modification time. A start on a binary
    /// met before then spawns none of those processes. Not writable: each
    /// start asks the binary, as with --no-settings-cache.
    #[arg(
        long,
        env = "COMPUTE_CTL_SETTINGS_CACHE",
        value_name = "DIR",
        default_value = crate::params::DEFAULT_SETTINGS_CACHE,
        help_heading = "Fleet operation"
    )]
    pub settings_cache: PathBuf,

    /// Ask the postgres binary about its settings on every start; read and
    /// write no --settings-cache.
    #[arg(
        long,
        env = "COMPUTE_CTL_NO_SETTINGS_CACHE",
        help_heading = "Fleet operation"
    )]
    pub no_settings_cache: bool,

    /// Only fill the --settings-cache of the -b binary (its listing and the
    /// base unit of every setting that has one), then exit: 0 written, 1
    /// not. For an image build, so that no container start asks the binary.
    #[arg(
        long,
        conflicts_with_all = ["validate_spec", "plan", "no_settings_cache"],
        help_heading = "Fleet operation"
    )]
    pub write_settings_cache: bool,
}

/// Neon's default internal HTTP port.
pub const DEFAULT_INTERNAL_HTTP_PORT: u16 = 3081;

/// `--privileged-role-name`: as Neon, only lowercase letters and underscores
/// (the name is used unquoted).
fn parse_privileged_role_name(value: &str) -> Result<String, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        Ok(value.to_string())
    } else {
        Err("--privileged-role-name can only contain lowercase letters and underscores".into())
    }
}

/// Whether the vm-monitor runs: `--autoscaling`, or `AUTOSCALING` set to
/// anything (as Neon's compute_ctl checks it).
pub fn autoscaling(flag: bool, env_var: Option<&std::ffi::OsStr>) -> bool {
    flag || env_var.is_some()
}

impl Args {
    /// One line per Neon-only flag or variable that was given, naming it and
    /// saying why it does nothing here. `instance_id` and `log_directory`:
    /// whether Neon's `INSTANCE_ID` and `COMPUTE_CTL_LOG_DIRECTORY` are set.
    pub fn not_applicable_notes(&self, instance_id: bool, log_directory: bool) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |given: bool, what: &str, why: &str| {
            if given {
                notes.push(format!("{what} is accepted and ignored: {why}"));
            }
        };
        note(
            self.remote_ext_base_url.is_some(),
            "--remote-ext-base-url",
            "vanilla Postgres loads extensions from its own installation, not from Neon's extension storage",
        );
        note(
            self.dev,
            "--dev",
            "there are no VM-only steps to skip outside Neon's VMs",
        );
        note(
            self.resize_swap_on_bind,
            "--resize-swap-on-bind",
            "swap belongs to Neon's VM image; size it outside compute_ctl",
        );
        note(
            self.set_disk_quota_for_fs.is_some(),
            "--set-disk-quota-for-fs",
            "disk quotas use Neon's VM tooling; set them outside compute_ctl",
        );
        note(
            self.lakebase_mode,
            "--lakebase-mode",
            "Databricks Lakebase (Hadron) needs Neon's storage and extensions",
        );
        note(
            self.filecache_connstr.is_some(),
            "--filecache-connstr",
            "vanilla Postgres has no local file cache for the vm-monitor to resize",
        );
        note(
            self.privileged_role_name != "neon_superuser",
            "--privileged-role-name",
            "the privileged role is part of Neon's catalog setup; roles get exactly the privileges their spec names",
        );
        note(
            instance_id,
            "INSTANCE_ID",
            "it only switches Neon's Hadron (Lakebase) mode, which needs Neon's storage",
        );
        note(
            log_directory,
            "COMPUTE_CTL_LOG_DIRECTORY",
            "Neon reads it only in --lakebase-mode; logs go to stderr",
        );
        notes
    }

    /// The internal listener's port, unless `--no-internal-http`.
    pub fn internal_http_port(&self) -> Option<u16> {
        (!self.no_internal_http).then_some(self.internal_port)
    }

    /// `-b`, else Neon's `POSTGRES_PATH` (given as `postgres_path`), else `postgres`.
    pub fn pgbin_or(&self, postgres_path: Option<std::ffi::OsString>) -> PathBuf {
        self.pgbin
            .clone()
            .or(postgres_path.map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("postgres"))
    }

    /// `--pg-init-timeout` as a duration.
    pub fn pg_init_timeout(&self) -> Option<Duration> {
        self.pg_init_timeout.map(Duration::from_secs)
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_secs(self.ready_timeout_secs)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// `--refresh-after-secs`, `None` when 0.
    pub fn refresh_after(&self) -> Option<Duration> {
        (self.refresh_after_secs > 0).then(|| Duration::from_secs(self.refresh_after_secs))
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
        assert_eq!(a.pgbin_or(None), PathBuf::from("/usr/bin/postgres"));
        assert_eq!(
            a.internal_http_port(),
            Some(3081),
            "on by default, as Neon's"
        );
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

    /// neon_local's argument list (control_plane/src/endpoint.rs), unchanged.
    fn neon_local_args() -> Vec<&'static str> {
        vec![
            "compute_ctl",
            "--external-http-port",
            "55433",
            "--internal-http-port",
            "55434",
            "--pgdata",
            "/ep/pgdata",
            "--connstr",
            "postgresql://cloud_admin@127.0.0.1:55432/postgres",
            "--config",
            "/ep/config.json",
            "--pgbin",
            "/pg/bin/postgres",
            "--compute-id",
            "ep-1",
            "--remote-ext-base-url",
            "http://ext",
            "--dev",
            "--privileged-role-name",
            "neon_superuser",
        ]
    }

    #[test]
    fn neon_locals_command_line_parses() {
        let a = Args::try_parse_from(neon_local_args()).unwrap();
        assert_eq!(a.http_port, 55433);
        assert_eq!(a.internal_http_port(), Some(55434));
        assert_eq!(
            a.config.as_deref(),
            Some(std::path::Path::new("/ep/config.json"))
        );
        assert_eq!(a.compute_id.as_deref(), Some("ep-1"));
        assert_eq!(a.pgbin_or(None), PathBuf::from("/pg/bin/postgres"));
        assert!(a.dev);
        let notes = a.not_applicable_notes(false, false);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].starts_with("--remote-ext-base-url"), "{notes:?}");
        assert!(notes[1].starts_with("--dev"), "{notes:?}");
    }

    #[test]
    fn neons_short_names_and_the_rest_of_its_flags() {
        let a = Args::try_parse_from([
            "compute_ctl",
            "-D",
            "/d",
            "-C",
            "postgresql://u@h/postgres",
            "-i",
            "c1",
            "-p",
            "http://cp",
            "-r",
            "http://ext",
            "--http-port",
            "4000",
            "--pg-init-timeout",
            "7",
            "--installed-extensions-collection-interval",
            "60",
            "--resize-swap-on-bind",
            "--set-disk-quota-for-fs",
            "/",
            "--lakebase-mode",
            "true",
            "--filecache-connstr",
            "host=x",
            "--cgroup",
            "cg",
            "--vm-monitor-addr",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!(a.http_port, 4000, "--http-port is --external-http-port");
        assert_eq!(a.control_plane_uri.as_deref(), Some("http://cp"));
        assert_eq!(a.pg_init_timeout(), Some(Duration::from_secs(7)));
        assert_eq!(a.installed_extensions_collection_interval, 60);
        assert!(a.lakebase_mode);
        assert_eq!(a.not_applicable_notes(true, true).len(), 7);
        // -c conflicts with -p, as Neon's.
        let mut args = neon_local_args();
        args.extend(["-p", "http://cp"]);
        assert!(Args::try_parse_from(args).is_err());
    }

    #[test]
    fn refresh_after_defaults_to_30s_and_0_turns_it_off() {
        let base = ["compute_ctl", "-D", "/d", "-C", "postgresql://u@h/postgres"];
        let a = Args::try_parse_from(base).unwrap();
        assert_eq!(a.refresh_after(), Some(Duration::from_secs(30)));
        let a =
            Args::try_parse_from(base.into_iter().chain(["--refresh-after-secs", "2"])).unwrap();
        assert_eq!(a.refresh_after(), Some(Duration::from_secs(2)));
        let a =
            Args::try_parse_from(base.into_iter().chain(["--refresh-after-secs", "0"])).unwrap();
        assert_eq!(a.refresh_after(), None);
    }

    #[test]
    fn pgbin_falls_back_to_postgres_path_then_postgres() {
        let a =
            Args::try_parse_from(["compute_ctl", "-D", "/d", "-C", "postgresql://u@h/postgres"])
                .unwrap();
        assert_eq!(
            a.pgbin_or(Some("/neon/bin/postgres".into())),
            PathBuf::from("/neon/bin/postgres")
        );
        assert_eq!(a.pgbin_or(None), PathBuf::from("postgres"));
        assert_eq!(a.http_host, None, "the default depends on the key set");
    }

    #[test]
    fn internal_listener_can_be_turned_off() {
        let a = Args::try_parse_from([
            "compute_ctl",
            "-D",
            "/d",
            "-C",
            "postgresql://u@h/postgres",
            "--no-internal-http",
        ])
        .unwrap();
        assert_eq!(a.internal_http_port(), None);
    }

    #[test]
    fn privileged_role_name_is_checked_as_neon_does() {
        let with = |name: &str| {
            Args::try_parse_from([
                "compute_ctl",
                "-D",
                "/d",
                "-C",
                "postgresql://u@h/postgres",
                "--privileged-role-name",
                name,
            ])
        };
        assert!(with("my_admin").is_ok());
        let err = with("Bad-Name").unwrap_err().to_string();
        assert!(err.contains("lowercase letters and underscores"), "{err}");
    }

    #[test]
    fn an_unknown_flag_is_an_error_with_a_suggestion() {
        let err = Args::try_parse_from([
            "compute_ctl",
            "-D",
            "/d",
            "-C",
            "postgresql://u@h/postgres",
            "--externl-http-port",
            "1",
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("unexpected argument"), "{err}");
        assert!(err.contains("--external-http-port"), "a suggestion: {err}");
    }

    #[test]
    fn help_groups_neons_flags_apart() {
        use clap::CommandFactory;
        let help = Args::command().render_help().to_string();
        let neon = help.find(NEON_HEADING).expect("Neon's heading");
        let na = help.find(NEON_NA_HEADING).expect("the n/a heading");
        let section = |from: usize| &help[from..];
        assert!(section(neon).contains("--external-http-port"));
        assert!(section(na).contains("--lakebase-mode"));
        // Ours stay under the default heading, before the Neon sections.
        let ours = help.find("--require-token-exp").unwrap();
        assert!(ours < neon.min(na), "{help}");
    }
}
