//! Everything the supervisor needs to know that is not in the spec: the
//! `-C` superuser target and the paths and timeouts from the command line.
//! It sits below `compute/`, `pg/` and `catalog/`, which all read it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where and how the supervisor connects to its own Postgres as superuser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnTarget {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub dbname: String,
}

/// Why a `--connstr` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnstrError {
    #[error(
        "cannot parse connection string: {0}; expected e.g. postgresql://cloud_admin@127.0.0.1:55432/postgres"
    )]
    Parse(#[from] tokio_postgres::Error),
    #[error(
        "connection string {0}; expected e.g. postgresql://cloud_admin@127.0.0.1:55432/postgres"
    )]
    Incomplete(&'static str),
}

impl ConnTarget {
    /// Parses a libpq URL or key=value string; it must name a TCP host and a user.
    pub fn parse(connstr: &str) -> Result<Self, ConnstrError> {
        use tokio_postgres::config::Host;
        let cfg: tokio_postgres::Config = connstr.parse()?;
        let host = match cfg.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(_) => {
                return Err(ConnstrError::Incomplete(
                    "names a Unix socket; a TCP host is needed",
                ));
            }
            None => return Err(ConnstrError::Incomplete("has no host")),
        };
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        let user = cfg
            .get_user()
            .ok_or(ConnstrError::Incomplete("has no user"))?
            .to_string();
        let dbname = cfg.get_dbname().unwrap_or("postgres").to_string();
        Ok(Self {
            host,
            port,
            user,
            dbname,
        })
    }

    /// The same target in another database.
    pub fn with_dbname(&self, dbname: &str) -> Self {
        Self {
            dbname: dbname.to_string(),
            ..self.clone()
        }
    }
}

/// Supervisor parameters, from the command line.
#[derive(Debug, Clone)]
pub struct ComputeParams {
    /// The data directory; recreated on every start.
    pub pgdata: PathBuf,
    /// The `postgres` binary; `initdb`, `pg_basebackup` and friends are beside it.
    pub pgbin: PathBuf,
    /// The supervisor's superuser connection.
    pub conn: ConnTarget,
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// This compute's id (JWT `compute_id` claim, control-plane spec fetch).
    pub compute_id: Option<String>,
    /// How long Postgres may take to accept connections after spawn.
    pub ready_timeout: Duration,
    /// How long a fast shutdown may take before it is made immediate.
    pub shutdown_timeout: Duration,
    /// How often the activity monitor polls.
    pub activity_interval: Duration,
    /// Under AUTOSCALING: the `cgroup.procs` Postgres is started in.
    pub cgroup_procs: Option<PathBuf>,
    /// Where the safekeepers reach this compute's Postgres
    /// (`--advertise-addr`); `None`: the `-C` host and port.
    pub advertise: Option<AdvertiseAddr>,
    /// How long a primary with safekeepers waits for a quorum of them to
    /// stream from it before the start fails (`--quorum-deadline-secs`).
    pub quorum_deadline: Duration,
    /// `--max-ready-lag`: how far a replica may lag and still be ready.
    pub max_ready_lag: Option<MaxLag>,
    /// `--tls-cert`/`--tls-key` (or `-c`'s `compute_ctl_config.tls`): the
    /// pair Postgres serves TLS with.
    pub tls: Option<TlsPaths>,
    /// Where the binary's answers about its settings are kept across runs
    /// (`pg::settings_cache`); `None`: asked on every start.
    pub settings_cache: Option<PathBuf>,
}

/// Where a TLS certificate (PEM, leaf first) and its private key (PEM) are
/// read from; Neon's `compute_ctl_config.tls` names the same two paths.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct TlsPaths {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl ComputeParams {
    /// Parameters of a compute whose Postgres can never start (the binary
    /// does not exist) and never answers (`127.0.0.1:1`), for unit tests
    /// of what the supervisor does without one.
    #[cfg(test)]
    pub fn unstartable() -> Self {
        ComputeParams {
            pgdata: PathBuf::from("/nonexistent/pgdata"),
            pgbin: PathBuf::from("/nonexistent/postgres"),
            conn: ConnTarget::parse("postgresql://cloud_admin@127.0.0.1:1/postgres")
                .expect("a valid connection string"),
            http_addr: "127.0.0.1:0".parse().expect("a valid address"),
            compute_id: None,
            ready_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(1),
            activity_interval: Duration::from_secs(1),
            cgroup_procs: None,
            advertise: None,
            quorum_deadline: DEFAULT_QUORUM_DEADLINE,
            max_ready_lag: None,
            tls: None,
            settings_cache: None,
        }
    }

    /// A program that lives beside the `postgres` binary.
    pub fn pg_tool(&self, name: &str) -> PathBuf {
        self.pgbin.with_file_name(name)
    }

    /// Where the safekeepers reach this compute: `--advertise-addr`, else
    /// the `-C` host and port.
    pub fn advertised(&self) -> AdvertiseAddr {
        self.advertise.clone().unwrap_or_else(|| AdvertiseAddr {
            host: self.conn.host.clone(),
            port: self.conn.port,
        })
    }
}

/// The default of `--quorum-deadline-secs`.
/// Where `--settings-cache` keeps the binary's answers by default (beside
/// the Postgres builds `just deps` installs).
pub const DEFAULT_SETTINGS_CACHE: &str = "/var/cache/compute_ctl/settings";

pub const DEFAULT_QUORUM_DEADLINE: Duration = Duration::from_secs(30);

/// `host:port` where remote servers (the safekeepers) reach this compute's
/// Postgres; a TCP address, never a Unix socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertiseAddr {
    pub host: String,
    pub port: u16,
}

impl AdvertiseAddr {
    /// Whether only this machine can reach the host (`localhost`, 127/8, ::1).
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// Whether `host` names this machine only (`localhost`, 127/8, `::1`).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl std::fmt::Display for AdvertiseAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl std::str::FromStr for AdvertiseAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            format!(
                "{s:?} {why}; expected host:port that the safekeepers can reach, e.g. 10.0.0.5:55432"
            )
        };
        if s.starts_with('/') || s.starts_with('@') {
            return Err(bad(
                "is a Unix socket, which remote safekeepers cannot reach",
            ));
        }
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', ' ', '\'', '"']) {
            return Err(bad("has no usable host"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("has a bad port"))?;
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }
}

/// `--max-ready-lag`: the most a replica may lag and still be ready
/// (`health::lag_verdict` judges it): WAL bytes between the source's
/// position and the replica's replay, or how long ago the source was last
/// at a position the replica has replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxLag {
    Bytes(u64),
    Time(Duration),
}

/// A `--max-ready-lag` value that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid lag {0:?}: give bytes (16777216, 64kB, 16MB, 1GB) or a time (500ms, 10s, 2min)")]
pub struct MaxLagParseError(String);

impl std::str::FromStr for MaxLag {
    type Err = MaxLagParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let err = || MaxLagParseError(s.to_string());
        let n: u64 = num.parse().map_err(|_| err())?;
        let bytes = |mult: u64| n.checked_mul(mult).map(MaxLag::Bytes).ok_or_else(err);
        match unit.trim() {
            "" | "B" => Ok(MaxLag::Bytes(n)),
            "kB" | "KB" | "KiB" => bytes(1 << 10),
            "MB" | "MiB" => bytes(1 << 20),
            "GB" | "GiB" => bytes(1 << 30),
            "ms" => Ok(MaxLag::Time(Duration::from_millis(n))),
            "s" => Ok(MaxLag::Time(Duration::from_secs(n))),
            "min" => n
                .checked_mul(60)
                .map(|s| MaxLag::Time(Duration::from_secs(s)))
                .ok_or_else(err),
            _ => Err(err()),
        }
    }
}

impl std::fmt::Display for MaxLag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxLag::Bytes(b) => write!(f, "{b} bytes"),
            MaxLag::Time(d) => write!(f, "{} ms", d.as_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_url_and_keyvalue_connstrings() {
        let t = ConnTarget::parse("postgresql://cloud_admin@127.0.0.1:55432/postgres").unwrap();
        assert_eq!(
            t,
            ConnTarget {
                host: "127.0.0.1".into(),
                port: 55432,
                user: "cloud_admin".into(),
                dbname: "postgres".into()
            }
        );
        let t = ConnTarget::parse("host=localhost port=6000 user=x").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.dbname.as_str()),
            ("localhost", 6000, "postgres")
        );
    }

    #[test]
    fn advertise_addr_is_a_tcp_host_and_port() {
        let a: AdvertiseAddr = "10.0.0.5:55432".parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", 55432));
        assert!(!a.is_loopback());
        let a: AdvertiseAddr = "[::1]:5432".parse().unwrap();
        assert_eq!(a.host, "::1");
        assert!(a.is_loopback());
        assert_eq!(a.to_string(), "[::1]:5432");
        assert!(
            "localhost:1"
                .parse::<AdvertiseAddr>()
                .unwrap()
                .is_loopback()
        );
        for bad in ["/tmp/.s.PGSQL.5432", "host", "host:0", "host:x", ":5432"] {
            assert!(bad.parse::<AdvertiseAddr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_connstrings_without_user_or_tcp_host() {
        assert!(
            ConnTarget::parse("postgresql://127.0.0.1:5432/postgres")
                .unwrap_err()
                .to_string()
                .contains("no user")
        );
        assert!(
            ConnTarget::parse("host=/tmp user=x")
                .unwrap_err()
                .to_string()
                .contains("Unix socket")
        );
        assert!(ConnTarget::parse("postgresql://[").is_err());
    }

    #[test]
    fn parses_bytes_and_times() {
        assert_eq!("1048576".parse::<MaxLag>().unwrap(), MaxLag::Bytes(1 << 20));
        assert_eq!("16MB".parse::<MaxLag>().unwrap(), MaxLag::Bytes(16 << 20));
        assert_eq!("64kB".parse::<MaxLag>().unwrap(), MaxLag::Bytes(64 << 10));
        assert_eq!(
            "10s".parse::<MaxLag>().unwrap(),
            MaxLag::Time(Duration::from_secs(10))
        );
        assert_eq!(
            "2min".parse::<MaxLag>().unwrap(),
            MaxLag::Time(Duration::from_secs(120))
        );
        assert_eq!(
            "500ms".parse::<MaxLag>().unwrap(),
            MaxLag::Time(Duration::from_millis(500))
        );
        for bad in [
            "",
            "MB",
            "-1",
            "10 parsecs",
            "1.5s",
            "99999999999999999999GB",
        ] {
            let e = bad.parse::<MaxLag>().unwrap_err().to_string();
            assert!(e.contains("give bytes"), "{bad}: {e}");
        }
    }
}
