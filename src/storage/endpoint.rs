//! A storage server the supervisor talks SQL to: a safekeeper or the
//! source of the base backup (`pageserver_connstring`). Here both are
//! Postgres servers, reached through the Env seam (`Env::connect` plus
//! tokio-postgres `connect_raw`), so the simulator's network faults apply.
//!
//! Accepted forms: a libpq URL (`postgresql://user@host:port/db`), libpq
//! `key=value` pairs (`host=h port=p user=u`), or Neon's safekeeper form
//! `host:port`. A missing user is the supervisor's own superuser (the one of
//! `--connstr`), as the storage knows `cloud_admin`; a missing database is
//! `postgres`; a missing port 5432.

use std::time::Duration;

use tokio_postgres::config::Host;

use crate::env::{Env, timeout};
use crate::pg::redact_connstr;

/// A parsed storage address.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The connection string as given, password redacted (for messages).
    pub shown: String,
    config: tokio_postgres::Config,
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

/// Why a session to a storage server failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} refused the session: {source}")]
    Startup {
        addr: String,
        source: tokio_postgres::Error,
    },
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("{addr} failed the query: {source}")]
    Query {
        addr: String,
        source: tokio_postgres::Error,
    },
    #[error("{addr} answered something unexpected: {what}")]
    Unexpected { addr: String, what: String },
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
        config.application_name(crate::pg::APPLICATION_NAME);
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

    /// Runs `statements` one after the other (simple query protocol, each
    /// its own transaction: `ALTER SYSTEM` refuses a transaction block) in
    /// one new session, all within `within`.
    pub async fn execute<E: Env>(
        &self,
        env: &E,
        statements: &[&str],
        within: Duration,
    ) -> Result<(), SessionError> {
        let addr = self.addr();
        let attempt = async {
            let (client, conn) = self.session(env).await?;
            let mut result = Ok(());
            for sql in statements {
                if let Err(source) = client.simple_query(sql).await {
                    result = Err(SessionError::Query {
                        addr: addr.clone(),
                        source,
                    });
                    break;
                }
            }
            drop(client);
            conn.abort();
            result
        };
        match timeout(env, within, attempt).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::Timeout {
                addr,
                after: within,
            }),
        }
    }

    /// A new session: TCP through the Env, then the startup handshake.
    async fn session<E: Env>(
        &self,
        env: &E,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), SessionError> {
        let addr = self.addr();
        let stream =
            env.connect(&self.host, self.port)
                .await
                .map_err(|source| SessionError::Tcp {
                    addr: addr.clone(),
                    source,
                })?;
        let (client, connection) = self
            .config
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|source| SessionError::Startup {
                addr: addr.clone(),
                source,
            })?;
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, conn))
    }

    /// Runs `sql` (simple query protocol) in a new session and returns the
    /// text columns of its first row, all within `within`.
    pub async fn query_row<E: Env>(
        &self,
        env: &E,
        sql: &str,
        within: Duration,
    ) -> Result<Vec<Option<String>>, SessionError> {
        let addr = self.addr();
        let attempt = async {
            let (client, conn) = self.session(env).await?;
            let rows = client.simple_query(sql).await;
            drop(client);
            conn.abort();
            let rows = rows.map_err(|source| SessionError::Query {
                addr: addr.clone(),
                source,
            })?;
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => Some(
                        (0..r.len())
                            .map(|i| r.get(i).map(str::to_string))
                            .collect::<Vec<_>>(),
                    ),
                    _ => None,
                })
                .ok_or_else(|| SessionError::Unexpected {
                    addr: addr.clone(),
                    what: "no row".into(),
                })
        };
        match timeout(env, within, attempt).await {
            Ok(r) => r,
            Err(_) => Err(SessionError::Timeout {
                addr,
                after: within,
            }),
        }
    }
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
}
