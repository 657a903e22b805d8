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
    /// What takes each change back, oldest first: a file's previous content (or none), a
    /// directory made for one.
    undos: Vec<Undo>,
    /// The same undos, registered for an interrupted build (`cleanup`).
    pending: Vec<Pending>,
    committed: bool,
    /// Where the undos are written before the change each undoes (none in unit tests).
    journal: Option<PathBuf>,
}

/// The journal of an uncommitted build of `name`.
pub fn journal_path(sandboxes_dir: &Path, name: &str) -> PathBuf {
    crate::machine::state::state_dir(sandboxes_dir).join(format!(".{name}.undo"))
}

/// Applies `undos` newest first, as a failed or interrupted build must: a file is restored
/// (or removed) before the directory made for it goes. A failure is said and the rest still
/// runs. Returns what each one did.
fn take_back(undos: &[Undo]) -> Vec<String> {
    let mut done = Vec::new();
    for undo in undos.iter().rev() {
        match undo.apply() {
            Ok(()) => done.push(undo.shown()),
            Err(e) => tracing::warn!("could not take back ({}): {e:#}", undo.shown()),
        }
    }
    done
}

/// Replays the journal at `journal` when there is one (its build died before committing; the
/// caller holds the machine's lock, so it is not running), and removes it. Returns what was
/// taken back.
pub fn recover(journal: &Path) -> Result<Option<Vec<String>>> {
    let bytes = match fs_err::read(journal) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // The journal is written atomically: anything unreadable is not one of ours to replay.
    let undos: Vec<Undo> = serde_json::from_slice(&bytes).unwrap_or_default();
    let done = take_back(&undos);
    fs_err::remove_file(journal)?;
    Ok(Some(done))
}

/// [`recover`] for machine `name`, saying what it took back. The caller holds the machine's
/// lock.
pub fn recover_dead_build(sandboxes_dir: &Path, name: &str) -> Result<()> {
    if let Some(done) = recover(&journal_path(sandboxes_dir, name))? {
        tracing::warn!(
            "a build of `{name}` died before committing its host files: {}",
            done.join(", ")
        );
    }
    Ok(())
}

/// Before the checks for an existing sandbox: the host files of a build of `name` that died
/// before committing are taken back, when no live process holds the machine's lock (one that
/// does is waited for later, and then sweeps them itself).
pub fn recover_if_unlocked(paths: &crate::paths::HostPaths, name: &str) -> Result<()> {
    if !journal_path(&paths.sandboxes_dir, name).exists() {
        return Ok(());
    }
    let cache = crate::cache::Cache::open(&paths.cache_dir())?;
    let lock = crate::machine::materialise::machine_lock_name(&paths.machines_dir, name);
    let Some(_lock) = cache.try_lock(&lock)? else {
        return Ok(());
    };
    recover_dead_build(&paths.sandboxes_dir, name)
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
        let saved = |u: &Undo| matches!(u, Undo::Restore { path: p, .. } if p == path);
        if self.undos.iter().any(saved) {
            return Ok(());
        }
        let previous = match fs_err::read(path) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        self.log(Undo::Restore {
            path: path.to_path_buf(),
            previous,
        })
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
        }
        Ok(())
    }

    /// Writes `data` at `path` (mode `mode`), creating missing parents.
    pub fn write(&mut self, path: &Path, data: &[u8], mode: u32) -> Result<()> {
        // Parents first: taken back newest first, the file goes before its directory.
        self.make_parents(path)?;
        self.save(path)?;
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
        take_back(&self.undos);
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

    #[test]
    fn a_journal_left_by_a_killed_build_takes_everything_back() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("old.conf");
        fs_err::write(&old, b"before").unwrap();
        let new = dir.path().join("a/b/new.conf");
        let journal = dir.path().join("state/.web.undo");
        let mut files = HostFiles::journaled(journal.clone());
        files.write(&old, b"after", 0o644).unwrap();
        files.write(&new, b"fresh", 0o644).unwrap();
        // A SIGKILL runs no destructor: only the journal knows.
        std::mem::forget(files);
        let done = recover(&journal).unwrap().expect("a journal");
        assert_eq!(done.len(), 4, "{done:?}");
        assert_eq!(fs_err::read(&old).unwrap(), b"before");
        assert!(!dir.path().join("a").exists(), "created dirs stay behind");
        assert!(!journal.exists());
        assert_eq!(recover(&journal).unwrap(), None);
    }
}
