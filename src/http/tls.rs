//! The external HTTP API over TLS (`--http-tls`), with the certificate pair
//! Postgres serves (`--tls-cert`/`--tls-key` or `compute_ctl_config.tls`).
//!
//! rustls picks the certificate per handshake through [`InForce`] (a
//! `ResolvesServerCert`), so a rotation needs no new listener: every new
//! connection gets the pair in force when its handshake starts, and
//! connections already open keep theirs. [`HttpTls::watch`] polls the two
//! files every [`TLS_POLL`] on the Env clock, as the Postgres watcher does
//! (`compute/tls.rs`), and puts a new pair in force only once
//! [`crate::tls::validate`] accepts it; a bad pair is refused (logged once
//! per content) and the pair in force stays. At start the pair must be
//! valid, or the node does not start. The internal listener stays plain
//! (loopback only).

use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::compute::TLS_POLL;
use crate::env::Env;
use crate::params::TlsPaths;
use crate::tls::{CertInfo, TlsError, ValidPair, validate};

/// Why the HTTP API cannot serve TLS.
#[derive(Debug, thiserror::Error)]
pub enum HttpTlsError {
    #[error(
        "--http-tls cannot read {path}: {source}; check the path and that compute_ctl may read it"
    )]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--http-tls cannot use {cert} / {key}: {source}")]
    Invalid {
        cert: String,
        key: String,
        #[source]
        source: TlsError,
    },
    #[error("--http-tls: the TLS configuration cannot be built: {0}")]
    Config(#[source] rustls::Error),
}

/// The certificate handed to each new handshake.
#[derive(Debug)]
struct InForce(RwLock<Arc<CertifiedKey>>);

impl InForce {
    fn get(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for InForce {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// What a look at the files found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The files hold the pair in force (or the pair refused last time).
    Unchanged,
    /// A new valid pair is in force for new connections.
    Rotated(CertInfo),
    /// A new pair was refused; the pair in force stays.
    Refused(String),
}

/// The external listener's TLS: the acceptor and the pair in force.
#[derive(Clone)]
pub struct HttpTls {
    acceptor: TlsAcceptor,
    in_force: Arc<InForce>,
    paths: TlsPaths,
    /// The files' bytes in force, and the last refused ones.
    seen: Arc<Mutex<Seen>>,
}

#[derive(Default)]
struct Seen {
    in_force: (Vec<u8>, Vec<u8>),
    refused: Option<(Vec<u8>, Vec<u8>)>,
}

impl HttpTls {
    /// Reads and validates the pair of `paths`; fails when it is unusable.
    pub async fn load<E: Env>(env: &E, paths: TlsPaths) -> Result<Self, HttpTlsError> {
        let (cert, key) = read(env, &paths).await?;
        let invalid = |source| HttpTlsError::Invalid {
            cert: paths.cert_path.display().to_string(),
            key: paths.key_path.display().to_string(),
            source,
        };
        let pair = validate(&cert, &key, env.wall_clock()).map_err(invalid)?;
        let served = Arc::new(pair.certified_key().map_err(invalid)?);
        let in_force = Arc::new(InForce(RwLock::new(served)));
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(HttpTlsError::Config)?
        .with_no_client_auth()
        .with_cert_resolver(in_force.clone());
        // The server speaks HTTP/1.1 only (`serve.rs`).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tracing::info!(subject = %pair.info.subject, serial = %pair.info.serial, not_after = pair.info.not_after, "the HTTP API serves TLS (--http-tls)");
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            in_force,
            paths,
            seen: Arc::new(Mutex::new(Seen {
                in_force: (cert, key),
                refused: None,
            })),
        })
    }

    /// The acceptor new connections are handed to.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Polls the files for ever (the caller aborts the task): a valid new
    /// pair is served to new connections, a bad one refused.
    pub async fn watch<E: Env>(self, env: E) {
        loop {
            env.sleep(TLS_POLL).await;
            // Mid-rotation or gone: looked at again next poll.
            if let Ok((cert, key)) = read(&env, &self.paths).await {
                self.consider(cert, key, env.wall_clock());
            }
        }
    }

    /// Puts the pair `cert`/`key` in force if it is new and valid at `now`.
    pub fn consider(&self, cert: Vec<u8>, key: Vec<u8>, now: SystemTime) -> Rotation {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (cert, key);
        if seen.in_force == pair || seen.refused.as_ref() == Some(&pair) {
            return Rotation::Unchanged;
        }
        let checked = validate(&pair.0, &pair.1, now)
            .and_then(|v: ValidPair| v.certified_key().map(|k| (v.info, k)));
        match checked {
            Ok((info, served)) => {
                self.in_force.set(Arc::new(served));
                seen.in_force = pair;
                seen.refused = None;
                tracing::info!(subject = %info.subject, serial = %info.serial, not_after = info.not_after, "HTTP API TLS pair rotated (new connections get it)");
                Rotation::Rotated(info)
            }
            Err(e) => {
                let reason = format!(
                    "the new TLS pair {} / {} was refused for the HTTP API, the pair in force stays: {e}",
                    self.paths.cert_path.display(),
                    self.paths.key_path.display()
                );
                tracing::warn!("{reason}");
                seen.refused = Some(pair);
                Rotation::Refused(reason)
            }
        }
    }

    /// The certificate chain new connections are served (DER).
    pub fn served_chain(&self) -> Vec<Vec<u8>> {
        self.in_force
            .get()
            .cert
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect()
    }
}

async fn read<E: Env>(env: &E, paths: &TlsPaths) -> Result<(Vec<u8>, Vec<u8>), HttpTlsError> {
    let one = async |p: &std::path::Path| {
        env.read(p).await.map_err(|source| HttpTlsError::Read {
            path: p.display().to_string(),
            source,
        })
    };
    Ok((one(&paths.cert_path).await?, one(&paths.key_path).await?))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::env::TokioEnv;

    fn pair(cn: &str) -> (Vec<u8>, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem().into_bytes(), key.serialize_pem().into_bytes())
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn leaf_der(cert_pem: &[u8]) -> Vec<u8> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(cert_pem)
            .unwrap()
            .as_ref()
            .to_vec()
    }

    #[tokio::test]
    async fn a_valid_new_pair_is_served_and_a_bad_one_refused_once() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths {
            cert_path: dir.path().join("tls.crt"),
            key_path: dir.path().join("tls.key"),
        };
        let (c1, k1) = pair("one");
        std::fs::write(&paths.cert_path, &c1).unwrap();
        std::fs::write(&paths.key_path, &k1).unwrap();
        let tls = HttpTls::load(&TokioEnv::new(), paths).await.unwrap();
        assert_eq!(tls.served_chain(), vec![leaf_der(&c1)]);
        assert_eq!(
            tls.consider(c1.clone(), k1.clone(), now()),
            Rotation::Unchanged
        );

        // The new certificate with the old key: refused, the old one stays,
        // and the same bad content is not reported again.
        let (c2, k2) = pair("two");
        let Rotation::Refused(why) = tls.consider(c2.clone(), k1.clone(), now()) else {
            panic!("a mismatched pair was not refused");
        };
        assert!(why.contains("does not belong"), "{why}");
        assert_eq!(tls.served_chain(), vec![leaf_der(&c1)]);
        assert_eq!(
            tls.consider(c2.clone(), k1.clone(), now()),
            Rotation::Unchanged
        );

        // Its key arrives: served to new connections.
        let Rotation::Rotated(info) = tls.consider(c2.clone(), k2.clone(), now()) else {
            panic!("a valid pair was not rotated in");
        };
        assert!(info.subject.contains("two"), "{info:?}");
        assert_eq!(tls.served_chain(), vec![leaf_der(&c2)]);

        // Expired at `now`: refused.
        let late = UNIX_EPOCH + Duration::from_secs(5_000_000_000);
        let (c3, k3) = pair("three");
        assert!(matches!(
            tls.consider(c3, k3, late),
            Rotation::Refused(why) if why.contains("expired")
        ));
        assert_eq!(tls.served_chain(), vec![leaf_der(&c2)]);
    }

    #[tokio::test]
    async fn an_unusable_pair_at_start_says_which_files_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let paths = TlsPaths {
            cert_path: dir.path().join("tls.crt"),
            key_path: dir.path().join("tls.key"),
        };
        let err = HttpTls::load(&TokioEnv::new(), paths.clone())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("cannot read") && err.contains("tls.crt"),
            "{err}"
        );
        let (c1, _) = pair("one");
        let (_, k2) = pair("two");
        std::fs::write(&paths.cert_path, &c1).unwrap();
        std::fs::write(&paths.key_path, &k2).unwrap();
        let err = HttpTls::load(&TokioEnv::new(), paths)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("does not belong"), "{err}");
    }
}
