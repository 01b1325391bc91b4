//! Parses exactly the SQL dialect the catalog renderer emits
//! (`compute_ctl::catalog::render`) back into catalog ops: upper-case
//! keywords, every name a double-quoted identifier, every string a literal
//! (`'...'` or `E'...'`). Anything else is a syntax error, so a renderer that
//! drifts from its dialect fails in the simulator.

use super::catalog::PgErr;
use super::ops::{DbOption, EXTENSIONS_MARKER, Op, RoleAttr, Secret};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok {
    /// A double-quoted identifier, unescaped.
    Ident(String),
    /// An unquoted word, upper-cased.
    Word(String),
    /// A string literal, unescaped.
    Str(String),
    Num(i64),
    Punct(char),
}

fn syntax(msg: impl Into<String>) -> PgErr {
    PgErr::new("42601", msg)
}

/// Splits a statement into tokens.
pub fn tokenize(sql: &str) -> Result<Vec<Tok>, PgErr> {
    let mut out = Vec::new();
    let cs: Vec<char> = sql.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' {
            let mut s = String::new();
            i += 1;
            loop {
                match cs.get(i) {
                    None => return Err(syntax("unterminated quoted identifier")),
                    Some('"') if cs.get(i + 1) == Some(&'"') => {
                        s.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            if s.is_empty() {
                return Err(syntax("zero-length delimited identifier"));
            }
            out.push(Tok::Ident(s));
        } else if c == '\'' || ((c == 'E' || c == 'e') && cs.get(i + 1) == Some(&'\'')) {
            let escaped = c != '\'';
            i += if escaped { 2 } else { 1 };
            let mut s = String::new();
            loop {
                match cs.get(i) {
                    None => return Err(syntax("unterminated quoted string")),
                    Some('\'') if cs.get(i + 1) == Some(&'\'') => {
                        s.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some('\\') if escaped => {
                        match cs.get(i + 1) {
                            Some(&n) => s.push(n),
                            None => return Err(syntax("unterminated quoted string")),
                        }
                        i += 2;
                    }
                    Some(&ch) => {
                        s.push(ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_ascii_digit()
            || (c == '-' && cs.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while cs.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            let text: String = cs[start..i].iter().collect();
            out.push(Tok::Num(text.parse().map_err(|_| syntax("bad number"))?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while cs
                .get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_')
            {
                i += 1;
            }
            let w: String = cs[start..i].iter().collect();
            out.push(Tok::Word(w.to_ascii_uppercase()));
        } else {
            out.push(Tok::Punct(c));
            i += 1;
        }
    }
    Ok(out)
}

struct P {
    toks: Vec<Tok>,
    at: usize,
}

impl P {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.at)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn kw(&mut self, w: &str) -> Result<(), PgErr> {
        match self.next() {
            Some(Tok::Word(x)) if x == w => Ok(()),
            other => Err(syntax(format!(
                "syntax error: expected {w}, found {other:?}"
            ))),
        }
    }

    fn is_kw(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn ident(&mut self) -> Result<String, PgErr> {
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            other => Err(syntax(format!(
                "syntax error: expected a double-quoted identifier, found {other:?}"
            ))),
        }
    }

    fn string(&mut self) -> Result<String, PgErr> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(syntax(format!(
                "syntax error: expected a string literal, found {other:?}"
            ))),
        }
    }

    fn boolean(&mut self) -> Result<bool, PgErr> {
        match self.next() {
            Some(Tok::Word(w)) if w == "TRUE" => Ok(true),
            Some(Tok::Word(w)) if w == "FALSE" => Ok(false),
            other => Err(syntax(format!(
                "syntax error: expected true or false, found {other:?}"
            ))),
        }
    }

    fn password(&mut self) -> Result<Option<Secret>, PgErr> {
        if self.is_kw("NULL") {
            self.at += 1;
            return Ok(None);
        }
        Ok(Some(Secret::new(self.string()?)))
    }

    fn number(&mut self) -> Result<i32, PgErr> {
        match self.next() {
            Some(Tok::Num(n)) => i32::try_from(n).map_err(|_| syntax("number out of range")),
            other => Err(syntax(format!(
                "syntax error: expected a number, found {other:?}"
            ))),
        }
    }

    /// Role attributes up to the end of the statement.
    fn role_attrs(&mut self) -> Result<Vec<RoleAttr>, PgErr> {
        let mut out = Vec::new();
        while let Some(t) = self.next() {
            let Tok::Word(w) = t else {
                return Err(syntax(format!("syntax error at or near {t:?}")));
            };
            let (on, kw) = match w.strip_prefix("NO") {
                Some(rest) => (false, rest.to_string()),
                None => (true, w.clone()),
            };
            out.push(match kw.as_str() {
                "LOGIN" => RoleAttr::Login(on),
                "CREATEDB" => RoleAttr::CreateDb(on),
                "CREATEROLE" => RoleAttr::CreateRole(on),
                "REPLICATION" => RoleAttr::Replication(on),
                "BYPASSRLS" => RoleAttr::BypassRls(on),
                "INHERIT" => RoleAttr::Inherit(on),
                "CONNECTION" if on => {
                    self.kw("LIMIT")?;
                    RoleAttr::ConnectionLimit(self.number()?)
                }
                "VALID" if on => {
                    self.kw("UNTIL")?;
                    let t = self.string()?;
                    RoleAttr::ValidUntil((t != "infinity").then_some(t))
                }
                _ => return Err(syntax(format!("syntax error: unknown role option {w}"))),
            });
        }
        Ok(out)
    }

    fn end(&self) -> Result<(), PgErr> {
        match self.peek() {
            None => Ok(()),
            Some(t) => Err(syntax(format!("syntax error at or near {t:?}"))),
        }
    }
}

/// Parses one catalog statement; `database` is the session's database (for
/// ops that run inside one). `Ok(None)` when the statement is not catalog DDL.
pub fn parse_op(sql: &str, database: &str) -> Result<Option<Op>, PgErr> {
    let toks = tokenize(sql)?;
    if let Some(Tok::Word(w)) = toks.first() {
        if w == "GRANT" || w == "REVOKE" {
            let mut p = P {
                toks: toks.clone(),
                at: 1,
            };
            let role = p.ident()?;
            let op = if w == "GRANT" {
                p.kw("TO")?;
                Op::GrantRole {
                    role,
                    member: p.ident()?,
                }
            } else {
                p.kw("FROM")?;
                let member = p.ident()?;
                let granted_by = if p.peek().is_some() {
                    p.kw("GRANTED")?;
                    p.kw("BY")?;
                    Some(p.ident()?)
                } else {
                    None
                };
                Op::RevokeRole {
                    role,
                    member,
                    granted_by,
                }
            };
            p.end()?;
            return Ok(Some(op));
        }
    }
    let first_two: Vec<&Tok> = toks.iter().take(2).collect();
    let head = match first_two.as_slice() {
        [Tok::Word(a), Tok::Word(b)] => (a.as_str(), b.as_str()),
        _ => return Ok(None),
    };
    let mut p = P {
        toks: toks.clone(),
        at: 2,
    };
    let db = database.to_string();
    let op = match head {
        ("CREATE", "ROLE") => {
            let name = p.ident()?;
            p.kw("WITH")?;
            p.kw("LOGIN")?;
            let password = if p.is_kw("PASSWORD") {
                p.at += 1;
                p.password()?
            } else {
                None
            };
            Op::CreateRole {
                name,
                password,
                attrs: p.role_attrs()?,
            }
        }
        ("ALTER", "ROLE") => {
            let name = p.ident()?;
            if p.is_kw("RENAME") {
                p.at += 1;
                p.kw("TO")?;
                Op::RenameRole {
                    from: name,
                    to: p.ident()?,
                }
            } else {
                p.kw("WITH")?;
                if p.is_kw("PASSWORD") {
                    p.at += 1;
                    Op::AlterRolePassword {
                        name,
                        password: p.password()?,
                    }
                } else {
                    Op::AlterRoleAttributes {
                        name,
                        attrs: p.role_attrs()?,
                    }
                }
            }
        }
        ("REASSIGN", "OWNED") => {
            p.kw("BY")?;
            let role = p.ident()?;
            p.kw("TO")?;
            Op::ReassignOwned {
                database: db,
                role,
                to: p.ident()?,
            }
        }
        ("DROP", "OWNED") => {
            p.kw("BY")?;
            Op::DropOwned {
                database: db,
                role: p.ident()?,
            }
        }
        ("DROP", "ROLE") => Op::DropRole { name: p.ident()? },
        ("CREATE", "DATABASE") => {
            let name = p.ident()?;
            p.kw("WITH")?;
            p.kw("OWNER")?;
            let owner = p.ident()?;
            let mut options = Vec::new();
            while p.peek().is_some() {
                options.push(db_option(&mut p)?);
            }
            Op::CreateDatabase {
                name,
                owner,
                options,
            }
        }
        ("ALTER", "DATABASE") => {
            let name = p.ident()?;
            match p.next() {
                Some(Tok::Word(w)) if w == "OWNER" => {
                    p.kw("TO")?;
                    Op::AlterDatabaseOwner {
                        name,
                        owner: p.ident()?,
                    }
                }
                Some(Tok::Word(w)) if w == "RENAME" => {
                    p.kw("TO")?;
                    Op::RenameDatabase {
                        from: name,
                        to: p.ident()?,
                    }
                }
                Some(Tok::Word(w)) if w == "WITH" => {
                    p.kw("IS_TEMPLATE")?;
                    Op::SetDatabaseTemplate {
                        name,
                        is_template: p.boolean()?,
                    }
                }
                Some(Tok::Word(w)) if w == "SET" => {
                    let (prefix, setting) = EXTENSIONS_MARKER
                        .split_once('.')
                        .unwrap_or((EXTENSIONS_MARKER, ""));
                    p.kw(&prefix.to_ascii_uppercase())?;
                    if p.next() != Some(Tok::Punct('.')) {
                        return Err(syntax("syntax error: expected ."));
                    }
                    p.kw(&setting.to_ascii_uppercase())?;
                    p.kw("TO")?;
                    Op::SetExtensionsMarker {
                        database: name,
                        value: p.string()?,
                    }
                }
                Some(Tok::Word(_)) => {
                    p.at -= 1;
                    let mut options = Vec::new();
                    while p.peek().is_some() {
                        options.push(db_option(&mut p)?);
                    }
                    Op::AlterDatabaseOptions { name, options }
                }
                other => return Err(syntax(format!("syntax error at or near {other:?}"))),
            }
        }
        ("DROP", "DATABASE") => {
            let name = p.ident()?;
            p.kw("WITH")?;
            for want in [Tok::Punct('('), Tok::Word("FORCE".into()), Tok::Punct(')')] {
                if p.next() != Some(want.clone()) {
                    return Err(syntax("syntax error: expected WITH (FORCE)"));
                }
            }
            Op::DropDatabase { name }
        }
        ("CREATE", "EXTENSION") => {
            p.kw("IF")?;
            p.kw("NOT")?;
            p.kw("EXISTS")?;
            let name = p.ident()?;
            p.kw("WITH")?;
            p.kw("SCHEMA")?;
            let schema = p.ident()?;
            let version = if p.is_kw("VERSION") {
                p.at += 1;
                Some(p.string()?)
            } else {
                None
            };
            Op::CreateExtension {
                database: db,
                name,
                schema,
                version,
            }
        }
        ("ALTER", "EXTENSION") => {
            let name = p.ident()?;
            if p.is_kw("SET") {
                p.at += 1;
                p.kw("SCHEMA")?;
                Op::SetExtensionSchema {
                    database: db,
                    name,
                    schema: p.ident()?,
                }
            } else {
                p.kw("UPDATE")?;
                p.kw("TO")?;
                Op::UpdateExtension {
                    database: db,
                    name,
                    version: p.string()?,
                }
            }
        }
        _ => return Ok(None),
    };
    p.end()?;
    Ok(Some(op))
}

fn db_option(p: &mut P) -> Result<DbOption, PgErr> {
    let Some(Tok::Word(w)) = p.next() else {
        return Err(syntax("syntax error: expected a database option"));
    };
    Ok(match w.as_str() {
        "TEMPLATE" => DbOption::Template(p.ident()?),
        "TABLESPACE" => DbOption::Tablespace(p.ident()?),
        "ENCODING" => DbOption::Encoding(p.string()?),
        "LOCALE" => DbOption::Locale(p.string()?),
        "LC_COLLATE" => DbOption::LcCollate(p.string()?),
        "LC_CTYPE" => DbOption::LcCtype(p.string()?),
        "ICU_LOCALE" => DbOption::IcuLocale(p.string()?),
        "LOCALE_PROVIDER" => DbOption::LocaleProvider(p.string()?),
        "COLLATION_VERSION" => DbOption::CollationVersion(p.string()?),
        "STRATEGY" => DbOption::Strategy(p.string()?),
        "ALLOW_CONNECTIONS" => DbOption::AllowConnections(p.boolean()?),
        "IS_TEMPLATE" => DbOption::IsTemplate(p.boolean()?),
        "CONNECTION" => {
            p.kw("LIMIT")?;
            match p.next() {
                Some(Tok::Num(n)) => DbOption::ConnectionLimit(
                    i32::try_from(n).map_err(|_| syntax("connection limit out of range"))?,
                ),
                _ => return Err(syntax("syntax error: expected a number")),
            }
        }
        other => {
            return Err(syntax(format!(
                "syntax error: unknown database option {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use compute_ctl::catalog::render;
    use proptest::prelude::*;

    /// Names Postgres accepts, hostile ones included.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_]{0,10}",
            "[A-Za-z \"';\\\\$\n-]{1,12}",
            Just("select".to_string()),
            Just("\"name\";\\n select 1;".to_string()),
            Just("🐘 émoji".to_string()),
        ]
    }

    fn literal() -> impl Strategy<Value = String> {
        prop_oneof![
            "[ -~]{0,12}",
            Just("it's \\ back".to_string()),
            "md5[0-9a-f]{32}"
        ]
    }

    fn password() -> impl Strategy<Value = Option<Secret>> {
        proptest::option::of(literal().prop_map(Secret::new))
    }

    fn db_option() -> impl Strategy<Value = DbOption> {
        prop_oneof![
            name().prop_map(DbOption::Template),
            name().prop_map(DbOption::Tablespace),
            literal().prop_map(DbOption::Encoding),
            literal().prop_map(DbOption::Locale),
            literal().prop_map(DbOption::LcCollate),
            literal().prop_map(DbOption::LcCtype),
            literal().prop_map(DbOption::IcuLocale),
            literal().prop_map(DbOption::LocaleProvider),
            literal().prop_map(DbOption::CollationVersion),
            literal().prop_map(DbOption::Strategy),
            any::<bool>().prop_map(DbOption::AllowConnections),
            any::<i32>().prop_map(DbOption::ConnectionLimit),
            any::<bool>().prop_map(DbOption::IsTemplate),
        ]
    }

    fn role_attr() -> impl Strategy<Value = RoleAttr> {
        prop_oneof![
            any::<bool>().prop_map(RoleAttr::Login),
            any::<bool>().prop_map(RoleAttr::CreateDb),
            any::<bool>().prop_map(RoleAttr::CreateRole),
            any::<bool>().prop_map(RoleAttr::Replication),
            any::<bool>().prop_map(RoleAttr::BypassRls),
            any::<bool>().prop_map(RoleAttr::Inherit),
            (-1..100i32).prop_map(RoleAttr::ConnectionLimit),
            prop::option::of(Just("2030-01-01T00:00:00Z".to_string()))
                .prop_map(RoleAttr::ValidUntil),
        ]
    }

    fn alter_db_option() -> impl Strategy<Value = DbOption> {
        prop_oneof![
            any::<bool>().prop_map(DbOption::AllowConnections),
            any::<i32>().prop_map(DbOption::ConnectionLimit),
            any::<bool>().prop_map(DbOption::IsTemplate),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (name(), password(), prop::collection::vec(role_attr(), 0..3)).prop_map(
                |(name, password, attrs)| Op::CreateRole {
                    name,
                    password,
                    attrs
                }
            ),
            (name(), prop::collection::vec(role_attr(), 1..4))
                .prop_map(|(name, attrs)| Op::AlterRoleAttributes { name, attrs }),
            (name(), name()).prop_map(|(role, member)| Op::GrantRole { role, member }),
            (name(), name(), prop::option::of(name())).prop_map(|(role, member, granted_by)| {
                Op::RevokeRole {
                    role,
                    member,
                    granted_by,
                }
            }),
            (name(), prop::collection::vec(alter_db_option(), 1..4))
                .prop_map(|(name, options)| Op::AlterDatabaseOptions { name, options }),
            (name(), literal())
                .prop_map(|(database, value)| Op::SetExtensionsMarker { database, value }),
            (name(), name(), name()).prop_map(|(database, name, schema)| Op::SetExtensionSchema {
                database,
                name,
                schema
            }),
            (name(), password())
                .prop_map(|(name, password)| Op::AlterRolePassword { name, password }),
            (name(), name()).prop_map(|(from, to)| Op::RenameRole { from, to }),
            (name(), name(), name()).prop_map(|(database, role, to)| Op::ReassignOwned {
                database,
                role,
                to
            }),
            (name(), name()).prop_map(|(database, role)| Op::DropOwned { database, role }),
            name().prop_map(|name| Op::DropRole { name }),
            (name(), name(), prop::collection::vec(db_option(), 0..4)).prop_map(
                |(name, owner, options)| Op::CreateDatabase {
                    name,
                    owner,
                    options
                }
            ),
            (name(), name()).prop_map(|(name, owner)| Op::AlterDatabaseOwner { name, owner }),
            (name(), name()).prop_map(|(from, to)| Op::RenameDatabase { from, to }),
            (name(), any::<bool>())
                .prop_map(|(name, is_template)| Op::SetDatabaseTemplate { name, is_template }),
            name().prop_map(|name| Op::DropDatabase { name }),
            (name(), name(), name(), proptest::option::of(literal())).prop_map(
                |(database, name, schema, version)| Op::CreateExtension {
                    database,
                    name,
                    schema,
                    version
                }
            ),
            (name(), name(), literal()).prop_map(|(database, name, version)| Op::UpdateExtension {
                database,
                name,
                version
            }),
        ]
    }

    proptest! {
        /// The simulated server understands exactly what the renderer emits.
        #[test]
        fn parse_of_render_is_the_op(op in op()) {
            let db = op.database().unwrap_or("postgres").to_string();
            let sql = render(&op);
            let parsed = parse_op(&sql, &db).map_err(|e| TestCaseError::fail(format!("{sql}: {e:?}")))?;
            prop_assert_eq!(parsed, Some(op), "{}", sql);
        }
    }

    #[test]
    fn drift_from_the_dialect_is_a_syntax_error() {
        // Unquoted names, a missing WITH, trailing garbage.
        for bad in [
            "CREATE ROLE alice WITH LOGIN",
            "CREATE ROLE \"alice\" LOGIN",
            "DROP ROLE \"a\" CASCADE",
            "DROP DATABASE \"d\"",
        ] {
            let e = parse_op(bad, "postgres").expect_err(bad);
            assert_eq!(e.code, "42601", "{bad}");
        }
        assert_eq!(parse_op("SELECT 1", "postgres").unwrap(), None);
    }
}
