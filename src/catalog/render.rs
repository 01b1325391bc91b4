//! Renders an [`Op`] to the one SQL statement that performs it.
//!
//! The dialect is deliberately small and regular so that the simulator can
//! parse it back into ops: keywords in upper case, single spaces, every name
//! double-quoted ([`quote_ident`]), every string a literal ([`quote_literal`]),
//! no trailing semicolon.

use super::ops::{DbOption, Op, RoleAttr, Secret};
use super::quote::{quote_ident, quote_literal};

/// The database setting that records the extensions last applied in a
/// database (read back by the snapshot).
pub const EXTENSIONS_MARKER: &str = "compute_ctl.extensions";

/// The SQL of `op`, including any password (send it, never log it).
pub fn render(op: &Op) -> String {
    render_with(op, false)
}

/// The SQL of `op` with password literals replaced by `<redacted>`: safe for
/// logs, errors and metrics.
pub fn render_redacted(op: &Op) -> String {
    render_with(op, true)
}

fn password(p: &Option<Secret>, redact: bool) -> String {
    match (p, redact) {
        (None, _) => "NULL".to_string(),
        (Some(_), true) => "<redacted>".to_string(),
        (Some(s), false) => quote_literal(s.expose()),
    }
}

fn db_option(o: &DbOption) -> String {
    let lit = |kw: &str, v: &str| format!("{kw} {}", quote_literal(v));
    match o {
        DbOption::Template(v) => format!("TEMPLATE {}", quote_ident(v)),
        DbOption::Tablespace(v) => format!("TABLESPACE {}", quote_ident(v)),
        DbOption::Encoding(v) => lit("ENCODING", v),
        DbOption::Locale(v) => lit("LOCALE", v),
        DbOption::LcCollate(v) => lit("LC_COLLATE", v),
        DbOption::LcCtype(v) => lit("LC_CTYPE", v),
        DbOption::IcuLocale(v) => lit("ICU_LOCALE", v),
        DbOption::LocaleProvider(v) => lit("LOCALE_PROVIDER", v),
        DbOption::CollationVersion(v) => lit("COLLATION_VERSION", v),
        DbOption::Strategy(v) => lit("STRATEGY", v),
        DbOption::AllowConnections(b) => format!("ALLOW_CONNECTIONS {b}"),
        DbOption::ConnectionLimit(n) => format!("CONNECTION LIMIT {n}"),
        DbOption::IsTemplate(b) => format!("IS_TEMPLATE {b}"),
    }
}

fn role_attr(a: &RoleAttr) -> String {
    let flag = |on: bool, kw: &str| {
        if on {
            kw.to_string()
        } else {
            format!("NO{kw}")
        }
    };
    match a {
        RoleAttr::Login(b) => flag(*b, "LOGIN"),
        RoleAttr::CreateDb(b) => flag(*b, "CREATEDB"),
        RoleAttr::CreateRole(b) => flag(*b, "CREATEROLE"),
        RoleAttr::Replication(b) => flag(*b, "REPLICATION"),
        RoleAttr::BypassRls(b) => flag(*b, "BYPASSRLS"),
        RoleAttr::Inherit(b) => flag(*b, "INHERIT"),
        RoleAttr::ConnectionLimit(n) => format!("CONNECTION LIMIT {n}"),
        RoleAttr::ValidUntil(t) => format!(
            "VALID UNTIL {}",
            quote_literal(t.as_deref().unwrap_or("infinity"))
        ),
    }
}

fn push_all<T>(sql: &mut String, items: &[T], f: impl Fn(&T) -> String) {
    for i in items {
        sql.push(' ');
        sql.push_str(&f(i));
    }
}

fn render_with(op: &Op, redact: bool) -> String {
    let q = |s: &str| quote_ident(s);
    match op {
        Op::CreateRole {
            name,
            password: p,
            attrs,
        } => {
            let mut sql = match p {
                None => format!("CREATE ROLE {} WITH LOGIN", q(name)),
                Some(_) => format!(
                    "CREATE ROLE {} WITH LOGIN PASSWORD {}",
                    q(name),
                    password(p, redact)
                ),
            };
            push_all(&mut sql, attrs, role_attr);
            sql
        }
        Op::AlterRoleAttributes { name, attrs } => {
            let mut sql = format!("ALTER ROLE {} WITH", q(name));
            push_all(&mut sql, attrs, role_attr);
            sql
        }
        Op::GrantRole { role, member } => format!("GRANT {} TO {}", q(role), q(member)),
        Op::RevokeRole {
            role,
            member,
            granted_by: None,
        } => format!("REVOKE {} FROM {}", q(role), q(member)),
        Op::RevokeRole {
            role,
            member,
            granted_by: Some(g),
        } => format!("REVOKE {} FROM {} GRANTED BY {}", q(role), q(member), q(g)),
        Op::AlterRolePassword { name, password: p } => {
            format!(
                "ALTER ROLE {} WITH PASSWORD {}",
                q(name),
                password(p, redact)
            )
        }
        Op::RenameRole { from, to } => format!("ALTER ROLE {} RENAME TO {}", q(from), q(to)),
        Op::ReassignOwned { role, to, .. } => {
            format!("REASSIGN OWNED BY {} TO {}", q(role), q(to))
        }
        Op::DropOwned { role, .. } => format!("DROP OWNED BY {}", q(role)),
        Op::DropRole { name } => format!("DROP ROLE {}", q(name)),
        Op::CreateDatabase {
            name,
            owner,
            options,
        } => {
            let mut sql = format!("CREATE DATABASE {} WITH OWNER {}", q(name), q(owner));
            for o in options {
                sql.push(' ');
                sql.push_str(&db_option(o));
            }
            sql
        }
        Op::AlterDatabaseOwner { name, owner } => {
            format!("ALTER DATABASE {} OWNER TO {}", q(name), q(owner))
        }
        Op::RenameDatabase { from, to } => {
            format!("ALTER DATABASE {} RENAME TO {}", q(from), q(to))
        }
        Op::SetDatabaseTemplate { name, is_template } => {
            format!("ALTER DATABASE {} WITH IS_TEMPLATE {is_template}", q(name))
        }
        Op::AlterDatabaseOptions { name, options } => {
            let mut sql = format!("ALTER DATABASE {}", q(name));
            push_all(&mut sql, options, db_option);
            sql
        }
        Op::DropDatabase { name } => format!("DROP DATABASE {} WITH (FORCE)", q(name)),
        Op::CreateExtension {
            name,
            schema,
            version,
            ..
        } => {
            let mut sql = format!(
                "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA {}",
                q(name),
                q(schema)
            );
            if let Some(v) = version {
                sql.push_str(&format!(" VERSION {}", quote_literal(v)));
            }
            sql
        }
        Op::SetExtensionSchema { name, schema, .. } => {
            format!("ALTER EXTENSION {} SET SCHEMA {}", q(name), q(schema))
        }
        Op::UpdateExtension { name, version, .. } => {
            format!(
                "ALTER EXTENSION {} UPDATE TO {}",
                q(name),
                quote_literal(version)
            )
        }
        Op::GrantSchemaPrivileges {
            schema,
            privileges,
            role,
            ..
        } => {
            let privileges: Vec<&str> = privileges.iter().map(|p| p.keyword()).collect();
            format!(
                "GRANT {} ON SCHEMA {} TO {}",
                privileges.join(", "),
                q(schema),
                q(role)
            )
        }
        Op::SetExtensionsMarker { database, value } => format!(
            "ALTER DATABASE {} SET {EXTENSIONS_MARKER} TO {}",
            q(database),
            quote_literal(value)
        ),
    }
}

/// Shows the op as its SQL with any password redacted (here, beside the
/// renderer, so that `ops` does not import `render`).
impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&render_redacted(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ops::SchemaPrivilege;

    #[test]
    fn renders_hostile_names_and_options() {
        let op = Op::CreateDatabase {
            name: "DB\"2".into(),
            owner: "\"name\";\\n select 1;".into(),
            options: vec![
                DbOption::LcCollate("C".into()),
                DbOption::Template("template0".into()),
                DbOption::ConnectionLimit(-1),
            ],
        };
        assert_eq!(
            render(&op),
            r#"CREATE DATABASE "DB""2" WITH OWNER """name"";\n select 1;" LC_COLLATE 'C' TEMPLATE "template0" CONNECTION LIMIT -1"#
        );
    }

    #[test]
    fn passwords_are_rendered_only_unredacted() {
        let op = Op::AlterRolePassword {
            name: "r".into(),
            password: Some(Secret::new("md5abc")),
        };
        assert_eq!(render(&op), r#"ALTER ROLE "r" WITH PASSWORD 'md5abc'"#);
        assert_eq!(
            render_redacted(&op),
            r#"ALTER ROLE "r" WITH PASSWORD <redacted>"#
        );
        assert!(!format!("{op:?} {op}").contains("md5abc"));
        let none = Op::CreateRole {
            name: "r".into(),
            password: None,
            attrs: vec![],
        };
        assert_eq!(render(&none), r#"CREATE ROLE "r" WITH LOGIN"#);
    }

    #[test]
    fn role_attributes_memberships_and_extension_moves_render() {
        let create = Op::CreateRole {
            name: "r".into(),
            password: Some(Secret::new("md5abc")),
            attrs: vec![
                RoleAttr::CreateDb(true),
                RoleAttr::Inherit(false),
                RoleAttr::ConnectionLimit(3),
                RoleAttr::ValidUntil(Some("2030-01-01T00:00:00Z".into())),
            ],
        };
        assert_eq!(
            render_redacted(&create),
            r#"CREATE ROLE "r" WITH LOGIN PASSWORD <redacted> CREATEDB NOINHERIT CONNECTION LIMIT 3 VALID UNTIL '2030-01-01T00:00:00Z'"#
        );
        let alter = Op::AlterRoleAttributes {
            name: "r".into(),
            attrs: vec![RoleAttr::Login(true), RoleAttr::ValidUntil(None)],
        };
        assert_eq!(
            render(&alter),
            r#"ALTER ROLE "r" WITH LOGIN VALID UNTIL 'infinity'"#
        );
        let grant = Op::GrantRole {
            role: "g\"".into(),
            member: "m".into(),
        };
        assert_eq!(render(&grant), r#"GRANT "g""" TO "m""#);
        let schema = Op::GrantSchemaPrivileges {
            database: "d".into(),
            schema: "s\"".into(),
            privileges: vec![SchemaPrivilege::Usage, SchemaPrivilege::Create],
            role: "r".into(),
        };
        assert_eq!(
            render(&schema),
            r#"GRANT USAGE, CREATE ON SCHEMA "s""" TO "r""#
        );
        let db = Op::AlterDatabaseOptions {
            name: "d".into(),
            options: vec![
                DbOption::AllowConnections(false),
                DbOption::ConnectionLimit(2),
            ],
        };
        assert_eq!(
            render(&db),
            r#"ALTER DATABASE "d" ALLOW_CONNECTIONS false CONNECTION LIMIT 2"#
        );
        let marker = Op::SetExtensionsMarker {
            database: "d".into(),
            value: r#"[{"name":"it's"}]"#.into(),
        };
        assert_eq!(
            render(&marker),
            r#"ALTER DATABASE "d" SET compute_ctl.extensions TO '[{"name":"it''s"}]'"#
        );
    }
}
