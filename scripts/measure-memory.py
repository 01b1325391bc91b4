#!/usr/bin/env python3
"""Memory of one compute under a short load, for the resource requests of
deploy/kubernetes (see the comment beside them).

Starts compute_ctl (COMPUTE_CTL_BIN, default target/debug/compute_ctl) on
fixtures/spec.json with real Postgres (PGBIN_DIR, default Debian's 15), on
loopback only, then:
  idle   - running, nothing connected;
  load   - pgbench -i at scale SCALE (a data set larger than shared_buffers),
           pg_prewarm of its tables (so shared_buffers is all touched, the
           worst case), then pgbench -c CLIENTS -T SECONDS, sampled every
           0.2 s;
and prints, for each phase, the largest sum over compute_ctl and every
Postgres process of the compute (the postmaster and its children) of Pss
and Rss from /proc/PID/smaps_rollup (no cgroup needed). Pss counts shared
pages (shared_buffers) once across the processes; Rss counts them in every
process that touched them, so it overstates. pgbench itself is a client
and not counted.

Usage: scripts/measure-memory.py [--scale 10] [--clients 8] [--seconds 10]
Run as root (compute_ctl then runs Postgres as the postgres user).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def children(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if ppid == pid:
            out.append(int(p))
    return out


def rollup(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] in ("Rss:", "Pss:"):
                    vals[parts[0][:-1]] = int(parts[1])
    except OSError:
        pass
    return vals.get("Pss", 0), vals.get("Rss", 0)


def sample(ctl_pid, postmaster_pid):
    pids = [ctl_pid, postmaster_pid] + children(postmaster_pid)
    pss = rss = 0
    ctl = rollup(ctl_pid)
    for pid in pids:
        p, r = rollup(pid)
        pss += p
        rss += r
    return {"pss_kib": pss, "rss_kib": rss, "processes": len(pids),
            "compute_ctl_pss_kib": ctl[0], "compute_ctl_rss_kib": ctl[1]}


def peak(a, b):
    return b if a is None or b["pss_kib"] > a["pss_kib"] else a


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--pg-port", type=int, default=20632)
    ap.add_argument("--http-port", type=int, default=20680)
    args = ap.parse_args()
    pgbin = os.environ.get("PGBIN_DIR", "/usr/lib/postgresql/15/bin")
    binary = os.environ.get("COMPUTE_CTL_BIN", os.path.join(ROOT, "target/debug/compute_ctl"))
    work = tempfile.mkdtemp(prefix="compute-mem-")
    os.chmod(work, 0o755)
    pgdata = os.path.join(work, "pgdata")
    conn = f"postgresql://cloud_admin@127.0.0.1:{args.pg_port}/postgres"
    log = open(os.path.join(work, "compute_ctl.log"), "w")
    ctl = subprocess.Popen(
        [binary, "-D", pgdata, "-C", conn, "-S", os.path.join(ROOT, "fixtures/spec.json"),
         "-b", os.path.join(pgbin, "postgres"), "--http-port", str(args.http_port)],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while True:
            try:
                st = json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{args.http_port}/status", timeout=2))
                if st["status"] == "running":
                    break
            except OSError:
                pass
            if ctl.poll() is not None or time.time() > deadline:
                sys.exit(f"compute_ctl did not reach running; log in {work}")
            time.sleep(0.2)
        with open(os.path.join(pgdata, "postmaster.pid")) as f:
            postmaster = int(f.readline())
        time.sleep(2)
        idle = sample(ctl.pid, postmaster)
        bench = [os.path.join(pgbin, "pgbench"), "-h", "127.0.0.1", "-p", str(args.pg_port),
                 "-U", "cloud_admin", "postgres"]
        subprocess.run(bench[:1] + ["-i", "-q", "-s", str(args.scale)] + bench[1:],
                       check=True, capture_output=True)
        subprocess.run(
            [os.path.join(pgbin, "psql"), conn, "-XAtc",
             "CREATE EXTENSION IF NOT EXISTS pg_prewarm; "
             "SELECT pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey')"],
            check=True, capture_output=True)
        load = subprocess.Popen(
            bench[:1] + ["-c", str(args.clients), "-j", "2", "-T", str(args.seconds)] + bench[1:],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        top = None
        while load.poll() is None:
            top = peak(top, sample(ctl.pid, postmaster))
            time.sleep(0.2)
        tps = [l for l in load.stdout.read().splitlines() if l.startswith("tps")]
        shared_buffers = subprocess.run(
            [os.path.join(pgbin, "psql"), conn, "-XAtc", "SHOW shared_buffers"],
            capture_output=True, text=True).stdout.strip()
        print(json.dumps({
            "date": time.strftime("%Y-%m-%d"),
            "binary": binary,
            "postgres": subprocess.run([os.path.join(pgbin, "postgres"), "--version"],
                                       capture_output=True, text=True).stdout.strip(),
            "shared_buffers": shared_buffers,
            "scale": args.scale, "clients": args.clients, "seconds": args.seconds,
            "tps": tps,
            "idle": idle,
            "load_peak": top,
        }, indent=1))
    finally:
        ctl.send_signal(signal.SIGTERM)
        try:
            ctl.wait(timeout=60)
        except subprocess.TimeoutExpired:
            ctl.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
