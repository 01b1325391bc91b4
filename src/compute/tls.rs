//! Certificate rotation for Postgres' TLS (`--tls-cert`/`--tls-key`, or
//! `compute_ctl_config.tls` of `--config`). At
//! start the pair must be valid ([`crate::tls::validate`]) or the start
//! fails saying why. Then a watcher polls both files every [`TLS_POLL`] on
//! the Env clock; when they differ from the pair in force (the copy in
//! PGDATA) it validates them: a valid pair is copied into PGDATA and
//! Postgres reloaded (SIGHUP: no restart, sessions stay); a bad one is
//! refused, the pair in force stays, and the reason is in `/status`
//! (`tls.rejected`) and the log, once per content.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::Compute;
use crate::env::{Env, Signal};
use crate::params::TlsPaths;
use crate::pg;
use crate::tls::{CertInfo, ValidPair, validate};

/// How often the certificate files are looked at.
pub const TLS_POLL: Duration = Duration::from_secs(2);

/// `/status.tls`: where the pair comes from, the one in force, and why the
/// last rotation was refused (cleared by the next one applied).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TlsStatus {
    pub cert_path: String,
    pub key_path: String,
    pub in_force: Option<CertInfo>,
    pub rejected: Option<String>,
    /// Pairs applied by reload since start.
    pub rotations: u64,
}

impl<E: Env> Compute<E> {
    /// Reads and validates the pair of `paths`.
    async fn read_pair(&self, paths: &TlsPaths) -> Result<ValidPair, String> {
        let read = async |p: &std::path::Path| {
            self.env
                .read(p)
                .await
                .map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        let cert = read(&paths.cert_path).await?;
        let key = read(&paths.key_path).await?;
        validate(&cert, &key, self.env.wall_clock()).map_err(|e| {
            format!(
                "{} / {}: {e}",
                paths.cert_path.display(),
                paths.key_path.display()
            )
        })
    }

    /// At start, once PGDATA is made: the pair must be valid.
    pub(super) async fn install_tls_at_start(&self) -> Result<(), String> {
        let Some(paths) = &self.params.tls else {
            return Ok(());
        };
        let pair = self.read_pair(paths).await.map_err(|e| {
            format!("TLS (--tls-cert/--tls-key or compute_ctl_config.tls) cannot be used: {e}")
        })?;
        pg::install_pair(&self.env, &self.params.pgdata, &pair)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(subject = %pair.info.subject, serial = %pair.info.serial, not_after = pair.info.not_after, "Postgres serves TLS");
        self.state.send_modify(|st| {
            st.tls = Some(TlsStatus {
                cert_path: paths.cert_path.display().to_string(),
                key_path: paths.key_path.display().to_string(),
                in_force: Some(pair.info.clone()),
                rejected: None,
                rotations: 0,
            });
        });
        Ok(())
    }

    /// Starts the rotation watcher (with `--tls-cert` only); it ends when
    /// the compute stops.
    pub fn watch_tls(self: &Arc<Self>) {
        if self.params.tls.is_none() {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.tls_loop().await });
    }

    async fn tls_loop(self: Arc<Self>) {
        let Some(paths) = self.params.tls.clone() else {
            return;
        };
        let dir = self.params.pgdata.join(pg::TLS_DIR);
        let mut refused: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            self.env.sleep(TLS_POLL).await;
            let st = self.state();
            if st.supervisor_exited || st.status.is_terminating() {
                return;
            }
            if st.tls.is_none() {
                continue; // not started yet: the start installs the pair
            }
            let (Ok(cert), Ok(key)) = (
                self.env.read(&paths.cert_path).await,
                self.env.read(&paths.key_path).await,
            ) else {
                continue; // mid-rotation or gone: looked at again next poll
            };
            let in_force = (
                self.env.read(&dir.join("server.crt")).await.ok(),
                self.env.read(&dir.join("server.key")).await.ok(),
            );
            if in_force == (Some(cert.clone()), Some(key.clone())) {
                continue;
            }
            if refused.as_ref() == Some(&(cert.clone(), key.clone())) {
                continue;
            }
            match validate(&cert, &key, self.env.wall_clock()) {
                Err(e) => {
                    let reason = format!(
                        "the new TLS pair {} / {} was refused, the pair in force stays: {e}",
                        paths.cert_path.display(),
                        paths.key_path.display()
                    );
                    tracing::warn!("{reason}");
                    self.state.send_modify(|st| {
                        if let Some(t) = st.tls.as_mut() {
                            t.rejected = Some(reason);
                        }
                    });
                    refused = Some((cert, key));
                }
                Ok(pair) => {
                    refused = None;
                    if let Err(e) = self.apply_pair(&pair).await {
                        tracing::warn!(error = %e, "the new TLS pair is valid but could not be applied; retrying");
                        continue;
                    }
                    tracing::info!(subject = %pair.info.subject, serial = %pair.info.serial, not_after = pair.info.not_after, "TLS pair rotated (Postgres reloaded)");
                    self.state.send_modify(|st| {
                        if let Some(t) = st.tls.as_mut() {
                            t.in_force = Some(pair.info.clone());
                            t.rejected = None;
                            t.rotations += 1;
                        }
                    });
                }
            }
        }
    }

    /// Copies a valid pair into PGDATA and reloads Postgres.
    async fn apply_pair(&self, pair: &ValidPair) -> Result<(), String> {
        pg::install_pair(&self.env, &self.params.pgdata, pair)
            .await
            .map_err(|e| e.to_string())?;
        let pid = pg::live_postmaster(&self.env, &self.params.pgdata)
            .await
            .ok_or("no postmaster of this PGDATA runs")?;
        self.env
            .signal(pid, Signal::Hup)
            .map_err(|e| format!("reloading Postgres (SIGHUP to pid {pid}) failed: {e}"))
    }
}
