//! Neon's `-c/--config` file: `{"spec": SPEC or null, "compute_ctl_config":
//! {"jwks": JWKS, "tls": {"key_path": ..., "cert_path": ...} or null}}`,
//! exactly what neon_local writes as `config.json` (Neon's `ComputeConfig`).
//! A null or absent spec means: wait for `POST /configure`. The key set,
//! when it holds keys, turns auth on; the TLS paths turn on Postgres' TLS as
//! `--tls-cert`/`--tls-key` do (the flags win when both are given).

use crate::params::TlsPaths;
use crate::spec::{ComputeSpec, SpecError, ValidationContext};

/// What a config file holds.
#[derive(Debug, Clone)]
pub struct ConfigEnvelope {
    /// The start spec, validated; `None` waits for `/configure`.
    pub spec: Option<ComputeSpec>,
    /// `compute_ctl_config.jwks`, when it holds at least one key.
    pub jwks: Option<serde_json::Value>,
    /// `compute_ctl_config.tls` (Neon's `TlsConfig`): the certificate pair.
    pub tls: Option<TlsPaths>,
}

/// Why a config file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "the config is not JSON ({0}); expected {{\"spec\": SPEC or null, \"compute_ctl_config\": {{\"jwks\": {{\"keys\": [...]}}}}}}"
    )]
    Json(#[source] serde_json::Error),
    #[error(
        "the config is not Neon's envelope: {0}; expected {{\"spec\": SPEC or null, \"compute_ctl_config\": {{\"jwks\": {{\"keys\": [...]}}}}}}"
    )]
    Shape(&'static str),
    #[error("the config's spec is rejected: {0}")]
    Spec(#[source] SpecError),
}

impl ConfigEnvelope {
    /// Reads the envelope from the file's text and validates its spec.
    pub fn parse(text: &str, ctx: &ValidationContext) -> Result<Self, EnvelopeError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(EnvelopeError::Json)?;
        let serde_json::Value::Object(mut o) = value else {
            return Err(EnvelopeError::Shape("it is not a JSON object"));
        };
        let (jwks, tls) = match o.remove("compute_ctl_config") {
            None | Some(serde_json::Value::Null) => (None, None),
            Some(serde_json::Value::Object(mut c)) => {
                let jwks = match c.remove("jwks") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(j) if j.get("keys").is_some_and(|k| k.is_array()) => {
                        Some(j).filter(|j| j["keys"].as_array().is_some_and(|k| !k.is_empty()))
                    }
                    Some(_) => {
                        return Err(EnvelopeError::Shape(
                            "compute_ctl_config.jwks has no \"keys\" array",
                        ));
                    }
                };
                let tls = match c.remove("tls") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(t) => Some(tls_paths(t)?),
                };
                (jwks, tls)
            }
            Some(_) => {
                return Err(EnvelopeError::Shape("compute_ctl_config is not an object"));
            }
        };
        let spec = match o.remove("spec") {
            None | Some(serde_json::Value::Null) => None,
            Some(s) => Some(
                ComputeSpec::parse_and_validate(&s.to_string(), ctx)
                    .map_err(EnvelopeError::Spec)?,
            ),
        };
        Ok(Self { spec, jwks, tls })
    }
}

/// Neon's `TlsConfig`: two non-empty path strings.
fn tls_paths(value: serde_json::Value) -> Result<TlsPaths, EnvelopeError> {
    const SHAPE: &str = "compute_ctl_config.tls needs \"key_path\" and \"cert_path\", each a non-empty path string (or null for no TLS)";
    let paths: TlsPaths = serde_json::from_value(value).map_err(|_| EnvelopeError::Shape(SHAPE))?;
    if paths.key_path.as_os_str().is_empty() || paths.cert_path.as_os_str().is_empty() {
        return Err(EnvelopeError::Shape(SHAPE));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}"#;

    fn parse(text: &str) -> Result<ConfigEnvelope, EnvelopeError> {
        ConfigEnvelope::parse(text, &ValidationContext::default())
    }

    #[test]
    fn neon_locals_envelope_gives_the_spec_and_the_key_set() {
        let e = parse(&format!(
            r#"{{"spec": {SPEC}, "compute_ctl_config": {{"jwks": {{"keys": [{{"kty": "OKP", "crv": "Ed25519", "x": "AA"}}]}}, "tls": null}}}}"#
        ))
        .unwrap();
        assert!(e.spec.is_some());
        assert!(e.tls.is_none());
        assert_eq!(e.jwks.unwrap()["keys"][0]["kty"], "OKP");
    }

    #[test]
    fn neons_tls_field_gives_the_certificate_pair() {
        let e = parse(
            r#"{"spec": null, "compute_ctl_config": {"jwks": {"keys": []}, "tls": {"key_path": "/etc/tls/tls.key", "cert_path": "/etc/tls/tls.crt"}}}"#,
        )
        .unwrap();
        assert_eq!(
            e.tls,
            Some(TlsPaths {
                cert_path: "/etc/tls/tls.crt".into(),
                key_path: "/etc/tls/tls.key".into(),
            })
        );
        assert!(e.jwks.is_none());
        let e = parse(r#"{"compute_ctl_config": {"jwks": {"keys": []}}}"#).unwrap();
        assert!(e.tls.is_none(), "absent tls is no TLS");
    }

    #[test]
    fn a_tls_field_without_both_paths_is_refused() {
        for tls in [
            r#"{"key_path": "/k"}"#,
            r#"{"cert_path": "/c"}"#,
            r#"{"key_path": "", "cert_path": "/c"}"#,
            r#"{"key_path": 1, "cert_path": "/c"}"#,
            r#""/etc/tls""#,
        ] {
            let text =
                format!(r#"{{"compute_ctl_config": {{"jwks": {{"keys": []}}, "tls": {tls}}}}}"#);
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.contains("compute_ctl_config.tls needs \"key_path\" and \"cert_path\""),
                "{tls}: {err}"
            );
        }
    }

    #[test]
    fn a_null_spec_waits_and_an_empty_key_set_is_no_key_set() {
        let e = parse(r#"{"spec": null, "compute_ctl_config": {"jwks": {"keys": []}}}"#).unwrap();
        assert!(e.spec.is_none());
        assert!(e.jwks.is_none());
        let e = parse(r#"{"spec": null}"#).unwrap();
        assert!(e.spec.is_none() && e.jwks.is_none());
    }

    #[test]
    fn bad_envelopes_say_what_is_expected() {
        for (text, want) in [
            ("[]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"compute_ctl_config": 1}"#, "not an object"),
            (
                r#"{"compute_ctl_config": {"jwks": {}}}"#,
                "no \"keys\" array",
            ),
            (r#"{"spec": {"cluster": 1}}"#, "spec is rejected"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
