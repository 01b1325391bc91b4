//! Neon's external data (its spec fixture `cluster_spec.json` and its HTTP
//! contract `openapi_spec.yaml`), found in one place for every test.
//!
//! Looked up in `$COMPUTE_CTL_NEON_FIXTURES`, then in `../shared/fixtures/neon`
//! beside the checkout. When a file is in neither, the test that wanted it is
//! skipped with one line saying what is missing, unless
//! `COMPUTE_CTL_REQUIRE_NEON_FIXTURES=1` (set by `.ci/run`): then it fails.
//! README ("Neon's fixtures") says how to get the files.

use std::path::{Path, PathBuf};

/// A directory holding Neon's files, tried first.
pub const DIR_ENV: &str = "COMPUTE_CTL_NEON_FIXTURES";
/// `1`: a missing file fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "COMPUTE_CTL_REQUIRE_NEON_FIXTURES";

/// Where the files are looked for, in order.
pub fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os(DIR_ENV).filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/neon"));
    dirs
}

/// Whether a missing file must fail the test.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

/// The path of Neon's file `name`, or `None` (after printing why the
/// calling test is skipped). Panics when it is missing and required.
pub fn path(name: &str) -> Option<PathBuf> {
    let dirs = candidates();
    if let Some(found) = dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        return Some(found);
    }
    let looked: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    let msg = format!(
        "Neon's {name} is missing (looked in {}); set {DIR_ENV} to a directory holding it (see README, \"Neon's fixtures\")",
        looked.join(", ")
    );
    if required() {
        panic!("{msg}; {REQUIRE_ENV}=1 makes this a failure");
    }
    // Straight to stderr, past the test harness's capture: the one line shows.
    use std::io::Write as _;
    let _ = std::io::stderr().write_all(format!("SKIPPED: {msg}\n").as_bytes());
    None
}

/// The text of Neon's file `name`, or `None` as [`path`] says.
pub fn text(name: &str) -> Option<String> {
    let p = path(name)?;
    Some(std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display())))
}
