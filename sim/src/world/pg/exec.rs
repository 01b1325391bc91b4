//! Executes one statement against the catalog model: the catalog ops (with
//! Postgres' errors for missing/duplicate objects, dependent objects, and
//! database DDL inside a multi-statement Query), the snapshot queries, and
//! the few utility statements the supervisor sends.

use crate::pgmodel::StmtKind;
use crate::pgmodel::catalog::{CatalogModel, DbRow, PgErr, RoleRow};
use crate::pgmodel::ops::{DbOption, EXTENSIONS_SQL, Op, SNAPSHOT_SQL};
use crate::pgmodel::sql;

/// The columns of the supervisor's `REPLICATION_SQL` (`storage::replication`).
pub fn replication_columns() -> Vec<String> {
    [
        "status",
        "sender",
        "received_tli",
        "receive",
        "replay",
        "pause",
    ]
    .map(String::from)
    .to_vec()
}

/// What a statement returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Rows {
        columns: Vec<String>,
        rows: Vec<Vec<Option<String>>>,
        tag: String,
    },
    Command {
        tag: String,
        /// Whether it changed the catalog.
        write: bool,
    },
}

/// A statement, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    Catalog(Op),
    Snapshot,
    Extensions,
    SelectOne,
    Reload,
    /// The supervisor's check after a reload (`pg::FILE_SETTINGS_QUERY`).
    FileSettings,
    /// `SHOW server_version_num`, asked of a base backup source.
    ServerVersion,
    /// The activity monitor's poll of `pg_stat_activity`.
    Activity,
    /// The replication watcher's read of the WAL receiver.
    Replication,
    Utility(&'static str),
}

impl Parsed {
    pub fn is_catalog_write(&self) -> bool {
        matches!(self, Parsed::Catalog(_))
    }

    /// Catalog reads and writes (what a "slow catalog" slows down).
    pub fn is_catalog(&self) -> bool {
        matches!(
            self,
            Parsed::Catalog(_) | Parsed::Snapshot | Parsed::Extensions
        )
    }

    pub fn is_reload(&self) -> bool {
        matches!(self, Parsed::Reload)
    }

    pub fn kind(&self) -> StmtKind {
        match self {
            Parsed::Catalog(_) => StmtKind::CatalogWrite,
            Parsed::Snapshot | Parsed::Extensions => StmtKind::CatalogRead,
            Parsed::Reload => StmtKind::Reload,
            Parsed::Activity | Parsed::Replication => StmtKind::Monitor,
            Parsed::SelectOne
            | Parsed::FileSettings
            | Parsed::ServerVersion
            | Parsed::Utility(_) => StmtKind::Other,
        }
    }
}

/// Splits a simple Query into statements at `;` outside quotes.
pub fn split_statements(sql: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut in_ident, mut in_str, mut esc_str) = (0, false, false, false);
    let b = sql.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_ident {
            in_ident = c != b'"';
        } else if in_str {
            if esc_str && c == b'\\' {
                i += 1;
            } else if c == b'\'' {
                in_str = false;
            }
        } else {
            match c {
                b'"' => in_ident = true,
                b'\'' => {
                    in_str = true;
                    esc_str = i > 0 && (b[i - 1] == b'E' || b[i - 1] == b'e');
                }
                b';' => {
                    out.push(&sql[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

/// Understands one statement (run in database `db`).
pub fn parse(stmt: &str, db: &str) -> Result<Parsed, PgErr> {
    if stmt == SNAPSHOT_SQL {
        return Ok(Parsed::Snapshot);
    }
    if stmt == EXTENSIONS_SQL {
        return Ok(Parsed::Extensions);
    }
    if stmt == compute_ctl::monitor::activity_query() {
        return Ok(Parsed::Activity);
    }
    if stmt == compute_ctl::pg::FILE_SETTINGS_QUERY {
        return Ok(Parsed::FileSettings);
    }
    if stmt == compute_ctl::storage::REPLICATION_SQL {
        return Ok(Parsed::Replication);
    }
    if let Some(op) = sql::parse_op(stmt, db)? {
        return Ok(Parsed::Catalog(op));
    }
    let norm = stmt.to_ascii_lowercase();
    let norm = norm.trim();
    Ok(match norm {
        "select 1" => Parsed::SelectOne,
        // compute_ctl asks a base backup source its major (the sim's is 15).
        "show server_version_num" => Parsed::ServerVersion,
        "select pg_reload_conf()" | "select pg_catalog.pg_reload_conf()" => Parsed::Reload,
        "begin" => Parsed::Utility("BEGIN"),
        "commit" => Parsed::Utility("COMMIT"),
        "rollback" => Parsed::Utility("ROLLBACK"),
        s if s.starts_with("set ") => Parsed::Utility("SET"),
        _ => {
            return Err(PgErr::new(
                "42601",
                format!("the simulated server does not understand: {stmt}"),
            ));
        }
    })
}

fn one_value(col: &str, v: String) -> Reply {
    Reply::Rows {
        columns: vec![col.to_string()],
        rows: vec![vec![Some(v)]],
        tag: "SELECT 1".into(),
    }
}

fn cmd(tag: &str) -> Result<Reply, PgErr> {
    Ok(Reply::Command {
        tag: tag.to_string(),
        write: true,
    })
}

fn no_role(r: &str) -> PgErr {
    PgErr::new("42704", format!("role \"{r}\" does not exist"))
}

fn no_db(d: &str) -> PgErr {
    PgErr::new("3D000", format!("database \"{d}\" does not exist"))
}

/// Executes a parsed statement as `user` in `db`; `multi` means it is one of
/// several statements of a Query (an implicit transaction block).
pub fn execute(
    cat: &mut CatalogModel,
    parsed: &Parsed,
    user: &str,
    db: &str,
    multi: bool,
) -> Result<Reply, PgErr> {
    match parsed {
        Parsed::Snapshot => Ok(one_value("json_build_object", cat.snapshot_json(user))),
        Parsed::Extensions => Ok(one_value("coalesce", cat.extensions_json(db))),
        Parsed::SelectOne => Ok(one_value("?column?", "1".into())),
        // The simulated server is a 15 (as `postgres --version` in procs.rs).
        Parsed::ServerVersion => Ok(one_value("server_version_num", "150008".into())),
        Parsed::Reload => Ok(one_value("pg_reload_conf", "t".into())),
        // The simulated postmaster takes every line of its config file
        // (guc::parse_conf), so no line has an error.
        Parsed::FileSettings => Ok(Reply::Rows {
            columns: ["sourcefile", "sourceline", "name", "setting", "error"]
                .map(String::from)
                .to_vec(),
            rows: Vec::new(),
            tag: "SELECT 0".into(),
        }),
        Parsed::Replication => Ok(Reply::Rows {
            columns: replication_columns(),
            rows: vec![vec![None; 7]],
            tag: "SELECT 1".into(),
        }),
        Parsed::Activity => Ok(Reply::Rows {
            columns: vec!["count".into(), "extract".into()],
            rows: vec![vec![Some("0".into()), None]],
            tag: "SELECT 1".into(),
        }),
        Parsed::Utility(tag) => Ok(Reply::Command {
            tag: (*tag).to_string(),
            write: false,
        }),
        Parsed::Catalog(op) => apply(cat, op, user, db, multi),
    }
}

fn apply(
    cat: &mut CatalogModel,
    op: &Op,
    user: &str,
    db: &str,
    multi: bool,
) -> Result<Reply, PgErr> {
    match op {
        Op::CreateRole {
            name,
            password,
            attrs,
        } => {
            if cat.roles.contains_key(name) {
                return Err(PgErr::new(
                    "42710",
                    format!("role \"{name}\" already exists"),
                ));
            }
            let mut row = RoleRow::new(
                password.as_ref().map(|p| p.expose().to_string()),
                false,
                false,
            );
            for a in attrs {
                row.attrs.set(a);
            }
            cat.roles.insert(name.clone(), row);
            cmd("CREATE ROLE")
        }
        Op::AlterRoleAttributes { name, attrs } => {
            let r = cat.roles.get_mut(name).ok_or_else(|| no_role(name))?;
            for a in attrs {
                r.attrs.set(a);
            }
            cmd("ALTER ROLE")
        }
        Op::GrantRole { role, member } => {
            if !cat.roles.contains_key(role) {
                return Err(no_role(role));
            }
            let m = cat.roles.get_mut(member).ok_or_else(|| no_role(member))?;
            m.member_of.insert(role.clone());
            cmd("GRANT ROLE")
        }
        // One grant per membership, by the supervisor (what the sim's
        // catalog records): revoking it, with or without GRANTED BY that
        // user, ends the membership; another grantor's has nothing to revoke.
        Op::RevokeRole {
            role,
            member,
            granted_by,
        } => {
            if granted_by.as_deref().is_some_and(|g| g != user) {
                return cmd("REVOKE ROLE");
            }
            if !cat.roles.contains_key(role) {
                return Err(no_role(role));
            }
            let m = cat.roles.get_mut(member).ok_or_else(|| no_role(member))?;
            m.member_of.remove(role);
            cmd("REVOKE ROLE")
        }
        Op::AlterRolePassword { name, password } => {
            let r = cat.roles.get_mut(name).ok_or_else(|| no_role(name))?;
            r.password = password.as_ref().map(|p| p.expose().to_string());
            cmd("ALTER ROLE")
        }
        Op::RenameRole { from, to } => {
            if from == user {
                return Err(PgErr::new("0A000", "session user cannot be renamed"));
            }
            if cat.roles.contains_key(to) {
                return Err(PgErr::new("42710", format!("role \"{to}\" already exists")));
            }
            let mut r = cat.roles.remove(from).ok_or_else(|| no_role(from))?;
            // Postgres clears an md5 password on rename (the name is its salt).
            if r.password.as_deref().is_some_and(|p| p.starts_with("md5")) {
                r.password = None;
            }
            cat.roles.insert(to.clone(), r);
            for r in cat.roles.values_mut() {
                if r.member_of.remove(from) {
                    r.member_of.insert(to.clone());
                }
            }
            for d in cat.databases.values_mut() {
                if d.owner == *from {
                    d.owner = to.clone();
                }
            }
            cmd("ALTER ROLE")
        }
        Op::ReassignOwned { role, to, .. } => {
            if !cat.roles.contains_key(role) {
                return Err(no_role(role));
            }
            if !cat.roles.contains_key(to) {
                return Err(no_role(to));
            }
            for d in cat.databases.values_mut() {
                if d.owner == *role {
                    d.owner = to.clone();
                }
            }
            cmd("REASSIGN OWNED")
        }
        Op::DropOwned { role, .. } => {
            if !cat.roles.contains_key(role) {
                return Err(no_role(role));
            }
            cmd("DROP OWNED")
        }
        Op::DropRole { name } => {
            if name == user {
                return Err(PgErr::new("55006", "current user cannot be dropped"));
            }
            if !cat.roles.contains_key(name) {
                return Err(no_role(name));
            }
            if let Some((d, _)) = cat.databases.iter().find(|(_, d)| d.owner == *name) {
                return Err(PgErr::new(
                    "2BP01",
                    format!(
                        "role \"{name}\" cannot be dropped because some objects depend on it (owner of database {d})"
                    ),
                ));
            }
            cat.roles.remove(name);
            for r in cat.roles.values_mut() {
                r.member_of.remove(name);
            }
            cmd("DROP ROLE")
        }
        Op::CreateDatabase {
            name,
            owner,
            options,
        } => {
            if multi {
                return Err(PgErr::new(
                    "25001",
                    "CREATE DATABASE cannot run inside a transaction block",
                ));
            }
            if cat.databases.contains_key(name) {
                return Err(PgErr::new(
                    "42P04",
                    format!("database \"{name}\" already exists"),
                ));
            }
            if !cat.roles.contains_key(owner) {
                return Err(no_role(owner));
            }
            let mut row = DbRow::new(owner);
            for o in options {
                match o {
                    DbOption::Template(t) if !cat.databases.contains_key(t) => {
                        return Err(PgErr::new(
                            "3D000",
                            format!("template database \"{t}\" does not exist"),
                        ));
                    }
                    DbOption::AllowConnections(b) => row.allow_connections = *b,
                    DbOption::IsTemplate(b) => row.is_template = *b,
                    DbOption::ConnectionLimit(n) => row.connection_limit = *n,
                    _ => {}
                }
            }
            cat.databases.insert(name.clone(), row);
            cmd("CREATE DATABASE")
        }
        Op::AlterDatabaseOwner { name, owner } => {
            if !cat.roles.contains_key(owner) {
                return Err(no_role(owner));
            }
            let d = cat.databases.get_mut(name).ok_or_else(|| no_db(name))?;
            d.owner = owner.clone();
            cmd("ALTER DATABASE")
        }
        Op::RenameDatabase { from, to } => {
            if from == db {
                return Err(PgErr::new("55006", "current database cannot be renamed"));
            }
            if cat.databases.contains_key(to) {
                return Err(PgErr::new(
                    "42P04",
                    format!("database \"{to}\" already exists"),
                ));
            }
            let d = cat.databases.remove(from).ok_or_else(|| no_db(from))?;
            cat.databases.insert(to.clone(), d);
            cmd("ALTER DATABASE")
        }
        Op::AlterDatabaseOptions { name, options } => {
            let d = cat.databases.get_mut(name).ok_or_else(|| no_db(name))?;
            if !d.valid {
                return Err(PgErr::new(
                    "55000",
                    format!("cannot alter invalid database \"{name}\""),
                ));
            }
            for o in options {
                match o {
                    DbOption::AllowConnections(b) => d.allow_connections = *b,
                    DbOption::IsTemplate(b) => d.is_template = *b,
                    DbOption::ConnectionLimit(n) => d.connection_limit = *n,
                    other => {
                        return Err(PgErr::new(
                            "42601",
                            format!("option {other:?} cannot be changed by ALTER DATABASE"),
                        ));
                    }
                }
            }
            cmd("ALTER DATABASE")
        }
        // Schema privileges are not modelled (no spec field grants them);
        // an unknown role is refused as Postgres refuses it.
        Op::GrantSchemaPrivileges { role, .. } => {
            if !cat.roles.contains_key(role) {
                return Err(no_role(role));
            }
            cmd("GRANT")
        }
        Op::SetExtensionsMarker { database, value } => {
            let d = cat
                .databases
                .get_mut(database)
                .ok_or_else(|| no_db(database))?;
            d.extensions_marker = Some(value.clone());
            cmd("ALTER DATABASE")
        }
        Op::SetDatabaseTemplate { name, is_template } => {
            let d = cat.databases.get_mut(name).ok_or_else(|| no_db(name))?;
            d.is_template = *is_template;
            cmd("ALTER DATABASE")
        }
        Op::DropDatabase { name } => {
            if multi {
                return Err(PgErr::new(
                    "25001",
                    "DROP DATABASE cannot run inside a transaction block",
                ));
            }
            if name == db {
                return Err(PgErr::new(
                    "55006",
                    "cannot drop the currently open database",
                ));
            }
            let d = cat.databases.get(name).ok_or_else(|| no_db(name))?;
            if d.is_template {
                return Err(PgErr::new("55006", "cannot drop a template database"));
            }
            cat.databases.remove(name);
            cmd("DROP DATABASE")
        }
        Op::CreateExtension {
            name,
            schema,
            version,
            ..
        } => {
            let d = cat.databases.get_mut(db).ok_or_else(|| no_db(db))?;
            d.extensions.entry(name.clone()).or_insert_with(|| {
                (
                    schema.clone(),
                    version.clone().unwrap_or_else(|| "1.0".into()),
                )
            });
            cmd("CREATE EXTENSION")
        }
        Op::SetExtensionSchema { name, schema, .. } => {
            let d = cat.databases.get_mut(db).ok_or_else(|| no_db(db))?;
            let e = d.extensions.get_mut(name).ok_or_else(|| {
                PgErr::new("42704", format!("extension \"{name}\" does not exist"))
            })?;
            e.0 = schema.clone();
            cmd("ALTER EXTENSION")
        }
        Op::UpdateExtension { name, version, .. } => {
            let d = cat.databases.get_mut(db).ok_or_else(|| no_db(db))?;
            let e = d.extensions.get_mut(name).ok_or_else(|| {
                PgErr::new("42704", format!("extension \"{name}\" does not exist"))
            })?;
            e.1 = version.clone();
            cmd("ALTER EXTENSION")
        }
    }
}
