//! The names of the simulated network: host names, ports, the superuser
//! and the client load's application name. Plain constants, the one thing
//! the world, the fault schedule, the spec generator and the checkers all
//! agree on; no state.

pub const COMPUTE: &str = "compute";

/// Simulated time per step of the world: messages between hosts are
/// delivered at step boundaries (timers inside a host stay exact). Every
/// step ticks four tokio runtimes (three hosts and the network), about 4 µs
/// of real time even when all are idle, which was half of a notify seed's
/// cost at 10 ms. At 20 ms a seed takes about 150 steps; the planted bugs
/// are caught by the same seeds as at 10 ms.
pub const TICK: std::time::Duration = std::time::Duration::from_millis(20);

pub const STORAGE: &str = "storage";

/// A second storage that follows the first (a replica's other source).
pub const STORAGE2: &str = "storage2";

pub const CPLANE: &str = "cplane";

/// A second compute host (a replica to promote).
pub const REPLICA: &str = "replica";
/// Host name of compute `k` of a fleet (`compute-00` …).
pub fn fleet_host(k: usize) -> String {
    format!("compute-{k:02}")
}

pub const HTTP_PORT: u16 = 3080;

pub const PG_PORT: u16 = 55432;

pub const SUPERUSER: &str = "cloud_admin";

/// The vm-monitor's port (its default, 10301) under autoscaling.
pub const VM_MONITOR_PORT: u16 = 10301;

/// The safekeeper hosts and how far (bytes) each lags behind `storage`.
pub const SAFEKEEPERS: [(&str, u64); 3] = [("sk1", 0), ("sk2", 16384), ("sk3", 65536)];

/// The hosts of the durable-primary scenarios' safekeepers: the first
/// three are the set a primary starts with; the others are where a
/// safekeeper move goes.
pub const DURABLE_SAFEKEEPERS: [&str; 6] = ["sk1", "sk2", "sk3", "sk4", "sk5", "sk6"];

/// The control plane's spec endpoint (served by the `cplane` host).
pub const CPLANE_PORT: u16 = 9090;

/// The storage host's base-backup port.
pub const STORAGE_PORT: u16 = 6400;

/// The safekeepers' port.
pub const SAFEKEEPER_PORT: u16 = 5454;

/// The `application_name` of the client load's sessions.
pub const LOAD_APPLICATION: &str = "load";

/// The `operation_uuid` of the control plane's operation `op` (what the
/// specs carry and the checkers match requests by).
pub fn operation_uuid(op: u64) -> String {
    format!("00000000-0000-4000-8000-{op:012}")
}
