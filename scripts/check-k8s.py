#!/usr/bin/env python3
"""Checks a rendered compute overlay for what the Kubernetes schemas cannot
see (scripts/validate-k8s.sh runs it on each overlay):

- every probe names a route that openapi.yaml has: startup and readiness
  -> /ready, liveness -> /health; the preStop hook posts /terminate?mode=fast;
- terminationGracePeriodSeconds >= the shutdown timeout + the linger;
- the startup probe's budget covers a base backup (compute_ctl's own
  30-minute pg_basebackup limit, plus the safekeeper sync, the source's
  catch-up and Postgres' start);
- non-root, read-only root file system, PGDATA and the socket directory
  on emptyDir volumes, every Secret a volume;
- a PodDisruptionBudget selects the StatefulSet's pods.

Usage: check-k8s.py RENDERED.yaml OPENAPI.yaml; exit 1 listing every problem.
"""

import sys

import yaml

# compute_ctl's limits that a start may use up (src/pg/pgdata.rs,
# src/storage/, the default --ready-timeout): safekeeper sync, the source
# catching up to the commit LSN, pg_basebackup, Postgres accepting sessions.
START_BUDGET_SECS = 5 + 60 + 30 * 60 + 60


def main(rendered_path, openapi_path):
    docs = [d for d in yaml.safe_load_all(open(rendered_path)) if d]
    routes = set(yaml.safe_load(open(openapi_path))["paths"])
    problems = []

    def need(ok, what):
        if not ok:
            problems.append(what)

    sets = [d for d in docs if d["kind"] == "StatefulSet"]
    need(len(sets) == 1, f"expected one StatefulSet, found {len(sets)}")
    if not sets:
        return report(problems)
    sts = sets[0]
    pod = sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    (c,) = [c for c in pod["containers"] if c["name"] == "compute"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}

    def probe_path(name):
        return c.get(name, {}).get("httpGet", {}).get("path")

    for probe, path in [("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/health")]:
        got = probe_path(probe)
        need(got == path, f"{probe} should GET {path}, gets {got}")
        need(got in routes, f"{probe} path {got} is not a route of openapi.yaml")
    start = c.get("startupProbe", {})
    budget = start.get("periodSeconds", 10) * start.get("failureThreshold", 3)
    need(budget >= START_BUDGET_SECS, f"startup budget {budget} s < {START_BUDGET_SECS} s a start with a base backup may take")
    hook = " ".join(c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", []))
    need("POST /terminate?mode=fast" in hook, "preStop does not POST /terminate?mode=fast")
    need("/terminate" in routes, "openapi.yaml has no /terminate")

    shutdown = int(env.get("COMPUTE_CTL_SHUTDOWN_TIMEOUT") or 30)
    linger = int(env.get("COMPUTE_CTL_TERMINATED_LINGER_SECS") or 5)
    grace = pod.get("terminationGracePeriodSeconds", 30)
    need(grace >= shutdown + linger, f"terminationGracePeriodSeconds {grace} < shutdown {shutdown} + linger {linger}")

    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True, "pod does not set runAsNonRoot: true")
    need(psc.get("runAsUser", 0) != 0, "pod runs as uid 0")
    need(csc.get("readOnlyRootFilesystem") is True, "root file system is not read-only")
    need(csc.get("allowPrivilegeEscalation") is False, "privilege escalation allowed")

    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}

    def volume_of(path):
        best = max((m for m in mounts if path == m or path.startswith(m + "/")), key=len, default=None)
        return volumes.get(mounts.get(best)) if best else None

    pgdata = env.get("COMPUTE_CTL_PGDATA") or ""
    vol = volume_of(pgdata)
    need(vol is not None and "emptyDir" in vol, f"PGDATA {pgdata!r} is not inside an emptyDir mount")
    need(pgdata.rstrip("/") not in mounts, f"PGDATA {pgdata!r} is a mount point; compute_ctl removes and recreates it, so it must be a directory inside the mount")
    vol = volume_of("/var/run/postgresql")
    need(vol is not None and "emptyDir" in vol, "the socket directory /var/run/postgresql is not an emptyDir")
    for path, value in env.items():
        if path in ("COMPUTE_CTL_JWKS", "COMPUTE_CTL_TLS_CERT", "COMPUTE_CTL_TLS_KEY") and value:
            vol = volume_of(value)
            need(vol is not None and "secret" in vol, f"{path}={value} is not on a Secret volume")

    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    need(
        any(all(labels.get(k) == v for k, v in p["spec"]["selector"].get("matchLabels", {}).items()) and p["spec"]["selector"].get("matchLabels") for p in pdbs),
        "no PodDisruptionBudget selects the compute pods",
    )
    report(problems)


def report(problems):
    for p in problems:
        print(f"check-k8s: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
