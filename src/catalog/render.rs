//! Renders an [`Op`] to the one SQL statement that performs it.
//!
//! The dialect is deliberately small and regular so that the simulator can
//! parse it back into ops: keywords in upper case, single spaces, every name
//! double-quoted ([`quote_ident`]), every string a literal ([`quote_literal`]),
//! no trailing semicolon.

use super::ops::{DbOption, Op, Secret};
use super::quote::{quote_ident, quote_literal};

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

fn render_with(op: &Op, redact: bool) -> String {
    let q = |s: &str| quote_ident(s);
    match op {
        Op::CreateRole { name, password: p } => match p {
            None => format!("CREATE ROLE {} WITH LOGIN", q(name)),
            Some(_) => format!(
                "CREATE ROLE {} WITH LOGIN PASSWORD {}",
                q(name),
                password(p, redact)
            ),
        },
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
        Op::UpdateExtension { name, version, .. } => {
            format!(
                "ALTER EXTENSION {} UPDATE TO {}",
                q(name),
                quote_literal(version)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        };
        assert_eq!(render(&none), r#"CREATE ROLE "r" WITH LOGIN"#);
    }
}
