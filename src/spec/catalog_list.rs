//! [`CatalogList`]: the spec's role and database lists, shared
//! copy-on-write and decoded through a one-entry memo of their JSON text.
//!
//! A storage notify re-sends the whole spec with the catalog unchanged, and
//! at 5,000 roles decoding `cluster.roles` (two `String`s a role, then
//! freeing the previous spec's) was most of what the request cost beyond a
//! reload. So a list is first taken as its JSON text (one scan, no
//! allocation per element); when the text is byte for byte the one decoded
//! last, the list decoded then is shared (`Arc`), otherwise it is decoded
//! and becomes the memo. Decoding is a pure function of the text, so the
//! memo changes how long a parse takes, never what it returns: a spec
//! parsed with or without a hit is the same value, and every list is still
//! fully validated by `spec::validate`. The memo is process-wide and holds
//! one list per element type (the text and the decoded list, which the
//! spec in effect shares anyway).
//!
//! Reading a list is reading a `Vec` ([`Deref`]); changing one (tests and
//! the simulator build specs) copies it first if it is shared.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

/// The memo of one element type: the JSON text decoded last and what it
/// decoded to.
pub struct Memo<T> {
    text: Box<RawValue>,
    decoded: CatalogList<T>,
}

/// An element type with a memo of its own (a `static` cannot be generic).
pub trait Memoized: DeserializeOwned + Clone + Send + Sync + 'static {
    /// The last list of this type that was decoded.
    fn memo() -> &'static Mutex<Option<Memo<Self>>>;
}

/// A list of roles or databases of a spec (see the module docs).
pub struct CatalogList<T> {
    items: Arc<Vec<T>>,
    /// The JSON paths inside the list that decoding did not use, relative
    /// to the list (`3.foo`, as `serde_ignored` writes them); `None` when
    /// there are none.
    unused: Option<Arc<[String]>>,
}

impl<T> CatalogList<T> {
    /// The fields the list held that the spec does not use, as JSON paths
    /// under `prefix` (e.g. `$.cluster.roles`), in document order.
    pub fn unused_fields<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = String> + 'a {
        self.unused
            .iter()
            .flat_map(|u| u.iter())
            .map(move |p| format!("{prefix}.{p}"))
    }
}

impl<T: Memoized> CatalogList<T> {
    /// Decodes a list from its JSON text, or shares the memo's when the
    /// text is the one decoded last.
    fn from_text(text: Box<RawValue>) -> Result<Self, String> {
        let memo = T::memo();
        if let Some(m) = lock(memo).as_ref().filter(|m| m.text.get() == text.get()) {
            return Ok(m.decoded.clone());
        }
        let decoded = decode::<T>(text.get())?;
        *lock(memo) = Some(Memo {
            text,
            decoded: decoded.clone(),
        });
        Ok(decoded)
    }
}

/// The memo even if a thread panicked while holding it: it is replaced
/// whole or not at all, so it is never half-written.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Decodes `text`, recording the fields it does not use; a failure names
/// its place in the list (`[3].name: ...`).
fn decode<T: DeserializeOwned>(text: &str) -> Result<CatalogList<T>, String> {
    let mut unused = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| {
        // serde_ignored writes `?` for "inside an Option"; a JSON path has no such step.
        unused.push(path.to_string().replace(".?", ""));
    };
    let items: Vec<T> =
        serde_ignored::deserialize(&mut serde_json::Deserializer::from_str(text), &mut record)
            .map_err(|e| failure::<T>(text, e))?;
    Ok(CatalogList {
        items: Arc::new(items),
        unused: (!unused.is_empty()).then(|| unused.into()),
    })
}

/// Why `text` does not decode, with the place in the list: decoded again
/// on this slow path with the path traced.
fn failure<T: DeserializeOwned>(text: &str, first: serde_json::Error) -> String {
    let traced: Result<Vec<T>, _> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(text));
    let (path, e) = match &traced {
        Err(e) => (e.path().to_string(), e.inner()),
        Ok(_) => (String::new(), &first),
    };
    // The position is within the list's own text, not the request body's:
    // the path says more.
    let message = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = message.strip_suffix(&position).unwrap_or(&message);
    format!("{path}: {message}")
}

impl<'de, T: Memoized> Deserialize<'de> for CatalogList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Box::<RawValue>::deserialize(d)?;
        Self::from_text(text).map_err(D::Error::custom)
    }
}

impl<T: Serialize> Serialize for CatalogList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.items.serialize(s)
    }
}

impl<T> Clone for CatalogList<T> {
    fn clone(&self) -> Self {
        Self {
            items: self.items.clone(),
            unused: self.unused.clone(),
        }
    }
}

impl<T> Default for CatalogList<T> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T> From<Vec<T>> for CatalogList<T> {
    fn from(items: Vec<T>) -> Self {
        Self {
            items: Arc::new(items),
            unused: None,
        }
    }
}

impl<T> FromIterator<T> for CatalogList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        iter.into_iter().collect::<Vec<T>>().into()
    }
}

impl<T> Deref for CatalogList<T> {
    type Target = Vec<T>;
    fn deref(&self) -> &Vec<T> {
        &self.items
    }
}

impl<T: Clone> DerefMut for CatalogList<T> {
    /// Copies the list first if another spec shares it.
    fn deref_mut(&mut self) -> &mut Vec<T> {
        Arc::make_mut(&mut self.items)
    }
}

impl<'a, T> IntoIterator for &'a CatalogList<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

impl<T: PartialEq> PartialEq for CatalogList<T> {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.items, &other.items) || self.items == other.items
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for CatalogList<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.items.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Element types of the tests' own, one a test, so that no other test
    /// replaces a memo between two parses of one test.
    macro_rules! probe {
        ($name:ident) => {
            #[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
            struct $name {
                name: String,
                #[serde(default)]
                tag: Option<String>,
            }

            impl Memoized for $name {
                fn memo() -> &'static Mutex<Option<Memo<Self>>> {
                    static MEMO: Mutex<Option<Memo<$name>>> = Mutex::new(None);
                    &MEMO
                }
            }
        };
    }
    probe!(Shares);
    probe!(Fails);
    probe!(Changes);
    probe!(Any);

    fn parse<T: Memoized>(json: &str) -> Result<CatalogList<T>, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn the_same_text_shares_the_list_and_other_text_is_decoded() {
        let a = r#"[{"name": "a", "extra": 1}, {"name": "b", "tag": "t"}]"#;
        let first = parse::<Shares>(a).unwrap();
        let again = parse::<Shares>(a).unwrap();
        assert!(Arc::ptr_eq(&first.items, &again.items), "a hit shares");
        assert_eq!(
            again.unused_fields("$.l").collect::<Vec<_>>(),
            ["$.l.0.extra"]
        );
        // Same value, other text (spacing): decoded, equal.
        let spaced = parse::<Shares>(&a.replace(", ", ",")).unwrap();
        assert!(!Arc::ptr_eq(&first.items, &spaced.items));
        assert_eq!(spaced, first);
        let other = parse::<Shares>(r#"[{"name": "c"}]"#).unwrap();
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].name, "c");
        assert_eq!(other.unused_fields("$.l").count(), 0);
    }

    #[test]
    fn a_list_that_does_not_decode_names_the_place() {
        let e = parse::<Fails>(r#"[{"name": "a"}, {"name": 7}]"#).unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("[1].name: invalid type: integer `7`"), "{e}");
        let e = parse::<Fails>(r#"[{"tag": "x"}]"#).unwrap_err().to_string();
        assert!(e.contains("[0]: missing field `name`"), "{e}");
        assert!(parse::<Fails>(r#"{"name": "a"}"#).is_err(), "not a list");
    }

    #[test]
    fn changing_a_shared_list_leaves_the_other_alone() {
        let text = r#"[{"name": "x1"}, {"name": "x2"}]"#;
        let kept = parse::<Changes>(text).unwrap();
        let mut changed = parse::<Changes>(text).unwrap();
        changed[0].name = "y".into();
        changed.push(Changes {
            name: "z".into(),
            tag: None,
        });
        assert_eq!(kept[0].name, "x1");
        assert_eq!(kept.len(), 2);
        assert_eq!(changed.len(), 3);
        // The memo still holds what the text says.
        assert_eq!(parse::<Changes>(text).unwrap(), kept);
    }

    proptest::proptest! {
        /// Whatever the memo holds, a parse returns what a fresh decode of
        /// the same text returns: the memo is invisible but for speed.
        #[test]
        fn a_parse_is_what_the_text_says_whatever_came_before(
            before in proptest::collection::vec(("[a-c]{1,2}", proptest::option::of("[a-c]")), 0..4),
            now in proptest::collection::vec(("[a-c]{1,2}", proptest::option::of("[a-c]")), 0..4),
        ) {
            let text = |v: &[(String, Option<String>)]| {
                serde_json::to_string(
                    &v.iter()
                        .map(|(name, tag)| Any { name: name.clone(), tag: tag.clone() })
                        .collect::<Vec<_>>(),
                )
                .unwrap()
            };
            parse::<Any>(&text(&before)).unwrap();
            let got = parse::<Any>(&text(&now)).unwrap();
            let fresh = decode::<Any>(&text(&now)).unwrap();
            proptest::prop_assert_eq!(&*got, &*fresh);
        }
    }
}
