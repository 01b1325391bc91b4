//! Loopback ports for the tests, from one range shared by every helper
//! (compute_ctl's Postgres and HTTP ports, plain Postgres servers, the fake
//! control plane). The range is `COMPUTE_CTL_TEST_PORTS=LO-HI` (each
//! developer sets their own). The default is 2,000 ports just outside the
//! kernel's ephemeral range (`net.ipv4.ip_local_port_range`, 32768-60999 on
//! Debian): a port inside it can be taken at any moment as the source port of
//! some outgoing connection, and then Postgres fails to bind it, which is how
//! CI once failed with "port 58140 ... is already in use".
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
/// The size of the default range.
const DEFAULT_SPAN: u16 = 2000;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The configured range, inclusive.
pub fn range() -> (u16, u16) {
    static RANGE: OnceLock<(u16, u16)> = OnceLock::new();
    *RANGE.get_or_init(|| match std::env::var(RANGE_VAR) {
        Err(_) => default_range(),
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

/// `DEFAULT_SPAN` ports above the ephemeral range if they fit below 65535,
/// else below it (and above 1024).
fn default_range() -> (u16, u16) {
    let (eph_lo, eph_hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    if eph_hi <= 65535 - DEFAULT_SPAN {
        (eph_hi + 1, eph_hi + DEFAULT_SPAN)
    } else if eph_lo >= 1025 + DEFAULT_SPAN {
        (eph_lo - DEFAULT_SPAN, eph_lo - 1)
    } else {
        panic!(
            "the ephemeral port range {eph_lo}-{eph_hi} leaves no {DEFAULT_SPAN} ports free for tests: \
             set {RANGE_VAR}=LO-HI to ports no outgoing connection can take"
        )
    }
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
