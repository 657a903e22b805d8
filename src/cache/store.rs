//! The cache on disk: atomic writes, verified publishing, refs.
//!
//! Bytes reach `blobs/` only through `publish`, which renames a fully written, fsynced temp
//! file whose digest was computed while it was written; a blob is named by that digest, so a
//! blob whose bytes no longer hash to its name is corrupt (`fsck` finds it, `open_blob`'s callers
//! re-hash what they extract).

use fs_err::OpenOptions;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::layout::{CACHEDIR_TAG, CacheLayout, RefKind};
use super::lock::{self, LockGuard, LockMode};
use super::refs::Ref;
use crate::digest::Digest;
use crate::digest::HashingWriter;

/// An open cache. Holds the cache's lock (shared, or exclusive for gc) for its whole life.
pub struct Cache {
    layout: CacheLayout,
    _lock: LockGuard,
}

impl Cache {
    /// Opens (creating if needed) the cache in `cache_dir` with a shared lock.
    pub fn open(cache_dir: &Path) -> Result<Cache> {
        Self::open_with(cache_dir, LockMode::Shared)
    }

    /// Opens the cache for maintenance that must run alone (gc).
    pub fn open_exclusive(cache_dir: &Path) -> Result<Cache> {
        Self::open_with(cache_dir, LockMode::Exclusive)
    }

    fn open_with(cache_dir: &Path, mode: LockMode) -> Result<Cache> {
        let layout = CacheLayout::new(cache_dir);
        for dir in [layout.blobs_dir(), layout.tmp_dir(), layout.locks_dir()] {
            fs_err::create_dir_all(&dir)
                .with_context(|| format!("creating cache directory {}", dir.display()))?;
        }
        for kind in RefKind::ALL {
            let dir = layout.refs_dir(kind);
            fs_err::create_dir_all(&dir)
                .with_context(|| format!("creating cache directory {}", dir.display()))?;
        }
        let tag = layout.cachedir_tag();
        if !tag.exists() {
            crate::atomic::write_file(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        let what = match mode {
            LockMode::Shared => {
                "the cache (another process has it exclusively, e.g. `sandbox cache gc`)"
            }
            LockMode::Exclusive => {
                "exclusive use of the cache (other sandbox processes are using it)"
            }
        };
        let lock = lock::acquire(&layout.global_lock(), mode, what, lock::default_timeout())?;
        Ok(Cache {
            layout,
            _lock: lock,
        })
    }

    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// The path of a blob if the cache holds it.
    pub fn blob(&self, digest: &Digest) -> Option<PathBuf> {
        let path = self.layout.blob(digest);
        path.is_file().then_some(path)
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.layout.blob(digest);
        let data = match fs_err::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
                "the cache has no blob {digest} any more (`cache fsck` or `cache gc` removed \
                 it?); pull the image again, without --offline"
            ),
            Err(e) => {
                return Err(e).with_context(|| format!("reading cache blob {}", path.display()));
            }
        };
        // Small blobs (checksum files, signatures, manifests) are re-hashed on every read: they
        // decide what else is trusted.
        if Digest::of(&data) != *digest {
            bail!(
                "cache blob {} is corrupt (its bytes no longer match its digest); run `sandbox cache fsck`",
                path.display()
            );
        }
        Ok(data)
    }

    /// Stores small bytes (checksum files, signatures, indexes) and returns their digest.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        let mut temp = self.temp_blob()?;
        temp.write_all(data).context("writing to the cache")?;
        self.publish(temp, None)
    }

    /// A new temp file in the cache's tmp dir, hashed as it is written.
    pub fn temp_blob(&self) -> Result<TempBlob> {
        let path = self
            .layout
            .tmp_dir()
            .join(format!("blob-{:016x}.tmp", rand::random::<u64>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map(fs_err::File::into_file)?;
        Ok(TempBlob {
            writer: Some(HashingWriter::new(io::BufWriter::with_capacity(
                256 * 1024,
                file,
            ))),
            path,
            published: false,
        })
    }

    /// Publishes a fully written temp blob under its digest. With `expected`, a mismatch is an
    /// error and the bytes are discarded: nothing unverified enters `blobs/`.
    pub fn publish(&self, mut temp: TempBlob, expected: Option<&Digest>) -> Result<Digest> {
        let (file, digest, _len) = temp.finish()?;
        drop(file);
        if let Some(expected) = expected
            && *expected != digest
        {
            bail!("digest mismatch: expected {expected}, got {digest}");
        }
        self.publish_file(&temp.path, &digest)?;
        temp.published = true;
        Ok(digest)
    }

    /// Moves an already fsynced, already hashed file (for example a finished resumable
    /// download) into `blobs/` under `digest`.
    pub fn publish_file(&self, path: &Path, digest: &Digest) -> Result<()> {
        let dest = self.layout.blob(digest);
        if dest.is_file() {
            // Someone stored the same bytes meanwhile; keep theirs.
            fs_err::remove_file(path)?;
            return Ok(());
        }
        fs_err::rename(path, &dest)
            .with_context(|| format!("publishing {} as {}", path.display(), dest.display()))?;
        crate::atomic::sync_dir(&self.layout.blobs_dir())?;
        crate::faultpoint::reached("blob.published");
        Ok(())
    }

    pub fn read_ref(&self, kind: RefKind, key: &str) -> Result<Option<Ref>> {
        let path = self.layout.ref_file(kind, key);
        match fs_err::read(&path) {
            Ok(bytes) => {
                let r = serde_json::from_slice(&bytes).with_context(|| {
                    format!(
                        "reading cache ref {} (remove it with `sandbox cache rm`)",
                        path.display()
                    )
                })?;
                Ok(Some(r))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading cache ref {}", path.display())),
        }
    }

    pub fn write_ref(&self, kind: RefKind, key: &str, r: &Ref) -> Result<()> {
        let path = self.layout.ref_file(kind, key);
        let mut json = serde_json::to_vec_pretty(r).context("encoding a cache ref")?;
        json.push(b'\n');
        crate::atomic::write_file(&path, &json)?;
        crate::faultpoint::reached("ref.written");
        Ok(())
    }

    /// Every ref with its kind and file.
    pub fn list_refs(&self) -> Result<Vec<(RefKind, PathBuf, Ref)>> {
        let mut out = Vec::new();
        for kind in RefKind::ALL {
            let dir = self.layout.refs_dir(kind);
            for entry in read_dir_sorted(&dir)? {
                if entry.extension().is_some_and(|e| e == "json") {
                    let bytes = fs_err::read(&entry)?;
                    match serde_json::from_slice::<Ref>(&bytes) {
                        Ok(r) => out.push((kind, entry, r)),
                        Err(e) => {
                            tracing::warn!("ignoring unreadable cache ref {}: {e}", entry.display())
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// A per-name exclusive lock (a download URL, a machine name).
    /// The exclusive lock `name` if no other process holds it.
    pub fn try_lock(&self, name: &str) -> Result<Option<LockGuard>> {
        lock::try_acquire(&self.layout.lock_file(name), LockMode::Exclusive)
    }

    pub fn lock(&self, name: &str, what: &str) -> Result<LockGuard> {
        lock::acquire(
            &self.layout.lock_file(name),
            LockMode::Exclusive,
            what,
            lock::default_timeout(),
        )
    }
}

/// A temp file in the cache being written; removed on drop unless published.
pub struct TempBlob {
    writer: Option<HashingWriter<io::BufWriter<File>>>,
    path: PathBuf,
    published: bool,
}

impl TempBlob {
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn finish(&mut self) -> Result<(File, Digest, u64)> {
        let writer = self.writer.take().context("temp blob already finished")?;
        let (buf, digest, len) = writer.finish();
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {}", self.path.display()))?;
        file.sync_all()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        Ok((file, digest, len))
    }
}

impl Write for TempBlob {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.writer {
            Some(w) => w.write(buf),
            None => Err(io::Error::other("temp blob already finished")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(w) => w.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs_err::remove_file(&self.path);
        }
    }
}

/// The entries of `dir` (full paths), sorted; a missing dir is empty.
pub fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    match fs_err::read_dir(dir) {
        Ok(rd) => {
            for entry in rd {
                out.push(entry?.path());
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    out.sort();
    Ok(out)
}

/// Hashes a file.
pub fn hash_file(path: &Path) -> Result<(Digest, u64)> {
    let f = fs_err::File::open(path)?;
    Ok(crate::digest::digest_reader(io::BufReader::with_capacity(
        256 * 1024,
        f,
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_names_blobs_by_digest_and_refuses_mismatches() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(dir.path().join("CACHEDIR.TAG").is_file());
        let d = cache.put_bytes(b"hello").unwrap();
        assert_eq!(d, Digest::of(b"hello"));
        assert_eq!(cache.read_blob(&d).unwrap(), b"hello");

        let mut t = cache.temp_blob().unwrap();
        t.write_all(b"evil").unwrap();
        let tmp_path = t.path().to_path_buf();
        let err = cache.publish(t, Some(&Digest::of(b"good"))).unwrap_err();
        assert!(err.to_string().contains("digest mismatch"));
        assert!(
            !tmp_path.exists(),
            "a refused temp file must not stay behind"
        );
        assert!(cache.blob(&Digest::of(b"evil")).is_none());
    }

    #[test]
    fn corrupt_small_blobs_are_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let d = cache.put_bytes(b"hello").unwrap();
        fs_err::write(cache.layout().blob(&d), b"jello").unwrap();
        assert!(
            cache
                .read_blob(&d)
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
    }
}
