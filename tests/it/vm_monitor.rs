//! The vm-monitor of the real binary under `--autoscaling` (= `AUTOSCALING`
//! set), with a fake cgroup directory (cgroup v1 and v2 file layouts, on
//! tmpfs when there is one) whose `memory.stat` the test rewrites, and a
//! websocket client (tokio-tungstenite) acting as the autoscaler-agent.
//! No real cgroup is created or changed: the code reads the fake directory
//! exactly as it would read cgroupfs.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::ports::free_port;
use crate::support::{fixture, wait_for};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const CGROUP: &str = "neon-postgres";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layout {
    V1,
    V2,
}

/// A cgroup root laid out as cgroupfs is, with one cgroup in it.
struct FakeCgroup {
    root: tempfile::TempDir,
    layout: Layout,
}

impl FakeCgroup {
    fn new(layout: Layout, usage: u64) -> Self {
        let base = if Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let root = tempfile::Builder::new()
            .prefix("compute_ctl-cgroup-")
            .tempdir_in(base)
            .expect("fake cgroup root");
        let cg = Self { root, layout };
        match layout {
            Layout::V2 => std::fs::write(
                cg.root.path().join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap(),
            Layout::V1 => std::fs::create_dir_all(cg.root.path().join("memory")).unwrap(),
        }
        std::fs::create_dir_all(cg.dir()).unwrap();
        std::fs::write(cg.dir().join("cgroup.procs"), "").unwrap();
        cg.set_usage(usage);
        cg
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn dir(&self) -> PathBuf {
        match self.layout {
            Layout::V2 => self.root().join(CGROUP),
            Layout::V1 => self.root().join("memory").join(CGROUP),
        }
    }

    /// Rewrites `memory.stat` (atomically, as the kernel presents it) so
    /// that the non-reclaimable usage is `bytes`; the reclaimable and
    /// non-hierarchical fields carry decoys the monitor must not count.
    fn set_usage(&self, bytes: u64) {
        let active = bytes / 4 * 3;
        let inactive = bytes - active;
        let text = match self.layout {
            Layout::V2 => format!(
                "anon {bytes}\nfile 5368709120\nshmem 134217728\nactive_anon {active}\ninactive_anon {inactive}\nactive_file 4294967296\ninactive_file 1073741824\n"
            ),
            Layout::V1 => format!(
                "cache 5368709120\nrss {bytes}\nactive_anon 1\ninactive_anon 1\nactive_file 4294967296\ntotal_cache 5368709120\ntotal_rss {bytes}\ntotal_active_anon {active}\ntotal_inactive_anon {inactive}\ntotal_active_file 4294967296\n"
            ),
        };
        let tmp = self.dir().join("memory.stat.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.dir().join("memory.stat")).unwrap();
    }

    fn procs(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir().join("cgroup.procs"))
            .unwrap()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

/// How the monitor is turned on.
#[derive(Clone, Copy)]
enum On {
    Flag,
    /// `AUTOSCALING=true` in the environment, as Neon's VMs set it.
    EnvVar,
}

/// compute_ctl with the monitor on, Postgres running.
async fn autoscaled(cg: &FakeCgroup, on: On) -> (Compute, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let root = cg.root().display().to_string();
    let mut opts = ComputeOpts::with_spec(fixture("spec.json")).args([
        "--vm-monitor-addr",
        &addr,
        "--cgroup",
        CGROUP,
        "--cgroup-root",
        &root,
    ]);
    match on {
        On::Flag => opts = opts.args(["--autoscaling"]),
        On::EnvVar => opts.env.push(("AUTOSCALING".into(), "true".into())),
    }
    let c = Compute::start(opts);
    c.wait_running().await;
    (c, port)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The test's autoscaler-agent.
struct Agent {
    ws: Ws,
    next_id: u64,
}

impl Agent {
    /// Connects (the monitor is up once the compute runs) without negotiating.
    async fn connect(port: u16) -> Self {
        let url = format!("ws://127.0.0.1:{port}/monitor");
        let ws = wait_for(
            Duration::from_secs(10),
            "the vm-monitor to accept",
            || async {
                tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .ok()
                    .map(|(ws, _)| ws)
            },
        )
        .await;
        Self { ws, next_id: 0 }
    }

    /// Connects and agrees on version 1.
    async fn negotiated(port: u16) -> Self {
        let mut a = Self::connect(port).await;
        a.send_raw(json!({"min": 1, "max": 1}).to_string()).await;
        assert_eq!(a.recv().await, json!({"version": 1}));
        a
    }

    async fn send_raw(&mut self, text: String) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send to the monitor");
    }

    /// Sends `{"type":T,"content":C,"id":N}` with the next even id; returns the id.
    async fn send(&mut self, ty: &str, content: Value) -> u64 {
        self.next_id += 2;
        let id = self.next_id;
        self.send_raw(json!({"type": ty, "content": content, "id": id}).to_string())
            .await;
        id
    }

    /// The next text message, as JSON; `None` when the monitor closed.
    async fn next(&mut self) -> Option<Value> {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(15), self.ws.next())
                .await
                .expect("the monitor answers within 15 s");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => {
                    return Some(serde_json::from_str(t.as_str()).expect("the monitor sends JSON"));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    async fn recv(&mut self) -> Value {
        self.next()
            .await
            .expect("the monitor closed the connection")
    }

    /// Sends a request and returns its reply (skipping upscale requests).
    async fn call(&mut self, ty: &str, content: Value) -> Value {
        let id = self.send(ty, content).await;
        loop {
            let m = self.recv().await;
            if m["type"] == "UpscaleRequest" {
                continue;
            }
            assert_eq!(m["id"], id, "a reply carries its request's id: {m}");
            return m;
        }
    }

    /// A downscale answer once the monitor has at least two samples.
    async fn downscale(&mut self, mem: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = self
                .call(
                    "DownscaleRequest",
                    json!({"target": {"cpu": 0.25, "mem": mem}}),
                )
                .await;
            let early = r["Status"]
                .as_str()
                .is_some_and(|s| s.contains("not enough cgroup memory samples"));
            if !early || Instant::now() > deadline {
                return r;
            }
            // The polling interval of a condition with a deadline.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn status_text(r: &Value) -> &str {
    r["Status"]
        .as_str()
        .unwrap_or_else(|| panic!("a DownscaleResult: {r}"))
}

#[tokio::test]
async fn v2_postgres_in_cgroup_health_downscale_refused_and_accepted_upscale_round_trip() {
    let cg = FakeCgroup::new(Layout::V2, GIB);
    let (c, port) = autoscaled(&cg, On::Flag).await;
    let pm = c.postmaster_pid().expect("postmaster");
    assert!(
        cg.procs().contains(&pm),
        "postmaster {pm} in cgroup.procs {:?}\n{}",
        cg.procs(),
        c.log()
    );

    let mut agent = Agent::negotiated(port).await;
    let r = agent.call("HealthCheck", json!({})).await;
    assert_eq!(r, json!({"type": "HealthCheck", "id": 2}));

    // 1 GiB in use; a 1 GiB VM would leave a threshold of 785 MiB.
    let r = agent.downscale(GIB).await;
    assert_eq!(r["type"], "DownscaleResult", "{r}");
    assert_eq!(r["Ok"], false, "{r}");
    assert_eq!(
        status_text(&r),
        "calculated memory threshold too low: 785 MiB (new threshold) < 1024 MiB (current usage) + 100 MiB (downscale buffer)"
    );
    // 4 GiB leaves 3396 MiB: accepted, and adopted.
    let r = agent.downscale(4 * GIB).await;
    assert_eq!(r["Ok"], true, "{r}");
    assert!(
        status_text(&r).ends_with("to 3396 MiB, of new total 3996 MiB"),
        "{r}"
    );

    // Usage over the new threshold: one UpscaleRequest (odd id), then at most one a second.
    cg.set_usage(3500 * MIB);
    let first = agent.recv().await;
    let t_first = Instant::now();
    assert_eq!(first["type"], "UpscaleRequest", "{first}");
    let id = first["id"].as_u64().unwrap();
    assert_eq!(id % 2, 1, "the monitor's ids are odd: {first}");
    let up = agent
        .send(
            "UpscaleNotification",
            json!({"granted": {"cpu": 2.0, "mem": 8 * GIB}}),
        )
        .await;
    let mut extra = Vec::new();
    loop {
        let m = agent.recv().await;
        if m["type"] == "UpscaleRequest" {
            extra.push(t_first.elapsed());
            continue;
        }
        assert_eq!(m, json!({"type": "UpscaleConfirmation", "id": up}));
        break;
    }
    // A second request could only come a second after the first.
    assert!(
        extra.iter().all(|d| *d >= Duration::from_millis(900)),
        "{extra:?}"
    );
    assert!(c.log().contains("requesting an upscale"));
    // 8 GiB granted: 3500 MiB is far under the threshold; health checks still echo.
    let r = agent.call("HealthCheck", json!({})).await;
    assert_eq!(r["type"], "HealthCheck");
    assert!(
        c.log().contains("no neon.file_cache_size_limit"),
        "vanilla Postgres has no file cache: {}",
        c.log()
    );
}

#[tokio::test]
async fn bad_input_is_answered_or_closes_the_connection_and_the_compute_keeps_running() {
    let cg = FakeCgroup::new(Layout::V2, 100 * MIB);
    let (c, port) = autoscaled(&cg, On::Flag).await;
    let mut agent = Agent::negotiated(port).await;

    agent.send_raw("{not json".into()).await;
    let r = agent.recv().await;
    assert_eq!(r["type"], "InvalidMessage", "{r}");
    assert!(r["error"].as_str().unwrap().contains("not JSON"), "{r}");

    agent
        .send_raw(json!({"type": "Bogus", "content": {}, "id": 40}).to_string())
        .await;
    let r = agent.recv().await;
    assert_eq!(
        (&r["type"], &r["id"]),
        (&json!("InvalidMessage"), &json!(40)),
        "{r}"
    );

    agent
        .send_raw(
            json!({"type": "DownscaleRequest", "content": {"target": {"cpu": 1}}, "id": 42})
                .to_string(),
        )
        .await;
    let r = agent.recv().await;
    assert_eq!(
        (&r["type"], &r["id"]),
        (&json!("InvalidMessage"), &json!(42)),
        "{r}"
    );

    agent
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(agent.recv().await["type"], "InvalidMessage");

    // Still served after all that.
    assert_eq!(
        agent.call("HealthCheck", json!({})).await["type"],
        "HealthCheck"
    );

    // A frame over the limit (64 KiB) closes the connection.
    agent.send_raw("x".repeat(200 * 1024)).await;
    assert_eq!(
        agent.next().await,
        None,
        "the connection is closed after a huge frame"
    );

    // A plain GET (no websocket upgrade) is a 4xx with a JSON error.
    let r = c
        .client
        .get(format!("http://127.0.0.1:{port}/monitor"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("a JSON error body");
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["error"].is_string(), "{body}");

    // A new agent is served; the compute never noticed.
    let mut again = Agent::negotiated(port).await;
    assert_eq!(
        again.call("HealthCheck", json!({})).await["type"],
        "HealthCheck"
    );
    assert_eq!(c.status().await["status"], "running");
    assert!(c.try_exit().is_none());
}

#[tokio::test]
async fn v1_layout_second_agent_replaces_the_first_stale_samples_fail_downscale_and_versions_must_overlap()
 {
    // Turned on by the AUTOSCALING environment variable this time.
    let cg = FakeCgroup::new(Layout::V1, GIB);
    let (c, port) = autoscaled(&cg, On::EnvVar).await;
    let pm = c.postmaster_pid().expect("postmaster");
    assert!(
        cg.procs().contains(&pm),
        "postmaster {pm} in v1 cgroup.procs {:?}",
        cg.procs()
    );

    let mut first = Agent::negotiated(port).await;
    assert_eq!(
        first.call("HealthCheck", json!({})).await["type"],
        "HealthCheck"
    );
    let mut second = Agent::negotiated(port).await;
    assert_eq!(
        first.next().await,
        None,
        "the older agent's connection is closed"
    );
    // v1's hierarchical totals are read: 1 GiB in use.
    let r = second.downscale(GIB).await;
    assert_eq!(r["Ok"], false, "{r}");
    assert!(
        status_text(&r).contains("< 1024 MiB (current usage)"),
        "{r}"
    );

    // No memory sample for over 5 s: a downscale cannot be judged.
    std::fs::remove_file(cg.dir().join("memory.stat")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let r = loop {
        let r = second
            .call(
                "DownscaleRequest",
                json!({"target": {"cpu": 0.25, "mem": 8 * GIB}}),
            )
            .await;
        if r["type"] == "InternalError" || Instant::now() > deadline {
            break r;
        }
        // The polling interval of a condition with a deadline.
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(r["type"], "InternalError", "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .contains("no cgroup memory sample"),
        "{r}"
    );
    assert!(c.log().contains("memory sample skipped"));

    let mut odd = Agent::connect(port).await;
    odd.send_raw(json!({"min": 2, "max": 3}).to_string()).await;
    let r = odd.recv().await;
    assert!(
        r["error"].as_str().unwrap().contains("do not overlap"),
        "{r}"
    );
    assert_eq!(odd.next().await, None);
    assert_eq!(c.status().await["status"], "running");
}

#[tokio::test]
async fn autoscaling_without_the_cgroup_exits_with_a_clear_message() {
    let empty = tempfile::tempdir().unwrap();
    let root = empty.path().display().to_string();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let c = Compute::start(ComputeOpts::with_spec(fixture("spec.json")).args([
        "--autoscaling",
        "--vm-monitor-addr",
        &addr,
        "--cgroup-root",
        &root,
    ]));
    let status = c.wait_exit(Duration::from_secs(30)).await;
    assert!(!status.success());
    let log = c.log();
    assert!(log.contains("--cgroup-root"), "{log}");
    assert!(c.postmaster_pid().is_none());
}
