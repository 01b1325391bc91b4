//! A WAL position (log sequence number), written `X/Y` in hex as Postgres
//! prints it (`0/16B3748`): the high and low 32 bits.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A WAL position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

/// Why a string is not an LSN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed LSN {0:?}; expected two hex numbers of at most 8 digits joined by '/', e.g. 0/16B3748"
)]
pub struct LsnParseError(pub String);

impl Lsn {
    /// How many bytes `self` is ahead of `other` (0 when behind).
    pub fn bytes_ahead_of(self, other: Lsn) -> u64 {
        self.0.saturating_sub(other.0)
    }
}

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnParseError(s.to_string());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let part = |p: &str| {
            if p.is_empty() || p.len() > 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
                None
            } else {
                u32::from_str_radix(p, 16).ok()
            }
        };
        let (hi, lo) = (part(hi).ok_or_else(bad)?, part(lo).ok_or_else(bad)?);
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Lsn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_what_postgres_prints() {
        assert_eq!("0/16B3748".parse::<Lsn>().unwrap(), Lsn(0x16B3748));
        assert_eq!("1/0".parse::<Lsn>().unwrap(), Lsn(1 << 32));
        assert_eq!("FFFFFFFF/FFFFFFFF".parse::<Lsn>().unwrap(), Lsn(u64::MAX));
        assert_eq!("a/b".parse::<Lsn>().unwrap(), Lsn((0xA << 32) | 0xB));
        assert_eq!(Lsn(0x16B3748).to_string(), "0/16B3748");
        assert_eq!(Lsn((3 << 32) | 0x10).to_string(), "3/10");
    }

    #[test]
    fn rejects_malformed_lsns() {
        for bad in [
            "",
            "0",
            "/",
            "0/",
            "/1",
            "0/1/2",
            "g/1",
            "0/-1",
            "123456789/0",
            " 0/1",
            "0x1/2",
        ] {
            let e = bad.parse::<Lsn>().unwrap_err();
            assert!(e.to_string().contains("malformed LSN"), "{bad}: {e}");
        }
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(v in any::<u64>()) {
            let l = Lsn(v);
            prop_assert_eq!(l.to_string().parse::<Lsn>().unwrap(), l);
            let json = serde_json::to_string(&l).unwrap();
            prop_assert_eq!(serde_json::from_str::<Lsn>(&json).unwrap(), l);
        }

        #[test]
        fn order_is_the_numeric_order(a in any::<u64>(), b in any::<u64>()) {
            prop_assert_eq!(Lsn(a).cmp(&Lsn(b)), a.cmp(&b));
        }
    }
}
