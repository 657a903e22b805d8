//! Looking a path up the way a process chrooted at the root would see it: every symlink
//! followed, absolute targets starting again at the root, `..` at the root staying there (the
//! kernel's `RESOLVE_IN_ROOT`). Read-only: it answers questions about a finished rootfs ("does
//! `/sbin/init` lead to an executable?") and never creates or changes anything.
//!
//! Done by hand rather than with `openat2(RESOLVE_IN_ROOT)` so that it works on every kernel
//! and has one behaviour to test: each component is opened `O_PATH|O_NOFOLLOW` relative to
//! the directory before it, and `..` pops a stack of directory fds this walk opened itself, so
//! it can never climb above the root's fd.

use std::collections::VecDeque;
use std::fs::{File, Metadata};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{MAX_SYMLINKS, Root};
use crate::unpack::error::{UnpackError, show_bytes};

impl Root {
    /// The metadata of what `path` leads to inside the root, all symlinks followed inside it;
    /// `None` when it does not exist (or a symlink on the way dangles, or loops more than
    /// Linux allows, or a non-directory is used as one).
    pub fn lookup_in_root(&self, path: &Path) -> Result<Option<Metadata>, UnpackError> {
        let shown = path.display().to_string();
        let io_err = |action: &str, name: &[u8], e: Errno| {
            UnpackError::io(&shown, format!("{action} `{}`", show_bytes(name)), e)
        };
        let mut queue: VecDeque<Vec<u8>> = components(path.as_os_str().as_bytes());
        let mut dirs: Vec<OwnedFd> = Vec::new();
        let mut budget = MAX_SYMLINKS;
        let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut current = rfs::openat(self.fd.as_fd(), ".", flags, Mode::empty())
            .map_err(|e| io_err("opening", b".", e))?;
        while let Some(comp) = queue.pop_front() {
            if comp == b".." {
                // At the root `..` stays at the root, as in a chroot.
                if let Some(parent) = dirs.pop() {
                    current = parent;
                }
                continue;
            }
            let next = match rfs::openat(current.as_fd(), comp.as_slice(), flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT | Errno::NOTDIR) => return Ok(None),
                Err(e) => return Err(io_err("opening", &comp, e)),
            };
            let stat = rfs::fstat(&next).map_err(|e| io_err("inspecting", &comp, e))?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => {
                    if budget == 0 {
                        return Ok(None);
                    }
                    budget -= 1;
                    let target = rfs::readlinkat(current.as_fd(), comp.as_slice(), Vec::new())
                        .map_err(|e| io_err("reading symlink", &comp, e))?
                        .into_bytes();
                    if target.first() == Some(&b'/') {
                        dirs.clear();
                        current = rfs::openat(self.fd.as_fd(), ".", flags, Mode::empty())
                            .map_err(|e| io_err("opening", b".", e))?;
                    }
                    for c in components(&target).into_iter().rev() {
                        queue.push_front(c);
                    }
                }
                FileType::Directory => dirs.push(std::mem::replace(&mut current, next)),
                _ if queue.is_empty() => current = next,
                // A file used as a directory.
                _ => return Ok(None),
            }
        }
        let meta = File::from(current)
            .metadata()
            .map_err(|e| UnpackError::io(&shown, "inspecting", e))?;
        Ok(Some(meta))
    }
}

/// The components of `path` without empty ones and `.` (a leading `/` means the root anyway).
fn components(path: &[u8]) -> VecDeque<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(<[u8]>::to_vec)
        .collect()
}
