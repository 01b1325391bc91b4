//! An in-memory model of the catalog that ops apply to, with Postgres'
//! rules for them (a role that owns a database cannot be dropped, a rename
//! clears an md5 password, a template database cannot be dropped, ...).
//!
//! The planner walks this model as it emits ops, so every plan it returns
//! is known to apply cleanly to the snapshot it was made from; the property
//! tests and the simulator use it as the reference of what a plan does.

use std::collections::BTreeMap;

use super::ops::{DbOption, Op, Secret};
use super::snapshot::{DatabaseInfo, RoleInfo, Snapshot};

/// A role in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRole {
    pub password: Option<Secret>,
    pub superuser: bool,
    pub builtin: bool,
}

/// A database in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDatabase {
    pub owner: String,
    pub allow_connections: bool,
    pub is_template: bool,
    pub valid: bool,
}

impl ModelDatabase {
    /// Whether per-database work can connect to it.
    pub fn connectable(&self) -> bool {
        self.allow_connections && self.valid
    }
}

/// Roles and databases by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Model {
    pub roles: BTreeMap<String, ModelRole>,
    pub databases: BTreeMap<String, ModelDatabase>,
    pub max_connections: u32,
    /// The supervisor's own role.
    pub current_user: String,
}

impl Model {
    pub fn from_snapshot(s: &Snapshot) -> Self {
        Self {
            roles: s
                .roles
                .iter()
                .map(|r| {
                    (
                        r.name.clone(),
                        ModelRole {
                            password: r.password.clone(),
                            superuser: r.superuser,
                            builtin: r.builtin,
                        },
                    )
                })
                .collect(),
            databases: s
                .databases
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        ModelDatabase {
                            owner: d.owner.clone(),
                            allow_connections: d.allow_connections,
                            is_template: d.is_template,
                            valid: d.valid,
                        },
                    )
                })
                .collect(),
            max_connections: s.max_connections,
            current_user: s.current_user.clone(),
        }
    }

    pub fn to_snapshot(&self) -> Snapshot {
        Snapshot {
            roles: self
                .roles
                .iter()
                .map(|(name, r)| RoleInfo {
                    name: name.clone(),
                    password: r.password.clone(),
                    superuser: r.superuser,
                    builtin: r.builtin,
                })
                .collect(),
            databases: self
                .databases
                .iter()
                .map(|(name, d)| DatabaseInfo {
                    name: name.clone(),
                    owner: d.owner.clone(),
                    allow_connections: d.allow_connections,
                    is_template: d.is_template,
                    valid: d.valid,
                })
                .collect(),
            max_connections: self.max_connections,
            current_user: self.current_user.clone(),
        }
    }

    /// Whether the role must never be touched: a superuser, a built-in role,
    /// or the supervisor itself.
    pub fn is_protected_role(&self, name: &str) -> bool {
        name == self.current_user
            || self
                .roles
                .get(name)
                .is_some_and(|r| r.superuser || r.builtin)
    }

    fn role(&self, name: &str) -> Result<&ModelRole, String> {
        self.roles
            .get(name)
            .ok_or_else(|| format!("role {name:?} does not exist"))
    }

    fn database(&self, name: &str) -> Result<&ModelDatabase, String> {
        self.databases
            .get(name)
            .ok_or_else(|| format!("database {name:?} does not exist"))
    }

    fn connectable(&self, name: &str) -> Result<(), String> {
        if self.database(name)?.connectable() {
            Ok(())
        } else {
            Err(format!("database {name:?} does not accept connections"))
        }
    }

    /// Applies `op` as Postgres would, or says why Postgres would refuse it.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::CreateRole { name, password } => {
                if self.roles.contains_key(name) {
                    return Err(format!("role {name:?} already exists"));
                }
                if name.starts_with("pg_") {
                    return Err(format!("role name {name:?} is reserved"));
                }
                self.roles.insert(
                    name.clone(),
                    ModelRole {
                        password: password.clone(),
                        superuser: false,
                        builtin: false,
                    },
                );
            }
            Op::AlterRolePassword { name, password } => {
                self.role(name)?;
                if let Some(r) = self.roles.get_mut(name) {
                    r.password = password.clone();
                }
            }
            Op::RenameRole { from, to } => {
                let mut role = self.role(from)?.clone();
                if self.roles.contains_key(to) {
                    return Err(format!("role {to:?} already exists"));
                }
                if *from == self.current_user {
                    return Err("the session user cannot be renamed".into());
                }
                if role
                    .password
                    .as_ref()
                    .is_some_and(|p| p.expose().starts_with("md5"))
                {
                    role.password = None;
                }
                self.roles.remove(from);
                self.roles.insert(to.clone(), role);
                for d in self.databases.values_mut() {
                    if d.owner == *from {
                        d.owner = to.clone();
                    }
                }
            }
            Op::ReassignOwned { database, role, to } => {
                self.connectable(database)?;
                self.role(role)?;
                self.role(to)?;
                for d in self.databases.values_mut() {
                    if d.owner == *role {
                        d.owner = to.clone();
                    }
                }
            }
            Op::DropOwned { database, role } => {
                self.connectable(database)?;
                self.role(role)?;
            }
            Op::DropRole { name } => {
                self.role(name)?;
                if self.is_protected_role(name) {
                    return Err(format!("role {name:?} is protected"));
                }
                if let Some((db, _)) = self.databases.iter().find(|(_, d)| d.owner == *name) {
                    return Err(format!("role {name:?} owns database {db:?}"));
                }
                self.roles.remove(name);
            }
            Op::CreateDatabase {
                name,
                owner,
                options,
            } => {
                if self.databases.contains_key(name) {
                    return Err(format!("database {name:?} already exists"));
                }
                self.role(owner)?;
                let mut db = ModelDatabase {
                    owner: owner.clone(),
                    allow_connections: true,
                    is_template: false,
                    valid: true,
                };
                for o in options {
                    match o {
                        DbOption::AllowConnections(b) => db.allow_connections = *b,
                        DbOption::IsTemplate(b) => db.is_template = *b,
                        DbOption::Template(t) => {
                            self.database(t)?;
                        }
                        _ => {}
                    }
                }
                self.databases.insert(name.clone(), db);
            }
            Op::AlterDatabaseOwner { name, owner } => {
                self.role(owner)?;
                self.database(name)?;
                if let Some(d) = self.databases.get_mut(name) {
                    d.owner = owner.clone();
                }
            }
            Op::RenameDatabase { from, to } => {
                let db = self.database(from)?.clone();
                if self.databases.contains_key(to) {
                    return Err(format!("database {to:?} already exists"));
                }
                self.databases.remove(from);
                self.databases.insert(to.clone(), db);
            }
            Op::SetDatabaseTemplate { name, is_template } => {
                self.database(name)?;
                if let Some(d) = self.databases.get_mut(name) {
                    d.is_template = *is_template;
                }
            }
            Op::DropDatabase { name } => {
                if self.database(name)?.is_template {
                    return Err(format!("cannot drop a template database ({name:?})"));
                }
                self.databases.remove(name);
            }
            Op::CreateExtension { database, .. } | Op::UpdateExtension { database, .. } => {
                self.connectable(database)?;
            }
        }
        Ok(())
    }
}
