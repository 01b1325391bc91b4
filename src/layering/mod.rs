//! The layering of the crate, checked: a module may import only from the
//! layers below it (ARCHITECTURE.md draws them). From the bottom:
//!
//! 1. `env`, `params`, `state`, `planted`, `metrics`, `spec`, `spans`,
//!    `tls`: leaves and plain data (the spec's connection strings and LSNs
//!    included, the `--max-ready-lag` limit, the installed-extensions
//!    figures, whether a certificate pair is usable);
//! 2. `pg`: Postgres itself (files, processes, sessions);
//! 3. `catalog`, `storage`: what runs on top of Postgres sessions;
//! 4. `monitor`: the activity sampler, which sees the compute through its
//!    own `Watched` trait; `health`: the readiness verdicts over the
//!    storage watchers' state;
//! 5. `compute`: the supervisor;
//! 6. `http`, `vm_monitor`, `spec_source`, `refresh`, `cli`, `node`,
//!    `installed_extensions` (a task `node` starts over the compute),
//!    `config_envelope` (Neon's `-c` file, read by the binary) and the
//!    binary's own modules: the edges.
//!
//! Every module of `src/` is listed (a test fails for one that is not), and
//! the top-level modules form no import circle, within a layer either. The
//! check reads the source text (code lines, not comments; a `crate::{..}`
//! group may span lines), so a new upward `use` fails `cargo test --lib
//! layering` with the file and line.

#![cfg(test)]

use std::path::{Path, PathBuf};

use scan::{code_of, named_after};

mod scan;

/// The modules of each layer, bottom first.
const LAYERS: &[&[&str]] = &[
    &[
        "env", "params", "state", "planted", "metrics", "spec", "spans", "tls",
    ],
    &["pg"],
    &["catalog", "storage"],
    &["monitor", "health"],
    &["compute"],
    &[
        "http",
        "vm_monitor",
        "spec_source",
        "refresh",
        "cli",
        "node",
        "installed_extensions",
        "config_envelope",
        // The binary's modules (`main.rs` is its root): nothing imports them
        // but the binary itself.
        "main",
        "launch",
        "pid1",
        "telemetry",
    ],
];

/// The files of `src/` that are no module of a layer: the library's root,
/// and this check (whose tests name modules in strings).
const NOT_LAYERED: &[&str] = &["lib", "layering"];

/// Import circles inside a module that are not allowed either:
/// (file, module it must not name).
const NO_CIRCLE: &[(&str, &str)] = &[
    ("catalog/ops.rs", "render"),
    ("planted.rs", "pg"),
    ("spec", "storage"),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The `.rs` files of `src/<module>` (a directory or a file).
fn files_of(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let file = src.join(format!("{module}.rs"));
    if file.is_file() {
        return vec![file];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// `(line, module)` for each module of this crate that `code` names
/// (`crate::x`, `crate::{x, y}` on one line or several); lines from 1.
fn crate_modules(code: &str) -> Vec<(usize, String)> {
    named_after(code, "crate::")
}

/// Line `n` (from 1) of `code`, trimmed.
fn line_of(code: &str, n: usize) -> &str {
    code.lines().nth(n - 1).unwrap_or("").trim()
}

/// Every import of another top-level module: (importer, imported, where).
fn imports() -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    for module in LAYERS.iter().flat_map(|l| l.iter()) {
        for file in files_of(module) {
            let code = code_of(&file);
            for (n, named) in crate_modules(&code) {
                if named != *module && layer_of(&named).is_some() {
                    let at = format!("{}:{n}: {}", file.display(), line_of(&code, n));
                    out.push((*module, named, at));
                }
            }
        }
    }
    out
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let upward: Vec<String> = imports()
        .into_iter()
        .filter_map(|(module, named, at)| {
            let (from, to) = (layer_of(module)?, layer_of(&named)?);
            (to > from).then(|| {
                format!(
                    "{at}\n  {module} (layer {}) imports {named} (layer {})",
                    from + 1,
                    to + 1
                )
            })
        })
        .collect();
    assert!(
        upward.is_empty(),
        "upward imports (move the type down, or pass it in):\n{}",
        upward.join("\n")
    );
}

#[test]
fn every_module_of_src_is_in_a_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&src).expect("read src/").flatten() {
        let p = entry.path();
        let name = match p.file_name().and_then(|n| n.to_str()) {
            Some(n) if p.is_dir() => n.to_string(),
            Some(n) if n.ends_with(".rs") => n.trim_end_matches(".rs").to_string(),
            _ => continue,
        };
        if layer_of(&name).is_none() && !NOT_LAYERED.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "modules in no layer, so unchecked (add each to LAYERS): {missing:?}"
    );
}

/// An import circle among `edges` (`from -> to`), as the path that closes
/// it, or `None`.
fn find_circle(edges: &[(&str, &str)]) -> Option<Vec<String>> {
    fn visit<'a>(
        v: &'a str,
        edges: &[(&'a str, &'a str)],
        path: &mut Vec<&'a str>,
        done: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| *p == v) {
            let mut circle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            circle.push(v.to_string());
            return Some(circle);
        }
        if done.contains(&v) {
            return None;
        }
        path.push(v);
        for (_, to) in edges.iter().filter(|(from, _)| *from == v) {
            if let Some(c) = visit(to, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.push(v);
        None
    }
    let mut done = Vec::new();
    edges
        .iter()
        .find_map(|(from, _)| visit(from, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_form_no_import_circle() {
    let found = imports();
    let mut edges: Vec<(&str, &str)> = found.iter().map(|(m, n, _)| (*m, n.as_str())).collect();
    edges.sort_unstable();
    edges.dedup();
    if let Some(circle) = find_circle(&edges) {
        let evidence: Vec<&str> = circle
            .windows(2)
            .filter_map(|w| {
                found
                    .iter()
                    .find(|(m, n, _)| *m == w[0] && *n == w[1])
                    .map(|(_, _, at)| at.as_str())
            })
            .collect();
        panic!(
            "import circle {}:\n{}",
            circle.join(" -> "),
            evidence.join("\n")
        );
    }
}

#[test]
fn the_known_circles_stay_broken() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (at, forbidden) in NO_CIRCLE {
        let files = if at.ends_with(".rs") {
            vec![src.join(at)]
        } else {
            files_of(at)
        };
        for file in files {
            let code = code_of(&file);
            for (n, named) in crate_modules(&code) {
                if named == *forbidden {
                    found.push(format!("{}:{n}: {}", file.display(), line_of(&code, n)));
                }
            }
            let sibling = format!("super::{forbidden}");
            for (i, line) in code.lines().enumerate() {
                if line.contains(&sibling) {
                    found.push(format!("{}:{}: {}", file.display(), i + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_plain_grouped_and_multi_line_imports() {
    let names =
        |code: &str| -> Vec<String> { crate_modules(code).into_iter().map(|(_, m)| m).collect() };
    assert_eq!(names("use crate::compute::Compute;"), ["compute"]);
    assert_eq!(names("use crate::{env::Env, compute};"), ["env", "compute"]);
    assert_eq!(
        names("use crate::{\n    env::{Env, timeout},\n    pg,\n};"),
        ["env", "pg"]
    );
    assert_eq!(
        crate_modules("\n\nuse crate::{\n  a,\n  b}")[1],
        (3, "b".to_string())
    );
    assert!(names("use other_crate::compute;").is_empty());
    assert!(layer_of("compute") > layer_of("storage"));
}

#[test]
fn the_circle_finder_finds_a_circle_and_none_in_a_dag() {
    assert_eq!(find_circle(&[("a", "b"), ("b", "c"), ("a", "c")]), None);
    assert_eq!(
        find_circle(&[("a", "b"), ("b", "c"), ("c", "a")]),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
