//! What a Postgres binary said about its settings, kept on disk between runs
//! of compute_ctl (`--settings-cache DIR`), so that a start asks a binary it
//! has met before nothing: no `postgres --version`, no `--describe-config`,
//! no `postgres -C` to learn a base unit or judge a value.
//!
//! Those are four or more process starts at the beginning of every start,
//! beside the safekeepers' sync and the base backup. On two cores they took
//! 10 to 15 ms of a start whose floor is 120 to 450 ms (`just bench`,
//! `durable_start`).
//!
//! One file per binary path (`DIR/<path, '/' as '_'>.json`). It holds the
//! binary's stamp (size and modification time, [`crate::env::Fs::stamp`]),
//! its `--version` and `--describe-config` output, the base units learnt
//! and the verdicts on (name, value) pairs. Only the binary's own answers go
//! in, and only a file whose path and stamp match the binary is used. Any
//! other file (another build, a file that does not parse, another format)
//! is a miss: the binary is asked and the file rewritten. So a stale or
//! damaged cache costs the asking, never a wrong verdict. The one case a
//! stamp misses is a binary rewritten in place with the same size and
//! modification time (no package manager or image build does that); delete
//! the file, or run with `--no-settings-cache`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::setting_units::BaseUnit;
use crate::env::{Env, FileStamp};

/// The file's format; a file of another one is a miss.
const FORMAT: u32 = 1;

/// What one binary answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BinaryAnswers {
    /// `postgres --version`.
    pub version: String,
    /// `postgres --describe-config`.
    pub describe_config: String,
    /// The base unit of each integer setting asked (`None`: it takes none).
    pub units: BTreeMap<String, Option<BaseUnit>>,
    /// The binary's verdicts on (name, value) pairs only it can judge.
    pub verdicts: Vec<Verdict>,
}

/// The binary's verdict on one (name, value) pair; only a definite answer
/// is kept (one it could not give is asked again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub name: String,
    pub value: String,
    /// Postgres' reason, when it refuses the value.
    pub refused: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: u32,
    binary: PathBuf,
    stamp: FileStamp,
    #[serde(flatten)]
    answers: BinaryAnswers,
}

/// The cache entry of one binary: where it is kept and the binary's stamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    pub file: PathBuf,
    pub binary: PathBuf,
    pub stamp: FileStamp,
}

/// The file that holds `pgbin`'s answers below `dir`.
pub fn cache_file(dir: &Path, pgbin: &Path) -> PathBuf {
    let name: String = pgbin
        .to_string_lossy()
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.json"))
}

/// `pgbin`'s entry below `dir` (`None` when the binary cannot be stamped:
/// then nothing is cached), and its answers when the file holds this very
/// build's.
pub async fn lookup<E: Env>(
    env: &E,
    dir: &Path,
    pgbin: &Path,
) -> Option<(CacheEntry, Option<BinaryAnswers>)> {
    let stamp = match env.stamp(pgbin).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(binary = %pgbin.display(), error = %e, "cannot stamp the binary; its settings are not cached");
            return None;
        }
    };
    let entry = CacheEntry {
        file: cache_file(dir, pgbin),
        binary: pgbin.to_path_buf(),
        stamp,
    };
    let answers = match env.read(&entry.file).await {
        Ok(bytes) => answers_for(&bytes, &entry),
        Err(_) => None,
    };
    Some((entry, answers))
}

/// The answers in `bytes` when they are of `entry`'s binary and stamp.
fn answers_for(bytes: &[u8], entry: &CacheEntry) -> Option<BinaryAnswers> {
    let file: CacheFile = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => {
            tracing::info!(file = %entry.file.display(), error = %e, "the settings cache file does not parse; the binary is asked again");
            return None;
        }
    };
    if file.format != FORMAT || file.binary != entry.binary || file.stamp != entry.stamp {
        tracing::info!(
            file = %entry.file.display(),
            "the settings cache file is of another build of the binary; it is asked again"
        );
        return None;
    }
    Some(file.answers)
}

/// Writes `answers` as `entry`'s (the directory is made when missing).
pub async fn store<E: Env>(
    env: &E,
    entry: &CacheEntry,
    answers: &BinaryAnswers,
) -> std::io::Result<()> {
    let file = CacheFile {
        format: FORMAT,
        binary: entry.binary.clone(),
        stamp: entry.stamp,
        answers: answers.clone(),
    };
    let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
    if let Some(dir) = entry.file.parent()
        && !env.exists(dir).await
    {
        env.create_dir_all(dir, 0o755).await?;
    }
    env.write_atomic(&entry.file, &bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> CacheEntry {
        CacheEntry {
            file: PathBuf::from("/cache/usr_lib_postgresql_15_bin_postgres.json"),
            binary: PathBuf::from("/usr/lib/postgresql/15/bin/postgres"),
            stamp: FileStamp {
                len: 9_000_000,
                modified_ns: 1_700_000_000_000_000_000,
            },
        }
    }

    fn answers() -> BinaryAnswers {
        BinaryAnswers {
            version: "postgres (PostgreSQL) 15.18\n".into(),
            describe_config: "work_mem\tuser\tMemory\tINTEGER\t4096\t64\t2147483647\tS.\t\n".into(),
            units: [
                ("work_mem".to_string(), BaseUnit::learn(63, "work_mem", "FATAL:  63 kB is outside the valid range for parameter \"work_mem\" (64 .. 2147483647)")),
                ("max_connections".to_string(), None),
            ]
            .into_iter()
            .collect(),
            verdicts: vec![Verdict {
                name: "wal_level".into(),
                value: "nope".into(),
                refused: Some("invalid value for parameter \"wal_level\": \"nope\"".into()),
            }],
        }
    }

    fn file_of(entry: &CacheEntry, answers: &BinaryAnswers) -> Vec<u8> {
        serde_json::to_vec(&CacheFile {
            format: FORMAT,
            binary: entry.binary.clone(),
            stamp: entry.stamp,
            answers: answers.clone(),
        })
        .expect("serialisable")
    }

    #[test]
    fn a_binary_path_names_one_file() {
        assert_eq!(
            cache_file(
                Path::new("/c"),
                Path::new("/usr/lib/postgresql/15/bin/postgres")
            ),
            PathBuf::from("/c/usr_lib_postgresql_15_bin_postgres.json")
        );
        assert_eq!(
            cache_file(Path::new("/c"), Path::new("/opt/pg 18/bin/postgres")),
            PathBuf::from("/c/opt_pg_18_bin_postgres.json")
        );
    }

    #[test]
    fn the_answers_of_the_same_build_come_back_whole() {
        let a = answers();
        assert!(a.units["work_mem"].is_some(), "the unit was learnt");
        assert_eq!(answers_for(&file_of(&entry(), &a), &entry()), Some(a));
    }

    #[test]
    fn another_build_of_the_binary_is_a_miss() {
        let written = file_of(&entry(), &answers());
        let mut touched = entry();
        touched.stamp.modified_ns += 1;
        assert_eq!(answers_for(&written, &touched), None);
        let mut resized = entry();
        resized.stamp.len -= 1;
        assert_eq!(answers_for(&written, &resized), None);
        let mut elsewhere = entry();
        elsewhere.binary = PathBuf::from("/usr/lib/postgresql/16/bin/postgres");
        assert_eq!(answers_for(&written, &elsewhere), None);
    }

    #[test]
    fn a_damaged_or_foreign_file_is_a_miss() {
        let written = file_of(&entry(), &answers());
        assert_eq!(answers_for(&written[..written.len() / 2], &entry()), None);
        assert_eq!(answers_for(b"", &entry()), None);
        let mut v: serde_json::Value = serde_json::from_slice(&written).expect("json");
        v["format"] = serde_json::json!(FORMAT + 1);
        let other_format = serde_json::to_vec(&v).expect("json");
        assert_eq!(answers_for(&other_format, &entry()), None);
    }
}
