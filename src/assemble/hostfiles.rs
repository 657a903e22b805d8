//! Writing the host side of a build (`NAME.nspawn`, the unit drop-ins, the state record) so
//! that it can be taken back: each file's previous content is kept until the build commits,
//! and a failed build restores it (or removes the file when there was none). Every write is
//! atomic (temp file, fsync, rename), so a crash leaves either the old or the new file.
//!
//! A build killed before it commits cannot undo anything itself: each undo is first written
//! to a journal (`<sandboxes_dir>/state/.NAME.undo`, write-ahead), removed at commit. The next
//! command that takes the machine's lock finds a dead process's journal and replays it
//! ([`recover`]), so a killed build leaves no `.nspawn` or record without its tree.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
    /// Where every undo is written before the change it undoes (none in unit tests).
    journal: Option<PathBuf>,
    /// The journal's content: the undos so far, oldest first.
    undos: Vec<Undo>,
}

/// The journal of an uncommitted build of `name`.
pub fn journal_path(sandboxes_dir: &Path, name: &str) -> PathBuf {
    crate::machine::state::state_dir(sandboxes_dir).join(format!(".{name}.undo"))
}

/// Replays the journal at `journal` when there is one (its build died before committing; the
/// caller holds the machine's lock, so it is not running): every file it wrote is restored or
/// removed, newest first, and the journal goes. Returns the paths taken back.
pub fn recover(journal: &Path) -> Result<Option<Vec<PathBuf>>> {
    let bytes = match fs_err::read(journal) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // A journal cut short by the crash (it is written atomically, so only an empty or
    // foreign file) has nothing to replay.
    let undos: Vec<Undo> = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut taken = Vec::new();
    for undo in undos.iter().rev() {
        undo.apply()
            .with_context(|| format!("replaying {}", journal.display()))?;
        match undo {
            Undo::Restore { path, .. } | Undo::RemoveDir(path) | Undo::RemoveTree(path) => {
                taken.push(path.clone())
            }
        }
    }
    fs_err::remove_file(journal)?;
    Ok(Some(taken))
}

/// [`recover`] for machine `name`, saying what it took back. The caller holds the machine's
/// lock.
pub fn recover_dead_build(sandboxes_dir: &Path, name: &str) -> Result<()> {
    let journal = journal_path(sandboxes_dir, name);
    if let Some(taken) = recover(&journal)? {
        let shown: Vec<String> = taken.iter().map(|p| p.display().to_string()).collect();
        tracing::warn!(
            "took back the host files of a build of `{name}` that a process which died left \
             uncommitted: {}",
            shown.join(", ")
        );
    }
    Ok(())
}

impl HostFiles {
    #[cfg(test)]
    pub fn new() -> HostFiles {
        HostFiles::default()
    }

    /// A set whose undos are journaled at `journal` before each change (see [`recover`]).
    pub fn journaled(journal: PathBuf) -> HostFiles {
        let mut files = HostFiles::default();
        files.journal = Some(journal);
        files
    }

    /// Records `undo`: in the journal first, then for an interrupted build (`cleanup`).
    fn log(&mut self, undo: Undo) -> Result<()> {
        self.undos.push(undo.clone());
        if let Some(journal) = &self.journal {
            if let Some(dir) = journal.parent() {
                fs_err::create_dir_all(dir)?;
            }
            let json = serde_json::to_vec(&self.undos).context("encoding the build journal")?;
            crate::atomic::write_file(journal, &json)?;
        }
        self.pending.push(cleanup::register(undo));
        Ok(())
    }

    /// Removes the journal: what it describes is kept, or was taken back.
    fn end_journal(&mut self) {
        if let Some(journal) = self.journal.take()
            && let Err(e) = fs_err::remove_file(&journal)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!("could not remove the build journal: {e:#}");
        }
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
        self.log(Undo::Restore {
            path: path.to_path_buf(),
            previous: previous.clone(),
        })?;
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
            self.log(Undo::RemoveDir(d.clone()))?;
            fs_err::create_dir(&d)?;
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
        self.end_journal();
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
        self.end_journal();
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
