//! The request path of a notify, in process: where a big `POST /configure`
//! spends its time around the supervisor's own work.
//!
//! Stages, each at every size of `Plan::path_roles` (100 databases), all in
//! this process on the production code (`TokioEnv`, real Postgres 15 with
//! PGDATA on /tmp as the notify suite has it):
//! - `parse`: the body as received into `ConfigureRequest` (serde_json);
//! - `extract_axum` / `extract_fast`: the body extractor, from a request
//!   to a `ConfigureRequest`: axum's `Json` (through `serde_path_to_error`,
//!   as `ApiJson`) and `SpecJson`, the one `/configure` uses;
//! - `validate`: `spec::validate` of the parsed spec;
//! - `apply`: `Compute::submit` + `wait_applied` of a parsed spec: the
//!   supervisor's reconfigure (render, write, SIGHUP): not the
//!   request path, the floor of this suite;
//! - `router`: the production `http::router` driven with
//!   `tower::ServiceExt::oneshot` (extraction, parse, validate, submit,
//!   wait, status answer), no socket;
//! - `http`: the same router served on loopback TCP by `http::serve` and
//!   called by a reqwest client: the round trip a control plane sees.
//!
//! The request path is `router − apply`; `http − router` is the transport.
//! Every request is a real notify (new `operation_uuid`, new `work_mem`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Body;
use axum::extract::FromRequest;
use compute_ctl::compute::{Compute, ComputeParams, ConnTarget, Submitted};
use compute_ctl::env::TokioEnv;
use compute_ctl::http::error::ApiJson;
use compute_ctl::http::json_body::SpecJson;
use compute_ctl::http::routes::configure::ConfigureRequest;
use compute_ctl::spec::{ComputeSpec, ValidationContext, validate};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use crate::alloc;
use crate::cases::{Plan, ports};
use crate::compute::SUPERUSER;
use crate::postgres::{PGBIN, Scratch};
use crate::specs;
use crate::stats::{CaseResult, Summary};

/// One stage: wall time (ms) and allocations of each repetition.
#[derive(Default)]
struct Stage {
    ms: Vec<f64>,
    allocs: Vec<u64>,
}

impl Stage {
    /// Runs `f` once, timed and counted.
    async fn measure<T, F: Future<Output = anyhow::Result<T>>>(
        &mut self,
        f: impl FnOnce() -> F,
    ) -> anyhow::Result<T> {
        let (a0, _) = alloc::snapshot();
        let t = Instant::now();
        let out = f().await?;
        let elapsed = t.elapsed();
        let (a1, _) = alloc::snapshot();
        self.ms.push(elapsed.as_secs_f64() * 1000.0);
        self.allocs.push(a1 - a0);
        Ok(out)
    }

    fn summary(&self) -> Summary {
        Summary::of(&self.ms)
    }

    fn median_allocs(&self) -> u64 {
        let mut v = self.allocs.clone();
        v.sort_unstable();
        v.get(v.len() / 2).copied().unwrap_or(0)
    }

    fn json(&self, kb: f64, roles: usize) -> serde_json::Value {
        let s = self.summary();
        let allocs = self.median_allocs();
        json!({
            "median_us": s.median_ms * 1000.0,
            "min_us": s.min_ms * 1000.0,
            "us_per_kb": s.median_ms * 1000.0 / kb,
            "allocs": allocs,
            "allocs_per_role": allocs as f64 / roles.max(1) as f64,
        })
    }
}

/// A supervisor in this process on real Postgres, PGDATA where the notify
/// suite has it (/tmp: no fsync is left in a notify's write, so the file
/// system's noise no longer drowns the request path).
pub struct InProcess {
    pub compute: Arc<Compute<TokioEnv>>,
    pub router: axum::Router,
    http: String,
    client: reqwest::Client,
    pub pgdata: std::path::PathBuf,
    pub pg_port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
    _scratch: Scratch,
}

impl InProcess {
    async fn start(plan: Plan) -> anyhow::Result<Self> {
        let scratch = Scratch::new("request-path")?;
        let pgdata = scratch.path("pgdata");
        let (pg_port, _) = ports();
        let params = ComputeParams {
            pgdata: pgdata.clone(),
            pgbin: format!("{PGBIN}/postgres").into(),
            conn: ConnTarget {
                host: "127.0.0.1".into(),
                port: pg_port,
                user: SUPERUSER.into(),
                dbname: "postgres".into(),
            },
            http_addr: "127.0.0.1:0".parse()?,
            compute_id: None,
            ready_timeout: Duration::from_secs(120),
            shutdown_timeout: Duration::from_secs(10),
            activity_interval: Duration::from_secs(3600),
            cgroup_procs: None,
            advertise: None,
            quorum_deadline: compute_ctl::params::DEFAULT_QUORUM_DEADLINE,
            max_ready_lag: None,
            tls: None,
            settings_cache: None,
        };
        let compute = Compute::new(TokioEnv::new(), params);
        tokio::spawn({
            let c = compute.clone();
            async move { c.run().await }
        });
        // The catalog is never touched by a notify: start without it.
        let mut first = specs::sized(0, plan.dbs, 0, "request-path-start");
        first["skip_pg_catalog_updates"] = json!(true);
        let first: ComputeSpec = serde_json::from_value(first)?;
        match compute.submit(first) {
            Ok(Submitted::Accepted(g)) => {
                compute
                    .wait_applied(g)
                    .await
                    .map_err(|e| anyhow::anyhow!("in-process compute did not start: {e}"))?;
            }
            other => bail!("first spec not accepted: {other:?}"),
        }
        let router = compute_ctl::http::router(compute.clone(), None);
        let (http, stop) = Self::serve_router(router.clone()).await?;
        Ok(Self {
            compute,
            router,
            http,
            client: reqwest::Client::new(),
            pgdata,
            pg_port,
            _stop: stop,
            _scratch: scratch,
        })
    }

    /// Serves `router` on a loopback port with `http::serve`; returns its
    /// URL and the sender that stops it when dropped.
    async fn serve_router(
        router: axum::Router,
    ) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let http = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(compute_ctl::http::serve::<TokioEnv>(
            listener,
            router,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok((http, stop))
    }

    /// [`InProcess::serve_router`] on this compute, for another router.
    pub async fn serve(
        &self,
        router: axum::Router,
    ) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
        Self::serve_router(router).await
    }

    async fn apply(&self, spec: ComputeSpec) -> anyhow::Result<()> {
        match self.compute.submit(spec) {
            Ok(Submitted::Accepted(g)) => self
                .compute
                .wait_applied(g)
                .await
                .map(drop)
                .map_err(|e| anyhow::anyhow!("notify not applied: {e}")),
            other => bail!("notify not accepted: {other:?}"),
        }
    }

    async fn oneshot(&self, body: Vec<u8>) -> anyhow::Result<()> {
        let req = axum::http::Request::post("/configure")
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        let resp = self.router.clone().oneshot(req).await?;
        let code = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if code != 200 {
            bail!(
                "router answered {code}: {}",
                String::from_utf8_lossy(&bytes)
            );
        }
        Ok(())
    }

    async fn post(&self, body: Vec<u8>) -> anyhow::Result<()> {
        let r = self
            .client
            .post(format!("{}/configure", self.http))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await?;
        let code = r.status();
        let text = r.text().await?;
        if code != 200 {
            bail!("POST /configure answered {code}: {text}");
        }
        Ok(())
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        let mut c = crate::postgres::tool("pg_ctl");
        c.arg("-D")
            .arg(&self.pgdata)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = c.status();
    }
}

/// A notify body of `roles` roles, unique by `tag`.
pub fn body(roles: usize, dbs: usize, tag: &str, work_mem_kb: usize) -> anyhow::Result<Vec<u8>> {
    let base = specs::sized(roles, dbs, 0, "request-path");
    let spec = specs::notify(&base, tag, &format!("{work_mem_kb}kB"));
    crate::compute::Compute::configure_body(&spec)
}

pub async fn request_path(plan: Plan) -> anyhow::Result<Vec<CaseResult>> {
    let c = InProcess::start(plan)
        .await
        .context("request path: in-process compute")?;
    let ctx = ValidationContext {
        superuser: SUPERUSER.into(),
    };
    let mut out = Vec::new();
    let mut work_mem = 8192;
    for &roles in plan.path_roles {
        let template = body(roles, plan.dbs, "request-path-template", 4096)?;
        let kb = template.len() as f64 / 1024.0;
        let (mut parse, mut check, mut apply, mut router, mut http): (
            Stage,
            Stage,
            Stage,
            Stage,
            Stage,
        ) = Default::default();
        let (mut ex_axum, mut ex_fast): (Stage, Stage) = Default::default();
        let reps = plan.reps.max(5);
        for i in 0..reps {
            let parsed: ConfigureRequest = Stage::measure(&mut parse, || async {
                Ok(serde_json::from_slice::<ConfigureRequest>(&template)?)
            })
            .await?;
            let problems =
                Stage::measure(&mut check, || async { Ok(validate(&parsed.spec, &ctx)) }).await?;
            anyhow::ensure!(
                problems.is_empty(),
                "the bench spec is invalid: {problems:?}"
            );
            drop(parsed);
            let req = || {
                axum::http::Request::post("/configure")
                    .header("content-type", "application/json")
                    .body(Body::from(template.clone()))
            };
            let r = req()?;
            let ApiJson(v) = Stage::measure(&mut ex_axum, || async {
                ApiJson::<ConfigureRequest>::from_request(r, &())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await?;
            drop(v);
            let r = req()?;
            let SpecJson(v) = Stage::measure(&mut ex_fast, || async {
                SpecJson::<ConfigureRequest>::from_request(r, &())
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            })
            .await?;
            drop(v);

            // Bodies and specs are made before the clock starts.
            let mut spec: ComputeSpec = serde_json::from_slice::<ConfigureRequest>(&body(
                roles,
                plan.dbs,
                &format!("rp-apply-{roles}-{i}"),
                {
                    work_mem += 1;
                    work_mem
                },
            )?)?
            .spec;
            spec.operation_uuid = Some(format!("rp-apply-{roles}-{i}"));
            Stage::measure(&mut apply, || c.apply(spec)).await?;
            work_mem += 1;
            let b = body(roles, plan.dbs, &format!("rp-router-{roles}-{i}"), work_mem)?;
            Stage::measure(&mut router, || c.oneshot(b)).await?;
            work_mem += 1;
            let b = body(roles, plan.dbs, &format!("rp-http-{roles}-{i}"), work_mem)?;
            Stage::measure(&mut http, || c.post(b)).await?;
        }
        let path_ms = router.summary().median_ms - apply.summary().median_ms;
        let mut r = CaseResult::new(
            "request_path",
            format!("{roles} roles, {kb:.0} KB"),
            router.summary(),
            Some(apply.summary()),
        )
        .with_extra(json!({
            "body_kb": kb,
            "request_path_us": path_ms * 1000.0,
            "request_path_us_per_kb": path_ms * 1000.0 / kb,
            "parse": parse.json(kb, roles),
            "extract_axum": ex_axum.json(kb, roles),
            "extract_fast": ex_fast.json(kb, roles),
            "validate": check.json(kb, roles),
            "apply": apply.json(kb, roles),
            "router": router.json(kb, roles),
            "http": http.json(kb, roles),
        }));
        r.target = "report: router vs apply";
        out.push(r);
        if roles == plan.path_roles[0] {
            out.push(crate::stages::stages(&c, roles, plan.dbs, reps).await?);
        }
    }
    Ok(out)
}
