//! Which safekeeper set a new spec may bring to a running compute, by
//! Neon's `safekeepers_generation`: a set changes only with a higher
//! generation, so a notify delayed behind a later one (the control plane
//! retries, the storage controller moved the timeline twice) cannot put
//! back a set that was already replaced.

use super::ComputeSpec;

/// Why `new` cannot replace `running`'s safekeeper set; `None` if it can.
/// The answer is a conflict (409): the spec is well formed but stale.
pub fn stale_safekeepers(running: &ComputeSpec, new: &ComputeSpec) -> Option<String> {
    let same_set = same_members(&running.safekeeper_connstrings, &new.safekeeper_connstrings);
    match (running.safekeepers_generation, new.safekeepers_generation) {
        (Some(old), Some(g)) if g < old => Some(format!(
            "safekeepers_generation {g} is older than the {old} in effect: a later safekeeper configuration was already applied; send the current spec (generation {old} or higher)"
        )),
        (Some(old), Some(g)) if g == old && !same_set => Some(format!(
            "safekeepers_generation {g} is the one in effect but names another safekeeper set; a set change needs a higher generation"
        )),
        (Some(old), None) if !same_set => Some(format!(
            "the safekeeper set changes without a safekeepers_generation while generation {old} is in effect; send the change with a higher generation"
        )),
        _ => None,
    }
}

/// Whether two connection string lists name the same safekeepers, in any order.
pub fn same_members(a: &[String], b: &[String]) -> bool {
    let mut a: Vec<&str> = a.iter().map(|s| s.trim()).collect();
    let mut b: Vec<&str> = b.iter().map(|s| s.trim()).collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(gen_: Option<u32>, sks: &[&str]) -> ComputeSpec {
        let mut s: ComputeSpec = serde_json::from_value(serde_json::json!({
            "format_version": 1.0,
            "cluster": {},
            "safekeeper_connstrings": sks,
        }))
        .unwrap();
        s.safekeepers_generation = gen_;
        s
    }

    #[test]
    fn an_older_generation_is_refused_whatever_it_names() {
        let running = spec(Some(3), &["a:1", "b:1", "c:1"]);
        let why = stale_safekeepers(&running, &spec(Some(2), &["a:1", "b:1", "c:1"])).unwrap();
        assert!(why.contains("older than the 3 in effect"), "{why}");
        assert!(stale_safekeepers(&running, &spec(Some(2), &["a:1", "b:1", "d:1"])).is_some());
    }

    #[test]
    fn a_set_change_needs_a_higher_generation() {
        let running = spec(Some(3), &["a:1", "b:1", "c:1"]);
        assert!(stale_safekeepers(&running, &spec(Some(3), &["a:1", "b:1", "d:1"])).is_some());
        assert!(stale_safekeepers(&running, &spec(None, &["a:1", "b:1", "d:1"])).is_some());
        assert_eq!(
            stale_safekeepers(&running, &spec(Some(4), &["a:1", "b:1", "d:1"])),
            None
        );
    }

    #[test]
    fn the_same_set_in_another_order_is_no_change() {
        let running = spec(Some(3), &["a:1", "b:1", "c:1"]);
        assert_eq!(
            stale_safekeepers(&running, &spec(Some(3), &["c:1", "a:1", "b:1"])),
            None
        );
        assert_eq!(
            stale_safekeepers(&running, &spec(None, &["b:1", "c:1", "a:1"])),
            None
        );
    }

    #[test]
    fn without_generations_anything_goes() {
        let running = spec(None, &["a:1"]);
        assert_eq!(stale_safekeepers(&running, &spec(None, &["b:1"])), None);
        assert_eq!(stale_safekeepers(&running, &spec(Some(1), &["b:1"])), None);
    }
}
