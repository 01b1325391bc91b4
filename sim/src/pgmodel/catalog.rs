//! The simulated cluster's catalog: roles, databases, extensions. Durable
//! (it lives in the world's shared state, like Neon's storage), so a compute
//! that restarts from a base backup sees what it left.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::ops::RoleAttrs;

/// A role as `pg_authid` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRow {
    pub password: Option<String>,
    pub superuser: bool,
    pub builtin: bool,
    pub attrs: RoleAttrs,
    /// `pg_auth_members`: the roles it is a member of.
    pub member_of: BTreeSet<String>,
}

impl RoleRow {
    /// A role as `CREATE ROLE ... WITH LOGIN` makes it.
    pub fn new(password: Option<String>, superuser: bool, builtin: bool) -> Self {
        Self {
            password,
            superuser,
            builtin,
            attrs: RoleAttrs::default(),
            member_of: BTreeSet::new(),
        }
    }
}

/// A database as `pg_database` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRow {
    pub owner: String,
    pub allow_connections: bool,
    pub is_template: bool,
    pub valid: bool,
    pub connection_limit: i32,
    /// The `compute_ctl.extensions` database setting, if set.
    pub extensions_marker: Option<String>,
    /// name -> (schema, version)
    pub extensions: BTreeMap<String, (String, String)>,
}

impl DbRow {
    pub fn new(owner: &str) -> Self {
        Self {
            owner: owner.to_string(),
            allow_connections: true,
            is_template: false,
            valid: true,
            connection_limit: -1,
            extensions_marker: None,
            extensions: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogModel {
    pub roles: BTreeMap<String, RoleRow>,
    pub databases: BTreeMap<String, DbRow>,
    pub max_connections: u32,
}

/// A SQL error: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgErr {
    pub code: &'static str,
    pub message: String,
}

impl PgErr {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl CatalogModel {
    /// What initdb leaves: the bootstrap superuser and the three databases.
    pub fn reset(&mut self, superuser: &str) {
        self.roles.clear();
        self.databases.clear();
        self.max_connections = 100;
        self.roles
            .insert(superuser.to_string(), RoleRow::new(None, true, true));
        for name in ["pg_monitor", "pg_read_all_data", "pg_write_all_data"] {
            let mut r = RoleRow::new(None, false, true);
            r.attrs.login = false;
            self.roles.insert(name.to_string(), r);
        }
        self.databases
            .insert("postgres".into(), DbRow::new(superuser));
        let mut t1 = DbRow::new(superuser);
        t1.is_template = true;
        self.databases.insert("template1".into(), t1.clone());
        t1.allow_connections = false;
        self.databases.insert("template0".into(), t1);
    }

    /// Roles created by the spec (not built in), with their passwords.
    pub fn user_roles(&self) -> BTreeMap<String, Option<String>> {
        self.roles
            .iter()
            .filter(|(_, r)| !r.builtin)
            .map(|(n, r)| (n.clone(), r.password.clone()))
            .collect()
    }

    /// Databases other than the three initdb makes, with their owners.
    pub fn user_databases(&self) -> BTreeMap<String, String> {
        self.databases
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "postgres" | "template0" | "template1"))
            .map(|(n, d)| (n.clone(), d.owner.clone()))
            .collect()
    }

    /// The answer to the catalog snapshot query, as JSON text.
    pub fn snapshot_json(&self, current_user: &str) -> String {
        let roles: Vec<Value> = self
            .roles
            .iter()
            .map(|(n, r)| {
                // Each membership with its one grant, by the supervisor.
                let grants: Vec<Value> = r
                    .member_of
                    .iter()
                    .map(|g| json!({"role": g, "grantor": current_user}))
                    .collect();
                json!({"name": n, "password": r.password, "superuser": r.superuser, "builtin": r.builtin,
                       "attrs": r.attrs, "member_of": r.member_of, "member_grants": grants})
            })
            .collect();
        let dbs: Vec<Value> = self
            .databases
            .iter()
            .map(|(n, d)| {
                json!({"name": n, "owner": d.owner, "allow_connections": d.allow_connections,
                       "is_template": d.is_template, "valid": d.valid,
                       "connection_limit": if d.valid { d.connection_limit } else { -2 },
                       "extensions_marker": d.extensions_marker})
            })
            .collect();
        json!({"roles": roles, "databases": dbs, "max_connections": self.max_connections,
               "current_user": current_user})
        .to_string()
    }

    /// The answer to the extensions query in `db`.
    pub fn extensions_json(&self, db: &str) -> String {
        let exts: Vec<Value> = self
            .databases
            .get(db)
            .map(|d| {
                d.extensions
                    .iter()
                    .map(|(n, (s, v))| json!({"name": n, "schema": s, "version": v}))
                    .collect()
            })
            .unwrap_or_default();
        Value::Array(exts).to_string()
    }

    /// Whether a session may open in `db` as `user`.
    pub fn check_login(&self, user: &str, db: &str) -> Result<(), PgErr> {
        if !self.roles.contains_key(user) {
            return Err(PgErr::new(
                "28000",
                format!("role \"{user}\" does not exist"),
            ));
        }
        match self.databases.get(db) {
            None => Err(PgErr::new(
                "3D000",
                format!("database \"{db}\" does not exist"),
            )),
            Some(d) if !d.allow_connections => Err(PgErr::new(
                "55000",
                format!("database \"{db}\" is not currently accepting connections"),
            )),
            Some(d) if !d.valid => Err(PgErr::new(
                "55000",
                format!("cannot connect to invalid database \"{db}\""),
            )),
            Some(_) => Ok(()),
        }
    }
}
