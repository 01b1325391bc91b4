#!/usr/bin/env python3
"""Collects the chaos suites' JSON lines (target/chaos/*.jsonl) into
target/chaos/report.json and prints the table: fault, trials, survived, lost
data. A suite only writes a line for a case that held; a failing case fails
its test, and `just chaos` exits non-zero after printing what did hold."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/chaos")
rows, raw = [], {}
for f in sorted(out.glob("*.jsonl")):
    lines = [json.loads(l) for l in f.read_text().splitlines() if l.strip()]
    raw[f.stem] = lines
    if f.stem == "crash_phases":
        cells = {}
        for l in lines:
            cells.setdefault((l["target"], l["stage"]), []).append(l)
        for (target, stage), ls in sorted(cells.items()):
            conv = sorted(l["converge_ms"] for l in ls)
            rows.append({
                "fault": f"kill -9 {'postmaster' if target == 'Postmaster' else 'compute_ctl'} during {stage.lower()}",
                "trials": len(ls),
                "survived": sum(1 for l in ls if l["converged"]),
                "lost_data": sum(l["lost_data"] for l in ls),
                "detail": f"converge p50 {conv[len(conv) // 2]} ms, max {conv[-1]} ms; hit in: "
                + ", ".join(sorted({l['hit_in'] for l in ls})),
            })
    elif f.stem == "hostile_http":
        for l in lines:
            if "cases" in l:
                for c in l["cases"]:
                    rows.append({"fault": f"HTTP: {c['case']}", "trials": 1, "survived": 1,
                                 "lost_data": 0, "detail": f"answered {c['status']}"})
            else:
                n = l.get("connections", l.get("cap", 0))
                detail = ", ".join(f"{k} {v}" for k, v in l.items()
                                   if k not in ("suite", "case", "scale", "connections"))
                rows.append({"fault": f"HTTP: {l['case']} ({n} connections)", "trials": n,
                             "survived": n, "lost_data": 0, "detail": detail})
    elif f.stem == "fuzz":
        for l in lines:
            rows.append({"fault": f"fuzz: {l['case']}", "trials": l["cases"],
                         "survived": l["cases"] - l["crashes"], "lost_data": 0,
                         "detail": f"{l['crashes']} crashes"})
    else:
        for l in lines:
            rows.append({"fault": l.get("fault", f.stem), "trials": l.get("trials", 1),
                         "survived": l.get("survived", 1), "lost_data": l.get("lost_data", 0),
                         "detail": l.get("detail", "")})

(out / "report.json").write_text(json.dumps({"rows": rows, "raw": raw}, indent=2))
w = max([len(r["fault"]) for r in rows] + [5])
print(f"{'fault':<{w}}  {'trials':>7}  {'survived':>8}  {'lost data':>9}  detail")
for r in rows:
    print(f"{r['fault']:<{w}}  {r['trials']:>7}  {r['survived']:>8}  {r['lost_data']:>9}  {r['detail']}")
print(f"\n{len(rows)} rows; report in {out / 'report.json'}")
