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
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!("ANY {} ({})", majority(names.len()), list.join(", "))
}
