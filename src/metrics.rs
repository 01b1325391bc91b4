//! Prometheus metrics of the supervisor (served by `GET /metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

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
    /// Configures whose config Postgres refused after the reload (rolled back).
    config_refused: Counter,
    /// Tasks alive in the runtime, read when the metrics are encoded (a
    /// leak of tasks per request shows as growth here).
    tasks: Gauge,
}

fn phase_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 20,
    ))
}

impl Metrics {
    pub fn new() -> Self {
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
            "Configures whose postgresql.conf Postgres refused after the reload (the previous one was put back)",
            config_refused.clone(),
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
            tasks,
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
    }

    /// Replaces the installed-extensions figures (see
    /// [`crate::installed_extensions`]).
    pub fn set_installed_extensions(&self, counts: &crate::installed_extensions::Counts) {
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

    /// The catalog statements of `operation` with `outcome` counted so far.
    pub fn statements(&self, operation: &'static str, outcome: &'static str) -> u64 {
        self.statements
            .get_or_create(&StatementLabel { operation, outcome })
            .get()
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
        let mut counts = crate::installed_extensions::Counts::new();
        counts.insert(("plpgsql".into(), "1.0".into(), true), 2);
        m.set_installed_extensions(&counts);
        let text = m.encode();
        assert!(
            text.contains("compute_installed_extensions{extension_name=\"plpgsql\",version=\"1.0\",owned_by_superuser=\"1\"} 2"),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }
}
