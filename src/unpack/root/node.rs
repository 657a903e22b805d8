//! Setting metadata on what `Root` created, never following a symlink.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::{
    self as rfs, AtFlags, CWD, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags,
};

/// Something just created inside the root that takes metadata. Regular files and directories
/// are held open; symlinks and special files are named relative to their parent's fd.
pub enum Node {
    Open(Arc<OwnedFd>),
    At { dir: Arc<OwnedFd>, name: Vec<u8> },
}

/// `/proc/self/fd/<fd>[/<name>]`: the kernel resolves the fd part to exactly that open file, so
/// the path cannot be redirected; `name` (one component) is then looked up in that directory.
fn proc_path(fd: BorrowedFd<'_>, name: Option<&[u8]>) -> Vec<u8> {
    let mut path = format!("/proc/self/fd/{}", fd.as_raw_fd()).into_bytes();
    if let Some(name) = name {
        path.push(b'/');
        path.extend_from_slice(name);
    }
    path
}

impl Node {
    pub fn from_file(file: File) -> Node {
        Node::Open(Arc::new(OwnedFd::from(file)))
    }

    /// Changes the owner; never follows a symlink.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        let (uid, gid) = (Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)));
        match self {
            Node::Open(fd) => rfs::fchown(fd, uid, gid)?,
            Node::At { dir, name } => {
                rfs::chownat(dir, name.as_slice(), uid, gid, AtFlags::SYMLINK_NOFOLLOW)?
            }
        }
        Ok(())
    }

    /// Sets the permission bits; a no-op on symlinks (Linux has no symlink modes).
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        let mode = Mode::from_raw_mode(mode & 0o7777);
        match self {
            Node::Open(fd) => rfs::fchmod(fd, mode)?,
            Node::At { dir, name } => {
                // fchmodat cannot refuse to follow before Linux 6.6: hold the object itself with
                // O_PATH|O_NOFOLLOW and change it through its /proc/self/fd magic link.
                let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let fd = rfs::openat(dir, name.as_slice(), flags, Mode::empty())?;
                if FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) == FileType::Symlink {
                    return Ok(());
                }
                rfs::chmodat(CWD, proc_path(fd.as_fd(), None), mode, AtFlags::empty())?;
            }
        }
        Ok(())
    }

    /// Sets one extended attribute; never follows a symlink.
    pub fn set_xattr(&self, name: &[u8], value: &[u8]) -> io::Result<()> {
        match self {
            Node::Open(fd) => rfs::fsetxattr(fd, name, value, XattrFlags::empty())?,
            Node::At { dir, name: file } => rfs::lsetxattr(
                proc_path(dir.as_fd(), Some(file)),
                name,
                value,
                XattrFlags::empty(),
            )?,
        }
        Ok(())
    }

    /// Sets access and modification times; never follows a symlink.
    pub fn set_times(&self, atime: Timespec, mtime: Timespec) -> io::Result<()> {
        let times = Timestamps {
            last_access: atime,
            last_modification: mtime,
        };
        match self {
            Node::Open(fd) => rfs::futimens(fd, &times)?,
            Node::At { dir, name } => {
                rfs::utimensat(dir, name.as_slice(), &times, AtFlags::SYMLINK_NOFOLLOW)?
            }
        }
        Ok(())
    }
}
