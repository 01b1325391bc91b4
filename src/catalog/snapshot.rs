//! What the catalog holds now, read in one round trip.
//!
//! [`SNAPSHOT_SQL`] is a single statement returning one row with one text
//! column holding JSON; [`parse_snapshot`] turns that text into a
//! [`Snapshot`]. Both are public so that the simulator can answer the very
//! query from its catalog model (it serialises a [`Snapshot`]).
//! [`EXTENSIONS_SQL`] / [`parse_extensions`] do the same for the extensions
//! of the database a session is connected to.

use serde::{Deserialize, Serialize};

use super::ops::Secret;
use crate::spec::role_options::RoleAttrs;

/// Reads roles (with password hashes, attributes and memberships) and
/// databases (with owner, connectability, validity, template flag,
/// connection limit and the extensions marker) in one statement.
/// A database with `datconnlimit = -2` is invalid (an interrupted
/// `DROP DATABASE`, Postgres 15). Roles with an OID below 16384
/// (`FirstNormalObjectId`) are built in (bootstrap superuser, `pg_*`).
/// Memberships are read per grant (`member_grants`: role and grantor; since
/// PostgreSQL 16 `pg_auth_members` keeps one row per grantor) and, once per
/// role, as `member_of`. The membership PostgreSQL 16+ gives a `CREATEROLE`
/// role in each role it creates (`ADMIN OPTION`, without `INHERIT` or `SET`:
/// it confers no privileges) is not a membership a spec's `in_role` speaks
/// of, so it is left out (read through `to_jsonb`, as 15 has no such columns).
/// `valid_until` is read in UTC as `YYYY-MM-DDTHH:MM:SSZ` (null for
/// never and for infinity), the form the planner writes. The marker is
/// the database-wide value of `compute_ctl.extensions` in
/// `pg_db_role_setting`, a shared catalog, so it is readable from here.
pub const SNAPSHOT_SQL: &str = "SELECT pg_catalog.json_build_object(\
'roles', COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', a.rolname, 'password', a.rolpassword, 'superuser', a.rolsuper, \
'builtin', a.oid < 16384, 'attrs', pg_catalog.json_build_object(\
'login', a.rolcanlogin, 'createdb', a.rolcreatedb, 'createrole', a.rolcreaterole, \
'replication', a.rolreplication, 'bypassrls', a.rolbypassrls, 'inherit', a.rolinherit, \
'connection_limit', a.rolconnlimit, 'valid_until', \
pg_catalog.to_char(a.rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')), \
'member_of', COALESCE(ms.member_of, '[]'::json), \
'member_grants', COALESCE(ms.member_grants, '[]'::json)) ORDER BY a.rolname) \
FROM pg_catalog.pg_authid a LEFT JOIN (SELECT m.member, \
pg_catalog.json_agg(DISTINCT g.rolname ORDER BY g.rolname) AS member_of, \
pg_catalog.json_agg(pg_catalog.json_build_object('role', g.rolname, 'grantor', gr.rolname) \
ORDER BY g.rolname, gr.rolname) AS member_grants FROM pg_catalog.pg_auth_members m \
JOIN pg_catalog.pg_authid g ON g.oid = m.roleid JOIN pg_catalog.pg_authid gr ON gr.oid = m.grantor \
WHERE NOT (m.admin_option AND (pg_catalog.to_jsonb(m) ->> 'inherit_option') = 'false' \
AND (pg_catalog.to_jsonb(m) ->> 'set_option') = 'false') \
GROUP BY m.member) ms ON ms.member = a.oid), '[]'::json), \
'databases', COALESCE((SELECT pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', d.datname, 'owner', pg_catalog.pg_get_userbyid(d.datdba), \
'allow_connections', d.datallowconn, 'is_template', d.datistemplate, \
'valid', d.datconnlimit <> -2, 'connection_limit', d.datconnlimit, \
'extensions_marker', (SELECT pg_catalog.substr(c, 24) FROM pg_catalog.pg_db_role_setting s, \
pg_catalog.unnest(s.setconfig) AS c WHERE s.setdatabase = d.oid AND s.setrole = 0 \
AND pg_catalog.starts_with(c, 'compute_ctl.extensions=') LIMIT 1)) \
ORDER BY d.datname) FROM pg_catalog.pg_database d), '[]'::json), \
'max_connections', pg_catalog.current_setting('max_connections')::int, \
'current_user', current_user)::text";

/// Reads the extensions of the session's database in one statement (one
/// row, one text column holding a JSON array of [`InstalledExtension`]).
pub const EXTENSIONS_SQL: &str = "SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_object(\
'name', e.extname, 'schema', n.nspname, 'version', e.extversion) ORDER BY e.extname), '[]'::json)::text \
FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace";

/// A role as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    pub name: String,
    /// `rolpassword`: `md5<hex>`, a SCRAM verifier, or null.
    pub password: Option<Secret>,
    pub superuser: bool,
    /// Created by initdb (bootstrap superuser, `pg_*` roles): never touched.
    pub builtin: bool,
    /// Absent (an older snapshot): the `CREATE ROLE ... LOGIN` defaults.
    #[serde(default)]
    pub attrs: RoleAttrs,
    /// The roles it is a member of, by name, each once.
    #[serde(default)]
    pub member_of: Vec<String>,
    /// Each grant of those memberships with its grantor (several per
    /// membership since PostgreSQL 16); absent in an older snapshot.
    #[serde(default)]
    pub member_grants: Vec<MemberGrant>,
}

/// One grant of a membership: `role` granted by `grantor`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MemberGrant {
    pub role: String,
    pub grantor: String,
}

/// A database as the catalog holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseInfo {
    pub name: String,
    pub owner: String,
    /// `datallowconn`.
    pub allow_connections: bool,
    /// `datistemplate`.
    pub is_template: bool,
    /// False for an invalid database (`datconnlimit = -2`).
    pub valid: bool,
    /// `datconnlimit` (-1: no limit; -2: invalid).
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
    /// The `compute_ctl.extensions` value last set in it, if any.
    #[serde(default)]
    pub extensions_marker: Option<String>,
}

fn no_limit() -> i32 {
    -1
}

impl DatabaseInfo {
    /// Whether per-database work can connect to it.
    pub fn connectable(&self) -> bool {
        self.allow_connections && self.valid
    }
}

/// Roles and databases of the cluster, and what bounds our concurrency.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub roles: Vec<RoleInfo>,
    pub databases: Vec<DatabaseInfo>,
    /// The server's `max_connections`.
    pub max_connections: u32,
    /// The supervisor's own role (never touched).
    pub current_user: String,
}

/// An extension installed in one database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledExtension {
    pub name: String,
    pub schema: String,
    pub version: String,
}

/// The snapshot answer was not what [`SNAPSHOT_SQL`] returns.
#[derive(Debug, thiserror::Error)]
#[error("cannot parse the catalog snapshot returned by Postgres: {0}")]
pub struct SnapshotError(#[from] serde_json::Error);

/// Parses the text [`SNAPSHOT_SQL`] returns.
pub fn parse_snapshot(json: &str) -> Result<Snapshot, SnapshotError> {
    Ok(serde_json::from_str(json)?)
}

/// Parses the text [`EXTENSIONS_SQL`] returns.
pub fn parse_extensions(json: &str) -> Result<Vec<InstalledExtension>, SnapshotError> {
    Ok(serde_json::from_str(json)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_postgres_returns() {
        let json = r#"{"roles" : [{"name" : "cloud_admin", "password" : null, "superuser" : true, "builtin" : true},
            {"name" : "a\"b", "password" : "md5abc", "superuser" : false, "builtin" : false}],
            "databases" : [{"name" : "broken", "owner" : "a\"b", "allow_connections" : true, "is_template" : false, "valid" : false}],
            "max_connections" : 100, "current_user" : "cloud_admin"}"#;
        let s = parse_snapshot(json).unwrap();
        assert_eq!(s.roles[1].name, "a\"b");
        assert_eq!(s.roles[1].password.as_ref().unwrap().expose(), "md5abc");
        assert!(!s.databases[0].connectable());
        assert_eq!(s.max_connections, 100);
        assert_eq!(s.roles[1].attrs, RoleAttrs::default(), "absent: defaults");
        assert_eq!(s.databases[0].connection_limit, -1);
        let back = parse_snapshot(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn the_marker_prefix_matches_the_rendered_setting() {
        let prefix = format!("'{}='", super::super::render::EXTENSIONS_MARKER);
        assert!(SNAPSHOT_SQL.contains(&prefix));
        assert!(SNAPSHOT_SQL.contains(&format!(
            "substr(c, {})",
            super::super::render::EXTENSIONS_MARKER.len() + 2
        )));
    }

    #[test]
    fn rejects_garbage_without_echoing_it() {
        let err = parse_snapshot(r#"{"roles": [{"name": 1}]}"#).unwrap_err();
        assert!(err.to_string().contains("catalog snapshot"));
        assert!(parse_extensions("[]").unwrap().is_empty());
    }
}
