//! The control plane's side of a scenario: sends specs over real HTTP,
//! logs each request's send and answer as events (the per-request checkers
//! judge them: skip-flag notify, re-sends, dry runs, deadlines) and, once
//! the fault schedule is over, drives the compute to its final state for
//! the convergence checks (logging it when it does not settle in time).
//! It judges nothing itself: every verdict is a checker's.

use std::time::Duration;

use compute_ctl::env::Clock;
use compute_ctl::state::ComputeStatus;
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::events::{Event, Request, Seen};
use crate::http::{self, Credential, Outcome};
use crate::names::{COMPUTE, HTTP_PORT, fleet_host};
use crate::specgen::SpecShape;
use crate::world::env::{SimClock, SimListener};
use crate::world::shared::now_us as world_now_us;

/// The harness's handle on the world (the compute host's record, the
/// ledger, the event log): held by the [`Driver`] alone, read and written
/// only through its operations (`driver/*.rs`), never named by a scenario.
use crate::world::shared::Shared;
/// The cgroup's MemTotal and its memory use when the compute boots.
pub use crate::world::{BOOT_USAGE, MEM_TOTAL};

/// Client-side deadline of `POST /configure`: the supervisor's own bounds
/// (ready timeout 10 s, catalog connect 10 s, server-side statement_timeout
/// 120 s, and a failed statement ends the apply) plus slack.
pub const CONFIGURE_DEADLINE: Duration = Duration::from_secs(180);
/// How long the control plane waits for an answer to a request that a
/// network fault may have swallowed before it gives up and retries.
pub const ABANDON_AFTER: Duration = Duration::from_secs(5);
/// Deadline of the quick requests (`/status`, `/terminate`).
pub const QUICK_DEADLINE: Duration = Duration::from_secs(30);
/// How long the compute may take to settle once faults are over.
pub const SETTLE_DEADLINE: Duration = Duration::from_secs(180);

// The world as the scenarios see it: the simulated clock, connections to
// hosts, the safekeepers' addresses. Scenarios take these from here, never
// from `world/` (sim/tests/layering.rs checks it).

/// Simulated time since the simulation started (µs).
pub fn now_us() -> u64 {
    world_now_us()
}

/// Sleeps `d` of simulated time.
pub async fn sleep(d: Duration) {
    SimClock.sleep(d).await
}

/// `fut`, given up after `d` of simulated time.
pub async fn timeout<F: Future>(
    d: Duration,
    fut: F,
) -> Result<F::Output, compute_ctl::env::Elapsed> {
    compute_ctl::env::timeout(&SimClock, d, fut).await
}

/// A TCP connection to `host:port`, given up when the host stays silent
/// (the WAL stream's bound).
pub async fn connect(host: &str, port: u16) -> Option<turmoil::net::TcpStream> {
    crate::world::walstream::connect(host, port).await
}

/// Listens on `port` of this host, for axum to serve on.
pub async fn listen(port: u16) -> std::io::Result<SimListener> {
    let addr = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    turmoil::net::TcpListener::bind(addr).await.map(SimListener)
}

/// The key set compute_ctl verifies the control plane's tokens with, as the
/// control plane sends it (`compute_ctl_config.jwks` of its spec answer).
pub fn jwks() -> serde_json::Value {
    serde_json::from_str(crate::world::JWKS).expect("the test key set is JSON")
}

/// The connection string of safekeeper host `name`.
pub fn safekeeper_connstring(name: &str) -> String {
    crate::world::safekeeper_connstring(name)
}

/// The connection strings of the durable worlds' safekeepers.
pub fn safekeeper_connstrings() -> Vec<String> {
    crate::world::safekeeper_connstrings()
}

mod commits;
mod observe;
mod partition;
mod record;
mod steer;

/// The control plane of a scenario: its requests to the compute, and every
/// other word it has with the world (what it reads of it, what it logs,
/// what it changes) as one of its operations. It alone holds the world's
/// record: `shared` is private to this module and its children
/// (`driver/*.rs`), so no scenario reaches past it.
pub struct Driver {
    shared: Shared,
    pub seed: u64,
    pub rng: SmallRng,
    next_op: u64,
    /// The spec the control plane wants in effect.
    pub intent: Option<SpecShape>,
    /// The records of a fleet's computes ([`super::Topology::fleet`]), compute
    /// `k` on host [`fleet_host`]`(k)`; empty in a one-compute world.
    fleet: Vec<Shared>,
    /// Whether this seed's unauthenticated request was sent ([`Driver::probe_auth`]).
    auth_probed: bool,
}

impl Driver {
    pub fn new(shared: Shared, seed: u64) -> Self {
        Self {
            shared,
            seed,
            rng: SmallRng::seed_from_u64(seed ^ 0xC0FFEE),
            next_op: 0,
            intent: None,
            fleet: Vec::new(),
            auth_probed: false,
        }
    }

    /// This driver over the fleet `fleet`: compute `k`'s record at `k`.
    pub fn with_fleet(mut self, fleet: Vec<Shared>) -> Self {
        self.fleet = fleet;
        self
    }

    /// `POST /configure` of `body` to fleet compute `k`, unjudged: to be
    /// spawned (owns what it needs).
    pub fn configure_on(&self, k: usize, body: String) -> impl Future<Output = Outcome> + use<> {
        async move { post_configure_to(&fleet_host(k), body).await }
    }

    /// A skip-flag notify of `shape` to fleet compute `k`: logged as sent
    /// now, judged by compute `k`'s checkers as it is answered; the outcome
    /// and when it came. To be spawned (owns what it needs).
    pub fn notify_on(
        &self,
        k: usize,
        shape: &SpecShape,
    ) -> impl Future<Output = (Outcome, u64)> + use<> {
        let sh = self.fleet[k].clone();
        let sent = send(&sh, Request::Notify, "/configure", shape.operation);
        let body = shape.configure_body();
        async move {
            let out = post_configure_to(&fleet_host(k), body).await;
            answer(&sh, &sent, &out);
            (out, now_us())
        }
    }

    /// `POST /configure` of `body`, sent at `t0`, given up as
    /// [`Driver::configure`] gives up a request a network fault may have
    /// swallowed; unjudged: to be spawned (owns what it needs).
    pub fn configure_abandoning(
        &self,
        body: String,
        t0: u64,
    ) -> impl Future<Output = Outcome> + use<> {
        let shared = self.shared.clone();
        async move { post_configure_abandoning(&shared, body, t0).await }
    }

    /// A fresh operation id for `shape`.
    pub fn stamp(&mut self, mut shape: SpecShape) -> SpecShape {
        self.next_op += 1;
        shape.operation = self.next_op;
        shape
    }

    pub async fn sleep(&self, d: Duration) {
        sleep(d).await
    }

    /// Sets the memory use the compute's cgroup reports (when it is up),
    /// logged as [`Event::CgroupUsage`] for the checkers.
    pub fn set_cgroup_usage(&self, bytes: u64) {
        if let Some(c) = self.shared.compute() {
            crate::world::write_cgroup_usage(c.env(), bytes);
        }
        self.shared.emit(Event::CgroupUsage { bytes });
    }

    /// A seeded pause in `[lo, hi]` ms.
    pub async fn pause(&mut self, lo: u64, hi: u64) {
        let ms = self.rng.random_range(lo..=hi);
        self.sleep(Duration::from_millis(ms)).await
    }

    /// `POST /configure` with `shape`; its deadline judged by `checkers/deadline.rs`.
    pub async fn configure(&mut self, shape: &SpecShape) -> Outcome {
        self.configure_as(shape, Request::Configure).await
    }

    /// [`Driver::configure`] of a request the checkers judge as `kind`.
    async fn configure_as(&mut self, shape: &SpecShape, kind: Request) -> Outcome {
        let sent = send(&self.shared, kind, "/configure", shape.operation);
        let out = post_configure_abandoning(&self.shared, shape.configure_body(), sent.t0).await;
        self.deadline(&sent, "/configure", shape.operation, &out);
        answer(&self.shared, &sent, &out);
        out
    }

    /// A re-send of `shape`, already applied: checked to do no work.
    pub async fn resend(&mut self, shape: &SpecShape) -> Outcome {
        self.configure_as(shape, Request::Resend).await
    }

    /// Logs that `sent` (`POST path` of operation `op`) got no answer
    /// within its deadline, when it did not (`out`), before its answer:
    /// `checkers/deadline.rs` judges it, excused by a network fault or an
    /// exited supervisor.
    fn deadline(&self, sent: &Sent, path: &str, op: u64, out: &Outcome) {
        if *out == Outcome::DeadlineExceeded {
            self.emit(Event::DeadlineExceeded {
                req: sent.req,
                path: path.to_string(),
                op,
                sent_us: sent.t0,
            });
        }
    }

    /// A skip-flag notify: `/configure` with `skip_pg_catalog_updates`,
    /// checked to issue no SQL at all, reload by signal, and finish in
    /// bounded time.
    pub async fn notify(&mut self, shape: &SpecShape) -> Outcome {
        debug_assert!(shape.skip_catalog);
        self.configure_as(shape, Request::Notify).await
    }

    /// `POST /configure?dry_run=true` with `shape`, checked to change
    /// nothing; the predicted catalog statements (database, SQL) when it
    /// answered 200 with a plan.
    pub async fn dry_run(&mut self, shape: &SpecShape) -> Option<Vec<(String, String)>> {
        const PATH: &str = "/configure?dry_run=true";
        let sent = send(&self.shared, Request::DryRun, PATH, shape.operation);
        let out = http::request(
            COMPUTE,
            HTTP_PORT,
            "POST",
            PATH,
            Some(shape.configure_body()),
            CONFIGURE_DEADLINE,
        )
        .await;
        self.deadline(&sent, PATH, shape.operation, &out);
        answer(&self.shared, &sent, &out);
        let Outcome::Answer(200, body) = out else {
            return None;
        };
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        if !v["catalog"]["error"].is_null() {
            return None;
        }
        v["catalog"]["statements"].as_array().map(|a| {
            a.iter()
                .map(|s| {
                    let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    (field("database"), field("sql"))
                })
                .collect()
        })
    }

    /// `GET /status` (None when the compute does not answer).
    pub async fn status(&self) -> Option<ComputeStatus> {
        match http::request(COMPUTE, HTTP_PORT, "GET", "/status", None, QUICK_DEADLINE).await {
            Outcome::Answer(200, body) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| serde_json::from_value(v["status"].clone()).ok()),
            _ => None,
        }
    }

    /// `POST /terminate?mode=...`.
    pub async fn terminate(&mut self, mode: &str) -> Outcome {
        let path = format!("/terminate?mode={mode}");
        let sent = send(&self.shared, Request::Terminate, &path, 0);
        let out = http::request(COMPUTE, HTTP_PORT, "POST", &path, None, QUICK_DEADLINE).await;
        self.deadline(&sent, "/terminate", 0, &out);
        answer(&self.shared, &sent, &out);
        out
    }

    /// Waits until the fault schedule is over.
    pub async fn healed(&self) {
        while !self.shared.healed() {
            self.sleep(Duration::from_millis(20)).await;
        }
    }

    /// The compute's status as the harness sees it (no network).
    pub fn observed_status(&self) -> Option<ComputeStatus> {
        self.shared.compute().map(|c| c.state().status)
    }

    /// After the faults: make sure the compute got `intent` (re-sending it
    /// as a control plane would after lost answers or a compute restart),
    /// then wait for it to settle; the first time it settled running, the
    /// seed's unauthenticated request ([`Driver::probe_auth`]).
    pub async fn converge(&mut self) {
        self.settle().await;
        self.probe_auth().await;
    }

    /// Once per seed, on a settled running compute and a healed network:
    /// `POST /configure` of a new operation (the intent's content) without
    /// the control plane's token: none, one signed by a key outside the
    /// compute's set, or another compute's, by the seed. Auth must refuse
    /// it (400, 401, 403) and nothing may change (`checkers/auth.rs`).
    async fn probe_auth(&mut self) {
        if self.auth_probed {
            return;
        }
        let Some(intent) = self.intent.clone() else {
            return;
        };
        let settled = self.shared.compute().is_some_and(|c| {
            let st = c.state();
            st.status == ComputeStatus::Running && st.generation == st.applied_generation
        });
        if !settled {
            return;
        }
        self.auth_probed = true;
        let credential = [
            Credential::Missing,
            Credential::ForeignKey,
            Credential::OtherCompute,
        ][usize::try_from(self.seed % 3).unwrap_or(0)];
        let expect = credential.refused_with().unwrap_or_default();
        let shape = self.stamp(intent);
        let kind = Request::Unauthorized { expect };
        let sent = send(&self.shared, kind, "/configure", shape.operation);
        let out = http::request_with(
            COMPUTE,
            HTTP_PORT,
            "POST",
            "/configure",
            Some(shape.configure_body()),
            QUICK_DEADLINE,
            credential,
        )
        .await;
        self.deadline(&sent, "/configure", shape.operation, &out);
        answer(&self.shared, &sent, &out);
    }

    async fn settle(&mut self) {
        self.healed().await;
        let deadline = now_us() + u64::try_from(SETTLE_DEADLINE.as_micros()).unwrap_or(u64::MAX);
        loop {
            if now_us() > deadline {
                // Judged by `checkers/settled.rs`.
                let status = self.observed_status();
                let deadline_ms = u64::try_from(SETTLE_DEADLINE.as_millis()).unwrap_or(u64::MAX);
                self.emit(Event::SettleGaveUp {
                    status,
                    deadline_ms,
                });
                return;
            }
            let Some(compute) = self.shared.compute() else {
                self.sleep(Duration::from_millis(50)).await;
                continue;
            };
            let st = compute.state();
            match st.status {
                ComputeStatus::Failed | ComputeStatus::Terminated => return,
                ComputeStatus::Running | ComputeStatus::Empty => {
                    let want = self.intent.as_ref().map(|s| s.operation_uuid());
                    let have = st.spec.as_ref().and_then(|s| s.operation_uuid.clone());
                    if want.is_none() || (want == have && st.status == ComputeStatus::Running) {
                        return;
                    }
                    if let Some(shape) = self.intent.clone() {
                        let out = self.configure(&shape).await;
                        if out.status().is_none() {
                            self.pause(50, 200).await;
                        }
                    }
                }
                _ => self.sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// `POST /configure` to the compute with `body`, bounded by [`CONFIGURE_DEADLINE`].
/// [`post_configure`] of a request sent at `t0`, given up as a control
/// plane would once a network fault may have swallowed it (see
/// [`lost_to_network_fault`]).
async fn post_configure_abandoning(shared: &Shared, body: String, t0: u64) -> Outcome {
    tokio::select! {
        biased;
        out = post_configure(body) => out,
        () = lost_to_network_fault(shared, t0) => Outcome::Transport("abandoned: network fault or compute gone".into()),
    }
}

/// Completes when a request sent at `t0` has waited [`ABANDON_AFTER`]
/// and a network fault overlapped it: its packets may be lost for good
/// (turmoil does not retransmit), so the control plane stops waiting and
/// retries (such requests are excused from the deadline invariant anyway).
async fn lost_to_network_fault(shared: &Shared, t0: u64) {
    loop {
        sleep(Duration::from_secs(1)).await;
        let waited = Duration::from_micros(now_us().saturating_sub(t0));
        let sh = shared.lock();
        // A compute whose supervisor exited is gone: the real process
        // would refuse the connection at once.
        if sh.supervisor_exited || (waited >= ABANDON_AFTER && sh.ledger.excuses_lost_request(t0)) {
            return;
        }
    }
}

pub async fn post_configure(body: String) -> Outcome {
    post_configure_to(COMPUTE, body).await
}

/// `POST /configure` to `host` with `body`, bounded by [`CONFIGURE_DEADLINE`].
async fn post_configure_to(host: &str, body: String) -> Outcome {
    http::request(
        host,
        HTTP_PORT,
        "POST",
        "/configure",
        Some(body),
        CONFIGURE_DEADLINE,
    )
    .await
}

/// A request of the control plane in flight.
#[derive(Debug, Clone)]
pub struct Sent {
    pub req: u64,
    /// When it was sent (µs): its window opens here.
    pub t0: u64,
    kind: Request,
    path: String,
    op: u64,
}

/// Whether the checkers of `kind` compare the catalog before and after.
fn takes_catalog(kind: Request) -> bool {
    matches!(kind, Request::DryRun | Request::Unauthorized { .. })
}

/// Logs that the control plane sends `path` (a `kind` request of
/// operation `op`) to the compute of `shared` now.
fn send(shared: &Shared, kind: Request, path: &str, op: u64) -> Sent {
    let t0 = now_us();
    let req = {
        let mut sh = shared.lock();
        sh.harness.next_req += 1;
        sh.harness.next_req
    };
    let seen = takes_catalog(kind).then(|| Seen::take(shared, true));
    shared.emit_at(
        t0,
        Event::RequestSent {
            req,
            kind,
            path: path.to_string(),
            op,
            seen,
        },
    );
    Sent {
        req,
        t0,
        kind,
        path: path.to_string(),
        op,
    }
}

/// Logs how `sent` ended, now, with what the checkers of its kind read of
/// the compute host; an answered notify's round trip is measured.
fn answer(shared: &Shared, sent: &Sent, out: &Outcome) {
    let t1 = now_us();
    let seen = match sent.kind {
        Request::Notify => Some(Seen::take(shared, false)),
        k if takes_catalog(k) => Some(Seen::take(shared, true)),
        _ => None,
    };
    if sent.kind == Request::Notify && out.status() == Some(200) {
        shared
            .lock()
            .harness
            .notify_round_trips_us
            .push(t1.saturating_sub(sent.t0));
    }
    shared.emit_at(
        t1,
        Event::Answered {
            req: sent.req,
            kind: sent.kind,
            path: sent.path.clone(),
            op: sent.op,
            outcome: out.label(),
            code: out.status(),
            ms: t1.saturating_sub(sent.t0) / 1000,
            seen,
        },
    );
}
