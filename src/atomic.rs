//! Publishing a file, the one way it is done everywhere (the cache's refs and documents, state
//! records, host files, exports, layouts, keys): a temporary file next to the target
//! (`.NAME.RANDOM.tmp`, created exclusively with the final mode), filled, fsynced, renamed over
//! the target, then the directory fsynced. Readers see the old file or the new one, never half
//! of one, even after a power cut; on any error the temporary file is removed.
//!
//! The leading dot keeps a temporary file that survives a crash out of every listing that
//! matters (keyring directories, machined's image list, layouts' `blobs/`).
//!
//! And its counterpart for small files read whole (keys, signatures, bundles, trusted roots):
//! [`read_limited`], which refuses a file larger than the caller's bound.

use fs_err::OpenOptions;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Writes `data` to `path` atomically, mode 0644.
pub fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    write_file_mode(path, data, 0o644)
}

/// Writes `data` to `path` atomically with `mode`.
pub fn write_file_mode(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    write_with(path, mode, |file| {
        file.write_all(data)
            .with_context(|| format!("writing {}", path.display()))
    })
}

/// Publishes `path` atomically with what `fill` writes into the open temporary file (a
/// stream too large to hold in memory); returns what `fill` returns.
pub fn write_with<T>(
    path: &Path,
    mode: u32,
    fill: impl FnOnce(&mut File) -> Result<T>,
) -> Result<T> {
    let dir = parent_of(path);
    let tmp = temp_path(path);
    let result = (|| -> Result<T> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map(fs_err::File::into_file)?;
        let value = fill(&mut file)?;
        file.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        fs_err::rename(&tmp, path)?;
        sync_dir(&dir)?;
        Ok(value)
    })();
    if result.is_err() {
        // Best effort: it may not exist (create failed) or be gone (rename done).
        let _ = fs_err::remove_file(&tmp);
    }
    result
}

/// fsyncs a directory, so that a rename or a new entry in it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `.NAME.RANDOM.tmp` next to `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_of(path).join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// Whether `e` is a full filesystem (ENOSPC), which every writer names for what it is.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
}

/// Reads at most `limit` bytes of a small file, refusing larger ones.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let f = fs_err::File::open(path)?;
    let mut data = Vec::new();
    f.take(limit + 1).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_whole_with_its_mode_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        fs_err::write(&path, b"old").unwrap();
        write_file_mode(&path, b"new", 0o600).unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), b"new");
        let mode = fs_err::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_failed_fill_keeps_the_old_file_and_removes_the_temporary_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("SHA256SUMS");
        fs_err::write(&path, b"old").unwrap();
        let err = write_with(&path, 0o644, |f| -> Result<()> {
            f.write_all(b"half")?;
            anyhow::bail!("the stream broke")
        })
        .unwrap_err();
        assert!(err.to_string().contains("the stream broke"), "{err:#}");
        assert_eq!(fs_err::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["SHA256SUMS"]);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no/such/file");
        let err = write_file(&path, b"x").unwrap_err();
        assert!(format!("{err:#}").contains("no/such/.file."), "{err:#}");
    }

    #[test]
    fn temporary_names_are_hidden_and_distinct() {
        let a = temp_path(Path::new("/d/index.json"));
        let b = temp_path(Path::new("/d/index.json"));
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".index.json.") && name.ends_with(".tmp"),
            "{name}"
        );
        assert_eq!(temp_path(Path::new("bare")).parent(), Some(Path::new(".")));
    }
}
