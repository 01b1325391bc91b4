//! The pure planner: snapshot + spec + delta operations -> ordered ops.
//!
//! Order: the delta operations as listed (renames and deletes), then the
//! spec's roles (create, password), then its databases (create, owner).
//! Extensions are planned per database by [`plan_extensions`] once the
//! database exists (see `execute`). The planner applies every op it emits to
//! a [`Model`] of the snapshot, so later decisions see earlier ops, and a
//! plan that Postgres' rules would refuse is reported as an error instead of
//! being executed halfway.

use super::model::Model;
use super::ops::{DbOption, Op, Secret};
use super::snapshot::{InstalledExtension, Snapshot};
use crate::spec::{ComputeSpec, DeltaAction, Extension, GenericOption};

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
    for d in spec.delta_ops() {
        let new_name = d.new_name.as_deref().unwrap_or_default();
        match d.action {
            DeltaAction::DeleteDb => p.delete_db(&d.name)?,
            DeltaAction::RenameDb => p.rename_db(&d.name, new_name)?,
            DeltaAction::DeleteRole => p.delete_role(&d.name)?,
            DeltaAction::RenameRole => p.rename_role(&d.name, new_name)?,
        }
    }
    for role in &spec.cluster.roles {
        if p.model.is_protected_role(&role.name) {
            continue;
        }
        let password = stored_password(role.encrypted_password.as_deref());
        match p.model.roles.get(&role.name) {
            None if role.name.starts_with("pg_") => {
                return Err(PlanError::ReservedRoleName(role.name.clone()));
            }
            None => p.push(Op::CreateRole {
                name: role.name.clone(),
                password,
            })?,
            Some(r) if r.password != password => p.push(Op::AlterRolePassword {
                name: role.name.clone(),
                password,
            })?,
            Some(_) => {}
        }
    }
    for db in &spec.cluster.databases {
        if !p.model.roles.contains_key(&db.owner) {
            return Err(PlanError::UnknownOwner {
                database: db.name.clone(),
                owner: db.owner.clone(),
            });
        }
        let existing = p.model.databases.get(&db.name).cloned();
        match existing {
            Some(d) if d.valid => {
                if d.owner != db.owner {
                    p.push(Op::AlterDatabaseOwner {
                        name: db.name.clone(),
                        owner: db.owner.clone(),
                    })?;
                }
            }
            _ => {
                if existing.is_some() {
                    // Invalid (an interrupted DROP DATABASE): unusable, so
                    // finish the drop and create it afresh.
                    p.delete_db(&db.name)?;
                }
                let options = db
                    .options
                    .iter()
                    .flatten()
                    .map(|o| db_option(&db.name, o))
                    .collect::<Result<Vec<_>, _>>()?;
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

/// Plans the extensions of one database: create the missing ones, update
/// those whose wanted version differs from the installed one.
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
