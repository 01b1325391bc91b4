//! The compute_ctl binary: flags in, a supervised Postgres out.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use compute_ctl::cli::{Args, LogFormat};
use compute_ctl::http::routes::dry_run::plan_only;
use compute_ctl::spec::{ComputeSpec, SpecError, validate};

mod launch;
mod pid1;
mod telemetry;

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.validate_spec {
        init_logging(args.log_format, None);
        return validate_file(path, &args);
    }
    if let Some(path) = &args.plan {
        init_logging(args.log_format, None);
        return plan_file(path, &args);
    }
    if args.write_settings_cache {
        init_logging(args.log_format, None);
        return match launch::write_settings_cache(&args) {
            Ok(written) => {
                println!("{written}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("compute_ctl: cannot write the settings cache: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // First, while there is only one thread: as PID 1, become init + supervisor.
    if let Err(e) = pid1::split_if_pid1() {
        eprintln!("compute_ctl: cannot set up as PID 1 (init and supervisor): {e:#}");
        return ExitCode::FAILURE;
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("compute_ctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Traces only when an OTLP endpoint is set (telemetry.rs); the batch
    // task is spawned on the runtime.
    let installed = {
        let _in_runtime = rt.enter();
        telemetry::install(args.compute_id.as_deref())
    };
    let (telemetry, tracer, otel_error) = match installed {
        Ok(Some((t, tracer))) => (Some(t), Some(tracer), None),
        Ok(None) => (None, None, None),
        Err(e) => (None, None, Some(e)),
    };
    if tracer.is_some() {
        compute_ctl::spans::set_exported();
    }
    init_logging(args.log_format, tracer);
    if let Some(e) = otel_error {
        tracing::warn!("{e:#}; running without traces: fix or unset the variable");
    }
    if let Some(t) = &telemetry {
        tracing::info!(
            variable = t.endpoint.0,
            endpoint = %t.endpoint.1,
            "exporting traces over OTLP/HTTP"
        );
    }
    let code = match rt.block_on(launch::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("compute_ctl: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The spans of the last operations, before the runtime that exports them stops.
    if let Some(t) = telemetry {
        t.shutdown();
    }
    // Do not wait for stray tasks (e.g. a log forwarder on a pipe that a
    // dying Postgres child still holds): the outcome is decided.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

/// The log on stderr (`RUST_LOG`, default `info`) and, when traces are
/// exported, the OpenTelemetry layer beside it (`telemetry::layer`). The
/// exported spans' target (`compute_ctl::spans`) is off in the filter
/// unless they are exported: then no layer sees them and a span site costs
/// one cached interest check. When they are exported, the log's lines show
/// the operation's span around them.
fn init_logging(format: LogFormat, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let spans = if tracer.is_some() { "info" } else { "off" };
    if let Ok(d) = format!("{}={spans}", compute_ctl::spans::TARGET).parse() {
        filter = filter.add_directive(d);
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Text => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(tracer.map(telemetry::layer))
        .init();
}

/// `--validate-spec FILE`: prints every problem; exit 0 valid, 2 invalid, 1 unreadable.
fn validate_file(path: &std::path::Path, args: &Args) -> ExitCode {
    let text = match std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec file {}", path.display()))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("compute_ctl: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let ctx = launch::validation_context(args);
    let spec: ComputeSpec = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            println!("{}: {}", path.display(), SpecError::Parse(e));
            return ExitCode::from(2);
        }
    };
    let problems = validate(&spec, &ctx);
    if problems.is_empty() {
        println!("{}: valid", path.display());
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        println!("{}: {p}", path.display());
    }
    println!("{}: {} problem(s)", path.display(), problems.len());
    ExitCode::from(2)
}

/// `--plan FILE -C CONNSTR`: the dry-run answer of `POST
/// /configure?dry_run=true` (`DryRunBody`) for the spec against the running
/// Postgres, as JSON on stdout; nothing is changed (read-only
/// sessions, see `catalog::preview`). Exit 0, 2 for an invalid spec, 1 when
/// the file or Postgres cannot be read.
fn plan_file(path: &std::path::Path, args: &Args) -> ExitCode {
    let fail = |e: anyhow::Error| {
        eprintln!("compute_ctl: {e:#}");
        ExitCode::FAILURE
    };
    let text = match std::fs::read_to_string(path)
        .with_context(|| format!("cannot read spec file {}", path.display()))
    {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let spec: ComputeSpec = match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(e) => {
            println!("{}: {}", path.display(), SpecError::Parse(e));
            return ExitCode::from(2);
        }
    };
    let ctx = launch::validation_context(args);
    // Without a connection string only the validation can be answered.
    let needs_postgres = validate(&spec, &ctx).is_empty() && !spec.skip_pg_catalog_updates;
    let target = match args.connstr.as_deref() {
        Some(c) => match compute_ctl::compute::ConnTarget::parse(c).context("invalid --connstr") {
            Ok(t) => Some(t),
            Err(e) => return fail(e),
        },
        None if needs_postgres => return fail(anyhow::anyhow!("--connstr is required")),
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let env = compute_ctl::env::TokioEnv::new();
    let out = match rt.block_on(plan_only(&env, target.as_ref(), &spec, &ctx)) {
        Ok(body) => body,
        Err(e) => {
            return fail(anyhow::anyhow!(
                "cannot make the catalog plan: {e}; is Postgres running at --connstr?"
            ));
        }
    };
    match serde_json::to_string_pretty(&out) {
        Ok(s) => println!("{s}"),
        Err(e) => return fail(e.into()),
    }
    if out.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
