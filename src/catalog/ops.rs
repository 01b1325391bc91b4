//! The typed catalog operations a plan is made of.
//!
//! Each [`Op`] is one SQL statement (see `render.rs`, which also gives it
//! its `Display`). Ops that must run inside a particular database
//! (`REASSIGN OWNED`, `CREATE EXTENSION`, ...) name it; all others run in
//! the supervisor's own database. Password
//! hashes are wrapped in [`Secret`], whose `Debug` never shows them.

use serde::{Deserialize, Serialize};

pub use crate::spec::role_options::RoleAttr;

/// A password hash as Postgres stores it (`md5<32 hex>` or a
/// `SCRAM-SHA-256$...` verifier). `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only the renderer and comparisons use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A `CREATE DATABASE` option. Keyword options with a closed set of
/// spellings; string values are rendered as literals, `Template` and
/// `Tablespace` as identifiers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "option", content = "value")]
pub enum DbOption {
    Template(String),
    Encoding(String),
    Locale(String),
    LcCollate(String),
    LcCtype(String),
    IcuLocale(String),
    LocaleProvider(String),
    CollationVersion(String),
    Strategy(String),
    Tablespace(String),
    AllowConnections(bool),
    ConnectionLimit(i32),
    IsTemplate(bool),
}

/// One catalog statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// `CREATE ROLE "name" WITH LOGIN [PASSWORD '...'] [attributes]`
    /// (only attributes that differ from the `LOGIN` defaults).
    CreateRole {
        name: String,
        password: Option<Secret>,
        #[serde(default)]
        attrs: Vec<RoleAttr>,
    },
    /// `ALTER ROLE "name" WITH attribute ...`
    AlterRoleAttributes { name: String, attrs: Vec<RoleAttr> },
    /// `GRANT "role" TO "member"`
    GrantRole { role: String, member: String },
    /// `REVOKE "role" FROM "member" [GRANTED BY "grantor"]`. Since
    /// PostgreSQL 16 a membership holds one grant per grantor and a plain
    /// `REVOKE` removes only the current user's, so the planner revokes the
    /// grant of each grantor the snapshot shows.
    RevokeRole {
        role: String,
        member: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        granted_by: Option<String>,
    },
    /// `ALTER ROLE "name" WITH PASSWORD '...' | NULL`
    AlterRolePassword {
        name: String,
        password: Option<Secret>,
    },
    /// `ALTER ROLE "from" RENAME TO "to"` (Postgres clears an md5 password).
    RenameRole { from: String, to: String },
    /// `REASSIGN OWNED BY "role" TO "to"`, inside `database`.
    ReassignOwned {
        database: String,
        role: String,
        to: String,
    },
    /// `DROP OWNED BY "role"`, inside `database`.
    DropOwned { database: String, role: String },
    /// `DROP ROLE "name"`
    DropRole { name: String },
    /// `CREATE DATABASE "name" WITH OWNER "owner" [options]`, always a
    /// statement of its own.
    CreateDatabase {
        name: String,
        owner: String,
        options: Vec<DbOption>,
    },
    /// `ALTER DATABASE "name" OWNER TO "owner"`
    AlterDatabaseOwner { name: String, owner: String },
    /// `ALTER DATABASE "from" RENAME TO "to"`
    RenameDatabase { from: String, to: String },
    /// `ALTER DATABASE "name" WITH IS_TEMPLATE true|false`
    SetDatabaseTemplate { name: String, is_template: bool },
    /// `ALTER DATABASE "name" option ...` for `ALLOW_CONNECTIONS`,
    /// `CONNECTION LIMIT` and `IS_TEMPLATE` of an existing database.
    AlterDatabaseOptions {
        name: String,
        options: Vec<DbOption>,
    },
    /// `DROP DATABASE "name" WITH (FORCE)` (terminates its connections).
    DropDatabase { name: String },
    /// `CREATE EXTENSION IF NOT EXISTS "name" WITH SCHEMA "schema" [VERSION '...']`,
    /// inside `database`.
    CreateExtension {
        database: String,
        name: String,
        schema: String,
        version: Option<String>,
    },
    /// `ALTER EXTENSION "name" SET SCHEMA "schema"`, inside `database`.
    SetExtensionSchema {
        database: String,
        name: String,
        schema: String,
    },
    /// `ALTER EXTENSION "name" UPDATE TO '...'`, inside `database`.
    UpdateExtension {
        database: String,
        name: String,
        version: String,
    },
    /// `ALTER DATABASE "database" SET compute_ctl.extensions TO '...'`,
    /// inside `database`, last of its extension work: records the wanted
    /// extensions it now has, so that the next snapshot shows whether the
    /// database needs a visit (see `super::plan::extension_targets`).
    SetExtensionsMarker { database: String, value: String },
    /// `GRANT USAGE, CREATE ON SCHEMA "schema" TO "role"`, inside
    /// `database` (the internal listener's `POST /grants`).
    GrantSchemaPrivileges {
        database: String,
        schema: String,
        privileges: Vec<SchemaPrivilege>,
        role: String,
    },
}

/// A privilege `POST /grants` may grant on a schema (Neon grants these two).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaPrivilege {
    Usage,
    Create,
}

impl SchemaPrivilege {
    /// Every privilege, in the order they are rendered.
    pub const ALL: [SchemaPrivilege; 2] = [SchemaPrivilege::Usage, SchemaPrivilege::Create];

    /// Its SQL keyword.
    pub fn keyword(self) -> &'static str {
        match self {
            SchemaPrivilege::Usage => "USAGE",
            SchemaPrivilege::Create => "CREATE",
        }
    }

    /// Parses a keyword in any case; `None` for any other privilege.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.keyword().eq_ignore_ascii_case(s))
    }
}

impl Op {
    /// The database the op must run in; `None` means the supervisor's own.
    pub fn database(&self) -> Option<&str> {
        match self {
            Op::ReassignOwned { database, .. }
            | Op::DropOwned { database, .. }
            | Op::CreateExtension { database, .. }
            | Op::SetExtensionSchema { database, .. }
            | Op::UpdateExtension { database, .. }
            | Op::SetExtensionsMarker { database, .. }
            | Op::GrantSchemaPrivileges { database, .. } => Some(database),
            _ => None,
        }
    }

    /// A short name of the kind of op, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateRole { .. } => "create_role",
            Op::AlterRolePassword { .. } => "alter_role_password",
            Op::AlterRoleAttributes { .. } => "alter_role_attributes",
            Op::GrantRole { .. } => "grant_role",
            Op::RevokeRole { .. } => "revoke_role",
            Op::RenameRole { .. } => "rename_role",
            Op::ReassignOwned { .. } => "reassign_owned",
            Op::DropOwned { .. } => "drop_owned",
            Op::DropRole { .. } => "drop_role",
            Op::CreateDatabase { .. } => "create_database",
            Op::AlterDatabaseOwner { .. } => "alter_database_owner",
            Op::RenameDatabase { .. } => "rename_database",
            Op::SetDatabaseTemplate { .. } => "set_database_template",
            Op::AlterDatabaseOptions { .. } => "alter_database_options",
            Op::DropDatabase { .. } => "drop_database",
            Op::CreateExtension { .. } => "create_extension",
            Op::SetExtensionSchema { .. } => "set_extension_schema",
            Op::UpdateExtension { .. } => "update_extension",
            Op::SetExtensionsMarker { .. } => "set_extensions_marker",
            Op::GrantSchemaPrivileges { .. } => "grant_schema_privileges",
        }
    }
}
