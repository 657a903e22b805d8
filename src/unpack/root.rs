//! `Root`: a directory handle that never resolves a path outside itself, and the only code in
//! the crate that opens, creates or removes paths inside a rootfs. Every syscall of the unpacker
//! lives in this module (through rustix; there is no `unsafe`): here the public operations,
//! in `root/resolve.rs` the resolution of parents, in `root/node.rs` metadata, in
//! `root/remove.rs` the removal of trees, in `root/list.rs` directory listings (opaque
//! whiteouts) and in `root/lookup.rs` read-only lookups as a chrooted process sees paths, and in `root/edit.rs`
//! the small edits `sandbox build` makes to a finished rootfs.
//!
//! Resolution of a normalised path (`path.rs` has already removed `.`, `..` and leading `/`):
//!
//! - Parents are opened one component at a time relative to the previous directory fd with
//!   `O_NOFOLLOW`, or in one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call when no
//!   symlink is on the way (the fast path; any failure falls back to the walk, which is the
//!   authority). A parent that is a symlink is followed only by this code, component by
//!   component, tracking the real path below the root: an absolute target, or a `..` that would
//!   climb above the root, is a [`Violation::SymlinkParent`]. Relative targets that stay inside
//!   (Debian's `bin -> usr/bin`) are followed; absolute ones too, from the root's own fd, when
//!   [`Root::set_absolute_symlinks_in_root`] is on (image layers). Missing parents named by the archive are created
//!   (mode 0755); missing directories reached through a symlink are not.
//! - The final component is never followed: files are created with `O_CREAT|O_EXCL|O_NOFOLLOW`
//!   after unlinking whatever was there (a symlink planted by an earlier entry is replaced, not
//!   written through), hardlinks use `linkat` without `AT_SYMLINK_FOLLOW`, and metadata of
//!   symlinks and device nodes is set with `AT_SYMLINK_NOFOLLOW` or through
//!   `/proc/self/fd/<parent fd>/<name>` with the non-following `lsetxattr`.
//! - Resolved parent directories are cached as a chain of ancestors of the last one used
//!   (archives list entries in directory order), so most entries cost one `openat` at most. The
//!   chain is dropped whenever a directory or symlink is removed or replaced, as a cached fd
//!   could then stand for a path that no longer leads there.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rustix::fs::{self as rfs, AtFlags, Dev, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::error::{UnpackError, Violation, show_bytes};
use super::path::EntryPath;

mod edit;
mod list;
mod lookup;
mod node;
mod remove;
mod resolve;

pub use edit::Existing;
pub use node::Node;
use resolve::ResolveError;

/// Linux's own limit on symlinks followed in one lookup.
const MAX_SYMLINKS: usize = 40;
/// Deeper parents are still resolved, just not cached (bounds the fds held open).
const MAX_CACHED_DIRS: usize = 64;

/// A directory handle that never resolves a path outside itself. Holds an
/// `O_PATH|O_DIRECTORY` fd opened with `O_NOFOLLOW`; see the module documentation for the rules.
pub struct Root {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    dev: u64,
    chain: Mutex<Vec<CachedDir>>,
    openat2_works: AtomicBool,
    /// See [`Root::set_absolute_symlinks_in_root`].
    absolute_in_root: AtomicBool,
}

/// A directory reached inside the root: its fd and its real path below the root (symlinks
/// resolved), which is what `..` in a symlink target is measured against.
#[derive(Clone)]
struct Resolved {
    fd: Arc<OwnedFd>,
    real: Vec<u8>,
}

struct CachedDir {
    /// The archive's (lexical, normalised) path of the directory.
    rel: Vec<u8>,
    dir: Resolved,
}

/// The kinds `mknodat` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Char,
    Block,
    Fifo,
}

fn errno_io(
    entry: &EntryPath,
    action: &str,
    name: &[u8],
    err: impl Into<io::Error>,
) -> UnpackError {
    UnpackError::io(
        &entry.show(),
        format!("{action} `{}`", show_bytes(name)),
        err,
    )
}

fn join(base: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(base.len() + 1 + name.len());
    out.extend_from_slice(base);
    if !base.is_empty() {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

fn open_dir_path(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty())
}

fn open_dir_read(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rfs::openat(dir, name, flags, Mode::empty())
}

impl Root {
    /// Opens `dir` (which must exist and not be a symlink) as the root of an extraction.
    pub fn open(dir: &Path) -> Result<Root, UnpackError> {
        let err = |e: Errno| UnpackError::OpenRoot {
            path: dir.to_owned(),
            source: e.into(),
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::open(dir, flags, Mode::empty()).map_err(err)?;
        let stat = rfs::fstat(&fd).map_err(err)?;
        Ok(Root {
            fd: Arc::new(fd),
            path: dir.to_owned(),
            dev: stat.st_dev,
            chain: Mutex::new(Vec::new()),
            openat2_works: AtomicBool::new(true),
            absolute_in_root: AtomicBool::new(false),
        })
    }

    /// Whether a parent symlink with an absolute target (`var/run -> /run`) is followed as if
    /// the root were `/` (`on`), as Docker (which unpacks in a chroot), containerd and umoci
    /// do for image layers, or refused as a [`Violation::SymlinkParent`] (the default, right
    /// for a tarball that is meant to be a whole filesystem). Either way resolution never
    /// leaves the root: an absolute target restarts at the root's own fd, and `..` above the
    /// root is still refused. Changing the setting forgets the cached parents, which were
    /// resolved under the old rule.
    pub fn set_absolute_symlinks_in_root(&self, on: bool) {
        if self.absolute_in_root.swap(on, Ordering::Relaxed) != on {
            self.invalidate();
        }
    }

    /// The current [`Root::set_absolute_symlinks_in_root`] setting.
    pub fn absolute_symlinks_in_root(&self) -> bool {
        self.absolute_in_root.load(Ordering::Relaxed)
    }

    /// The host path the root was opened at (for messages only; never used to open anything).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes `rel` (a file, a symlink — not what it points to — or a whole tree) inside the
    /// root. A path that does not exist is not an error; a parent symlink that leads out is.
    pub fn remove_all(&self, rel: &Path) -> Result<(), UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        let Some((parent, name)) = entry.split_last() else {
            return Err(UnpackError::Unsafe {
                entry: entry.show(),
                violation: Violation::RemoveRoot,
            });
        };
        let dir = match self.dir_of(parent, false) {
            Ok(dir) => dir,
            Err(ResolveError::Missing { .. } | ResolveError::NotDir { .. }) => return Ok(()),
            Err(e) => return Err(e.for_entry(&entry)),
        };
        self.remove_existing(&entry, &dir, name)
    }

    /// Empties the directory `rel` inside the root and keeps it (an OCI opaque whiteout). A
    /// missing directory is not an error; a symlink in its place is not followed (an error).
    pub fn clear_dir(&self, rel: &Path) -> Result<(), UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        let target = match entry.split_last() {
            None => open_dir_read(self.fd.as_fd(), b"."),
            Some((parent, name)) => {
                let dir = match self.dir_of(parent, false) {
                    Ok(dir) => dir,
                    Err(ResolveError::Missing { .. } | ResolveError::NotDir { .. }) => {
                        return Ok(());
                    }
                    Err(e) => return Err(e.for_entry(&entry)),
                };
                match open_dir_read(dir.fd.as_fd(), name) {
                    Err(Errno::NOENT) => return Ok(()),
                    Err(Errno::NOTDIR | Errno::LOOP) => {
                        return Err(UnpackError::invalid(&entry.show(), "not a directory"));
                    }
                    other => other,
                }
            }
        };
        let target = target.map_err(|e| errno_io(&entry, "opening", entry.normalized(), e))?;
        self.invalidate();
        self.clear_contents(target)
            .map_err(|e| errno_io(&entry, "emptying directory", entry.normalized(), e))
    }

    /// Creates an empty regular file at `entry` (mode 0600 until the caller sets the archive's),
    /// replacing whatever was there.
    pub(crate) fn create_file(&self, entry: &EntryPath) -> Result<File, UnpackError> {
        let (dir, name) = self.parent_of(entry)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = self.create_at(entry, &dir, name, "creating file", |d| {
            rfs::openat(d, name, flags, Mode::from_raw_mode(0o600))
        })?;
        Ok(File::from(fd))
    }

    /// Creates the directory `entry` (mode 0700 until the caller sets the archive's) or keeps an
    /// existing one; anything else there is replaced. The root entry yields the root itself.
    pub(crate) fn create_dir(&self, entry: &EntryPath) -> Result<Node, UnpackError> {
        let Some((parent, name)) = entry.split_last() else {
            let fd = open_dir_read(self.fd.as_fd(), b".")
                .map_err(|e| errno_io(entry, "opening", b".", e))?;
            return Ok(Node::Open(Arc::new(fd)));
        };
        let dir = self.dir_of(parent, true).map_err(|e| e.for_entry(entry))?;
        let mkdir = |d: BorrowedFd<'_>| rfs::mkdirat(d, name, Mode::from_raw_mode(0o700));
        match mkdir(dir.fd.as_fd()) {
            Ok(()) => {}
            Err(Errno::EXIST) => {
                let is_dir = rfs::statat(dir.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    .map_err(|e| errno_io(entry, "inspecting", name, e))?;
                if !is_dir {
                    self.remove_existing(entry, &dir, name)?;
                    mkdir(dir.fd.as_fd())
                        .map_err(|e| errno_io(entry, "creating directory", name, e))?;
                }
            }
            Err(e) => return Err(errno_io(entry, "creating directory", name, e)),
        }
        let fd = open_dir_read(dir.fd.as_fd(), name)
            .map_err(|e| errno_io(entry, "opening directory", name, e))?;
        let fd = Arc::new(fd);
        // The next entries are most likely inside this directory: cache it.
        let mut chain = self.lock_chain();
        let parent_cached = match chain.last() {
            Some(last) => last.rel == parent,
            None => parent.is_empty(),
        };
        if parent_cached && chain.len() < MAX_CACHED_DIRS {
            chain.push(CachedDir {
                rel: entry.normalized().to_vec(),
                dir: Resolved {
                    fd: fd.clone(),
                    real: join(&dir.real, name),
                },
            });
        }
        Ok(Node::Open(fd))
    }

    /// Creates a symlink at `entry` pointing to `target` (anything: it is only ever resolved
    /// inside the sandbox at run time, or by this module, which checks it).
    pub(crate) fn create_symlink(
        &self,
        entry: &EntryPath,
        target: &[u8],
    ) -> Result<Node, UnpackError> {
        let (dir, name) = self.parent_of(entry)?;
        self.create_at(entry, &dir, name, "creating symlink", |d| {
            rfs::symlinkat(target, d, name)
        })?;
        Ok(Node::At {
            dir: dir.fd,
            name: name.to_vec(),
        })
    }

    /// Creates `entry` as a hardlink to `target`, both inside the root; the target's parents
    /// follow the same rules as any entry's and its last component is not followed.
    pub(crate) fn create_hardlink(
        &self,
        entry: &EntryPath,
        target: &EntryPath,
    ) -> Result<(), UnpackError> {
        if target.normalized() == entry.normalized() {
            // GNU tar writes this for a file listed twice; linking it to itself is a no-op.
            return Ok(());
        }
        let Some((tparent, tname)) = target.split_last() else {
            return Err(UnpackError::invalid(
                &entry.show(),
                "hardlink to the root directory",
            ));
        };
        let tdir = self
            .dir_of(tparent, false)
            .map_err(|e| e.for_hardlink(entry, target))?;
        let (dir, name) = self.parent_of(entry)?;
        let result = self.create_at(entry, &dir, name, "creating hardlink", |d| {
            rfs::linkat(tdir.fd.as_fd(), tname, d, name, AtFlags::empty())
        });
        match result {
            Err(UnpackError::Io { source, .. })
                if source.raw_os_error() == Some(Errno::NOENT.raw_os_error()) =>
            {
                Err(UnpackError::invalid(
                    &entry.show(),
                    format!("hardlink target `{}` does not exist", target.show()),
                ))
            }
            other => other,
        }
    }

    /// Creates a device node or fifo (mode 0600 until the caller sets the archive's). `None` when
    /// the kernel refuses device nodes to this process (no `CAP_MKNOD`), which callers warn about.
    pub(crate) fn create_special(
        &self,
        entry: &EntryPath,
        kind: Special,
        dev: Dev,
    ) -> Result<Option<Node>, UnpackError> {
        let (dir, name) = self.parent_of(entry)?;
        let file_type = match kind {
            Special::Char => FileType::CharacterDevice,
            Special::Block => FileType::BlockDevice,
            Special::Fifo => FileType::Fifo,
        };
        let result = self.create_at(entry, &dir, name, "creating device node", |d| {
            rfs::mknodat(d, name, file_type, Mode::from_raw_mode(0o600), dev)
        });
        match result {
            Ok(()) => Ok(Some(Node::At {
                dir: dir.fd,
                name: name.to_vec(),
            })),
            Err(UnpackError::Io { source, .. })
                if kind != Special::Fifo
                    && source.raw_os_error() == Some(Errno::PERM.raw_os_error()) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Reopens a directory created earlier, to apply what was deferred (times, restrictive
    /// modes). `None` when it is gone or no longer a directory, or its parents no longer resolve
    /// inside the root: then there is nothing to update and nothing is followed.
    pub(crate) fn reopen_dir(&self, entry: &EntryPath) -> Result<Option<Node>, UnpackError> {
        let opened = match entry.split_last() {
            None => open_dir_read(self.fd.as_fd(), b"."),
            Some((parent, name)) => match self.dir_of(parent, false) {
                Ok(dir) => open_dir_read(dir.fd.as_fd(), name),
                Err(_) => return Ok(None),
            },
        };
        match opened {
            Ok(fd) => Ok(Some(Node::Open(Arc::new(fd)))),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
            Err(e) => Err(errno_io(
                entry,
                "reopening directory",
                entry.normalized(),
                e,
            )),
        }
    }

    fn parent_of<'e>(&self, entry: &'e EntryPath) -> Result<(Resolved, &'e [u8]), UnpackError> {
        let (parent, name) = entry.split_last().ok_or_else(|| {
            UnpackError::invalid(
                &entry.show(),
                "only a directory can stand for the root itself",
            )
        })?;
        let dir = self.dir_of(parent, true).map_err(|e| e.for_entry(entry))?;
        Ok((dir, name))
    }

    /// Runs `op` (a create relative to `dir`); if something exists at `name`, removes it without
    /// following it and runs `op` once more.
    fn create_at<T>(
        &self,
        entry: &EntryPath,
        dir: &Resolved,
        name: &[u8],
        action: &str,
        op: impl Fn(BorrowedFd<'_>) -> rustix::io::Result<T>,
    ) -> Result<T, UnpackError> {
        match op(dir.fd.as_fd()) {
            Ok(v) => return Ok(v),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(errno_io(entry, action, name, e)),
        }
        self.remove_existing(entry, dir, name)?;
        op(dir.fd.as_fd()).map_err(|e| errno_io(entry, action, name, e))
    }

    fn remove_existing(
        &self,
        entry: &EntryPath,
        dir: &Resolved,
        name: &[u8],
    ) -> Result<(), UnpackError> {
        let stat = match rfs::statat(dir.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(errno_io(entry, "inspecting", name, e)),
        };
        let result = match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                self.invalidate();
                self.remove_tree(dir.fd.as_fd(), name)
            }
            FileType::Symlink => {
                self.invalidate();
                rfs::unlinkat(dir.fd.as_fd(), name, AtFlags::empty()).map_err(io::Error::from)
            }
            _ => rfs::unlinkat(dir.fd.as_fd(), name, AtFlags::empty()).map_err(io::Error::from),
        };
        result.map_err(|e| errno_io(entry, "removing existing", &join(&dir.real, name), e))
    }

    fn root_resolved(&self) -> Resolved {
        Resolved {
            fd: self.fd.clone(),
            real: Vec::new(),
        }
    }

    fn lock_chain(&self) -> MutexGuard<'_, Vec<CachedDir>> {
        // A panic while holding the lock cannot leave the chain inconsistent in a harmful way:
        // every element is a valid directory fd, so a poisoned lock is still usable.
        self.chain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn invalidate(&self) {
        self.lock_chain().clear();
    }
}
