#!/usr/bin/env python3
"""A notify's stages in the real compute_ctl process, read off its log.

Usage: scripts/notify-stages.py [--first N] LOG [LOG ...]

--first N keeps only the first N notifies of each log (the bench's paired
repetitions come before its noisy-neighbour case).

LOG is a compute_ctl log written with
RUST_LOG=info,tokio_postgres=debug,compute_ctl::http::observe=debug
(the bench keeps one per compute with COMPETE_LOG_DIR=DIR and
COMPETE_RUST_LOG set so). For each skip-flag /configure whose spec was
accepted and applied, it takes the timestamps (microseconds) of:

  in        "http request" for /configure (headers read, body not yet)
  accepted  "spec accepted" (body read, parsed, validated, submitted)
  begin     the supervisor's BeginReconfigure
  select1   the check session's SELECT 1 sent (it takes the reload left
            pending on that backend, beside the config write)
  check     the pg_file_settings query sent (write done, SELECT 1 answered)
  done      "reconfigured" (check answered, SIGHUP sent, state updated)
  response  "http response" for /configure

and prints the median and p90 of each interval. Each event is the first
of its kind after the previous notify's response, so a SELECT 1 of
another session in between would be taken for the check session's: the
bench sends none (it polls nothing else during its notifies). What
happens before "in" and after "response" (the client's send, hyper, the
answer's way back) is the client's round trip less "in -> response".
"""
import statistics
import sys
from datetime import datetime

STAGES = [
    ("in", "accepted"),
    ("accepted", "begin"),
    ("begin", "select1"),
    ("select1", "check"),
    ("check", "done"),
    ("done", "response"),
    ("in", "response"),
]


def micros(line):
    return datetime.strptime(line[:27], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1e6


def event(line):
    if "http request" in line and 'route="/configure"' in line:
        return "in"
    if "spec accepted" in line:
        return "accepted"
    if "event=BeginReconfigure" in line:
        return "begin"
    if "executing simple query: SELECT 1" in line:
        return "select1"
    if "FROM pg_catalog.pg_file_settings" in line:
        return "check"
    if "reconfigured timings" in line and "skip_pg_catalog_updates: true" in line:
        return "done"
    if "http response" in line and 'route="/configure"' in line:
        return "response"
    return None


def notifies(path):
    """One dict of event times per notify, in log order. Log lines of one
    notify may interleave (the HTTP task and the supervisor log from their
    own tasks), so a notify is closed by its response."""
    current = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("20"):
                continue
            name = event(line)
            if name is None:
                continue
            current.setdefault(name, micros(line))
            if name == "response":
                if all(k in current for k, _ in STAGES[:-1]):
                    yield current
                current = {}


def main(args):
    first = None
    if args[:1] == ["--first"]:
        if len(args) < 2 or not args[1].isdigit():
            print("--first needs a number of notifies", file=sys.stderr)
            return 2
        first, args = int(args[1]), args[2:]
    if not args:
        print(__doc__, file=sys.stderr)
        return 2
    for path in args:
        found = list(notifies(path))[:first]
        print(f"{path}: {len(found)} notifies")
        if not found:
            print("  none: was the log written with the RUST_LOG above?")
            continue
        for a, b in STAGES:
            d = sorted(max(0.0, n[b] - n[a]) for n in found)
            p90 = d[min(len(d) - 1, int(len(d) * 0.9))]
            print(f"  {a:>8} -> {b:<8} median {statistics.median(d):7.0f} us   p90 {p90:7.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
