//! Specs the control plane sends: generated from the seed, with the shape
//! of a real Neon spec (md5 password hashes, databases owned by roles,
//! settings, a pageserver connection string), and optionally role options
//! and per-database extensions (see [`SpecShape::decorate`]).

use std::collections::BTreeMap;

use compute_ctl::spec::ComputeSpec;
use rand::{Rng, SeedableRng, rngs::SmallRng};
use serde::Serialize;
use serde_json::Value;

/// What a spec holds; turned into a `ComputeSpec` by [`SpecShape::spec`].
#[derive(Debug, Clone, PartialEq)]
pub struct SpecShape {
    /// (name, md5 hex or none)
    pub roles: Vec<(String, Option<String>)>,
    /// (name, owner)
    pub databases: Vec<(String, String)>,
    pub pageserver: u32,
    pub skip_catalog: bool,
    pub operation: u64,
    pub deltas: Vec<Value>,
    /// `mode: "Replica"` (a hot standby of its storage).
    pub replica: bool,
    /// Which storage host: 0 = `storage`, 1 = `storage2`.
    pub storage: u8,
    /// `safekeeper_connstrings` (`host:port`).
    pub safekeepers: Vec<String>,
    /// No `pageserver_connstring`: a primary with safekeepers takes its
    /// base backup from the most advanced safekeeper.
    pub no_pageserver: bool,
    /// `pageserver_connstring` naming this server instead of a storage
    /// host (a replica that follows a safekeeper).
    pub upstream: Option<String>,
    /// Neon's `safekeepers_generation` (none: not sent).
    pub safekeepers_generation: Option<u32>,
    /// Role options by role name: (option, value).
    pub role_options: BTreeMap<String, Vec<(String, String)>>,
    /// Extensions by database name: (extension, schema).
    pub extensions: BTreeMap<String, Vec<(String, Option<String>)>>,
}

/// Role options the generator picks from (name, value).
const ROLE_OPTIONS: &[(&str, &str)] = &[
    ("createdb", "true"),
    ("createrole", "true"),
    ("inherit", "false"),
    ("connection_limit", "5"),
    ("valid_until", "2035-01-01T00:00:00Z"),
    ("replication", "true"),
];

/// Extensions the generator picks from.
const EXTENSIONS: &[&str] = &["hstore", "citext", "pgcrypto"];

fn md5ish(rng: &mut SmallRng) -> String {
    (0..32)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

/// Names that exercise quoting: mixed case, quotes, spaces.
fn role_name(i: usize) -> String {
    match i % 5 {
        0 => format!("user{i}"),
        1 => format!("App User {i}"),
        2 => format!("o'brien{i}"),
        3 => format!("Quoted\"{i}"),
        _ => format!("MixedCase{i}"),
    }
}

impl SpecShape {
    /// A cluster of `roles` roles and `dbs` databases.
    pub fn generate(seed: u64, roles: usize, dbs: usize) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed ^ 0x5EC);
        let roles: Vec<_> = (0..roles)
            .map(|i| {
                let pw = (i % 4 != 3).then(|| md5ish(&mut rng));
                (role_name(i), pw)
            })
            .collect();
        let databases = (0..dbs)
            .map(|i| {
                let owner = if roles.is_empty() {
                    crate::names::SUPERUSER.to_string()
                } else {
                    roles[i % roles.len()].0.clone()
                };
                (format!("db{i}"), owner)
            })
            .collect();
        Self {
            roles,
            databases,
            pageserver: 1,
            skip_catalog: false,
            operation: 1,
            deltas: Vec::new(),
            replica: false,
            storage: 0,
            safekeepers: Vec::new(),
            no_pageserver: false,
            upstream: None,
            safekeepers_generation: None,
            role_options: BTreeMap::new(),
            extensions: BTreeMap::new(),
        }
    }

    /// Gives some roles options (and memberships in the first role) and
    /// some databases extensions, in a schema or not; `round` varies them,
    /// so the next round changes attributes and moves extensions.
    pub fn decorate(&mut self, rng: &mut impl Rng, round: usize) {
        self.role_options.clear();
        self.extensions.clear();
        let first = self.roles.first().map(|r| r.0.clone());
        for (i, (name, _)) in self.roles.iter().enumerate() {
            if !rng.random_bool(0.6) {
                continue;
            }
            let mut opts: Vec<(String, String)> = (0..rng.random_range(1..=2))
                .map(|k| {
                    let (n, v) = ROLE_OPTIONS[(i + k + round) % ROLE_OPTIONS.len()];
                    (n.to_string(), v.to_string())
                })
                .collect();
            opts.dedup_by(|a, b| a.0 == b.0);
            if i > 0 && rng.random_bool(0.5) {
                if let Some(f) = &first {
                    opts.push(("in_role".into(), f.clone()));
                }
            }
            self.role_options.insert(name.clone(), opts);
        }
        for (name, _) in &self.databases {
            if !rng.random_bool(0.6) {
                continue;
            }
            let exts = (0..rng.random_range(1..=2))
                .map(|k| {
                    let schema = ((k + round) % 2 == 1).then(|| "public".to_string());
                    let schema = if round % 2 == 1 && k == 0 {
                        Some("extensions".to_string())
                    } else {
                        schema
                    };
                    (
                        EXTENSIONS[(k + round) % EXTENSIONS.len()].to_string(),
                        schema,
                    )
                })
                .collect();
            self.extensions.insert(name.clone(), exts);
        }
    }

    /// The pageserver connection string of this spec (storage "location").
    pub fn pageserver_connstring(&self) -> String {
        if let Some(u) = &self.upstream {
            return u.clone();
        }
        format!(
            "host={} port={} options=-cshard={}",
            if self.storage == 1 {
                crate::names::STORAGE2
            } else {
                crate::names::STORAGE
            },
            crate::names::STORAGE_PORT,
            self.pageserver
        )
    }

    pub fn operation_uuid(&self) -> String {
        crate::names::operation_uuid(self.operation)
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self.wire()).expect("a spec shape serializes")
    }

    /// The spec as the control plane's JSON, borrowed from the shape. Field
    /// order is alphabetical (as a `serde_json::Map` orders keys), so the
    /// bytes are those `json!` would give, without building a `Value` tree
    /// of hundreds of roles for every request.
    fn wire(&self) -> WireSpec<'_> {
        WireSpec {
            cluster: WireCluster {
                cluster_id: "sim",
                databases: self
                    .databases
                    .iter()
                    .map(|(name, owner)| WireDb {
                        extensions: self
                            .extensions
                            .get(name)
                            .map(|e| {
                                e.iter()
                                    .map(|(name, schema)| WireExt {
                                        name,
                                        schema: schema.as_deref(),
                                    })
                                    .collect()
                            })
                            .unwrap_or_default(),
                        name,
                        options: (),
                        owner,
                    })
                    .collect(),
                name: "sim",
                roles: self
                    .roles
                    .iter()
                    .map(|(name, pw)| WireRole {
                        encrypted_password: pw.as_deref(),
                        name,
                        options: self.role_options.get(name).map(|o| {
                            o.iter()
                                .map(|(name, value)| WireOption {
                                    name,
                                    value,
                                    vartype: "string",
                                })
                                .collect()
                        }),
                    })
                    .collect(),
                settings: SETTINGS,
            },
            delta_operations: &self.deltas,
            format_version: 1.0,
            mode: if self.replica { "Replica" } else { "Primary" },
            operation_uuid: self.operation_uuid(),
            pageserver_connstring: (!self.no_pageserver).then(|| self.pageserver_connstring()),
            safekeeper_connstrings: &self.safekeepers,
            safekeepers_generation: self.safekeepers_generation,
            skip_pg_catalog_updates: self.skip_catalog,
            tenant_id: "3aa8fcc61f6d357410b7de754b1d9001",
            timeline_id: "de200bd42b49cc1814412c7e592dd6e9",
        }
    }

    pub fn spec(&self) -> ComputeSpec {
        serde_json::from_value(self.json()).expect("generated specs are valid JSON specs")
    }

    /// The request body of `POST /configure`.
    pub fn configure_body(&self) -> String {
        #[derive(Serialize)]
        struct Body<'a> {
            spec: WireSpec<'a>,
        }
        serde_json::to_string(&Body { spec: self.wire() }).expect("a spec shape serializes")
    }
}

/// The spec's settings (name, value, vartype), the same in every spec.
const SETTINGS: &[WireSetting] = &[
    WireSetting {
        name: "max_connections",
        value: "100",
        vartype: "integer",
    },
    WireSetting {
        name: "shared_buffers",
        value: "128MB",
        vartype: "string",
    },
    WireSetting {
        name: "log_connections",
        value: "on",
        vartype: "bool",
    },
];

// The wire form of a spec; fields in alphabetical order (see `SpecShape::wire`).
#[derive(Serialize)]
struct WireSpec<'a> {
    cluster: WireCluster<'a>,
    delta_operations: &'a [Value],
    format_version: f64,
    mode: &'static str,
    operation_uuid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pageserver_connstring: Option<String>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    safekeeper_connstrings: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    safekeepers_generation: Option<u32>,
    skip_pg_catalog_updates: bool,
    tenant_id: &'static str,
    timeline_id: &'static str,
}

#[derive(Serialize)]
struct WireCluster<'a> {
    cluster_id: &'static str,
    databases: Vec<WireDb<'a>>,
    name: &'static str,
    roles: Vec<WireRole<'a>>,
    settings: &'static [WireSetting],
}

#[derive(Serialize)]
struct WireRole<'a> {
    encrypted_password: Option<&'a str>,
    name: &'a str,
    options: Option<Vec<WireOption<'a>>>,
}

#[derive(Serialize)]
struct WireOption<'a> {
    name: &'a str,
    value: &'a str,
    vartype: &'static str,
}

#[derive(Serialize)]
struct WireDb<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    extensions: Vec<WireExt<'a>>,
    name: &'a str,
    options: (),
    owner: &'a str,
}

#[derive(Serialize)]
struct WireExt<'a> {
    name: &'a str,
    schema: Option<&'a str>,
}

#[derive(Serialize)]
struct WireSetting {
    name: &'static str,
    value: &'static str,
    vartype: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed request body carries the same spec as the JSON value, in
    /// the same key order (so the bytes on the wire are unchanged).
    #[test]
    fn the_configure_body_is_the_spec_json_with_sorted_keys() {
        let mut shape = SpecShape::generate(7, 12, 3);
        shape
            .deltas
            .push(serde_json::json!({"action": "delete_db", "name": "db1"}));
        shape.skip_catalog = true;
        let body = shape.configure_body();
        let expected = serde_json::json!({"spec": shape.json()}).to_string();
        assert_eq!(body, expected);
        let parsed: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(
            parsed["spec"]["cluster"]["roles"][3]["encrypted_password"],
            Value::Null
        );
        assert_eq!(parsed["spec"]["cluster"]["roles"][1]["name"], "App User 1");
        assert_eq!(parsed["spec"]["skip_pg_catalog_updates"], true);
        assert!(shape.spec().skip_pg_catalog_updates);
    }

    /// Decorated specs carry valid role options and extensions, and the
    /// next round moves what the first one created.
    #[test]
    fn decorated_specs_are_valid_and_rounds_differ() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut shape = SpecShape::generate(3, 10, 3);
        shape.decorate(&mut rng, 0);
        let first = shape.spec();
        assert!(first.cluster.roles.iter().any(|r| r.options.is_some()));
        assert!(
            first
                .cluster
                .databases
                .iter()
                .any(|d| !d.extensions.is_empty())
        );
        assert!(
            compute_ctl::spec::validate(&first, &Default::default()).is_empty(),
            "{:?}",
            compute_ctl::spec::validate(&first, &Default::default())
        );
        assert_eq!(
            shape.configure_body(),
            serde_json::json!({"spec": shape.json()}).to_string()
        );
        shape.decorate(&mut rng, 1);
        assert_ne!(shape.spec(), first);
    }
}
