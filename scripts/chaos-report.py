#!/usr/bin/env python3
"""Collects the chaos suites' JSON lines (target/chaos/*.jsonl) into
target/chaos/report.json and prints the table: fault, trials, survived, lost
data. Every cell is computed from what the trials measured (a crash or
storage-fault trial's `survived` is derived by tests/it/support/chaos.rs from
converged, lost data and orphans; a failed trial is written too, with
`"survived": false` and why). A failing case also fails its test, and `just
chaos` exits non-zero after printing the table."""
import json
import pathlib
import sys

def polyline(xs, ys, x0, y0, w, h, color):
    if not xs:
        return ""
    xmax, ymax = max(xs) or 1, max(ys) or 1
    pts = " ".join(f"{x0 + w * x / xmax:.1f},{y0 + h - h * y / ymax:.1f}" for x, y in zip(xs, ys))
    return (f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>'
            f'<text x="{x0}" y="{y0 - 4}" font-size="11">max {ymax}</text>')


def plot_soak(l, path):
    """RSS (KiB) and the notify p99 (us) per window of requests, over the run."""
    xs = [s["request"] for s in l["samples"]]
    rss = [s["rss_kib"] for s in l["samples"]]
    lat = l["notify_us"]
    win = max(1, len(lat) // 40)
    px, py = [], []
    for i in range(0, len(lat) - win + 1, win):
        w = sorted(lat[i:i + win])
        px.append(i + win)
        py.append(w[min(len(w) - 1, len(w) * 99 // 100)])
    svg = ['<svg xmlns="http://www.w3.org/2000/svg" width="720" height="420" font-family="sans-serif">',
           '<rect width="720" height="420" fill="white"/>',
           '<text x="20" y="20" font-size="13">compute_ctl RSS (KiB) over the soak, by request</text>',
           polyline(xs, rss, 40, 40, 640, 140, "#1f77b4"),
           '<text x="20" y="230" font-size="13">notify p99 (us) per window of notifies</text>',
           polyline(px, py, 40, 250, 640, 140, "#d62728"), '</svg>']
    path.write_text("\n".join(svg))


def lost_sum(ls):
    """Lost data over trials; "unknown" where a trial could not measure it."""
    if any(l.get("lost_data") is None for l in ls):
        return "unknown"
    return sum(l["lost_data"] for l in ls)


out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/chaos")
rows, raw = [], {}
for f in sorted(out.glob("*.jsonl")):
    lines = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
    raw[f.stem] = lines
    if f.stem == "crash_phases":
        cells = {}
        for l in lines:
            cells.setdefault((l["target"], l["phase"], l["source"]), []).append(l)
        for (target, phase, source), ls in sorted(cells.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
            conv = sorted(l["converge_ms"] for l in ls if "converge_ms" in l)
            who = "Postgres" if target == "Postgres" else "compute_ctl"
            src = " (base backup)" if source == "BaseBackup" and phase == "start.prepare_pgdata" else (
                " (initdb)" if phase == "start.prepare_pgdata" else "")
            inside = sum(1 for l in ls if l.get("landed") == "inside the phase")
            at_end = sum(1 for l in ls if l.get("landed") == "at the phase's end")
            failed = [l for l in ls if not l["survived"]]
            rows.append({
                "fault": f"kill -9 {who} in {phase}{src}",
                "trials": len(ls),
                "survived": sum(1 for l in ls if l["survived"]),
                "lost_data": lost_sum(ls),
                "detail": f"{inside} inside the phase, {at_end} at its end; "
                + (f"converged p50 {conv[len(conv) // 2]} ms, max {conv[-1]} ms; " if conv else "")
                + f"orphans {sum(l.get('orphans') or 0 for l in ls)}; "
                + ", ".join(sorted({l['outcome'] for l in ls if 'outcome' in l}) or ["no outcome"])
                + "".join(f"; FAILED trial {l['trial']}: {l['failed']}" for l in failed),
            })
    elif f.stem in ("crash_durable", "crash_promote"):
        promote = f.stem == "crash_promote"
        cells = {}
        for l in lines:
            cells.setdefault(l["phase"], []).append(l)
        for phase, ls in sorted(cells.items()):
            conv = sorted(l["converge_ms"] for l in ls if "converge_ms" in l)
            inside = sum(1 for l in ls if l.get("landed") == "inside the phase")
            at_end = sum(1 for l in ls if l.get("landed") == "at the phase's end")
            total = lambda k: sum(l.get(k) or 0 for l in ls)
            if promote:
                # Measured by crash_promote.rs on the next primary.
                extra = (f", {total('acknowledged_during_promote')} acknowledged by the replica during the promote; "
                         f"{total('new_writes_acknowledged')} new writes acknowledged after; "
                         f"safekeepers left behind the new primary {total('safekeepers_behind')}")
            elif phase.startswith("reconfigure."):
                extra = f", {total('acknowledged_during_move')} acknowledged during the move"
            else:
                extra = ""
            failed = [l for l in ls if not l["survived"]]
            rows.append({
                "fault": f"kill -9 of the node in {phase} "
                + ("(a replica promoted)" if promote else "(durable primary)"),
                "trials": len(ls),
                "survived": sum(1 for l in ls if l["survived"]),
                "lost_data": lost_sum(ls),
                "detail": f"{inside} inside the phase, {at_end} at its end; "
                + (f"next start p50 {conv[len(conv) // 2]} ms, max {conv[-1]} ms; " if conv else "")
                + f"acknowledged rows checked {max((l.get('acknowledged') or 0) for l in ls)}"
                + extra
                + "".join(f"; FAILED trial {l['trial']}: {l['failed']}" for l in failed),
            })
    elif f.stem == "hostile_http":
        for l in lines:
            if "cases" in l:
                for c in l["cases"]:
                    rows.append({"fault": f"HTTP: {c['case']}", "trials": 1, "survived": int(c["held"]),
                                 "lost_data": 0, "detail": f"answered {c['status']}"})
            else:
                n = l["connections"]
                # Each connection ended as it must: cut (slowloris), closed
                # once idle (keep-alive flood), served or refused at once (cap).
                held = l["cut"] if "cut" in l else l["closed"] if "closed" in l else l["served"] + l["refused"]
                detail = ", ".join(f"{k} {v}" for k, v in l.items()
                                   if k not in ("suite", "case", "scale", "connections"))
                rows.append({"fault": f"HTTP: {l['case']} ({n} connections)", "trials": n,
                             "survived": held, "lost_data": 0, "detail": detail})
    elif f.stem == "soak":
        for l in lines:
            n = l["notifies"] + l["reconfigures"]
            rows.append({"fault": f"soak: {l['notifies']} notifies + {l['reconfigures']} full reconfigures under client load",
                         "trials": n, "survived": l["answered_200"], "lost_data": 0,
                         "detail": f"RSS {l['rss_mid_kib']}->{l['rss_last_kib']} KiB, FDs {l['fds_mid']}->{l['fds_last']}, "
                         f"tasks {l['tasks_mid']}->{l['tasks_last']}, notify p99 {l['notify_p99_mid_us']}->{l['notify_p99_last_us']} us"})
            plot_soak(l, out / "soak.svg")
    elif f.stem == "fuzz":
        for l in lines:
            rows.append({"fault": f"fuzz: {l['case']}", "trials": l["cases"],
                         "survived": l["cases"] - l["crashes"], "lost_data": 0,
                         "detail": f"{l['crashes']} crashes"})
    else:
        # One trial per line (tests/it/support/chaos.rs::trial), failed ones included.
        for l in lines:
            rows.append({"fault": l["fault"], "trials": l["trials"],
                         "survived": int(l["survived"]), "lost_data": lost_sum([l]),
                         "detail": l.get("detail", "") + (f"; FAILED: {l['failed']}" if "failed" in l else "")})

(out / "report.json").write_text(json.dumps({"rows": rows, "raw": raw}, indent=2))
w = max([len(r["fault"]) for r in rows] + [5])
print(f"{'fault':<{w}}  {'trials':>7}  {'survived':>8}  {'lost data':>9}  detail")
for r in rows:
    print(f"{r['fault']:<{w}}  {r['trials']:>7}  {r['survived']:>8}  {r['lost_data']:>9}  {r['detail']}")
print(f"\n{len(rows)} rows; report in {out / 'report.json'}")
