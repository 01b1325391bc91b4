//! The tokens a key set has already verified, so that a control plane that
//! sends the same bearer token with every request (Neon's does, until it
//! expires) pays one signature check, not one per request.
//!
//! An entry maps the exact token text to the claims its signature vouches
//! for. A signature check is a pure function of the token and the key set,
//! and a cache lives inside one key set's verifier ([`super::auth::Auth`]):
//! a new key set starts with an empty cache, so a rotated-out key's tokens
//! are checked again. What depends on the time (`exp`, `nbf`) and on the
//! compute (`compute_id`, scope) is checked on every request, after the
//! cache. Only successes are kept; a token that fails is checked every time.
//!
//! The cache is small and bounded: [`CAPACITY`] entries, the oldest evicted
//! first, and a token longer than [`MAX_TOKEN_LEN`] is never kept, so its
//! memory is bounded by their product whatever the requests send.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many verified tokens are kept (a control plane and an admin, with
/// room for a token refresh on each).
pub const CAPACITY: usize = 8;
/// The longest token kept (an RS256 token with Neon's claims is under 1 KiB).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Verified tokens and their claims, oldest first.
#[derive(Debug)]
pub struct VerifiedTokens<C> {
    entries: Mutex<VecDeque<(String, C)>>,
}

impl<C> Default for VerifiedTokens<C> {
    fn default() -> Self {
        Self {
            entries: Mutex::new(VecDeque::with_capacity(CAPACITY)),
        }
    }
}

impl<C: Clone> VerifiedTokens<C> {
    /// The claims of `token` if it was verified before.
    pub fn get(&self, token: &str) -> Option<C> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .find(|(t, _)| t == token)
            .map(|(_, c)| c.clone())
    }

    /// Records that `token` verified to `claims`.
    pub fn insert(&self, token: &str, claims: &C) {
        if token.len() > MAX_TOKEN_LEN {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|(t, _)| t == token) {
            return;
        }
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back((token.to_owned(), claims.clone()));
    }

    /// How many tokens are kept.
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no token is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_token_gives_back_its_claims_and_an_unknown_one_nothing() {
        let c = VerifiedTokens::default();
        c.insert("a.b.c", &1u32);
        assert_eq!(c.get("a.b.c"), Some(1));
        assert_eq!(c.get("a.b.d"), None);
        assert_eq!(c.get("a.b"), None, "only the exact text matches");
    }

    #[test]
    fn the_oldest_token_goes_first_and_the_cache_never_grows_past_capacity() {
        let c = VerifiedTokens::default();
        for i in 0..CAPACITY + 3 {
            c.insert(&format!("t{i}"), &i);
        }
        assert_eq!(c.len(), CAPACITY);
        for i in 0..3 {
            assert_eq!(c.get(&format!("t{i}")), None, "t{i} was evicted");
        }
        for i in 3..CAPACITY + 3 {
            assert_eq!(c.get(&format!("t{i}")), Some(i));
        }
    }

    #[test]
    fn a_token_is_kept_once_and_an_oversized_one_never() {
        let c = VerifiedTokens::default();
        c.insert("t", &1u32);
        c.insert("t", &2u32);
        assert_eq!((c.len(), c.get("t")), (1, Some(1)));
        c.insert(&"x".repeat(MAX_TOKEN_LEN + 1), &3u32);
        assert_eq!(c.len(), 1);
    }
}
