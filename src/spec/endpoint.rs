//! Connection strings of the spec: a storage server's address (a
//! safekeeper or the base backup source, `pageserver_connstring`) parsed
//! and checked, and passwords redacted for messages. Pure: validation
//! uses it, and `storage::Endpoint`'s sessions are built on it.
//!
//! Accepted forms: a libpq URL (`postgresql://user@host:port/db`), libpq
//! `key=value` pairs (`host=h port=p user=u`), or Neon's safekeeper form
//! `host:port`. A missing user is the supervisor's own superuser (the one of
//! `--connstr`), as the storage knows `cloud_admin`; a missing database is
//! `postgres`; a missing port 5432.

use tokio_postgres::config::Host;

/// A parsed storage address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The connection string as given, password redacted (for messages).
    pub shown: String,
    /// The session settings (`storage::Endpoint::query_row` adds the
    /// application name).
    pub(crate) config: tokio_postgres::Config,
}

/// Why a connection string cannot be used for storage.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot parse {shown:?} as a libpq connection string: {reason}")]
    Parse { shown: String, reason: String },
    #[error(
        "{shown:?} names no TCP host; give host=... (a Unix socket cannot be reached from here)"
    )]
    NoTcpHost { shown: String },
    #[error("{shown:?} has a bad port; expected host:port with a port number")]
    BadPort { shown: String },
}

impl Endpoint {
    /// Parses `connstr`; `default_user` is used when it names no user.
    pub fn parse(connstr: &str, default_user: &str) -> Result<Self, EndpointError> {
        let shown = redact_connstr(connstr);
        let trimmed = connstr.trim();
        let libpq = trimmed.contains("://") || trimmed.contains('=');
        let mut config = if libpq {
            trimmed
                .parse::<tokio_postgres::Config>()
                .map_err(|e| EndpointError::Parse {
                    shown: shown.clone(),
                    reason: e.to_string(),
                })?
        } else {
            let (host, port) = match trimmed.rsplit_once(':') {
                Some((h, p)) => (
                    h,
                    p.parse::<u16>().map_err(|_| EndpointError::BadPort {
                        shown: shown.clone(),
                    })?,
                ),
                None => (trimmed, 5432),
            };
            if host.is_empty() {
                return Err(EndpointError::NoTcpHost { shown });
            }
            let mut c = tokio_postgres::Config::new();
            c.host(host).port(port);
            c
        };
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            _ => return Err(EndpointError::NoTcpHost { shown }),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        if config.get_user().is_none() {
            config.user(default_user);
        }
        if config.get_dbname().is_none() {
            config.dbname("postgres");
        }
        Ok(Self {
            host,
            port,
            shown,
            config,
        })
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The libpq `key=value` form (for `pg_basebackup -d` and
    /// `primary_conninfo`), with `application_name` when given. It carries
    /// the password when the connection string had one: never log it, show
    /// [`Endpoint::shown`].
    pub fn conninfo(&self, application_name: Option<&str>) -> String {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut out = format!("host={} port={}", q(&self.host), self.port);
        if let Some(u) = self.config.get_user() {
            out.push_str(&format!(" user={}", q(u)));
        }
        if let Some(p) = self.config.get_password() {
            out.push_str(&format!(" password={}", q(&String::from_utf8_lossy(p))));
        }
        if let Some(d) = self.config.get_dbname() {
            out.push_str(&format!(" dbname={}", q(d)));
        }
        if let Some(a) = application_name {
            out.push_str(&format!(" application_name={}", q(a)));
        }
        out
    }
}

/// A libpq connection string with its password replaced by `***`, for logs
/// and error messages (URL `user:secret@` and key=value `password=secret`).
pub fn redact_connstr(c: &str) -> String {
    if let Some(rest) = c
        .strip_prefix("postgresql://")
        .or_else(|| c.strip_prefix("postgres://"))
    {
        let scheme = &c[..c.len() - rest.len()];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                return format!("{scheme}{}:***{}", &rest[..colon], &rest[at..]);
            }
        }
        return c.to_string();
    }
    c.split(' ')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.trim() == "password" => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_urls_keyvalue_and_host_port() {
        let e = Endpoint::parse("postgresql://u:pw@storage:6400/db", "cloud_admin").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("storage", 6400));
        assert_eq!(e.config.get_user(), Some("u"));
        assert!(!e.shown.contains("pw"));
        let e = Endpoint::parse("host=127.0.0.1 port=5433", "cloud_admin").unwrap();
        assert_eq!(
            (e.addr(), e.config.get_user()),
            ("127.0.0.1:5433".to_string(), Some("cloud_admin"))
        );
        assert_eq!(e.config.get_dbname(), Some("postgres"));
        let e = Endpoint::parse("sk-1:5454", "cloud_admin").unwrap();
        assert_eq!(e.addr(), "sk-1:5454");
        assert_eq!(Endpoint::parse("sk-2", "x").unwrap().port, 5432);
    }

    #[test]
    fn rejects_what_cannot_be_reached() {
        assert!(matches!(
            Endpoint::parse("host=/tmp user=x", "x"),
            Err(EndpointError::NoTcpHost { .. })
        ));
        assert!(matches!(
            Endpoint::parse("sk:notaport", "x"),
            Err(EndpointError::BadPort { .. })
        ));
        assert!(matches!(
            Endpoint::parse("host=a port=notaport", "x"),
            Err(EndpointError::Parse { .. })
        ));
        assert!(Endpoint::parse(":5454", "x").is_err());
    }

    #[test]
    fn passwords_are_redacted_from_connstrings() {
        assert_eq!(
            redact_connstr("postgresql://u:s3cret@h:5432/db?sslmode=disable"),
            "postgresql://u:***@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact_connstr("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_connstr("host=h port=1 password=s3cret user=u"),
            "host=h port=1 password=*** user=u"
        );
        assert_eq!(redact_connstr("host=h user=u"), "host=h user=u");
    }
}
