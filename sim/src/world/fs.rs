//! The simulated file system: an in-memory tree of directories and files.
//! Lost with the host (a crashed compute comes back with an empty disk,
//! and recreates PGDATA as it would on a fresh VM).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct SimFs {
    dirs: BTreeSet<PathBuf>,
    files: BTreeMap<PathBuf, Vec<u8>>,
}

fn not_found(what: &str, p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{what} {}: no such file or directory", p.display()),
    )
}

impl SimFs {
    pub fn new() -> Self {
        let mut fs = Self::default();
        fs.dirs.insert(PathBuf::from("/"));
        fs
    }

    fn dir_exists(&self, p: &Path) -> bool {
        self.dirs.contains(p)
    }

    pub fn read(&self, p: &Path) -> io::Result<Vec<u8>> {
        self.files
            .get(p)
            .cloned()
            .ok_or_else(|| not_found("read", p))
    }

    /// Writes a file; its directory must exist (as with a real `open`).
    pub fn write(&mut self, p: &Path, data: &[u8]) -> io::Result<()> {
        let parent = p.parent().unwrap_or(Path::new("/"));
        if !self.dir_exists(parent) {
            return Err(not_found("write", p));
        }
        if self.dir_exists(p) {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("write {}: is a directory", p.display()),
            ));
        }
        self.files.insert(p.to_path_buf(), data.to_vec());
        Ok(())
    }

    pub fn create_dir_all(&mut self, p: &Path) -> io::Result<()> {
        for a in p.ancestors() {
            if self.files.contains_key(a) {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("mkdir {}: a file is in the way", a.display()),
                ));
            }
            self.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    pub fn remove_dir_all(&mut self, p: &Path) {
        self.dirs.retain(|d| !d.starts_with(p));
        self.files.retain(|f, _| !f.starts_with(p));
    }

    pub fn exists(&self, p: &Path) -> bool {
        self.dir_exists(p) || self.files.contains_key(p)
    }

    pub fn is_dir(&self, p: &Path) -> bool {
        self.dir_exists(p)
    }

    pub fn remove_file(&mut self, p: &Path) {
        self.files.remove(p);
    }

    /// Bytes of the files below `p`.
    pub fn size_below(&self, p: &Path) -> io::Result<u64> {
        if !self.dir_exists(p) {
            return Err(not_found("read_dir", p));
        }
        Ok(self
            .files
            .iter()
            .filter(|(f, _)| f.starts_with(p))
            .map(|(_, d)| d.len() as u64)
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_needs_its_directory_and_remove_takes_the_tree() {
        let mut fs = SimFs::new();
        assert!(fs.write(Path::new("/data/pg/x"), b"1").is_err());
        fs.create_dir_all(Path::new("/data/pg")).unwrap();
        fs.write(Path::new("/data/pg/x"), b"1").unwrap();
        assert_eq!(fs.read(Path::new("/data/pg/x")).unwrap(), b"1");
        fs.remove_dir_all(Path::new("/data"));
        assert!(!fs.exists(Path::new("/data/pg/x")));
        assert!(!fs.exists(Path::new("/data")));
        assert!(fs.exists(Path::new("/")));
    }
}
