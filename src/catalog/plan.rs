//! The pure planner: snapshot + spec + delta operations -> ordered ops.
//!
//! Order: invalid databases dropped (an interrupted `DROP DATABASE` leaves
//! them unusable; the only way out is to drop them again, as Neon does;
//! one the spec lists is then created afresh), the delta operations as
//! listed (renames and deletes), then the spec's roles (create, password,
//! attributes), their memberships, then its databases (create, owner,
//! options). Extensions are planned per database by [`plan_extensions`]
//! once the database exists, and only for the databases
//! [`extension_targets`] picks (see `execute`). The planner applies every op it emits to
//! a [`Model`] of the snapshot, so later decisions see earlier ops, and a
//! plan that Postgres' rules would refuse is reported as an error instead of
//! being executed halfway.

use super::model::Model;
use super::ops::{DbOption, Op, Secret};
use super::snapshot::{InstalledExtension, Snapshot};
use crate::spec::role_options::{RoleAttrs, parse_role_options};
use crate::spec::{ComputeSpec, Database, DeltaAction, Extension, GenericOption};

/// The default schema of extensions whose spec names none (the supervisor's
/// sessions run with `search_path=pg_catalog`, where nothing may be created).
pub const DEFAULT_EXTENSION_SCHEMA: &str = "public";

/// Why no plan could be made. Each says what to change in the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "database {database:?}: option {option:?} is not supported; use one of LOCALE, LC_COLLATE, LC_CTYPE, ENCODING, TEMPLATE, TABLESPACE, ICU_LOCALE, LOCALE_PROVIDER, COLLATION_VERSION, STRATEGY, ALLOW_CONNECTIONS, CONNECTION_LIMIT, IS_TEMPLATE"
    )]
    UnsupportedDbOption { database: String, option: String },
    #[error("database {database:?}: option {option:?} needs a {expected} value")]
    BadDbOptionValue {
        database: String,
        option: String,
        expected: &'static str,
    },
    #[error(
        "database {database:?}: TEMPLATE {template:?} does not exist; name an existing database (e.g. template0) or drop the option"
    )]
    UnknownTemplate { database: String, template: String },
    #[error("role name {0:?} is reserved by Postgres (pg_ prefix); rename it in the spec")]
    ReservedRoleName(String),
    #[error(
        "database {database:?}: owner {owner:?} does not exist and is not created by the spec; add it to cluster.roles"
    )]
    UnknownOwner { database: String, owner: String },
    #[error(
        "{action} of database {database:?}: it is the supervisor's own database and cannot be dropped or renamed; remove the delta operation"
    )]
    OwnDatabase {
        action: &'static str,
        database: String,
    },
    #[error(
        "delta operation {action} of {name:?} contradicts the spec, which also lists {name:?} (every apply would undo it); remove one of them"
    )]
    Contradiction { action: &'static str, name: String },
    #[error("role {role:?}: {message}")]
    BadRoleOption { role: String, message: String },
    #[error(
        "role {role:?}: in_role names {member_of:?}, which does not exist and is not created by the spec; add it to cluster.roles"
    )]
    UnknownRole { role: String, member_of: String },
    #[error(
        "role {role:?}: in_role names {member_of:?}, a superuser or the supervisor's own role; membership in it would grant superuser powers, so it is refused"
    )]
    SuperuserMembership { role: String, member_of: String },
    #[error(
        "role {role:?}: in_role {member_of:?} would make a membership loop ({member_of:?} is already a member of {role:?}); remove one of the two"
    )]
    MembershipLoop { role: String, member_of: String },
    #[error("database {database:?}: option {option:?} is given twice; keep one")]
    DuplicateDbOption { database: String, option: String },
    #[error(
        "database {database:?}: restrict_conn and the ALLOW_CONNECTIONS option contradict each other; keep one"
    )]
    RestrictConnConflict { database: String },
    #[error(
        "database {database:?} is the supervisor's own database; it must accept connections (drop restrict_conn / ALLOW_CONNECTIONS false)"
    )]
    OwnDatabaseLocked { database: String },
    #[error("internal planner error (a bug): {0}")]
    Inconsistent(String),
}

/// The form Postgres stores a spec password in: md5 hex gets the `md5`
/// prefix (lower case, as Postgres only recognises lower-case md5 hashes),
/// SCRAM verifiers are kept verbatim, null stays null.
pub fn stored_password(spec_password: Option<&str>) -> Option<Secret> {
    spec_password.map(|p| {
        if p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()) {
            Secret::new(format!("md5{}", p.to_ascii_lowercase()))
        } else {
            Secret::new(p)
        }
    })
}

/// Turns a spec database option into a `CREATE DATABASE` option.
pub fn db_option(database: &str, o: &GenericOption) -> Result<DbOption, PlanError> {
    let value = o.value.clone().unwrap_or_default();
    let bad = |expected| PlanError::BadDbOptionValue {
        database: database.to_string(),
        option: o.name.clone(),
        expected,
    };
    let boolean = |v: &str| match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(bad("boolean")),
    };
    Ok(match o.name.to_ascii_uppercase().as_str() {
        "TEMPLATE" => DbOption::Template(value),
        "ENCODING" => DbOption::Encoding(value),
        "LOCALE" => DbOption::Locale(value),
        "LC_COLLATE" => DbOption::LcCollate(value),
        "LC_CTYPE" => DbOption::LcCtype(value),
        "ICU_LOCALE" => DbOption::IcuLocale(value),
        "LOCALE_PROVIDER" => DbOption::LocaleProvider(value),
        "COLLATION_VERSION" => DbOption::CollationVersion(value),
        "STRATEGY" => DbOption::Strategy(value),
        "TABLESPACE" => DbOption::Tablespace(value),
        "ALLOW_CONNECTIONS" => DbOption::AllowConnections(boolean(&value)?),
        "IS_TEMPLATE" => DbOption::IsTemplate(boolean(&value)?),
        "CONNECTION_LIMIT" | "CONNLIMIT" => {
            DbOption::ConnectionLimit(value.trim().parse().map_err(|_| bad("integer"))?)
        }
        _ => {
            return Err(PlanError::UnsupportedDbOption {
                database: database.to_string(),
                option: o.name.clone(),
            });
        }
    })
}

/// A spec database's options: its `options` and Neon's `restrict_conn`
/// (as `ALLOW_CONNECTIONS false`, or `true` when it is given as false).
pub fn database_options(db: &Database) -> Result<Vec<DbOption>, PlanError> {
    let mut options = db
        .options
        .iter()
        .flatten()
        .map(|o| db_option(&db.name, o))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, o) in options.iter().enumerate() {
        if options[..i]
            .iter()
            .any(|x| std::mem::discriminant(x) == std::mem::discriminant(o))
        {
            return Err(PlanError::DuplicateDbOption {
                database: db.name.clone(),
                option: db
                    .options
                    .iter()
                    .flatten()
                    .nth(i)
                    .map(|g| g.name.clone())
                    .unwrap_or_default(),
            });
        }
    }
    if let Some(restrict) = db.restrict_conn {
        let given = options.iter().find_map(|o| match o {
            DbOption::AllowConnections(b) => Some(*b),
            _ => None,
        });
        match given {
            Some(allow) if allow == restrict => {
                return Err(PlanError::RestrictConnConflict {
                    database: db.name.clone(),
                });
            }
            Some(_) => {}
            None => options.push(DbOption::AllowConnections(!restrict)),
        }
    }
    Ok(options)
}

struct Planner {
    model: Model,
    own_database: String,
    ops: Vec<Op>,
}

impl Planner {
    fn push(&mut self, op: Op) -> Result<(), PlanError> {
        self.model
            .apply(&op)
            .map_err(|e| PlanError::Inconsistent(format!("{op}: {e}")))?;
        self.ops.push(op);
        Ok(())
    }

    fn delete_db(&mut self, name: &str) -> Result<(), PlanError> {
        let Some(db) = self.model.databases.get(name) else {
            return Ok(());
        };
        if name == self.own_database {
            return Err(PlanError::OwnDatabase {
                action: "delete_db",
                database: name.to_string(),
            });
        }
        if db.is_template {
            self.push(Op::SetDatabaseTemplate {
                name: name.to_string(),
                is_template: false,
            })?;
        }
        self.push(Op::DropDatabase {
            name: name.to_string(),
        })
    }

    fn rename_db(&mut self, from: &str, to: &str) -> Result<(), PlanError> {
        let Some(db) = self.model.databases.get(from) else {
            return Ok(());
        };
        if !db.valid || self.model.databases.contains_key(to) {
            return Ok(());
        }
        if from == self.own_database {
            return Err(PlanError::OwnDatabase {
                action: "rename_db",
                database: from.to_string(),
            });
        }
        self.push(Op::RenameDatabase {
            from: from.to_string(),
            to: to.to_string(),
        })
    }

    /// Reassigns and drops what the role owns in every connectable database,
    /// then drops it. Databases it owns go to the supervisor first, so that
    /// the per-database steps touch no shared object and can run in any order.
    fn delete_role(&mut self, name: &str) -> Result<(), PlanError> {
        if !self.model.roles.contains_key(name) {
            return Ok(());
        }
        if self.model.is_protected_role(name) {
            tracing::warn!(role = name, "delete_role of a protected role ignored");
            return Ok(());
        }
        let owned: Vec<String> = self
            .model
            .databases
            .iter()
            .filter(|(_, d)| d.owner == name)
            .map(|(n, _)| n.clone())
            .collect();
        for db in owned {
            let owner = self.model.current_user.clone();
            self.push(Op::AlterDatabaseOwner { name: db, owner })?;
        }
        let dbs: Vec<(String, String)> = self
            .model
            .databases
            .iter()
            .filter(|(_, d)| d.connectable())
            .map(|(n, d)| (n.clone(), d.owner.clone()))
            .collect();
        for (database, owner) in dbs {
            self.push(Op::ReassignOwned {
                database: database.clone(),
                role: name.to_string(),
                to: owner,
            })?;
            self.push(Op::DropOwned {
                database,
                role: name.to_string(),
            })?;
        }
        self.push(Op::DropRole {
            name: name.to_string(),
        })
    }

    fn rename_role(&mut self, from: &str, to: &str) -> Result<(), PlanError> {
        if !self.model.roles.contains_key(from)
            || self.model.roles.contains_key(to)
            || self.model.is_protected_role(from)
        {
            return Ok(());
        }
        self.push(Op::RenameRole {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

/// Plans the delta operations, roles and databases of `spec` against
/// `snapshot`. `own_database` is the database of the supervisor's session.
pub fn plan(
    snapshot: &Snapshot,
    spec: &ComputeSpec,
    own_database: &str,
) -> Result<Vec<Op>, PlanError> {
    let mut p = Planner {
        model: Model::from_snapshot(snapshot),
        own_database: own_database.to_string(),
        ops: Vec::new(),
    };
    check_contradictions(spec)?;
    let invalid: Vec<(String, bool)> = p
        .model
        .databases
        .iter()
        .filter(|(n, d)| !d.valid && **n != p.own_database)
        .map(|(n, d)| (n.clone(), d.is_template))
        .collect();
    for (name, is_template) in invalid {
        if is_template {
            // Postgres neither drops a template nor alters an invalid
            // database: only an operator can (UPDATE pg_database).
            tracing::warn!(database = %name, "invalid template database left alone; clear datistemplate by hand, the next apply drops it");
            continue;
        }
        p.push(Op::DropDatabase { name })?;
    }
    for d in spec.delta_ops() {
        let new_name = d.new_name.as_deref().unwrap_or_default();
        match d.action {
            DeltaAction::DeleteDb => p.delete_db(&d.name)?,
            DeltaAction::RenameDb => p.rename_db(&d.name, new_name)?,
            DeltaAction::DeleteRole => p.delete_role(&d.name)?,
            DeltaAction::RenameRole => p.rename_role(&d.name, new_name)?,
        }
    }
    let mut memberships = Vec::new();
    for role in &spec.cluster.roles {
        if p.model.is_protected_role(&role.name) {
            continue;
        }
        let wish = parse_role_options(role.options.as_deref().unwrap_or(&[])).map_err(|e| {
            PlanError::BadRoleOption {
                role: role.name.clone(),
                message: e.message,
            }
        })?;
        let password = stored_password(role.encrypted_password.as_deref());
        match p.model.roles.get(&role.name) {
            None if role.name.starts_with("pg_") => {
                return Err(PlanError::ReservedRoleName(role.name.clone()));
            }
            None => p.push(Op::CreateRole {
                name: role.name.clone(),
                password,
                attrs: RoleAttrs::default().diff(&wish.attrs),
            })?,
            Some(r) => {
                let attrs = r.attrs.diff(&wish.attrs);
                if r.password != password {
                    p.push(Op::AlterRolePassword {
                        name: role.name.clone(),
                        password,
                    })?;
                }
                if !attrs.is_empty() {
                    p.push(Op::AlterRoleAttributes {
                        name: role.name.clone(),
                        attrs,
                    })?;
                }
            }
        }
        if let Some(in_role) = wish.in_role {
            memberships.push((role.name.clone(), in_role));
        }
    }
    // After every role exists, so that a role may join one listed later.
    for (member, in_role) in &memberships {
        for group in in_role {
            match p.model.roles.get(group) {
                None => {
                    return Err(PlanError::UnknownRole {
                        role: member.clone(),
                        member_of: group.clone(),
                    });
                }
                Some(g) if g.superuser || *group == p.model.current_user => {
                    return Err(PlanError::SuperuserMembership {
                        role: member.clone(),
                        member_of: group.clone(),
                    });
                }
                Some(_) => {}
            }
        }
    }
    // Revokes first, so that a membership the spec moves elsewhere does not
    // look like a loop halfway.
    for (member, in_role) in &memberships {
        let have = p.model.roles[member].member_of.clone();
        for group in have.iter().filter(|g| !in_role.contains(g)) {
            // Each grantor's grant (16+ keeps one per grantor); a plain
            // REVOKE where the snapshot does not say who granted it.
            let grantors = p.model.roles[member]
                .grantors
                .get(group)
                .cloned()
                .unwrap_or_default();
            if grantors.is_empty() {
                p.push(Op::RevokeRole {
                    role: group.clone(),
                    member: member.clone(),
                    granted_by: None,
                })?;
            }
            for grantor in grantors {
                p.push(Op::RevokeRole {
                    role: group.clone(),
                    member: member.clone(),
                    granted_by: Some(grantor),
                })?;
            }
        }
    }
    for (member, in_role) in &memberships {
        for group in in_role {
            if p.model.roles[member].member_of.contains(group) {
                continue;
            }
            if p.model.reaches(group, member) {
                return Err(PlanError::MembershipLoop {
                    role: member.clone(),
                    member_of: group.clone(),
                });
            }
            p.push(Op::GrantRole {
                role: group.clone(),
                member: member.clone(),
            })?;
        }
    }
    for db in &spec.cluster.databases {
        if !p.model.roles.contains_key(&db.owner) {
            return Err(PlanError::UnknownOwner {
                database: db.name.clone(),
                owner: db.owner.clone(),
            });
        }
        let options = database_options(db)?;
        if db.name == p.own_database
            && options
                .iter()
                .any(|o| matches!(o, DbOption::AllowConnections(false)))
        {
            return Err(PlanError::OwnDatabaseLocked {
                database: db.name.clone(),
            });
        }
        let existing = p.model.databases.get(&db.name).cloned();
        match existing {
            Some(d) if !d.valid => {
                tracing::warn!(database = %db.name, "the spec's database is an invalid template; it is left alone");
            }
            Some(d) => {
                if d.owner != db.owner {
                    p.push(Op::AlterDatabaseOwner {
                        name: db.name.clone(),
                        owner: db.owner.clone(),
                    })?;
                }
                // Only what an existing database keeps, and only what the
                // spec names: an operator's lock on a database the spec
                // says nothing about stays.
                let changes: Vec<DbOption> = options
                    .into_iter()
                    .filter(|o| match o {
                        DbOption::AllowConnections(b) => d.allow_connections != *b,
                        DbOption::ConnectionLimit(n) => d.connection_limit != *n,
                        DbOption::IsTemplate(b) => d.is_template != *b,
                        _ => false,
                    })
                    .collect();
                if !changes.is_empty() {
                    p.push(Op::AlterDatabaseOptions {
                        name: db.name.clone(),
                        options: changes,
                    })?;
                }
            }
            None => {
                for o in &options {
                    if let DbOption::Template(t) = o {
                        if !p.model.databases.contains_key(t) {
                            return Err(PlanError::UnknownTemplate {
                                database: db.name.clone(),
                                template: t.clone(),
                            });
                        }
                    }
                }
                p.push(Op::CreateDatabase {
                    name: db.name.clone(),
                    owner: db.owner.clone(),
                    options,
                })?;
            }
        }
    }
    Ok(p.ops)
}

/// A delete or rename of a name the spec also lists would be undone by the
/// spec on every apply, so the catalog would never converge.
fn check_contradictions(spec: &ComputeSpec) -> Result<(), PlanError> {
    for d in spec.delta_ops() {
        let (action, listed) = match d.action {
            DeltaAction::DeleteRole => (
                "delete_role",
                spec.cluster.roles.iter().any(|r| r.name == d.name),
            ),
            DeltaAction::RenameRole => (
                "rename_role",
                spec.cluster.roles.iter().any(|r| r.name == d.name),
            ),
            DeltaAction::DeleteDb => (
                "delete_db",
                spec.cluster.databases.iter().any(|x| x.name == d.name),
            ),
            DeltaAction::RenameDb => (
                "rename_db",
                spec.cluster.databases.iter().any(|x| x.name == d.name),
            ),
        };
        if listed {
            return Err(PlanError::Contradiction {
                action,
                name: d.name.clone(),
            });
        }
    }
    Ok(())
}

/// Whether `shared_preload_libraries` of the spec lists `library`.
pub fn preloads(spec: &ComputeSpec, library: &str) -> bool {
    spec.setting("shared_preload_libraries").is_some_and(|v| {
        v.split(',')
            .any(|l| l.trim().trim_matches(|c| c == '"' || c == '\'') == library)
    })
}

/// The extensions each database should have: the spec's per-database
/// lists, plus `pg_stat_statements` in `postgres` when it is preloaded.
/// Databases are in spec order; `postgres` comes first when added.
pub fn wanted_extensions(spec: &ComputeSpec) -> Vec<(String, Vec<Extension>)> {
    let mut out: Vec<(String, Vec<Extension>)> = spec
        .cluster
        .databases
        .iter()
        .filter(|d| !d.extensions.is_empty())
        .map(|d| (d.name.clone(), d.extensions.clone()))
        .collect();
    if preloads(spec, "pg_stat_statements") {
        let pss = Extension {
            name: "pg_stat_statements".into(),
            schema: None,
            version: None,
        };
        match out.iter_mut().find(|(db, _)| db == "postgres") {
            Some((_, exts)) if exts.iter().any(|e| e.name == pss.name) => {}
            Some((_, exts)) => exts.push(pss),
            None => out.insert(0, ("postgres".into(), vec![pss])),
        }
    }
    out
}

/// A database whose extensions an apply works on: the snapshot shows its
/// wish differs from what was last applied there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionTarget {
    pub database: String,
    pub wanted: Vec<Extension>,
    /// The value [`Op::SetExtensionsMarker`] records once they are in place.
    pub marker: String,
    /// Its name in the snapshot (before a rename); `None`: created by the plan.
    pub origin: Option<String>,
    /// The template it is created from, when the plan creates it.
    pub template: Option<String>,
}

impl ExtensionTarget {
    /// The op that records the work done, last in the database's session.
    pub fn marker_op(&self) -> Op {
        Op::SetExtensionsMarker {
            database: self.database.clone(),
            value: self.marker.clone(),
        }
    }
}

/// What the marker of a database holds for `wanted`: the spec's list as
/// compact JSON, so a changed name, schema or version shows.
pub fn extensions_marker(wanted: &[Extension]) -> String {
    serde_json::to_string(wanted).unwrap_or_default()
}

/// The databases whose extensions need a visit, judged from `model` (the
/// snapshot with the plan applied), and those skipped because they are
/// missing, invalid or refuse connections. A database whose marker equals
/// its wish is not visited: a second apply opens no session to it. The
/// price: an extension dropped by hand in such a database comes back only
/// when the spec's list for it changes (or the marker is reset with
/// `ALTER DATABASE ... RESET compute_ctl.extensions`).
pub fn extension_targets(spec: &ComputeSpec, model: &Model) -> (Vec<ExtensionTarget>, Vec<String>) {
    let mut targets = Vec::new();
    let mut skipped = Vec::new();
    for (db, wanted) in wanted_extensions(spec) {
        let marker = extensions_marker(&wanted);
        match model.databases.get(&db) {
            Some(d) if d.connectable() => {
                if d.extensions_marker.as_deref() != Some(marker.as_str()) {
                    targets.push(ExtensionTarget {
                        database: db,
                        wanted,
                        marker,
                        origin: d.origin.clone(),
                        template: d.template.clone(),
                    });
                }
            }
            _ => skipped.push(db),
        }
    }
    (targets, skipped)
}

/// Plans the extensions of one database: create the missing ones, move
/// those in another schema than the spec names, update those whose wanted
/// version differs from the installed one (after the move).
pub fn plan_extensions(
    database: &str,
    installed: &[InstalledExtension],
    wanted: &[Extension],
) -> Vec<Op> {
    let mut ops = Vec::new();
    for w in wanted {
        match installed.iter().find(|i| i.name == w.name) {
            None => ops.push(Op::CreateExtension {
                database: database.to_string(),
                name: w.name.clone(),
                schema: w
                    .schema
                    .clone()
                    .unwrap_or_else(|| DEFAULT_EXTENSION_SCHEMA.to_string()),
                version: w.version.clone(),
            }),
            Some(i) => {
                if let Some(schema) = &w.schema {
                    if *schema != i.schema {
                        ops.push(Op::SetExtensionSchema {
                            database: database.to_string(),
                            name: w.name.clone(),
                            schema: schema.clone(),
                        });
                    }
                }
                if let Some(v) = &w.version {
                    if *v != i.version {
                        ops.push(Op::UpdateExtension {
                            database: database.to_string(),
                            name: w.name.clone(),
                            version: v.clone(),
                        });
                    }
                }
            }
        }
    }
    ops
}
