//! Serde types of the compute spec (Neon-compatible field names).

use serde::{Deserialize, Serialize};

/// The whole spec a control plane sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeSpec {
    /// Only `1.0` is supported.
    pub format_version: f32,
    /// Identifies one configure request; a repeat of the last applied one is a no-op.
    #[serde(default)]
    pub operation_uuid: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    pub cluster: Cluster,
    /// Renames and deletions, applied before the roles and databases of `cluster`.
    #[serde(default)]
    pub delta_operations: Option<Vec<DeltaOp>>,
    /// When true, no catalog work at all: config is written and Postgres reloaded.
    #[serde(default)]
    pub skip_pg_catalog_updates: bool,
    #[serde(default)]
    pub mode: ComputeMode,
    /// Where storage is; here a libpq connection string of a base-backup source.
    #[serde(default)]
    pub pageserver_connstring: Option<String>,
    #[serde(default)]
    pub safekeeper_connstrings: Vec<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub timeline_id: Option<String>,
    #[serde(default)]
    pub features: Vec<serde_json::Value>,
    #[serde(default)]
    pub suspend_timeout_seconds: Option<i64>,
    /// How many databases per-database catalog phases work on at once.
    #[serde(default)]
    pub reconfigure_concurrency: Option<usize>,
}

/// Primary, replica or static (read-only at an LSN) compute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeMode {
    #[default]
    Primary,
    Replica,
    /// A read-only compute pinned at an LSN.
    Static(String),
}

/// Roles, databases and settings of the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    #[serde(default)]
    pub cluster_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    #[serde(default)]
    pub databases: Vec<Database>,
    /// Postgres settings, written into the managed block of `postgresql.conf`.
    #[serde(default)]
    pub settings: Option<Vec<GenericOption>>,
    /// Verbatim text that starts `postgresql.conf`.
    #[serde(default)]
    pub postgresql_conf: Option<String>,
}

/// A role (user) the compute must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// md5 hex (without the `md5` prefix), a `SCRAM-SHA-256$...` verifier, or null.
    #[serde(default)]
    pub encrypted_password: Option<String>,
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
}

/// A database the compute must have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Database {
    pub name: String,
    pub owner: String,
    /// Creation options (`LC_COLLATE`, `LC_CTYPE`, `TEMPLATE`, `ENCODING`, ...).
    #[serde(default)]
    pub options: Option<Vec<GenericOption>>,
    /// Extensions to create in this database (our addition; absent in Neon).
    #[serde(default)]
    pub extensions: Vec<Extension>,
    /// Neon's `restrict_conn`: true keeps the database closed to new
    /// connections (`ALLOW_CONNECTIONS false`); absent leaves it as it is.
    #[serde(default)]
    pub restrict_conn: Option<bool>,
}

/// An extension to `CREATE EXTENSION IF NOT EXISTS` in one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    pub name: String,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub version: Option<String>,
}

/// A named value with a type tag, as Neon sends settings and options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenericOption {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    pub vartype: String,
}

/// The vartypes we accept.
pub const VARTYPES: &[&str] = &["bool", "int", "integer", "real", "string", "enum"];

impl GenericOption {
    /// Whether the value must be written as a quoted string.
    pub fn is_string(&self) -> bool {
        self.vartype == "string"
    }
}

/// One rename or delete, applied before the spec's roles and databases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaOp {
    pub action: DeltaAction,
    pub name: String,
    #[serde(default)]
    pub new_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeltaAction {
    DeleteDb,
    RenameDb,
    DeleteRole,
    RenameRole,
}

impl ComputeSpec {
    /// The settings of the managed block, empty when absent.
    pub fn settings(&self) -> &[GenericOption] {
        self.cluster.settings.as_deref().unwrap_or(&[])
    }

    /// The delta operations, empty when absent.
    pub fn delta_ops(&self) -> &[DeltaOp] {
        self.delta_operations.as_deref().unwrap_or(&[])
    }

    /// The value of a setting of the managed block, if set.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings()
            .iter()
            .rev()
            .find(|s| s.name == name)
            .and_then(|s| s.value.as_deref())
    }
}
