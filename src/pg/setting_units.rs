//! A setting's base unit, learnt once from the binary, so that a number
//! with a unit is judged here instead of by a `postgres` process per value.
//!
//! `--describe-config` gives an integer setting's bounds in its base unit
//! (`work_mem`: kB, `shared_buffers`: 8 kB blocks, `checkpoint_timeout`: s)
//! but not the unit. The binary names it when a value is out of range:
//! `postgres -C work_mem -c work_mem=63` stops with `FATAL:  63 kB is
//! outside the valid range for parameter "work_mem" (64 .. 2147483647)`
//! (the same words on 15 to 18, in the C locale). So one value just below
//! the minimum, once per setting, tells the unit ([`BaseUnit::learn`]).
//! With it, [`BaseUnit::accepts`] answers for the plain case only: a
//! decimal integer and a unit of the setting's kind that converts to a
//! whole number of base units within the bounds. Anything else (a
//! fraction that Postgres would round, hex, octal, a unit of the other
//! kind, a value out of range) is still asked of the binary, so a refusal
//! keeps Postgres' own words and hint.

use super::settings_catalogue::SettingDef;

/// Memory units Postgres accepts, in bytes.
const MEMORY: [(&str, i128); 5] = [
    ("B", 1),
    ("kB", 1 << 10),
    ("MB", 1 << 20),
    ("GB", 1 << 30),
    ("TB", 1 << 40),
];

/// Time units Postgres accepts, in microseconds.
const TIME: [(&str, i128); 6] = [
    ("us", 1),
    ("ms", 1_000),
    ("s", 1_000_000),
    ("min", 60_000_000),
    ("h", 3_600_000_000),
    ("d", 86_400_000_000),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Memory,
    Time,
}

/// A unit by its spelling: its kind and size (bytes or microseconds).
fn unit(spelling: &str) -> Option<(Kind, i128)> {
    let find = |table: &[(&str, i128)], kind| {
        table
            .iter()
            .find(|(s, _)| *s == spelling)
            .map(|(_, size)| (kind, *size))
    };
    find(&MEMORY, Kind::Memory).or_else(|| find(&TIME, Kind::Time))
}

/// Splits `-?digits` from what follows (spaces trimmed); `None` when the
/// number is not a plain decimal (hex, octal, a fraction, an exponent).
fn plain_integer(v: &str) -> Option<(i128, &str)> {
    let digits_from = usize::from(v.starts_with('-'));
    let end = v[digits_from..]
        .find(|c: char| !c.is_ascii_digit())
        .map_or(v.len(), |i| i + digits_from);
    let digits = &v[digits_from..end];
    // A leading zero is octal to Postgres' strtol; "0" alone is zero.
    if digits.is_empty() || digits.len() > 30 || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    let rest = &v[end..];
    if rest.starts_with(['.', 'e', 'E', 'x', 'X']) {
        return None;
    }
    Some((v[..end].parse().ok()?, rest.trim()))
}

/// The base unit of an integer setting measured in memory or time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseUnit {
    kind: Kind,
    /// Bytes or microseconds in one base unit (kept as an i64: serde's
    /// flattened maps cannot hold an i128, and a day in microseconds fits).
    #[serde(with = "size_as_i64")]
    size: i128,
}

mod size_as_i64 {
    use serde::{
        Deserialize, Deserializer, Serialize, Serializer, de::Error as _, ser::Error as _,
    };

    pub fn serialize<S: Serializer>(size: &i128, s: S) -> Result<S::Ok, S::Error> {
        i64::try_from(*size)
            .map_err(|_| S::Error::custom(format!("base unit size {size} exceeds i64")))?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i128, D::Error> {
        let size = i64::deserialize(d)?;
        if size < 1 {
            return Err(D::Error::custom(format!(
                "base unit size {size} is not positive"
            )));
        }
        Ok(i128::from(size))
    }
}

impl BaseUnit {
    /// The value to show the binary to learn the unit: one below the
    /// minimum; `None` when the setting is not an integer or has no
    /// minimum above `i32::MIN`.
    pub fn probe(def: &SettingDef) -> Option<i64> {
        if def.kind != super::SettingKind::Integer {
            return None;
        }
        def.min
            .filter(|m| m.fract() == 0.0 && *m > f64::from(i32::MIN) && *m <= f64::from(i32::MAX))
            .map(|m| m as i64 - 1)
    }

    /// The unit from the binary's refusal of `probe` (`stderr` of
    /// `postgres -C name -c name=probe` in the C locale): `N UNIT is outside
    /// the valid range for parameter "name"`. `None` when the refusal names
    /// no unit (the setting takes none) or is not that one.
    pub fn learn(probe: i64, name: &str, stderr: &str) -> Option<Self> {
        let about = format!("is outside the valid range for parameter \"{name}\"");
        let line = stderr.lines().find(|l| l.contains(&about))?;
        let (_, said) = line.split_once("FATAL:")?;
        let mut words = said.split_whitespace();
        if words.next()? != probe.to_string() {
            return None;
        }
        let spelled = words.next().filter(|w| *w != "is")?;
        // `8kB` for blocks: a count of a unit.
        let (count, spelling) = match plain_integer(spelled) {
            Some((n, rest)) if n >= 1 => (n, rest),
            _ => (1, spelled),
        };
        let (kind, size) = unit(spelling)?;
        Some(Self {
            kind,
            size: count.checked_mul(size)?,
        })
    }

    /// Whether Postgres certainly takes `value` for a setting of this unit
    /// and `def`'s bounds. `false` means "ask the binary", not "refused".
    pub fn accepts(&self, def: &SettingDef, value: &str) -> bool {
        let Some((n, spelling)) = plain_integer(value.trim()) else {
            return false;
        };
        let base = if spelling.is_empty() {
            n
        } else {
            let Some((kind, size)) = unit(spelling) else {
                return false;
            };
            let Some(total) = n.checked_mul(size) else {
                return false;
            };
            if kind != self.kind || total % self.size != 0 {
                return false;
            }
            total / self.size
        };
        let within =
            |bound: Option<f64>, ok: fn(i128, f64) -> bool| bound.is_some_and(|b| ok(base, b));
        within(def.min, |v, b| v as f64 >= b)
            && within(def.max, |v, b| v as f64 <= b)
            && i32::try_from(base).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::SettingKind;

    fn int(min: f64, max: f64) -> SettingDef {
        SettingDef {
            context: "user".into(),
            kind: SettingKind::Integer,
            min: Some(min),
            max: Some(max),
        }
    }

    /// What PostgreSQL 15 and 17 print, as `learn` reads it.
    fn refusal(value: &str, name: &str, tail: &str) -> String {
        format!(
            "2026-12-04 03:25:58.586 GMT [15758] FATAL:  {value} is outside the valid range for parameter \"{name}\" {tail}\n"
        )
    }

    #[test]
    fn the_unit_is_learnt_from_the_refusal_of_a_value_below_the_minimum() {
        let kb = BaseUnit::learn(
            63,
            "work_mem",
            &refusal("63 kB", "work_mem", "(64 .. 2147483647)"),
        );
        assert_eq!(kb.map(|u| (u.kind, u.size)), Some((Kind::Memory, 1024)));
        let blocks = BaseUnit::learn(
            15,
            "shared_buffers",
            &refusal("15 8kB", "shared_buffers", "(16 8kB .. 1073741823 8kB)"),
        );
        assert_eq!(blocks.map(|u| u.size), Some(8192));
        let ms = BaseUnit::learn(
            -1,
            "statement_timeout",
            &refusal("-1 ms", "statement_timeout", "(0 .. 2147483647)"),
        );
        assert_eq!(ms.map(|u| (u.kind, u.size)), Some((Kind::Time, 1_000)));
        let min = BaseUnit::learn(
            0,
            "log_rotation_age",
            &refusal("0 min", "log_rotation_age", "(1 .. 35791394)"),
        );
        assert_eq!(min.map(|u| u.size), Some(60_000_000));
        // No unit, another parameter, another value, another message: nothing learnt.
        assert_eq!(
            BaseUnit::learn(
                0,
                "max_connections",
                &refusal("0", "max_connections", "(1 .. 262143)")
            ),
            None
        );
        assert_eq!(
            BaseUnit::learn(63, "work_mem", &refusal("63 kB", "hash_mem", "(1 .. 1000)")),
            None
        );
        assert_eq!(
            BaseUnit::learn(
                62,
                "work_mem",
                &refusal("63 kB", "work_mem", "(64 .. 2147483647)")
            ),
            None
        );
        assert_eq!(
            BaseUnit::learn(
                63,
                "work_mem",
                "FATAL:  invalid value for parameter \"work_mem\": \"63\"\n"
            ),
            None
        );
    }

    #[test]
    fn the_probe_is_one_below_the_minimum_of_an_integer() {
        assert_eq!(BaseUnit::probe(&int(64.0, 2147483647.0)), Some(63));
        assert_eq!(BaseUnit::probe(&int(-1.0, 0.0)), Some(-2));
        assert_eq!(BaseUnit::probe(&int(-2147483648.0, 0.0)), None);
        let mut real = int(0.0, 100.0);
        real.kind = SettingKind::Real;
        assert_eq!(BaseUnit::probe(&real), None);
    }

    #[test]
    fn only_the_plain_case_is_accepted_here() {
        let work_mem = int(64.0, 2147483647.0);
        let kb = BaseUnit {
            kind: Kind::Memory,
            size: 1024,
        };
        for v in ["4097kB", "64MB", " 1GB ", "64 kB", "1TB", "65536B"] {
            assert!(kb.accepts(&work_mem, v), "{v}");
        }
        for v in [
            "63kB",     // below the minimum: the binary says so in its words
            "2048GB",   // above the maximum
            "1.5MB",    // Postgres rounds a fraction: the binary judges
            "1000B",    // not a whole kB: rounded
            "0x10MB",   // hex
            "010MB",    // octal
            "4mb",      // units are case-sensitive
            "5s",       // a time for a memory setting
            "4MB junk", // trailing text
            "",
        ] {
            assert!(!kb.accepts(&work_mem, v), "{v}");
        }
        let timeout = int(0.0, 2147483647.0);
        let ms = BaseUnit {
            kind: Kind::Time,
            size: 1_000,
        };
        assert!(ms.accepts(&timeout, "5min"));
        assert!(ms.accepts(&timeout, "0"), "no unit is base units");
        assert!(!ms.accepts(&timeout, "1500us"), "rounded");
        assert!(!ms.accepts(&timeout, "25d"), "above INT_MAX ms");
    }
}
