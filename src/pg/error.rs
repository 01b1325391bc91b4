//! What can go wrong while preparing, configuring or starting Postgres. Every
//! variant names the thing that failed (a command line, a path, a port) and,
//! where there is one, what to do about it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::ConnectError;
use crate::env::ExitInfo;

/// A failure while preparing or running Postgres.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("cannot determine the OS user to run Postgres as: {0}")]
    Identity(io::Error),

    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error(
        "cannot run `{command}`: {source}; check -b/--pgbin (initdb, pg_basebackup and postgres are looked up beside it)"
    )]
    Spawn { command: String, source: io::Error },

    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        command: String,
        status: ExitInfo,
        stderr: String,
    },

    #[error("`{command}` did not finish within {after:?}; it was killed")]
    CommandTimeout { command: String, after: Duration },

    #[error(
        "port {port} on {host} is already in use by another process; stop it or put a free port in --connstr"
    )]
    PortInUse { host: String, port: u16 },

    #[error(
        "cannot listen on {host}:{port} ({source}); --connstr must name an address of this machine"
    )]
    Listen {
        host: String,
        port: u16,
        source: io::Error,
    },

    #[error("Postgres did not accept connections within {after:?}; last attempt: {last}")]
    NotReady { after: Duration, last: String },

    #[error("Postgres is up but refused the supervisor's session: {0}")]
    Refused(ConnectError),

    #[error("invalid configuration: {0}")]
    Config(String),
}

/// A tokio-postgres error as a user should see it. Its `Display` of a
/// server error is just `db error`; this gives Postgres' own message,
/// SQLSTATE, detail and hint, and for other errors the whole cause chain.
pub fn describe_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(d) = db.detail() {
                s.push_str("; detail: ");
                s.push_str(d);
            }
            if let Some(h) = db.hint() {
                s.push_str("; hint: ");
                s.push_str(h);
            }
            s
        }
        None => {
            let mut s = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                let text = c.to_string();
                if !s.contains(&text) {
                    s.push_str(": ");
                    s.push_str(&text);
                }
                cause = c.source();
            }
            s
        }
    }
}

/// Whether a tokio-postgres error means Postgres could not be talked to
/// (closed connection, I/O, timeout), as opposed to Postgres refusing the
/// request: only those are a 503.
pub fn is_unreachable(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
        && (e.is_closed() || std::error::Error::source(e).is_some_and(|c| c.is::<io::Error>()))
}

/// At most this many bytes of a failed command's stderr go into a message.
const STDERR_LIMIT: usize = 2000;

/// The end of a failed command's stderr, trimmed, for an error message.
pub(crate) fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "(no output on stderr)".to_string();
    }
    if text.len() <= STDERR_LIMIT {
        return text.to_string();
    }
    let mut start = text.len() - STDERR_LIMIT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("...{}", &text[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_the_end_of_long_output() {
        assert_eq!(stderr_tail(b"  \n"), "(no output on stderr)");
        assert_eq!(stderr_tail(b"FATAL: x\n"), "FATAL: x");
        let long = format!("{}THE END", "é".repeat(STDERR_LIMIT));
        let t = stderr_tail(long.as_bytes());
        assert!(t.starts_with("...") && t.ends_with("THE END"));
        assert!(t.len() <= STDERR_LIMIT + 3);
    }
}
