//! The cgroup Postgres runs in: where its files are (cgroup v1 or v2), and
//! how much non-reclaimable memory it uses.
//!
//! - v2 (unified, `ROOT/cgroup.controllers` exists): `ROOT/NAME/memory.stat`
//!   has `active_anon` and `inactive_anon`.
//! - v1 (`ROOT/memory/` exists): `ROOT/memory/NAME/memory.stat` has the
//!   hierarchical `total_active_anon` and `total_inactive_anon`.
//!
//! Both have `cgroup.procs` beside `memory.stat`: Postgres' pid is written
//! there before it execs (see `CommandSpec::cgroup_procs`). Shared memory
//! (`shared_buffers`) is counted as anon by both. We never create or
//! change a cgroup: it must exist (the VM image or the operator makes it).
//! Everything is read through the Env's file system, so tests and the
//! simulator point `--cgroup-root` at a directory of their own.

use std::path::{Path, PathBuf};

use crate::env::Fs;

/// Which cgroup hierarchy the host has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    V1,
    V2,
}

/// A cgroup's directory and layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    pub name: String,
    pub layout: Layout,
    pub dir: PathBuf,
}

/// Why the cgroup cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "{root} is neither a cgroup v2 hierarchy (no cgroup.controllers) nor a cgroup v1 one (no memory/ controller directory); pass the cgroup mount point with --cgroup-root"
    )]
    NoHierarchy { root: String },
    #[error(
        "cgroup {name:?} does not exist ({path} is missing); create it (the vm-monitor never creates cgroups) or name another with --cgroup"
    )]
    Missing { name: String, path: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Parse { path: String, problem: String },
}

impl Cgroup {
    /// Finds cgroup `name` under `root`, which must exist with a `memory.stat`.
    pub async fn locate<F: Fs>(fs: &F, root: &Path, name: &str) -> Result<Self, CgroupError> {
        let rel = name.trim_start_matches('/');
        let (layout, dir) = if fs.exists(&root.join("cgroup.controllers")).await {
            (Layout::V2, root.join(rel))
        } else if fs.exists(&root.join("memory")).await {
            (Layout::V1, root.join("memory").join(rel))
        } else {
            return Err(CgroupError::NoHierarchy {
                root: root.display().to_string(),
            });
        };
        let cg = Self {
            name: name.to_string(),
            layout,
            dir,
        };
        if !fs.exists(&cg.stat_path()).await {
            return Err(CgroupError::Missing {
                name: name.to_string(),
                path: cg.stat_path().display().to_string(),
            });
        }
        Ok(cg)
    }

    pub fn stat_path(&self) -> PathBuf {
        self.dir.join("memory.stat")
    }

    /// Where a pid is written to move that process into the cgroup.
    pub fn procs_path(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }

    /// The non-reclaimable memory in use now, in bytes.
    pub async fn non_reclaimable<F: Fs>(&self, fs: &F) -> Result<u64, CgroupError> {
        let path = self.stat_path();
        let bytes = fs.read(&path).await.map_err(|source| CgroupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        non_reclaimable(self.layout, &String::from_utf8_lossy(&bytes)).map_err(|problem| {
            CgroupError::Parse {
                path: path.display().to_string(),
                problem,
            }
        })
    }
}

/// `active_anon + inactive_anon` (v2) or their hierarchical `total_` forms
/// (v1) from the text of `memory.stat`.
pub fn non_reclaimable(layout: Layout, stat: &str) -> Result<u64, String> {
    let (active, inactive) = match layout {
        Layout::V2 => ("active_anon", "inactive_anon"),
        Layout::V1 => ("total_active_anon", "total_inactive_anon"),
    };
    let field = |key: &str| -> Result<u64, String> {
        let line = stat
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(' ')))
            .ok_or_else(|| format!("no {key} line"))?;
        line.trim()
            .parse::<u64>()
            .map_err(|e| format!("{key} {line:?}: {e}"))
    };
    Ok(field(active)?.saturating_add(field(inactive)?))
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
pub fn mem_total(meminfo: &str) -> Result<u64, String> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .ok_or("no MemTotal line")?;
    let kib = line
        .trim()
        .strip_suffix("kB")
        .ok_or_else(|| format!("MemTotal {line:?} is not in kB"))?
        .trim()
        .parse::<u64>()
        .map_err(|e| format!("MemTotal {line:?}: {e}"))?;
    Ok(kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Excerpts of real files (kernel 6.1, cgroup v2; kernel 5.15, cgroup v1).
    const V2: &str = "anon 230686720\nfile 1134592000\nkernel 41631744\nshmem 134217728\n\
active_anon 201326592\ninactive_anon 29360128\nactive_file 600000000\ninactive_file 534592000\n";
    const V1: &str = "cache 1268809728\nrss 96468992\nshmem 134217728\nactive_anon 1\ninactive_anon 2\n\
hierarchical_memory_limit 9223372036854771712\ntotal_cache 1268809728\ntotal_rss 96468992\n\
total_active_anon 180355072\ntotal_inactive_anon 50331648\ntotal_active_file 700000000\n";

    #[test]
    fn v2_counts_active_and_inactive_anon() {
        assert_eq!(
            non_reclaimable(Layout::V2, V2),
            Ok(201_326_592 + 29_360_128)
        );
    }

    #[test]
    fn v1_counts_the_hierarchical_totals() {
        assert_eq!(
            non_reclaimable(Layout::V1, V1),
            Ok(180_355_072 + 50_331_648)
        );
    }

    #[test]
    fn missing_or_garbled_fields_are_errors() {
        assert!(
            non_reclaimable(Layout::V1, V2)
                .unwrap_err()
                .contains("total_active_anon")
        );
        assert!(
            non_reclaimable(Layout::V2, "active_anon x\ninactive_anon 1\n")
                .unwrap_err()
                .contains("active_anon")
        );
        // `active_anon_x` is not `active_anon`.
        assert!(non_reclaimable(Layout::V2, "active_anon_x 5\ninactive_anon 1\n").is_err());
    }

    #[test]
    fn mem_total_is_in_bytes() {
        let m = "MemTotal:       16314680 kB\nMemFree:         1000000 kB\n";
        assert_eq!(mem_total(m), Ok(16_314_680 * 1024));
        assert!(mem_total("MemFree: 1 kB\n").is_err());
        assert!(mem_total("MemTotal: 12\n").is_err());
    }
}
