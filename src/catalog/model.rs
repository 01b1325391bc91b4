//! An in-memory model of the catalog that ops apply to, with Postgres'
//! rules for them (a role that owns a database cannot be dropped, a rename
//! clears an md5 password, a template database cannot be dropped, ...).
//!
//! The planner walks this model as it emits ops, so every plan it returns
//! is known to apply cleanly to the snapshot it was made from; the property
//! tests and the simulator use it as the reference of what a plan does.

use std::collections::{BTreeMap, BTreeSet};

use super::ops::{DbOption, Op, Secret};
use super::snapshot::{DatabaseInfo, MemberGrant, RoleInfo, Snapshot};
use crate::spec::role_options::RoleAttrs;

/// A role in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRole {
    pub password: Option<Secret>,
    pub superuser: bool,
    pub builtin: bool,
    pub attrs: RoleAttrs,
    /// The roles it is a member of.
    pub member_of: BTreeSet<String>,
    /// Who granted each membership of `member_of`, where known (since
    /// PostgreSQL 16 one grant per grantor; a membership of an older
    /// snapshot has no entry). A membership ends when its last grant does.
    pub grantors: BTreeMap<String, BTreeSet<String>>,
}

/// The grantors of each membership, from the snapshot's grants.
fn grantors_of(r: &RoleInfo) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for g in &r.member_grants {
        out.entry(g.role.clone())
            .or_default()
            .insert(g.grantor.clone());
    }
    out
}

/// A database in the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDatabase {
    pub owner: String,
    pub allow_connections: bool,
    pub is_template: bool,
    pub valid: bool,
    pub connection_limit: i32,
    pub extensions_marker: Option<String>,
    /// Its name in the snapshot (it may have been renamed since); `None`
    /// when created after it.
    pub origin: Option<String>,
    /// The template it was created from, when created after the snapshot.
    pub template: Option<String>,
}

impl ModelDatabase {
    /// Whether per-database work can connect to it.
    pub fn connectable(&self) -> bool {
        self.allow_connections && self.valid
    }

    /// Applies a database option that an existing database keeps
    /// (creation-only options such as locales change nothing here).
    fn set(&mut self, o: &DbOption) {
        match o {
            DbOption::AllowConnections(b) => self.allow_connections = *b,
            DbOption::IsTemplate(b) => self.is_template = *b,
            DbOption::ConnectionLimit(n) => self.connection_limit = *n,
            _ => {}
        }
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
                            attrs: r.attrs.clone(),
                            member_of: r.member_of.iter().cloned().collect(),
                            grantors: grantors_of(r),
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
                            connection_limit: d.connection_limit,
                            extensions_marker: d.extensions_marker.clone(),
                            origin: Some(d.name.clone()),
                            template: None,
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
                    attrs: r.attrs.clone(),
                    member_of: r.member_of.iter().cloned().collect(),
                    member_grants: r
                        .grantors
                        .iter()
                        .flat_map(|(role, by)| {
                            by.iter().map(|g| MemberGrant {
                                role: role.clone(),
                                grantor: g.clone(),
                            })
                        })
                        .collect(),
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
                    connection_limit: d.connection_limit,
                    extensions_marker: d.extensions_marker.clone(),
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

    /// Whether `from` is `target` or (transitively) a member of it; then
    /// granting `from` to `target` would be circular.
    pub fn reaches(&self, from: &str, target: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(r) = todo.pop() {
            if r == target {
                return true;
            }
            if seen.insert(r.clone()) {
                if let Some(role) = self.roles.get(&r) {
                    todo.extend(role.member_of.iter().cloned());
                }
            }
        }
        false
    }

    fn role_mut(&mut self, name: &str) -> Result<&mut ModelRole, String> {
        self.roles
            .get_mut(name)
            .ok_or_else(|| format!("role {name:?} does not exist"))
    }

    /// Applies `op` as Postgres would, or says why Postgres would refuse it.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::CreateRole {
                name,
                password,
                attrs,
            } => {
                if self.roles.contains_key(name) {
                    return Err(format!("role {name:?} already exists"));
                }
                if name.starts_with("pg_") {
                    return Err(format!("role name {name:?} is reserved"));
                }
                let mut role_attrs = RoleAttrs::default();
                for a in attrs {
                    role_attrs.set(a);
                }
                self.roles.insert(
                    name.clone(),
                    ModelRole {
                        password: password.clone(),
                        superuser: false,
                        builtin: false,
                        attrs: role_attrs,
                        member_of: BTreeSet::new(),
                        grantors: BTreeMap::new(),
                    },
                );
            }
            Op::AlterRoleAttributes { name, attrs } => {
                let role = self.role_mut(name)?;
                for a in attrs {
                    role.attrs.set(a);
                }
            }
            Op::GrantRole { role, member } => {
                self.role(role)?;
                self.role(member)?;
                if self.reaches(role, member) {
                    return Err(format!(
                        "granting {role:?} to {member:?} would make a membership loop"
                    ));
                }
                let grantor = self.current_user.clone();
                let m = self.role_mut(member)?;
                // A membership of an older snapshot has unknown grantors:
                // it stays so (Postgres 15 says "already a member").
                if m.member_of.insert(role.clone()) || m.grantors.contains_key(role) {
                    m.grantors.entry(role.clone()).or_default().insert(grantor);
                }
            }
            Op::RevokeRole {
                role,
                member,
                granted_by,
            } => {
                self.role(role)?;
                let m = self.role_mut(member)?;
                match granted_by {
                    // Every grant (a snapshot without grantors, or 15).
                    None => {
                        m.member_of.remove(role);
                        m.grantors.remove(role);
                    }
                    // That grantor's grant; Postgres warns and does nothing
                    // when there is none.
                    Some(g) => {
                        if let Some(by) = m.grantors.get_mut(role) {
                            by.remove(g);
                            if by.is_empty() {
                                m.grantors.remove(role);
                                m.member_of.remove(role);
                            }
                        }
                    }
                }
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
                for r in self.roles.values_mut() {
                    if r.member_of.remove(from) {
                        r.member_of.insert(to.clone());
                    }
                    if let Some(by) = r.grantors.remove(from) {
                        r.grantors.insert(to.clone(), by);
                    }
                    for by in r.grantors.values_mut() {
                        if by.remove(from) {
                            by.insert(to.clone());
                        }
                    }
                }
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
                for r in self.roles.values_mut() {
                    r.member_of.remove(name);
                    r.grantors.remove(name);
                    // Its grants go with it (Postgres drops the rows whose
                    // grantor is the dropped role).
                    for by in r.grantors.values_mut() {
                        by.remove(name);
                    }
                    let gone: Vec<String> = r
                        .grantors
                        .iter()
                        .filter(|(_, by)| by.is_empty())
                        .map(|(g, _)| g.clone())
                        .collect();
                    for g in gone {
                        r.grantors.remove(&g);
                        r.member_of.remove(&g);
                    }
                }
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
                    connection_limit: -1,
                    extensions_marker: None,
                    origin: None,
                    template: Some("template1".into()),
                };
                for o in options {
                    match o {
                        DbOption::Template(t) => {
                            self.database(t)?;
                            db.template = Some(t.clone());
                        }
                        o => db.set(o),
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
            Op::AlterDatabaseOptions { name, options } => {
                let db = self.database(name)?;
                if !db.valid {
                    return Err(format!("cannot alter invalid database {name:?}"));
                }
                if let Some(d) = self.databases.get_mut(name) {
                    for o in options {
                        d.set(o);
                    }
                }
            }
            // Schema privileges are not part of the model (no spec field
            // grants them): Postgres refuses only an unknown role (the
            // quoted "public" is a role name, not the PUBLIC keyword).
            Op::GrantSchemaPrivileges { database, role, .. } => {
                self.connectable(database)?;
                if !self.roles.contains_key(role) {
                    return Err(format!("role {role:?} does not exist"));
                }
            }
            Op::SetExtensionsMarker { database, value } => {
                self.connectable(database)?;
                if let Some(d) = self.databases.get_mut(database) {
                    d.extensions_marker = Some(value.clone());
                }
            }
            Op::DropDatabase { name } => {
                if self.database(name)?.is_template {
                    return Err(format!("cannot drop a template database ({name:?})"));
                }
                self.databases.remove(name);
            }
            Op::CreateExtension { database, .. }
            | Op::SetExtensionSchema { database, .. }
            | Op::UpdateExtension { database, .. } => {
                self.connectable(database)?;
            }
        }
        Ok(())
    }
}
