//! Prometheus metrics of the supervisor (served by `GET /metrics`).
//!
//! Neon's downtime figures (`compute_pg_current_downtime_ms`,
//! `compute_pg_downtime_ms_total`) count, from the first time the compute
//! is `running`, the time it is neither running nor reconfiguring (`failed`:
//! a failed reconfigure, a dead postmaster), until a terminate; a
//! reconfigure (`configuration_pending`, `configuration`) keeps Postgres
//! serving and is not downtime. Time comes from the clock the compute
//! gives ([`Metrics::with_clock`], the Env's monotonic clock).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

use crate::state::ComputeStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: &'static str,
}

/// Neon's `compute_ctl_up` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpLabel {
    build_tag: &'static str,
    status: &'static str,
}

/// The figures of Neon's `compute_installed_extensions`: (extension,
/// version, owned by the bootstrap superuser) -> databases. Defined here,
/// beside the metric, so that `metrics` imports nothing of
/// [`crate::installed_extensions`], which collects them (and is above
/// `compute`).
pub type ExtensionCounts = std::collections::BTreeMap<(String, String, bool), u64>;

/// Neon's `compute_installed_extensions` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExtensionLabel {
    extension_name: String,
    version: String,
    owned_by_superuser: &'static str,
}

/// The build's tag: `BUILD_TAG` at build time (as Neon), else the version.
pub const BUILD_TAG: &str = match option_env!("BUILD_TAG") {
    Some(t) => t,
    None => env!("CARGO_PKG_VERSION"),
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    operation: &'static str,
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabel {
    /// The matched route pattern (`/status`), or `unmatched` for unknown paths.
    route: String,
    method: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatementLabel {
    operation: &'static str,
    outcome: &'static str,
}

/// The monotonic clock the downtime figures are taken on (the Env's).
pub type MetricsClock = Box<dyn Fn() -> Instant + Send + Sync>;

/// Neon's downtime figures (see the module's docs).
struct Downtime {
    clock: Option<MetricsClock>,
    state: Mutex<DownState>,
    current_ms: Gauge,
    total_ms: Counter,
}

#[derive(Default)]
struct DownState {
    /// The compute was `running` once.
    has_run: bool,
    /// When the downtime in progress began.
    down_since: Option<Instant>,
    /// Downtime of the intervals that ended.
    ended: Duration,
}

impl Downtime {
    fn on_status(&self, status: ComputeStatus) {
        let Some(clock) = &self.clock else { return };
        let now = clock();
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if status == ComputeStatus::Running {
            st.has_run = true;
        }
        let down = st.has_run
            && !matches!(
                status,
                ComputeStatus::Running
                    | ComputeStatus::ConfigurationPending
                    | ComputeStatus::Configuration
                    | ComputeStatus::TerminationPending
                    | ComputeStatus::Terminated
            );
        match (down, st.down_since) {
            (true, None) => st.down_since = Some(now),
            (false, Some(since)) => {
                st.ended += now.saturating_duration_since(since);
                st.down_since = None;
            }
            _ => {}
        }
        self.publish(&st, now);
    }

    /// Brings both figures up to `now` (called before every scrape).
    fn refresh(&self) {
        let Some(clock) = &self.clock else { return };
        let now = clock();
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.publish(&st, now);
    }

    fn publish(&self, st: &DownState, now: Instant) {
        let current = st
            .down_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.current_ms
            .set(i64::try_from(ms(current)).unwrap_or(i64::MAX));
        let total = ms(st.ended + current);
        let counted = self.total_ms.get();
        if total > counted {
            self.total_ms.inc_by(total - counted);
        }
    }
}

/// The registry and the handles the supervisor updates.
pub struct Metrics {
    registry: Registry,
    /// Neon's metrics without our `compute_ctl_` prefix.
    unprefixed: Registry,
    installed_extensions: Family<ExtensionLabel, Gauge>,
    status: Family<StatusLabel, Gauge>,
    up: Family<UpLabel, Gauge>,
    phase_seconds: Family<PhaseLabel, Histogram>,
    statements: Family<StatementLabel, Counter>,
    http_requests: Family<HttpLabel, Counter>,
    /// Configures whose config Postgres refused (rolled back, never loaded).
    config_refused: Counter,
    /// `postgres` processes run to judge a setting's value or learn its unit.
    settings_judged_by_binary: Counter,
    /// Tasks alive in the runtime, read when the metrics are encoded (a
    /// leak of tasks per request shows as growth here).
    tasks: Gauge,
    downtime: Downtime,
}

fn phase_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 20,
    ))
}

impl Metrics {
    /// Metrics without a clock: the downtime figures stay 0 (tests of
    /// parts that do not track a compute's status).
    pub fn new() -> Self {
        Self::build(None)
    }

    /// Metrics whose downtime figures are taken on `clock`.
    pub fn with_clock(clock: MetricsClock) -> Self {
        Self::build(Some(clock))
    }

    fn build(clock: Option<MetricsClock>) -> Self {
        let mut registry = Registry::with_prefix("compute_ctl");
        let status = Family::<StatusLabel, Gauge>::default();
        registry.register(
            "status",
            "1 for the compute's current status",
            status.clone(),
        );
        let up = Family::<UpLabel, Gauge>::default();
        registry.register(
            "up",
            "1 for the compute's current status, with the build tag (Neon's compute_ctl_up)",
            up.clone(),
        );
        let phase_seconds = Family::<PhaseLabel, Histogram>::new_with_constructor(
            phase_histogram as fn() -> Histogram,
        );
        registry.register(
            "phase_duration_seconds",
            "Duration of the phases of start and reconfigure",
            phase_seconds.clone(),
        );
        let statements = Family::<StatementLabel, Counter>::default();
        registry.register(
            "catalog_statements",
            "Catalog statements by operation (start, reconfigure) and outcome (planned, executed, failed)",
            statements.clone(),
        );
        let http_requests = Family::<HttpLabel, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP API responses by route pattern, method and status code",
            http_requests.clone(),
        );
        let config_refused = Counter::default();
        registry.register(
            "config_refused",
            "Configures whose postgresql.conf Postgres refused (the previous one was put back; the refused one was never loaded)",
            config_refused.clone(),
        );
        let settings_judged_by_binary = Counter::default();
        registry.register(
            "settings_judged_by_binary",
            "postgres processes run to judge a spec setting's value or learn a setting's unit (a notify that repeats its settings, or sets plain numbers with units, runs none)",
            settings_judged_by_binary.clone(),
        );
        let tasks = Gauge::default();
        registry.register(
            "runtime_alive_tasks",
            "Tasks alive in compute_ctl's async runtime",
            tasks.clone(),
        );
        let mut unprefixed = Registry::default();
        let installed_extensions = Family::<ExtensionLabel, Gauge>::default();
        unprefixed.register(
            "compute_installed_extensions",
            "Number of databases where the version of extension is installed",
            installed_extensions.clone(),
        );
        let downtime = Downtime {
            clock,
            state: Mutex::new(DownState::default()),
            current_ms: Gauge::default(),
            total_ms: Counter::default(),
        };
        unprefixed.register(
            "compute_pg_current_downtime_ms",
            "Milliseconds of the downtime in progress (0 while running or reconfiguring), as Neon's",
            downtime.current_ms.clone(),
        );
        unprefixed.register(
            "compute_pg_downtime_ms",
            "Milliseconds the compute was neither running nor reconfiguring since it first ran, as Neon's",
            downtime.total_ms.clone(),
        );
        Self {
            registry,
            unprefixed,
            installed_extensions,
            status,
            up,
            phase_seconds,
            statements,
            http_requests,
            config_refused,
            settings_judged_by_binary,
            tasks,
            downtime,
        }
    }

    /// Counts a configure whose config Postgres refused.
    pub fn count_config_refused(&self) {
        self.config_refused.inc();
    }

    /// Configures whose config Postgres refused so far.
    pub fn config_refused(&self) -> u64 {
        self.config_refused.get()
    }

    /// Counts `n` runs of the binary to judge settings.
    pub fn count_settings_judged_by_binary(&self, n: usize) {
        self.settings_judged_by_binary.inc_by(n as u64);
    }

    /// Marks `status` as the current one.
    pub fn set_status(&self, status: ComputeStatus) {
        for s in ComputeStatus::ALL {
            self.status
                .get_or_create(&StatusLabel { status: s.as_str() })
                .set(i64::from(s == status));
            self.up
                .get_or_create(&UpLabel {
                    build_tag: BUILD_TAG,
                    status: s.as_str(),
                })
                .set(i64::from(s == status));
        }
        self.downtime.on_status(status);
    }

    /// Replaces the installed-extensions figures (see
    /// [`crate::installed_extensions`]).
    pub fn set_installed_extensions(&self, counts: &ExtensionCounts) {
        self.installed_extensions.clear();
        for ((name, version, superuser), n) in counts {
            self.installed_extensions
                .get_or_create(&ExtensionLabel {
                    extension_name: name.clone(),
                    version: version.clone(),
                    owned_by_superuser: if *superuser { "1" } else { "0" },
                })
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// Records how long a phase of `operation` ("start" or "reconfigure") took.
    pub fn observe_phase(
        &self,
        operation: &'static str,
        phase: &'static str,
        d: std::time::Duration,
    ) {
        self.phase_seconds
            .get_or_create(&PhaseLabel { operation, phase })
            .observe(d.as_secs_f64());
    }

    /// Counts catalog statements of `operation` with `outcome`
    /// ("planned", "executed" or "failed").
    pub fn count_statements(&self, operation: &'static str, outcome: &'static str, n: u64) {
        self.statements
            .get_or_create(&StatementLabel { operation, outcome })
            .inc_by(n);
    }

    /// Counts one HTTP response; `route` is the matched route pattern (never
    /// the raw path, so unknown paths cannot blow up the label space).
    pub fn count_http_request(&self, route: &str, method: &str, code: u16) {
        self.http_requests
            .get_or_create(&HttpLabel {
                route: route.to_string(),
                method: method.to_string(),
                code,
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let n = rt.metrics().num_alive_tasks();
            self.tasks.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.downtime.refresh();
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        let _ = encode_registry(&mut out, &self.registry);
        let _ = encode_registry(&mut out, &self.unprefixed);
        let _ = encode_eof(&mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_ctl_up_names_the_build_and_the_current_status() {
        let m = Metrics::new();
        m.set_status(ComputeStatus::Running);
        let text = m.encode();
        let line = |status: &str| {
            format!("compute_ctl_up{{build_tag=\"{BUILD_TAG}\",status=\"{status}\"}}")
        };
        assert!(text.contains(&format!("{} 1", line("running"))), "{text}");
        assert!(text.contains(&format!("{} 0", line("empty"))), "{text}");
        let mut counts = ExtensionCounts::new();
        counts.insert(("plpgsql".into(), "1.0".into(), true), 2);
        m.set_installed_extensions(&counts);
        let text = m.encode();
        assert!(
            text.contains("compute_installed_extensions{extension_name=\"plpgsql\",version=\"1.0\",owned_by_superuser=\"1\"} 2"),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    /// The value of the unlabelled sample `name` in `text`.
    fn sample(text: &str, name: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the fake clock's origin
    fn downtime_counts_time_neither_running_nor_reconfiguring_after_the_first_run() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        let origin = Instant::now();
        let elapsed = Arc::new(AtomicU64::new(0));
        let clock = elapsed.clone();
        let m = Metrics::with_clock(Box::new(move || {
            origin + Duration::from_millis(clock.load(Ordering::SeqCst))
        }));
        let advance = |ms: u64| {
            elapsed.fetch_add(ms, Ordering::SeqCst);
        };
        let figures = || {
            let text = m.encode();
            (
                sample(&text, "compute_pg_current_downtime_ms"),
                sample(&text, "compute_pg_downtime_ms_total"),
            )
        };
        // A start is not downtime: nothing ran yet.
        for s in [ComputeStatus::ConfigurationPending, ComputeStatus::Init] {
            m.set_status(s);
            advance(5_000);
        }
        assert_eq!(figures(), (0, 0));
        m.set_status(ComputeStatus::Running);
        advance(1_000);
        assert_eq!(figures(), (0, 0));
        // Failed: counted while it lasts, up to each scrape.
        m.set_status(ComputeStatus::Failed);
        advance(3_000);
        assert_eq!(figures(), (3_000, 3_000));
        advance(2_000);
        assert_eq!(figures(), (5_000, 5_000));
        // A new spec repairs it: a reconfigure is not downtime.
        m.set_status(ComputeStatus::ConfigurationPending);
        advance(4_000);
        m.set_status(ComputeStatus::Configuration);
        m.set_status(ComputeStatus::Running);
        advance(10_000);
        assert_eq!(figures(), (0, 5_000));
        // Down again, then a terminate ends the count.
        m.set_status(ComputeStatus::Failed);
        advance(1_500);
        m.set_status(ComputeStatus::TerminationPending);
        advance(10_000);
        m.set_status(ComputeStatus::Terminated);
        assert_eq!(figures(), (0, 6_500));
        // Neon's compute_ctl_up still names the status.
        assert!(m.encode().contains(&format!(
            "compute_ctl_up{{build_tag=\"{BUILD_TAG}\",status=\"terminated\"}} 1"
        )));
    }
}
