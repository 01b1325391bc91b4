//! The simulator's module graph has no import circle. Every file under
//! `sim/src` is read as text; each `crate::x` (plain, grouped, over several
//! lines) and `super::super::x` names a top-level module `x`. A directory
//! counts as one module, so the files under `world/` may name each other
//! freely: the world model is the one place allowed to be a tangle.
//! Everything else must form a DAG, and more: a module imports only from
//! the layers below its own ([`LAYERS`]): plain names and models at the
//! bottom, events and the ledger above them, checkers reading only those,
//! the event log, the world appending to it, scenarios and the runner on
//! top. Scenarios speak to the world only through their driver
//! (`scenarios/driver.rs`, `scenarios/driver/*.rs`): no other scenario file
//! names `world/` or the world's shared record. And only the driver and
//! the world's fault injection cut links (turmoil's `partition`, `repair`,
//! `hold`, `release`): a partition made anywhere else would be missing
//! from the fault ledger and the event log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The source reading the crate's own layering check uses, the same file.
#[path = "../../src/layering/scan.rs"]
mod scan;

use scan::{code_of, named_after, rust_files};

/// Top-level modules still allowed in one import circle while the untangling
/// is under way: the circle may shrink, never grow. Empty: no circle at all
/// outside `world/`.
const ALLOWED_CIRCLE: &[&str] = &[];

/// Fails with `what` and the findings unless there are none.
fn none_of(found: Vec<String>, what: &str) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}

/// `(line, module)` for every top-level module `file` names.
fn references(file: &Path, depth: usize) -> Vec<(usize, String)> {
    let code = code_of(file);
    let mut out = named_after(&code, "crate::");
    if depth >= 2 {
        out.extend(named_after(&code, &"super::".repeat(depth)));
    }
    out
}

/// The module graph: `from → to → first evidence (file:line)`.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut g = Graph::new();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let parts: Vec<_> = rel
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let module = parts[0].trim_end_matches(".rs").to_string();
        // `a/mod.rs` is at depth 1 like `a.rs`; `a/b.rs` at depth 2.
        let depth = parts.len() - usize::from(parts.last().is_some_and(|p| p == "mod.rs"));
        let node = g.entry(module.clone()).or_default();
        for (line, named) in references(&file, depth) {
            if named != module && !named.is_empty() {
                node.entry(named)
                    .or_insert_with(|| format!("{}:{line}", rel.display()));
            }
        }
    }
    // Only edges to modules that exist (`crate::*` and the like dropped).
    let modules: BTreeSet<String> = g.keys().cloned().collect();
    for edges in g.values_mut() {
        edges.retain(|to, _| modules.contains(to));
    }
    g
}

/// Strongly connected components with more than one module (Tarjan).
fn circles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let i = t.index.len();
        t.index.insert(v, i);
        t.low.insert(v, i);
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g[v].keys() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                scc.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

#[test]
fn no_import_circle_outside_the_world() {
    let g = graph();
    let allowed: BTreeSet<&str> = ALLOWED_CIRCLE.iter().copied().collect();
    let mut report = Vec::new();
    for scc in circles(&g) {
        let members: BTreeSet<&str> = scc.iter().map(String::as_str).collect();
        if members.is_subset(&allowed) {
            continue;
        }
        report.push(format!(
            "circle of {} modules: {}",
            scc.len(),
            scc.join(", ")
        ));
        for from in &scc {
            for (to, at) in &g[from] {
                if members.contains(to.as_str()) {
                    report.push(format!("  {from} -> {to}  ({at})"));
                }
            }
        }
    }
    none_of(
        report,
        "import circles among sim/src's modules (move the type down, or into world/)",
    );
}

/// The layers of sim/src, bottom first: a module imports only from layers
/// below its own. ARCHITECTURE.md's simulator map draws the same.
const LAYERS: &[&[&str]] = &[
    // Plain names and the Postgres model as data.
    &["names", "pgmodel"],
    // Plain data built on them: the WAL model, generated specs, the fault
    // schedule, what the harness observes.
    &["wal", "specgen", "faults", "observed"],
    // The typed events and the ledger of fired faults.
    &["events", "ledger"],
    // What reads events: the trace and the checkers (never the world).
    &["trace", "checkers"],
    // The event log: appends, traces, feeds the checkers.
    &["log"],
    // The simulated world: hosts, shared state, fault injection.
    &["world"],
    // The harness's HTTP client, the scenarios, the runner, the campaign.
    &["http"],
    &["scenarios"],
    &["runner"],
    &["campaign"],
];

#[test]
fn every_module_imports_only_from_layers_below() {
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    let mut wrong = Vec::new();
    for (from, edges) in graph() {
        let Some(level) = layer_of(&from) else {
            wrong.push(format!("{from}: in no layer (add it to LAYERS)"));
            continue;
        };
        for (to, at) in edges {
            if layer_of(&to).is_none_or(|l| l >= level) {
                wrong.push(format!("{from} (layer {level}) imports {to}  ({at})"));
            }
        }
    }
    none_of(wrong, "imports against the layering (move the type down)");
}

/// What the checkers may read: plain names, the models, the fault
/// descriptions, events and the ledger; not the generated specs nor
/// anything above.
const CHECKERS_READ: &[&str] = &[
    "names", "pgmodel", "wal", "faults", "observed", "events", "ledger",
];

#[test]
fn checkers_read_only_events_the_ledger_and_the_models() {
    let g = graph();
    let wrong: Vec<String> = g["checkers"]
        .iter()
        .filter(|(to, _)| !CHECKERS_READ.contains(&to.as_str()))
        .map(|(to, at)| format!("checkers imports {to}  ({at})"))
        .collect();
    none_of(
        wrong,
        "checkers reading more than events, the ledger and the models",
    );
}

/// The scenario files but the driver's (`scenarios/driver.rs` and its
/// children `scenarios/driver/*.rs`): `(name under scenarios/, path)`.
fn scenario_files() -> Vec<(String, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/scenarios");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let rel = file.strip_prefix(&dir).expect("under scenarios");
            (rel.to_string_lossy().replace('\\', "/"), file)
        })
        .filter(|(name, _)| name != "driver.rs" && !name.starts_with("driver/"))
        .collect()
}

/// Scenarios speak only through the driver (sim/src/scenarios/driver.rs
/// and driver/*.rs): no other scenario file names `world`, plainly or by
/// `super::super::`.
#[test]
fn scenarios_speak_only_through_the_driver() {
    let mut wrong = Vec::new();
    for (name, file) in scenario_files() {
        // `scenarios/mod.rs` is at depth 1, `scenarios/x.rs` at depth 2.
        let depth = if name == "mod.rs" {
            1
        } else {
            1 + name.split('/').count()
        };
        for (line, named) in references(&file, depth) {
            if named == "world" {
                wrong.push(format!("scenarios/{name}:{line}"));
            }
        }
    }
    none_of(
        wrong,
        "scenarios naming the world (add a narrow call to the Driver instead)",
    );
}

/// `(line, identifier)` for every identifier in `code` that names the
/// world's record: `shared` (the driver's field, a clone of it), or one
/// starting with `Shared` (`Shared`, `SharedInner`). A word that only
/// contains it (`shared_buffers`) is something else.
fn names_of_the_record(code: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, line) in code.lines().enumerate() {
        for word in line.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if word == "shared" || word.starts_with("Shared") {
                out.push((i + 1, word.to_string()));
            }
        }
    }
    out
}

/// Nor do they hold the world's record (`Shared`, the driver's private
/// `shared`): every read, log line or change of the world is a Driver
/// operation (driver/*.rs). No exceptions.
#[test]
fn scenarios_hold_no_shared_record() {
    let mut wrong = Vec::new();
    for (name, file) in scenario_files() {
        for (line, word) in names_of_the_record(&code_of(&file)) {
            wrong.push(format!("scenarios/{name}:{line}: {word}"));
        }
    }
    none_of(
        wrong,
        "scenarios naming the world's shared record (add a narrow Driver operation instead)",
    );
}

/// turmoil's free functions that cut or hold a link between hosts.
const LINK_FAULTS: &[&str] = &[
    "partition",
    "partition_oneway",
    "repair",
    "repair_oneway",
    "hold",
    "release",
];

/// `(line, function)` for every call or import of one of [`LINK_FAULTS`]
/// by its `turmoil::` path (plain, grouped, renamed) in `code`.
fn link_faults(code: &str) -> Vec<(usize, String)> {
    named_after(code, "turmoil::")
        .into_iter()
        .filter(|(_, f)| LINK_FAULTS.contains(&f.as_str()))
        .collect()
}

/// Whether the file at `rel` (under sim/src) may cut links: the driver
/// (a scenario's own partitions, recorded in the ledger and the event
/// log: `scenarios/driver/partition.rs`) and the world's fault injection
/// (the schedule's, `world/inject.rs`).
fn may_cut_links(rel: &str) -> bool {
    rel == "scenarios/driver.rs" || rel.starts_with("scenarios/driver/") || rel == "world/inject.rs"
}

/// A partition (or a repair, a hold) made anywhere else would not be in
/// the fault ledger nor the event log: no checker and no excuse would see
/// it. So only the driver and the fault injection call turmoil's.
#[test]
fn only_the_driver_and_the_fault_injection_cut_links() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut wrong = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(&src)
            .expect("under src")
            .to_string_lossy()
            .replace('\\', "/");
        if may_cut_links(&rel) {
            continue;
        }
        for (line, f) in link_faults(&code_of(&file)) {
            wrong.push(format!("{rel}:{line}: turmoil::{f}"));
        }
    }
    none_of(
        wrong,
        "links cut outside the driver and the fault injection (use Driver::partition / Driver::repair: the ledger must see it)",
    );
}

#[test]
fn the_scanner_sees_plain_grouped_and_nested_imports() {
    let code = "use crate::events::Event;\nuse crate::{\n    env::SimEnv,\n    world::{self, COMPUTE},\n    ledger,\n};\nlet x = other_crate::y; super::super::runner::run();";
    let names: Vec<String> = named_after(code, "crate::")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(names, ["events", "env", "world", "ledger"]);
    let up: Vec<String> = named_after(code, "super::super::")
        .into_iter()
        .map(|(_, m)| m)
        .collect();
    assert_eq!(up, ["runner"]);
    let mut g = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "d")] {
        g.entry(a.into())
            .or_default()
            .insert(b.into(), String::new());
        g.entry(b.into()).or_default();
    }
    assert_eq!(circles(&g), [["a", "b", "c"]]);
    let record = "let b = d.shared.lock().boot;\nfn f(s: &Shared) {}\nlet c = shared_buffers; d.unshared();\nlet shared = x; SharedInner::boot";
    let found: Vec<String> = names_of_the_record(record)
        .into_iter()
        .map(|(line, w)| format!("{line}:{w}"))
        .collect();
    assert_eq!(found, ["1:shared", "2:Shared", "4:shared", "4:SharedInner"]);
    let cuts = "turmoil::partition(COMPUTE, STORAGE);\nuse turmoil::{net::TcpStream, repair as mend};\nturmoil::net::TcpStream::connect(x); d.partition(k); sim.repair(a, b);";
    let found: Vec<String> = link_faults(cuts)
        .into_iter()
        .map(|(line, f)| format!("{line}:{f}"))
        .collect();
    assert_eq!(found, ["1:partition", "2:repair"]);
    assert!(may_cut_links("scenarios/driver/partition.rs") && may_cut_links("world/inject.rs"));
    assert!(!may_cut_links("scenarios/durable.rs") && !may_cut_links("world/mod.rs"));
}
