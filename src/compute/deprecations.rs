//! What the running major deprecates in a spec, said once per role in
//! `/status` instead of a warning per statement in Postgres' log.
//!
//! PostgreSQL 18 deprecates md5 passwords: every `CREATE ROLE`/`ALTER ROLE`
//! that stores one answers `WARNING: setting an MD5-encrypted password`
//! (`md5_password_warnings`), and Neon's specs carry md5 hashes.

use crate::catalog::stored_password;
use crate::spec::ComputeSpec;

/// The first major that warns on md5 passwords.
pub const MD5_DEPRECATED_SINCE: u32 = 18;

/// One line per role of `spec` whose stored password `major` deprecates.
pub fn deprecations(spec: &ComputeSpec, major: Option<u32>) -> Vec<String> {
    let Some(major) = major.filter(|m| *m >= MD5_DEPRECATED_SINCE) else {
        return Vec::new();
    };
    spec.cluster
        .roles
        .iter()
        .filter(|r| {
            stored_password(r.encrypted_password.as_deref())
                .is_some_and(|p| p.expose().starts_with("md5"))
        })
        .map(|r| {
            format!(
                "role {:?}: an md5 password, deprecated in PostgreSQL {major} (it warns \"setting an MD5-encrypted password\" each time one is set, and a later major removes md5); give the role a SCRAM-SHA-256 verifier",
                r.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ComputeSpec {
        serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "cluster": {"roles": [
                {"name": "alice", "encrypted_password": "91c76e9f0e4ed85662e7ded2446617b4"},
                {"name": "bob", "encrypted_password": "SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2VydmVy"},
                {"name": "carol", "encrypted_password": null}
            ]}
        }))
        .expect("spec")
    }

    #[test]
    fn md5_passwords_are_reported_once_per_role_from_18_on() {
        assert!(deprecations(&spec(), Some(17)).is_empty());
        assert!(deprecations(&spec(), None).is_empty());
        let d = deprecations(&spec(), Some(18));
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].starts_with("role \"alice\": an md5 password"), "{d:?}");
    }
}
