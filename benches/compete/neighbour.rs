//! A noisy neighbour: another process on the same file system that writes
//! and fsyncs chunks, as a busy database beside the compute does. Each
//! fsync commits the file system's journal, and a writer that waits for
//! that journal (an fsync of our own) waits for the neighbour's data too.
//!
//! It runs as this bench binary again (`--neighbour DIR CHUNK_MIB SECS`),
//! started and stopped by the case that needs it, and stops by itself
//! after SECS whatever happens to the bench.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The argument that makes the bench binary a neighbour.
pub const ARG: &str = "--neighbour";

/// Files a neighbour writes before it starts over (deleting the oldest).
const FILE_CHUNKS: u64 = 8;

/// The neighbour's main: chunks appended and fsynced one after the other,
/// a new file every `FILE_CHUNKS` chunks (the one before deleted), until
/// `dir/stop` appears or `secs` pass. Prints the chunks fsynced.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let [dir, chunk_mib, secs] = args else {
        bail!("usage: {ARG} DIR CHUNK_MIB SECS");
    };
    let dir = PathBuf::from(dir);
    let chunk = vec![0x5a_u8; chunk_mib.parse::<usize>()? << 20];
    let deadline = Instant::now() + Duration::from_secs(secs.parse()?);
    let mut n = 0u64;
    let mut file: Option<std::fs::File> = None;
    while Instant::now() < deadline && !dir.join("stop").exists() {
        if n % FILE_CHUNKS == 0 {
            let path = dir.join(format!("data-{}", (n / FILE_CHUNKS) % 2));
            let _ = std::fs::remove_file(&path);
            file = Some(std::fs::File::create(&path)?);
        }
        let f = file.as_mut().context("no file")?;
        f.write_all(&chunk)?;
        f.sync_all()?;
        n += 1;
        if n == 1 {
            std::fs::write(dir.join("ready"), b"")?;
        }
    }
    println!("{n}");
    Ok(())
}

/// A running neighbour.
pub struct Neighbour {
    child: Option<Child>,
    dir: PathBuf,
}

impl Neighbour {
    /// Starts a neighbour writing into a new directory under `parent` and
    /// returns once it has fsynced its first chunk.
    pub fn start(parent: &Path, chunk_mib: usize, secs: u64) -> anyhow::Result<Self> {
        let dir = parent.join("neighbour");
        std::fs::create_dir_all(&dir)?;
        let child = Command::new(std::env::current_exe()?)
            .arg(ARG)
            .arg(&dir)
            .args([chunk_mib.to_string(), secs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the neighbour")?;
        let mut n = Self {
            child: Some(child),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !n.dir.join("ready").exists() {
            if let Some(exit) = n.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("the neighbour exited with {exit} before its first chunk");
            }
            if Instant::now() > deadline {
                bail!("the neighbour fsynced no chunk in 30 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(n)
    }

    /// Stops the neighbour; returns the chunks it fsynced.
    pub fn stop(mut self) -> anyhow::Result<u64> {
        std::fs::write(self.dir.join("stop"), b"")?;
        let mut child = self.child.take().context("stopped twice")?;
        let mut out = String::new();
        child
            .stdout
            .take()
            .context("no stdout")?
            .read_to_string(&mut out)?;
        let status = child.wait()?;
        anyhow::ensure!(status.success(), "the neighbour failed: {status}");
        Ok(out.trim().parse()?)
    }
}

impl Drop for Neighbour {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
