//! The names a primary's quorum is written in: each safekeeper's stable
//! `application_name` and `synchronous_standby_names` (`ANY q (names)`,
//! q = a majority). Pure, so that `pg/conf.rs` renders them without going
//! up to `storage/`, which streams and counts under the same names.

/// How many of `total` safekeepers make a majority.
pub fn majority(total: usize) -> usize {
    total / 2 + 1
}

/// Longest `application_name` Postgres keeps (NAMEDATALEN - 1).
const MAX_NAME: usize = 63;

/// The stable name of the safekeeper at `host:port`: `sk_` and the address
/// with every character outside `[a-z0-9]` as `_` (so it needs no quoting
/// anywhere), cut to Postgres' 63 bytes with a hash of the whole address
/// when longer. The same address gives the same name on every compute.
pub fn safekeeper_name(host: &str, port: u16) -> String {
    let raw = format!("sk_{}_{port}", host.to_ascii_lowercase());
    let name: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if name.len() <= MAX_NAME {
        return name;
    }
    // FNV-1a: stable across builds and platforms (no std hasher).
    let hash = raw.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}_{hash:016x}", &name[..MAX_NAME - 17])
}

/// `synchronous_standby_names` for `names`: `ANY q ("a", "b", "c")`.
pub fn synchronous_standby_names(names: &[String]) -> String {
    any_of(majority(names.len()), names)
}

/// `ANY need ("a", "b", ...)`.
pub fn any_of(need: usize, names: &[String]) -> String {
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("ANY {need} ({})", list.join(", "))
}

/// The quorum of a safekeeper set being replaced by another (the joint
/// configuration of a membership change, as in Neon's RFC 035): commits
/// wait for `need` of `names` (the union of both sets, `new` first), and
/// every such `need` holds a majority of `old` AND a majority of `new`.
/// So while it is in force, every acknowledged commit is on a majority of
/// whichever set the next start syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JointQuorum {
    pub names: Vec<String>,
    pub need: usize,
}

impl JointQuorum {
    /// The joint quorum of `old` and `new` (names; duplicates are one member).
    ///
    /// A subset of the union of size k leaves out at most |new \ old| members
    /// of `old`'s side, so it holds at least k - |new \ old| of `old`: k must be
    /// at least majority(old) + |new \ old|, and the same the other way.
    pub fn of(old: &[String], new: &[String]) -> JointQuorum {
        let mut names: Vec<String> = Vec::new();
        for n in new.iter().chain(old) {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let only_new = new.iter().filter(|n| !old.contains(n)).count();
        let only_old = old.iter().filter(|n| !new.contains(n)).count();
        let need = (majority(old.len()) + only_new).max(majority(new.len()) + only_old);
        JointQuorum {
            need: need.min(names.len()),
            names,
        }
    }

    /// Its `synchronous_standby_names`.
    pub fn standby_names(&self) -> String {
        any_of(self.need, &self.names)
    }
}

#[cfg(test)]
mod joint_tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.chars().map(|c| c.to_string()).collect()
    }

    /// Every subset of the union of size `need` holds a majority of both sets.
    fn holds_both(old: &[String], new: &[String], q: &JointQuorum) -> bool {
        let n = q.names.len();
        (0u32..(1 << n))
            .filter(|m| m.count_ones() as usize == q.need)
            .all(|m| {
                let pick: Vec<&String> = (0..n)
                    .filter(|i| m & (1 << i) != 0)
                    .map(|i| &q.names[i])
                    .collect();
                pick.iter().filter(|p| old.contains(p)).count() >= majority(old.len())
                    && pick.iter().filter(|p| new.contains(p)).count() >= majority(new.len())
            })
    }

    #[test]
    fn one_safekeeper_replaced_needs_three_of_four() {
        let q = JointQuorum::of(&names("abc"), &names("abd"));
        assert_eq!(q.names, names("abdc"));
        assert_eq!(q.need, 3);
        assert_eq!(q.standby_names(), r#"ANY 3 ("a", "b", "d", "c")"#);
    }

    #[test]
    fn a_whole_set_replaced_needs_five_of_six() {
        let q = JointQuorum::of(&names("abc"), &names("def"));
        assert_eq!(q.need, 5);
        assert!(holds_both(&names("abc"), &names("def"), &q));
    }

    #[test]
    fn every_joint_quorum_of_small_sets_holds_a_majority_of_both_and_is_the_smallest() {
        let pool = names("abcdefg");
        // Every pair of non-empty sets from 7 members, up to 5 each.
        let sets: Vec<Vec<String>> = (1u32..(1 << 7))
            .filter(|m| m.count_ones() <= 5)
            .map(|m| {
                (0..7)
                    .filter(|i| m & (1 << i) != 0)
                    .map(|i| pool[i].clone())
                    .collect()
            })
            .collect();
        for old in sets.iter().step_by(3) {
            for new in sets.iter().step_by(5) {
                let q = JointQuorum::of(old, new);
                assert!(holds_both(old, new, &q), "{old:?} -> {new:?}: {q:?}");
                if q.need > 1 {
                    let smaller = JointQuorum {
                        need: q.need - 1,
                        ..q.clone()
                    };
                    assert!(
                        !holds_both(old, new, &smaller),
                        "{old:?} -> {new:?}: {} is enough",
                        q.need - 1
                    );
                }
            }
        }
    }
}
