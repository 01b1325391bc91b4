//! Storage faults under a running compute (issue 15, item 2), on real
//! Postgres: PGDATA on a small tmpfs the test mounts (and unmounts) itself.
//! A full disk and a read-only PGDATA during a reconfigure's config write:
//! the reconfigure fails and says why, the old `postgresql.conf` stays
//! whole, Postgres keeps serving, and once space (or write access) returns
//! the next configure succeeds. Also a `postgresql.conf` truncated by someone
//! else is made whole by the next reconfigure.
//!
//! Needs root (mount); skipped with a line otherwise.
#![allow(clippy::disallowed_methods)]

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::compute::{Compute, ComputeOpts};
use crate::support::fixture_op;
use crate::support::os::temp_dir;
use serde_json::{Value, json};

/// A tmpfs mounted for the test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mb: u32) -> Option<Self> {
        let parent = temp_dir();
        let dir = parent.path().join("fs");
        std::fs::create_dir(&dir).unwrap();
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mb}m,mode=0755"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then_some(Self {
            dir,
            _parent: parent,
        })
    }

    /// Makes `dir` read-only through a read-only bind mount over it (files
    /// Postgres holds open stay writable; nothing new can be created).
    fn read_only(dir: &Path) {
        for args in [&["--bind"][..], &["-o", "remount,bind,ro"][..]] {
            let st = Command::new("mount")
                .args(args)
                .arg(dir)
                .arg(dir)
                .status()
                .unwrap();
            assert!(st.success(), "mount {args:?} {}", dir.display());
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let pgdata = self.dir.join("pgdata");
        support::os::stop_postgres_in(&pgdata);
        // The read-only bind mount, if a failing test left it, then the tmpfs.
        let _ = Command::new("umount").arg("-l").arg(&pgdata).status();
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn spec(op: &str, work_mem: &str) -> Value {
    let mut s = fixture_op("spec_minimal.json", op);
    s["cluster"]["settings"] =
        json!([{"name": "work_mem", "value": work_mem, "vartype": "string"}]);
    s
}

/// Fills the file system of `dir` until not one more byte fits.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    // Big writes first, then smaller ones into the last pages.
    for size in [256 * 1024, 4096, 1] {
        let chunk = vec![0u8; size];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                assert_eq!(e.raw_os_error(), Some(libc_enospc()), "filling: {e}");
                break;
            }
        }
    }
    path
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

async fn show_work_mem(c: &Compute) -> String {
    c.sql_value("SHOW work_mem").await
}

#[tokio::test]
async fn a_full_or_read_only_pgdata_fails_the_reconfigure_keeps_postgres_and_recovers() {
    crate::need_postgres!();
    let test = "a_full_or_read_only_pgdata_fails_the_reconfigure_keeps_postgres_and_recovers";
    if !support::skip_unless(root(), test, || "needs root (to mount a tmpfs)".into()) {
        return;
    }
    let mounted = Tmpfs::mount(128);
    if !support::skip_unless(mounted.is_some(), test, || {
        "cannot mount a tmpfs here".into()
    }) {
        return;
    }
    let fs = mounted.expect("mounted");
    let mut opts = ComputeOpts::with_spec(spec("faults-1", "4MB"));
    opts.pgdata = Some(fs.dir.join("pgdata"));
    let c = Compute::serving(opts).await;
    c.wait_running().await;
    let conf = c.pgdata.join("postgresql.conf");
    let before = std::fs::read(&conf).unwrap();
    let pid = c.postmaster_pid();

    for (fault, op) in [("full", "faults-2"), ("read-only", "faults-3")] {
        let identity = json!({
            "fault": format!("PGDATA {fault} during a reconfigure's config write"),
            "trials": 1,
        });
        support::chaos::trial("storage_faults", identity, async {
            let undo: Box<dyn FnOnce()> = match fault {
                "full" => {
                    let filler = fill(&fs.dir);
                    Box::new(move || std::fs::remove_file(filler).unwrap())
                }
                _ => {
                    let pgdata = c.pgdata.clone();
                    Tmpfs::read_only(&pgdata);
                    Box::new(move || {
                        let st = Command::new("umount").arg(&pgdata).status().unwrap();
                        assert!(st.success(), "umount the read-only bind mount");
                    })
                }
            };
            let r = c.configure(&spec(op, "8MB"), None).await;
            assert_eq!(r.status, 500, "{fault}: {}", r.text);
            let err = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(
                err.contains("writing Postgres configuration failed")
                    && (err.contains("No space left") || err.contains("Read-only")),
                "{fault}: the reason is not given: {err}"
            );
            // What the fault cost: the old config's bytes, the setting served.
            let conf_now = std::fs::read(&conf).unwrap();
            let serving = show_work_mem(&c).await;
            let lost = i64::from(conf_now != before) + i64::from(serving != "4MB");
            let same_postgres = c.postmaster_pid() == pid;
            let st = c.status().await;
            assert_eq!(st["status"], "failed", "{st}");
            undo();
            // Space (or write access) is back: the control plane's retry lands.
            let r = c
                .configure(&spec(&format!("{op}-retry"), "8MB"), None)
                .await;
            let retried = r.status == 200;
            let applied = support::poll_until(Duration::from_secs(10), || async {
                (show_work_mem(&c).await == "8MB").then_some(())
            })
            .await
            .is_some();
            Some(json!({
                "converged": retried && applied && same_postgres,
                "lost_data": lost,
                "postgres_restarted": !same_postgres,
                "retry_status": r.status,
                "detail": format!("500: {err}; old config intact: {}, Postgres kept serving it (same pid): {same_postgres}, the retry once writable answered {} and applied: {applied}", conf_now == before, r.status),
            }))
        })
        .await;
        // Back to the first config for the next fault.
        let r = c.configure(&spec(&format!("{op}-back"), "4MB"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(std::fs::read(&conf).unwrap(), before);
        assert!(
            std::fs::read_dir(&c.pgdata).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp")),
            "a temp file of a failed write was left in PGDATA"
        );
    }
    assert_eq!(c.postmaster_pid(), pid);
    let r = c.terminate("fast", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[tokio::test]
async fn a_truncated_postgresql_conf_is_made_whole_by_the_next_reconfigure() {
    crate::need_postgres!();
    let identity = json!({"fault": "postgresql.conf truncated by someone else", "trials": 1});
    support::chaos::trial("storage_faults", identity, async {
        let c = Compute::serving(ComputeOpts::with_spec(spec("trunc-1", "4MB"))).await;
        c.wait_running().await;
        let conf = c.pgdata.join("postgresql.conf");
        let whole = std::fs::read(&conf).unwrap();
        // Someone else cuts it in the middle of a line.
        std::fs::write(&conf, &whole[..whole.len() / 2]).unwrap();
        let r = c.configure(&spec("trunc-2", "6MB"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let now = std::fs::read_to_string(&conf).unwrap();
        let applied = support::poll_until(Duration::from_secs(10), || async {
            (show_work_mem(&c).await == "6MB").then_some(())
        })
        .await
        .is_some();
        // Lost: the new setting missing from the file, the file not whole.
        let lost = i64::from(!now.contains("work_mem = '6MB'"))
            + i64::from(now.len() < whole.len() - 8);
        Some(json!({
            "converged": applied,
            "lost_data": lost,
            "detail": format!("the next reconfigure rewrote it ({} bytes, was {} cut to {}); served: {applied}", now.len(), whole.len(), whole.len() / 2),
        }))
    })
    .await;
}
