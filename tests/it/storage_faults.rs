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

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::compute::{Compute, ComputeOpts};
use support::os::temp_dir;
use support::{fixture_op, postgres_bin};

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
    if !root() || !postgres_bin().is_file() {
        eprintln!(
            "SKIPPED: needs root (to mount a tmpfs) and {}",
            postgres_bin().display()
        );
        return;
    }
    let Some(fs) = Tmpfs::mount(128) else {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    };
    let mut opts = ComputeOpts::with_spec(spec("faults-1", "4MB"));
    opts.pgdata = Some(fs.dir.join("pgdata"));
    let c = Compute::serving(opts).await;
    c.wait_running().await;
    let conf = c.pgdata.join("postgresql.conf");
    let before = std::fs::read(&conf).unwrap();
    let pid = c.postmaster_pid();

    for (fault, op) in [("full", "faults-2"), ("read-only", "faults-3")] {
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
        let conf_now = std::fs::read(&conf).unwrap();
        let serving = show_work_mem(&c).await;
        // What the fault cost: the old config's bytes, the setting served.
        let lost = i64::from(conf_now != before) + i64::from(serving != "4MB");
        assert_eq!(conf_now, before, "{fault}: the old config was damaged");
        assert_eq!(
            serving, "4MB",
            "{fault}: Postgres must keep serving the old config"
        );
        assert_eq!(c.postmaster_pid(), pid, "{fault}: Postgres was restarted");
        let st = c.status().await;
        assert_eq!(st["status"], "failed", "{st}");
        undo();
        // Space (or write access) is back: the control plane's retry lands.
        let r = c
            .configure(&spec(&format!("{op}-retry"), "8MB"), None)
            .await;
        assert_eq!(r.status, 200, "{fault}: no recovery: {}", r.text);
        support::wait_for(Duration::from_secs(10), "the new work_mem", || async {
            (show_work_mem(&c).await == "8MB").then_some(())
        })
        .await;
        support::chaos::report(
            "storage_faults",
            &json!({"fault": format!("PGDATA {fault} during a reconfigure's config write"),
                    "trials": 1, "survived": 1, "lost_data": lost,
                    "detail": format!("500: {err}; old config intact, Postgres kept serving it (same pid), the retry once writable succeeded")}),
        );
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
    let c = Compute::serving(ComputeOpts::with_spec(spec("trunc-1", "4MB"))).await;
    c.wait_running().await;
    let conf = c.pgdata.join("postgresql.conf");
    let whole = std::fs::read(&conf).unwrap();
    // Someone else cuts it in the middle of a line.
    std::fs::write(&conf, &whole[..whole.len() / 2]).unwrap();
    let r = c.configure(&spec("trunc-2", "6MB"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let now = std::fs::read_to_string(&conf).unwrap();
    assert!(now.contains("work_mem = '6MB'"), "{now}");
    assert!(
        now.len() >= whole.len() - 8,
        "the rewritten config is not whole"
    );
    support::wait_for(Duration::from_secs(10), "the new work_mem", || async {
        (show_work_mem(&c).await == "6MB").then_some(())
    })
    .await;
    support::chaos::report(
        "storage_faults",
        &json!({"fault": "postgresql.conf truncated by someone else", "trials": 1, "survived": 1,
                "lost_data": i64::from(now.len() < whole.len() - 8),
                "detail": format!("the next reconfigure rewrote it whole ({} bytes, was cut to {})", now.len(), whole.len() / 2)}),
    );
}
