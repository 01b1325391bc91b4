//! Reading Rust source as text for the layering checks: which top-level
//! modules a file names. Shared, as this one file, by the crate's check
//! (`layering/mod.rs`) and the simulator's (`sim/tests/layering.rs`
//! includes it by path), so both read `use` lines the same way. Pure
//! functions over text: nothing here names `crate::`.

use std::path::{Path, PathBuf};

/// The identifier at the start of `s`.
pub fn ident(s: &str) -> String {
    s.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The first segments of the items of a `{..}` group that starts right
/// after its `{` in `s`, over as many lines as it takes (nested groups
/// skipped).
pub fn group_heads(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut item_start = true;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                out.push(ident(&s[i..]));
            }
            _ => {}
        }
    }
    out
}

/// `(line, module)` for each module `code` names after `prefix`
/// (`crate::`, `super::super::`): `prefix x`, `prefix {x, y}` on one line
/// or several; lines from 1. `foo_crate::x` is another crate, not `x`.
pub fn named_after(code: &str, prefix: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = code[at..].find(prefix) {
        let start = at + i;
        at = start + prefix.len();
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[at..];
        match rest.strip_prefix('{') {
            Some(group) => out.extend(group_heads(group).into_iter().map(|m| (line, m))),
            None => out.push((line, ident(rest))),
        }
    }
    out
}

/// The text of `path` with its comment lines blanked (kept as empty lines,
/// so that line numbers stay right).
pub fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read a source file");
    text.lines()
        .map(|l| {
            if l.trim_start().starts_with("//") {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Appends the `.rs` files under `dir` to `out` (the sim's checks walk
/// their trees with it).
#[allow(dead_code)] // the crate's own check lists files per module instead
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read a source dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}
