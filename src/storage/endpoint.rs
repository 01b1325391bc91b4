//! Sessions to a storage server (a safekeeper or the source of the base
//! backup): Postgres servers reached through the Env seam (`Env::connect`
//! plus tokio-postgres `connect_raw`), so the simulator's network faults
//! apply. The address itself ([`Endpoint`]) is parsed in `spec/endpoint.rs`
//! (validation checks it there).

use std::time::Duration;

use crate::env::{Env, timeout};
pub use crate::spec::{Endpoint, EndpointError};

/// Why a session to a storage server failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot reach {addr}: {source}")]
    Tcp {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} refused the session: {}", crate::pg::describe_error(.source))]
    Startup {
        addr: String,
        source: tokio_postgres::Error,
    },
    #[error("{addr} did not answer within {after:?}")]
    Timeout { addr: String, after: Duration },
    #[error("{addr} failed the query: {}", crate::pg::describe_error(.source))]
    Query {
        addr: String,
        source: tokio_postgres::Error,
    },
    #[error("{addr} answered something unexpected: {what}")]
    Unexpected { addr: String, what: String },
}

impl Endpoint {
    /// Runs `statements` one after the other (simple query protocol, each
    /// its own transaction: `ALTER SYSTEM` refuses a transaction block) in
    /// one new session, all within `within`.
    pub async fn execute<E: Env>(
        &self,
        env: &E,
        statements: &[&str],
        within: Duration,
    ) -> Result<(), SessionError> {
        self.first_rows(env, statements, within).await.map(|_| ())
    }

    /// [`execute`](Self::execute), returning the text columns of each
    /// statement's first row (empty for a statement that returns none).
    pub async fn first_rows<E: Env>(
        &self,
        env: &E,
        statements: &[&str],
        within: Duration,
    ) -> Result<Vec<Vec<Option<String>>>, SessionError> {
        self.first_rows_while(env, statements, within, |_| true)
            .await
    }

    /// [`first_rows`](Self::first_rows), stopping after the first
    /// statement whose first row `go_on` does not like (the rows so far).
    pub async fn first_rows_while<E: Env>(
        &self,
        env: &E,
        statements: &[&str],
        within: Duration,
        mut go_on: impl FnMut(&[Option<String>]) -> bool,
    ) -> Result<Vec<Vec<Option<String>>>, SessionError> {
        self.with_session(env, within, async |client, addr| {
            rows_while(client, addr, statements, &mut go_on).await
        })
        .await
    }

    /// Runs `work` on one new session, all within `within`: for a
    /// conversation whose next statement depends on the last answer (a
    /// poll), which [`first_rows_while`](Self::first_rows_while)'s fixed
    /// list cannot hold. `work` gets the session and this endpoint's
    /// address (for its errors).
    pub async fn with_session<E: Env, T, Er: From<SessionError>>(
        &self,
        env: &E,
        within: Duration,
        work: impl AsyncFnOnce(&tokio_postgres::Client, &str) -> Result<T, Er>,
    ) -> Result<T, Er> {
        let addr = self.addr();
        let attempt = async {
            let (client, conn, _) = self.session(env).await?;
            let result = work(&client, &addr).await;
            drop(client);
            conn.abort();
            result
        };
        bounded(env, within, &addr, attempt).await
    }

    /// [`with_session`](Self::with_session), keeping the session open for
    /// what follows (a start's sync, then its claim on the same session):
    /// one backend fewer on the server. Closed when `work` fails.
    pub async fn with_kept_session<E: Env, T>(
        &self,
        env: &E,
        within: Duration,
        work: impl AsyncFnOnce(&tokio_postgres::Client, &str) -> Result<T, SessionError>,
    ) -> Result<(T, OpenSession), SessionError> {
        let addr = self.addr();
        let attempt = async {
            let (client, conn, server_major) = self.session(env).await?;
            let session = OpenSession {
                client,
                conn: Some(conn),
                addr: addr.clone(),
                server_major,
            };
            let answer = work(&session.client, &addr).await?;
            Ok((answer, session))
        };
        bounded(env, within, &addr, attempt).await
    }

    /// A new session kept open across steps (a poll, then what follows
    /// it), opened within `within`; closed when dropped.
    pub async fn open<E: Env>(
        &self,
        env: &E,
        within: Duration,
    ) -> Result<OpenSession, SessionError> {
        let kept = self.with_kept_session(env, within, async |_, _| Ok(()));
        kept.await.map(|((), session)| session)
    }

    /// A new session: TCP through the Env, then the startup handshake
    /// under the supervisor's application name; with the server's major,
    /// from the `server_version` it reports at startup (`None` when it
    /// reported none that reads as one).
    async fn session<E: Env>(
        &self,
        env: &E,
    ) -> Result<
        (
            tokio_postgres::Client,
            tokio::task::JoinHandle<()>,
            Option<u32>,
        ),
        SessionError,
    > {
        let addr = self.addr();
        let stream =
            env.connect(&self.host, self.port)
                .await
                .map_err(|source| SessionError::Tcp {
                    addr: addr.clone(),
                    source,
                })?;
        let mut config = self.config.clone();
        config.application_name(crate::pg::APPLICATION_NAME);
        let (client, connection) = config
            .connect_raw(stream, tokio_postgres::NoTls)
            .await
            .map_err(|source| SessionError::Startup {
                addr: addr.clone(),
                source,
            })?;
        let server_major = connection
            .parameter("server_version")
            .and_then(major_of_server_version);
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok((client, conn, server_major))
    }

    /// Runs `sql` (simple query protocol) in a new session and returns the
    /// text columns of its first row, all within `within`.
    pub async fn query_row<E: Env>(
        &self,
        env: &E,
        sql: &str,
        within: Duration,
    ) -> Result<Vec<Option<String>>, SessionError> {
        self.with_session(env, within, async |client, addr| {
            let messages = query(client, addr, sql).await?;
            first_row(&messages).ok_or_else(|| SessionError::Unexpected {
                addr: addr.to_string(),
                what: "no row".into(),
            })
        })
        .await
    }
}

/// A session [`Endpoint::open`] made: each statement a round trip on it.
pub struct OpenSession {
    client: tokio_postgres::Client,
    /// The task that drives it, when this module spawned it.
    conn: Option<tokio::task::JoinHandle<()>>,
    addr: String,
    /// The server's major, as it reported at startup.
    server_major: Option<u32>,
}

impl OpenSession {
    /// A session opened elsewhere (the start's readiness probe) on the
    /// server at `ep`; dropping it ends it.
    pub fn adopt(client: tokio_postgres::Client, ep: &Endpoint) -> Self {
        Self {
            client,
            conn: None,
            addr: ep.addr(),
            server_major: None,
        }
    }

    /// The server's major, from the `server_version` it reported when
    /// this session began (`None` for an adopted session, or a server that
    /// reported none): no query needed.
    pub fn server_major(&self) -> Option<u32> {
        self.server_major
    }

    /// [`Endpoint::first_rows_while`] on this session, all within `within`.
    pub async fn first_rows_while<E: Env>(
        &self,
        env: &E,
        statements: &[&str],
        within: Duration,
        mut go_on: impl FnMut(&[Option<String>]) -> bool,
    ) -> Result<Vec<Vec<Option<String>>>, SessionError> {
        let rows = rows_while(&self.client, &self.addr, statements, &mut go_on);
        bounded(env, within, &self.addr, rows).await
    }

    /// The text columns of the first row `sql` answers (empty when none),
    /// within `within`.
    pub async fn first_row<E: Env>(
        &self,
        env: &E,
        sql: &str,
        within: Duration,
    ) -> Result<Vec<Option<String>>, SessionError> {
        let row = first_row_of(&self.client, &self.addr, sql);
        bounded(env, within, &self.addr, row).await
    }

    pub fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        if let Some(conn) = &self.conn {
            conn.abort();
        }
    }
}

/// `work` within `within` on the Env clock; running out is a
/// [`SessionError::Timeout`] naming `addr`.
async fn bounded<E: Env, T, Er: From<SessionError>>(
    env: &E,
    within: Duration,
    addr: &str,
    work: impl Future<Output = Result<T, Er>>,
) -> Result<T, Er> {
    match timeout(env, within, work).await {
        Ok(r) => r,
        Err(_) => Err(SessionError::Timeout {
            addr: addr.to_string(),
            after: within,
        }
        .into()),
    }
}

/// `statements` one after the other on `client`, each one's first row,
/// stopping after the first row `go_on` does not like.
async fn rows_while(
    client: &tokio_postgres::Client,
    addr: &str,
    statements: &[&str],
    go_on: &mut impl FnMut(&[Option<String>]) -> bool,
) -> Result<Vec<Vec<Option<String>>>, SessionError> {
    let mut rows = Vec::with_capacity(statements.len());
    for sql in statements {
        let row = first_row_of(client, addr, sql).await?;
        let stop = !go_on(&row);
        rows.push(row);
        if stop {
            break;
        }
    }
    Ok(rows)
}

/// The major of a `server_version` as a server reports it at startup
/// (`15.18 (Debian 15.18-0+deb12u1)`, `18.1`, `19devel`): its leading
/// digits; `None` when it starts with none.
pub fn major_of_server_version(v: &str) -> Option<u32> {
    let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The text columns of the first row `sql` answers on `client` (empty
/// when it answers none); a failure names `addr`.
pub async fn first_row_of(
    client: &tokio_postgres::Client,
    addr: &str,
    sql: &str,
) -> Result<Vec<Option<String>>, SessionError> {
    let messages = query(client, addr, sql).await?;
    Ok(first_row(&messages).unwrap_or_default())
}

/// `sql` on `client` (simple query protocol); a failure names `addr`.
async fn query(
    client: &tokio_postgres::Client,
    addr: &str,
    sql: &str,
) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, SessionError> {
    client
        .simple_query(sql)
        .await
        .map_err(|source| SessionError::Query {
            addr: addr.to_string(),
            source,
        })
}

/// Column `i` of a row as [`first_row_of`] and [`Endpoint::query_row`]
/// give it: `None` when the row is shorter or the value is NULL.
pub fn column(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i)?.as_deref()
}

/// The text columns of the first row among `messages`.
fn first_row(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<Vec<Option<String>>> {
    messages.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some(
            (0..r.len())
                .map(|i| r.get(i).map(str::to_string))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::major_of_server_version;

    #[test]
    fn a_server_version_reads_as_its_major() {
        assert_eq!(
            major_of_server_version("15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(major_of_server_version("18.1"), Some(18));
        assert_eq!(major_of_server_version("19devel"), Some(19));
        assert_eq!(major_of_server_version("9.6.24"), Some(9));
        assert_eq!(major_of_server_version("EnterpriseDB 15"), None);
        assert_eq!(major_of_server_version(""), None);
    }
}
