//! Role options of the spec (Neon's `GenericOption` name/value/vartype) as
//! role attributes and memberships.
//!
//! A spec role's attributes are authoritative: an attribute the spec does
//! not name takes Postgres' `CREATE ROLE ... LOGIN` default, so drift (a
//! manual `ALTER ROLE ... CREATEDB`) is reverted on the next apply, as
//! CloudNativePG's managed roles do. Memberships (`in_role`, repeated or
//! comma-separated) are authoritative only when the spec names any: then
//! missing ones are granted and others revoked; without `in_role` the
//! role's memberships are left alone.
//!
//! `superuser` is refused (validation reports it with its JSON path): a
//! spec must not mint superusers, and the planner never touches one.
//! `valid_until` is `infinity` or a UTC time in whole seconds
//! (`2030-01-01`, `2030-01-01T00:00:00Z`); the snapshot reads it back in
//! the same canonical form, so comparing strings is exact.

use serde::{Deserialize, Serialize};

use super::GenericOption;

/// The attributes of a role that the spec manages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleAttrs {
    pub login: bool,
    pub createdb: bool,
    pub createrole: bool,
    pub replication: bool,
    pub bypassrls: bool,
    pub inherit: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    /// Canonical UTC `YYYY-MM-DDTHH:MM:SSZ`; `None`: never expires.
    pub valid_until: Option<String>,
}

impl Default for RoleAttrs {
    /// What `CREATE ROLE ... WITH LOGIN` gives.
    fn default() -> Self {
        Self {
            login: true,
            createdb: false,
            createrole: false,
            replication: false,
            bypassrls: false,
            inherit: true,
            connection_limit: -1,
            valid_until: None,
        }
    }
}

/// One attribute change, one clause of `CREATE ROLE` / `ALTER ROLE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "attribute", content = "value")]
pub enum RoleAttr {
    Login(bool),
    CreateDb(bool),
    CreateRole(bool),
    Replication(bool),
    BypassRls(bool),
    Inherit(bool),
    ConnectionLimit(i32),
    /// `None`: `VALID UNTIL 'infinity'`.
    ValidUntil(Option<String>),
}

impl RoleAttrs {
    /// The changes that turn `self` into `want`, in a fixed order.
    pub fn diff(&self, want: &RoleAttrs) -> Vec<RoleAttr> {
        let mut out = Vec::new();
        let flags = [
            (
                self.login,
                want.login,
                RoleAttr::Login as fn(bool) -> RoleAttr,
            ),
            (self.createdb, want.createdb, RoleAttr::CreateDb),
            (self.createrole, want.createrole, RoleAttr::CreateRole),
            (self.replication, want.replication, RoleAttr::Replication),
            (self.bypassrls, want.bypassrls, RoleAttr::BypassRls),
            (self.inherit, want.inherit, RoleAttr::Inherit),
        ];
        for (have, wanted, attr) in flags {
            if have != wanted {
                out.push(attr(wanted));
            }
        }
        if self.connection_limit != want.connection_limit {
            out.push(RoleAttr::ConnectionLimit(want.connection_limit));
        }
        if self.valid_until != want.valid_until {
            out.push(RoleAttr::ValidUntil(want.valid_until.clone()));
        }
        out
    }

    /// Applies one change.
    pub fn set(&mut self, attr: &RoleAttr) {
        match attr {
            RoleAttr::Login(b) => self.login = *b,
            RoleAttr::CreateDb(b) => self.createdb = *b,
            RoleAttr::CreateRole(b) => self.createrole = *b,
            RoleAttr::Replication(b) => self.replication = *b,
            RoleAttr::BypassRls(b) => self.bypassrls = *b,
            RoleAttr::Inherit(b) => self.inherit = *b,
            RoleAttr::ConnectionLimit(n) => self.connection_limit = *n,
            RoleAttr::ValidUntil(t) => self.valid_until = t.clone(),
        }
    }
}

/// What the spec asks of one role.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoleWish {
    pub attrs: RoleAttrs,
    /// `Some`: exactly these memberships (in spec order, deduplicated).
    pub in_role: Option<Vec<String>>,
}

/// A role option the planner cannot take; `index` is its position in the
/// role's `options`, so validation can name the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RoleOptionError {
    pub index: usize,
    /// `name` or `value`.
    pub field: &'static str,
    pub message: String,
}

/// The option names accepted, for messages.
pub const ROLE_OPTIONS: &str = "login, createdb, createrole, replication, bypassrls, inherit, connection_limit, valid_until, in_role";

/// Parses a role's options.
pub fn parse_role_options(options: &[GenericOption]) -> Result<RoleWish, RoleOptionError> {
    let mut wish = RoleWish::default();
    for (index, o) in options.iter().enumerate() {
        let value = o.value.as_deref().unwrap_or("").trim();
        let bad = |message: String| RoleOptionError {
            index,
            field: "value",
            message,
        };
        let boolean = || match value.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" | "" => Ok(true),
            "false" | "off" | "no" | "0" => Ok(false),
            _ => Err(bad(format!(
                "option {:?} needs a boolean value (true or false), not {value:?}",
                o.name
            ))),
        };
        match o.name.to_ascii_lowercase().as_str() {
            "login" => wish.attrs.login = boolean()?,
            "createdb" => wish.attrs.createdb = boolean()?,
            "createrole" => wish.attrs.createrole = boolean()?,
            "replication" => wish.attrs.replication = boolean()?,
            "bypassrls" => wish.attrs.bypassrls = boolean()?,
            "inherit" => wish.attrs.inherit = boolean()?,
            "connection_limit" | "connlimit" => {
                wish.attrs.connection_limit = match value.parse::<i32>() {
                    Ok(n) if n >= -1 => n,
                    _ => {
                        return Err(bad(format!(
                            "connection_limit must be an integer of at least -1 (no limit), not {value:?}"
                        )));
                    }
                }
            }
            "valid_until" => {
                wish.attrs.valid_until = canonical_valid_until(value).ok_or_else(|| {
                    bad(format!(
                        "valid_until must be 'infinity' or a UTC time in whole seconds such as 2030-01-01 or 2030-01-01T00:00:00Z, not {value:?}"
                    ))
                })?
            }
            "in_role" => {
                let list = wish.in_role.get_or_insert_with(Vec::new);
                for r in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    if !list.iter().any(|x| x == r) {
                        list.push(r.to_string());
                    }
                }
            }
            "superuser" => {
                return Err(RoleOptionError {
                    index,
                    field: "name",
                    message: "the superuser option is refused: a spec cannot create or keep superusers; remove it (use createrole/createdb or in_role for privileges)".into(),
                });
            }
            _ => {
                return Err(RoleOptionError {
                    index,
                    field: "name",
                    message: format!(
                        "unknown role option {:?}; use one of {ROLE_OPTIONS}",
                        o.name
                    ),
                });
            }
        }
    }
    Ok(wish)
}

/// `Some(None)` for infinity, `Some(Some(canonical))` for a UTC time, `None`
/// when the value is neither.
pub fn canonical_valid_until(value: &str) -> Option<Option<String>> {
    if value.eq_ignore_ascii_case("infinity") {
        return Some(None);
    }
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b.get(r.clone())
            .is_some_and(|s| s.iter().all(u8::is_ascii_digit))
    };
    let date_ok = b.len() >= 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10);
    if !date_ok {
        return None;
    }
    let num = |r: std::ops::Range<usize>| value[r].parse::<u32>().ok();
    let (month, day) = (num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let date = &value[..10];
    let rest = &value[10..];
    if rest.is_empty() {
        return Some(Some(format!("{date}T00:00:00Z")));
    }
    let rb = rest.as_bytes();
    let time_ok = rb.len() >= 9
        && (rb[0] == b'T' || rb[0] == b' ')
        && rb[1..3].iter().all(u8::is_ascii_digit)
        && rb[3] == b':'
        && rb[4..6].iter().all(u8::is_ascii_digit)
        && rb[6] == b':'
        && rb[7..9].iter().all(u8::is_ascii_digit);
    if !time_ok {
        return None;
    }
    let zone = &rest[9..];
    if !matches!(zone, "Z" | "z" | "+00" | "+00:00" | "+0000") {
        return None;
    }
    let (h, m, s) = (
        rest[1..3].parse::<u32>().ok()?,
        rest[4..6].parse::<u32>().ok()?,
        rest[7..9].parse::<u32>().ok()?,
    );
    if h > 23 || m > 59 || s > 59 {
        return None;
    }
    Some(Some(format!("{date}T{}Z", &rest[1..9])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opt(name: &str, value: &str) -> GenericOption {
        GenericOption {
            name: name.into(),
            value: Some(value.into()),
            vartype: "string".into(),
        }
    }

    #[test]
    fn options_map_to_attributes_and_memberships() {
        let wish = parse_role_options(&[
            opt("CREATEDB", "true"),
            opt("inherit", "off"),
            opt("connection_limit", "5"),
            opt("valid_until", "2030-01-02 03:04:05+00"),
            opt("in_role", "a, b"),
            opt("in_role", "b,c"),
        ])
        .unwrap();
        assert!(wish.attrs.createdb && !wish.attrs.inherit && wish.attrs.login);
        assert_eq!(wish.attrs.connection_limit, 5);
        assert_eq!(
            wish.attrs.valid_until.as_deref(),
            Some("2030-01-02T03:04:05Z")
        );
        assert_eq!(wish.in_role.unwrap(), ["a", "b", "c"]);
        assert_eq!(parse_role_options(&[]).unwrap(), RoleWish::default());
    }

    #[test]
    fn superuser_and_bad_values_are_refused_with_their_index() {
        let e = parse_role_options(&[opt("createdb", "1"), opt("superuser", "true")]).unwrap_err();
        assert_eq!((e.index, e.field), (1, "name"));
        assert!(e.message.contains("superuser"));
        let e = parse_role_options(&[opt("connection_limit", "-5")]).unwrap_err();
        assert_eq!((e.index, e.field), (0, "value"));
        assert!(parse_role_options(&[opt("createdb", "maybe")]).is_err());
        assert!(parse_role_options(&[opt("nosuch", "1")]).is_err());
    }

    #[test]
    fn valid_until_is_canonical_or_refused() {
        assert_eq!(canonical_valid_until("infinity"), Some(None));
        assert_eq!(
            canonical_valid_until("2030-01-01"),
            Some(Some("2030-01-01T00:00:00Z".into()))
        );
        assert_eq!(
            canonical_valid_until("2030-01-01T10:11:12Z"),
            Some(Some("2030-01-01T10:11:12Z".into()))
        );
        for bad in [
            "2030-13-01",
            "2030-01-01T10:11:12.5Z",
            "2030-01-01T10:11:12+02",
            "tomorrow",
            "2030-01-01T25:00:00Z",
        ] {
            assert_eq!(canonical_valid_until(bad), None, "{bad}");
        }
    }

    #[test]
    fn diff_lists_exactly_the_changes() {
        let have = RoleAttrs::default();
        let mut want = have.clone();
        assert!(have.diff(&want).is_empty());
        want.createdb = true;
        want.connection_limit = 3;
        let d = have.diff(&want);
        assert_eq!(d, [RoleAttr::CreateDb(true), RoleAttr::ConnectionLimit(3)]);
        let mut applied = have.clone();
        for a in &d {
            applied.set(a);
        }
        assert_eq!(applied, want);
    }
}
