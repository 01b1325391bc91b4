//! Loopback ports for the tests, from one range shared by every helper
//! (compute_ctl's Postgres and HTTP ports, plain Postgres servers, the fake
//! control plane). The range is `COMPUTE_CTL_TEST_PORTS=LO-HI` (each
//! developer sets their own; default 58000-58999).
//!
//! Test threads of one binary never get the same port: a static atomic
//! counter hands each port out once, and a bind check skips ports something
//! else holds. The counter starts at an offset taken from the process id, so
//! that two test runs sharing a range start far apart. Cargo runs the test
//! binaries one after another.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The variable naming the range.
pub const RANGE_VAR: &str = "COMPUTE_CTL_TEST_PORTS";
const DEFAULT_RANGE: (u16, u16) = (58000, 58999);

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The configured range, inclusive.
pub fn range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| match std::env::var(RANGE_VAR) {
        Err(_) => DEFAULT_RANGE,
        Ok(v) => parse_range(&v).unwrap_or_else(|| {
            panic!("{RANGE_VAR}={v:?}: expected LO-HI with 1024 <= LO <= HI, e.g. 56800-56999")
        }),
    })
}

fn parse_range(v: &str) -> Option<(u16, u16)> {
    let (lo, hi) = v.trim().split_once('-')?;
    let (lo, hi): (u16, u16) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (1024 <= lo && lo <= hi).then_some((lo, hi))
}

/// A free loopback port of the range, never handed out before in this process.
pub fn free_port() -> u16 {
    let (lo, hi) = range();
    let n = u32::from(hi - lo) + 1;
    let start = std::process::id() % n;
    for _ in 0..n {
        let i = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % n;
        let port = lo + i as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port left in {lo}-{hi} ({RANGE_VAR})");
}
