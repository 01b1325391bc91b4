//! TLS certificate pairs: what makes a pair usable, checked before it is put
//! in force. A pair is a PEM certificate chain (leaf first) and a PEM
//! private key; it is valid when both parse, the key is the leaf's (its
//! public key is the certificate's), and the leaf is within its validity
//! period on the Env wall clock. Pure: the caller reads the files.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;

/// Why a certificate pair is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate file holds no PEM certificate ({0}); give a PEM chain, leaf first")]
    NoCertificate(String),
    #[error("the key file holds no PEM private key ({0}); give a PKCS#8, PKCS#1 or SEC1 PEM key")]
    NoKey(String),
    #[error("the certificate does not parse as X.509: {0}")]
    Certificate(String),
    #[error("the private key cannot be used: {0}")]
    Key(String),
    #[error(
        "the private key does not belong to the certificate (their public keys differ); rotate both files together"
    )]
    Mismatch,
    #[error("the certificate expired at {not_after} (unix time); renew it")]
    Expired { not_after: i64 },
    #[error(
        "the certificate is not valid before {not_before} (unix time); check the issuer's clock"
    )]
    NotYetValid { not_before: i64 },
}

/// A pair that passed [`validate`], with what `/status` shows of it.
#[derive(Debug, Clone)]
pub struct ValidPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub info: CertInfo,
}

impl ValidPair {
    /// The pair as rustls serves it (ring's signing key), for the HTTP API
    /// over TLS (`--http-tls`). Cannot fail for a pair [`validate`] made
    /// but says why if it does.
    pub fn certified_key(&self) -> Result<CertifiedKey, TlsError> {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::NoCertificate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem)
            .map_err(|e| TlsError::NoKey(e.to_string()))?;
        let signing = rustls::crypto::ring::sign::any_supported_type(&key)
            .map_err(|e| TlsError::Key(e.to_string()))?;
        Ok(CertifiedKey::new(certs, signing))
    }
}

/// What is shown of a certificate in force: never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// The leaf's subject, e.g. `CN=compute-1`.
    pub subject: String,
    /// Its serial number, hex.
    pub serial: String,
    /// End of its validity, unix seconds.
    pub not_after: i64,
}

/// Checks a pair at wall-clock time `now`.
pub fn validate(cert_pem: &[u8], key_pem: &[u8], now: SystemTime) -> Result<ValidPair, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::NoCertificate(e.to_string()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| TlsError::NoCertificate("no CERTIFICATE block".into()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::NoKey(e.to_string()))?;
    let (_, x509) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let validity = x509.validity();
    let now_secs = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now_secs < not_before {
        return Err(TlsError::NotYetValid { not_before });
    }
    if now_secs > not_after {
        return Err(TlsError::Expired { not_after });
    }
    let info = CertInfo {
        subject: x509.subject().to_string(),
        serial: x509.raw_serial_as_string().replace(':', ""),
        not_after,
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| TlsError::Key(e.to_string()))?;
    CertifiedKey::new(certs, signing)
        .keys_match()
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch,
            other => TlsError::Key(other.to_string()),
        })?;
    Ok(ValidPair {
        cert_pem: cert_pem.to_vec(),
        key_pem: key_pem.to_vec(),
        info,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(days_from: i64, days_to: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let day = 86_400;
        let base = 1_800_000_000; // 2027-01-15
        params.not_before =
            rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((base + days_from * day) as u64);
        params.not_after =
            rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs((base + days_to * day) as u64);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn a_matching_pair_in_its_validity_is_accepted() {
        let (c, k) = pair(-1, 30);
        let v = validate(c.as_bytes(), k.as_bytes(), at(1_800_000_000)).unwrap();
        assert!(
            v.info.subject.is_empty() || v.info.subject.contains("CN"),
            "{:?}",
            v.info
        );
        assert_eq!(v.info.not_after, 1_800_000_000 + 30 * 86_400);
        let served = v.certified_key().unwrap();
        assert_eq!(served.cert.len(), 1);
        assert!(served.keys_match().is_ok());
    }

    #[test]
    fn expired_not_yet_valid_mismatched_and_garbage_are_refused_with_the_reason() {
        let (c, k) = pair(-10, -1);
        assert!(matches!(
            validate(c.as_bytes(), k.as_bytes(), at(1_800_000_000)),
            Err(TlsError::Expired { .. })
        ));
        let (c, k) = pair(1, 10);
        assert!(matches!(
            validate(c.as_bytes(), k.as_bytes(), at(1_800_000_000)),
            Err(TlsError::NotYetValid { .. })
        ));
        let (c, _) = pair(-1, 10);
        let (_, other_key) = pair(-1, 10);
        let e = validate(c.as_bytes(), other_key.as_bytes(), at(1_800_000_000)).unwrap_err();
        assert_eq!(e, TlsError::Mismatch);
        assert!(e.to_string().contains("does not belong"));
        assert!(matches!(
            validate(b"not a pem", other_key.as_bytes(), at(1_800_000_000)),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(
            validate(c.as_bytes(), b"", at(1_800_000_000)),
            Err(TlsError::NoKey(_))
        ));
    }
}
