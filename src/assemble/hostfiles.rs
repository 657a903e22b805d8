//! Writing the host side of a build (`NAME.nspawn`, the unit drop-ins, the state record) so
//! that it can be taken back: each file's previous content is kept until the build commits,
//! and a failed build restores it (or removes the file when there was none). Every write is
//! atomic (temp file, fsync, rename), so a crash leaves either the old or the new file.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::atomic::write_file_mode;
use crate::cleanup::{self, Pending, Undo};

/// Host files written so far, with what they replaced.
#[derive(Debug, Default)]
pub struct HostFiles {
    /// (path, previous content) in the order written.
    saved: Vec<(PathBuf, Option<Vec<u8>>)>,
    /// Directories this build created, deepest last.
    created_dirs: Vec<PathBuf>,
    /// The same undos, registered for an interrupted build (`cleanup`).
    pending: Vec<Pending>,
    committed: bool,
}

impl HostFiles {
    pub fn new() -> HostFiles {
        HostFiles::default()
    }

    fn save(&mut self, path: &Path) -> Result<()> {
        if self.saved.iter().any(|(p, _)| p == path) {
            return Ok(());
        }
        let previous = match fs_err::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        self.pending.push(cleanup::register(Undo::Restore {
            path: path.to_path_buf(),
            previous: previous.clone(),
        }));
        self.saved.push((path.to_path_buf(), previous));
        Ok(())
    }

    fn make_parents(&mut self, path: &Path) -> Result<()> {
        let Some(parent) = path.parent() else {
            return Ok(());
        };
        let mut missing = Vec::new();
        let mut dir = Some(parent);
        while let Some(d) = dir {
            if d.exists() {
                break;
            }
            missing.push(d.to_path_buf());
            dir = d.parent();
        }
        for d in missing.into_iter().rev() {
            fs_err::create_dir(&d)?;
            self.pending
                .push(cleanup::register(Undo::RemoveDir(d.clone())));
            self.created_dirs.push(d);
        }
        Ok(())
    }

    /// Writes `data` at `path` (mode `mode`), creating missing parents.
    pub fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        self.save(path)?;
        self.make_parents(path)?;
        write_file_mode(path, data, mode)
    }

    /// Removes `path` if it exists (a stale drop-in of an earlier build).
    pub fn remove(&mut self, path: &Path) -> Result<()> {
        self.save(path)?;
        match fs_err::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps everything written.
    pub fn commit(mut self) {
        self.committed = true;
        self.pending.clear();
    }

    fn rollback(&mut self) {
        for (path, previous) in self.saved.iter().rev() {
            let undo = Undo::Restore {
                path: path.clone(),
                previous: previous.clone(),
            };
            if let Err(e) = undo.apply() {
                tracing::warn!("could not restore {}: {e:#}", path.display());
            }
        }
        for dir in self.created_dirs.iter().rev() {
            let _ = Undo::RemoveDir(dir.clone()).apply();
        }
        self.pending.clear();
    }
}

impl Drop for HostFiles {
    fn drop(&mut self) {
        if !self.committed {
            self.rollback();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_uncommitted_set_restores_what_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.conf");
        fs_err::write(&old, b"before").unwrap();
        let new = dir.path().join("a/b/new.conf");
        {
            let mut files = HostFiles::new();
            files.write(&old, b"after", 0o644).unwrap();
            files.write(&new, b"fresh", 0o644).unwrap();
            assert_eq!(fs_err::read(&new).unwrap(), b"fresh");
        }
        assert_eq!(fs_err::read(&old).unwrap(), b"before");
        assert!(!dir.path().join("a").exists(), "created dirs stay behind");
        let mut files = HostFiles::new();
        files.write(&new, b"kept", 0o600).unwrap();
        files.remove(&old).unwrap();
        files.commit();
        assert_eq!(fs_err::read(&new).unwrap(), b"kept");
        assert!(!old.exists());
    }
}
