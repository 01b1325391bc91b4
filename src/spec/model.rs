//! Serde types of the compute spec (Neon-compatible field names).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::catalog_list::{CatalogList, Memo, Memoized};

/// The whole spec a control plane sends.
///
/// Fields we do not use are not dropped silently: their JSON paths are kept
/// in [`ignored_fields`](Self::ignored_fields) (shown by `/status`, logged
/// when the spec is accepted). Neon's newer storage address,
/// `pageserver_connection_info`, is adopted: without a
/// `pageserver_connstring`, its (single) shard's libpq URL becomes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self")]
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
    /// Absent or null: primary (Neon sends `"mode": null` too).
    #[serde(default, deserialize_with = "null_is_default")]
    pub mode: ComputeMode,
    /// Where storage is; here a libpq connection string of a base-backup source.
    #[serde(default)]
    pub pageserver_connstring: Option<String>,
    /// Neon's newer form of the storage address (shards of pageservers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pageserver_connection_info: Option<PageserverConnectionInfo>,
    #[serde(default)]
    pub safekeeper_connstrings: Vec<String>,
    /// Neon's number of the safekeeper set's configuration: a set change
    /// comes with a higher one, and an older one is refused (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safekeepers_generation: Option<u32>,
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
    /// JSON paths of the fields of the spec this compute does not use
    /// (Neon-only features), in document order (those inside the role and
    /// database lists after the rest: the lists are decoded on their own).
    #[serde(skip)]
    pub ignored_fields: Vec<String>,
}

impl Serialize for ComputeSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ComputeSpec::serialize(self, s)
    }
}

impl<'de> Deserialize<'de> for ComputeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut ignored = Vec::new();
        // serde_ignored writes `?` for "inside an Option"; a JSON path has no such step.
        let mut record = |path: serde_ignored::Path<'_>| {
            ignored.push(format!("$.{path}").replace(".?", ""));
        };
        let wrapped = serde_ignored::Deserializer::new(d, &mut record);
        let mut spec = ComputeSpec::deserialize(wrapped)?;
        // The lists were decoded on their own: what they did not use comes after.
        ignored.extend(spec.cluster.roles.unused_fields("$.cluster.roles"));
        ignored.extend(spec.cluster.databases.unused_fields("$.cluster.databases"));
        spec.ignored_fields = ignored;
        if spec.pageserver_connstring.is_none() {
            spec.pageserver_connstring = spec
                .pageserver_connection_info
                .as_ref()
                .and_then(PageserverConnectionInfo::libpq_url)
                .map(str::to_string);
        }
        Ok(spec)
    }
}

/// Neon's `pageserver_connection_info`: the pageservers of each shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageserverConnectionInfo {
    #[serde(default)]
    pub shard_count: Option<u32>,
    #[serde(default)]
    pub stripe_size: Option<u32>,
    /// By shard index (`"0000"` for an unsharded tenant).
    #[serde(default)]
    pub shards: std::collections::BTreeMap<String, PageserverShardInfo>,
    #[serde(default)]
    pub prefer_protocol: Option<String>,
}

/// One shard's pageservers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageserverShardInfo {
    #[serde(default)]
    pub pageservers: Vec<PageserverShardConnectionInfo>,
}

/// How to reach one pageserver of a shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageserverShardConnectionInfo {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub libpq_url: Option<String>,
    #[serde(default)]
    pub grpc_url: Option<String>,
}

impl PageserverConnectionInfo {
    /// The libpq URL of the first shard's first pageserver that has one.
    pub fn libpq_url(&self) -> Option<&str> {
        self.shards
            .values()
            .next()?
            .pageservers
            .iter()
            .find_map(|p| p.libpq_url.as_deref())
    }

    /// How many shards it names (`shard_count`, 0 meaning unsharded).
    pub fn shards(&self) -> usize {
        let counted = self.shard_count.unwrap_or(0) as usize;
        counted.max(self.shards.len())
    }
}

/// `T::default()` for a null, as for an absent field.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
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
    pub roles: CatalogList<Role>,
    #[serde(default)]
    pub databases: CatalogList<Database>,
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

impl Memoized for Role {
    fn memo() -> &'static Mutex<Option<Memo<Self>>> {
        static MEMO: Mutex<Option<Memo<Role>>> = Mutex::new(None);
        &MEMO
    }
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

impl Memoized for Database {
    fn memo() -> &'static Mutex<Option<Memo<Self>>> {
        static MEMO: Mutex<Option<Memo<Database>>> = Mutex::new(None);
        &MEMO
    }
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
