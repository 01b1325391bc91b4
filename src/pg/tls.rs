//! Postgres' TLS files: a validated pair ([`crate::tls::ValidPair`]) is
//! copied into PGDATA (`compute_ctl_tls/`, the key mode 0600 and owned by the
//! user Postgres runs as, as Postgres demands), and `postgresql.conf` points
//! `ssl_cert_file`/`ssl_key_file` there. Postgres never reads the operator's
//! files itself, so a bad pair written to them cannot reach it, not even by
//! a reload for another reason: only a pair that passed validation is
//! copied, then a SIGHUP makes Postgres load it (no restart).

use std::path::{Path, PathBuf};

use super::PgError;
use crate::env::Env;
use crate::tls::ValidPair;

/// The directory in PGDATA holding the pair in force.
pub const TLS_DIR: &str = "compute_ctl_tls";

/// The lines `write_config` appends when TLS is on (paths relative to PGDATA).
pub const TLS_CONF: &str = "\n# compute_ctl: TLS with the pair of --tls-cert/--tls-key, validated and copied here\nssl = on\nssl_cert_file = 'compute_ctl_tls/server.crt'\nssl_key_file = 'compute_ctl_tls/server.key'\n";

fn files(pgdata: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let dir = pgdata.join(TLS_DIR);
    (dir.join("server.crt"), dir.join("server.key"), dir)
}

/// Puts `pair` in PGDATA for Postgres to load at its start or next reload.
pub async fn install_pair<E: Env>(env: &E, pgdata: &Path, pair: &ValidPair) -> Result<(), PgError> {
    let (cert, key, dir) = files(pgdata);
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| PgError::Io { what, path, source }
    };
    env.create_dir_all(&dir, 0o700)
        .await
        .map_err(io("cannot create the TLS directory", &dir))?;
    env.write_atomic(&key, &pair.key_pem)
        .await
        .map_err(io("cannot write the TLS key", &key))?;
    env.set_mode(&key, 0o600)
        .await
        .map_err(io("cannot restrict the TLS key to its owner", &key))?;
    env.write_atomic(&cert, &pair.cert_pem)
        .await
        .map_err(io("cannot write the TLS certificate", &cert))?;
    if let Some(who) = env.postgres_identity().map_err(PgError::Identity)? {
        env.chown_recursive(&dir, who)
            .await
            .map_err(io("cannot hand the TLS files to the postgres user", &dir))?;
    }
    Ok(())
}
