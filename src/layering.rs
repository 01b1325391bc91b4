//! The layering of the crate, checked: a module may import only from the
//! layers below it (ARCHITECTURE.md draws them). From the bottom:
//!
//! 1. `env`, `params`, `state`, `planted`, `metrics`, `spec`: leaves and
//!    plain data (the spec's connection strings and LSNs included);
//! 2. `pg`: Postgres itself (files, processes, sessions);
//! 3. `catalog`, `storage`: what runs on top of Postgres sessions;
//! 4. `monitor`: the activity sampler, which sees the compute through its
//!    own `Watched` trait;
//! 5. `compute`: the supervisor;
//! 6. `http`, `vm_monitor`, `spec_source`, `refresh` and the binary: the edges.
//!
//! The check reads the source text (code lines, not comments), so a new
//! upward `use` fails `cargo test --lib layering` with the file and line.

#![cfg(test)]

use std::path::{Path, PathBuf};

/// The modules of each layer, bottom first.
const LAYERS: &[&[&str]] = &[
    &[
        "env", "params", "state", "planted", "metrics", "spec", "spans",
    ],
    &["pg"],
    &["catalog", "storage"],
    &["monitor"],
    &["compute"],
    &[
        "http",
        "vm_monitor",
        "spec_source",
        "refresh",
        "cli",
        "node",
    ],
];

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

/// The modules of this crate that `line` names (`crate::x`, `crate::{x, y}`).
fn named_modules(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                out.push(name);
            }
        } else {
            out.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    out
}

/// Code lines of `path` (comment lines dropped), numbered from 1.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let mut upward = Vec::new();
    for (level, modules) in LAYERS.iter().enumerate() {
        for module in *modules {
            for file in files_of(module) {
                for (n, line) in code_lines(&file) {
                    for named in named_modules(&line) {
                        if layer_of(&named).is_some_and(|l| l > level) {
                            upward.push(format!(
                                "{}:{n}: {module} (layer {level}) imports {named}: {}",
                                file.display(),
                                line.trim()
                            ));
                        }
                    }
                }
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward imports (move the type down, or pass it in):\n{}",
        upward.join("\n")
    );
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
            for (n, line) in code_lines(&file) {
                let names = named_modules(&line);
                let sibling = format!("super::{forbidden}");
                if names.iter().any(|m| m == forbidden) || line.contains(&sibling) {
                    found.push(format!("{}:{n}: {}", file.display(), line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "import circles:\n{}", found.join("\n"));
}

#[test]
fn the_scanner_sees_plain_and_grouped_imports() {
    assert_eq!(named_modules("use crate::compute::Compute;"), ["compute"]);
    assert_eq!(
        named_modules("use crate::{env::Env, compute};"),
        ["env", "compute"]
    );
    assert!(layer_of("compute") > layer_of("storage"));
}
