//! Removing trees inside the root without following symlinks, without recursion and with one
//! directory fd open at a time.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, FileType};
use rustix::io::Errno;

use super::{Root, open_dir_read};
use crate::unpack::error::show_bytes;

impl Root {
    /// Removes the directory `name` in `parent` with everything below it, without following
    /// symlinks and without recursion (trees can be deeper than the stack or the fd limit).
    pub(super) fn remove_tree(&self, parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        match rfs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
            Ok(()) => return Ok(()),
            Err(Errno::NOTEMPTY | Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
        let fd = open_dir_read(parent, name)?;
        self.clear_contents(fd)?;
        Ok(rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
    }

    /// Empties the directory open at `top`. Holds one directory fd at a time: it descends into a
    /// non-empty subdirectory, and climbs back with `..` once it is empty (safe here because the
    /// walk only ever descended through real directories, never symlinks).
    pub(super) fn clear_contents(&self, top: OwnedFd) -> io::Result<()> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        let mut cur = top;
        'dirs: loop {
            let mut entries = rfs::Dir::read_from(&cur)?;
            while let Some(entry) = entries.read() {
                let entry = entry?;
                let name = entry.file_name().to_bytes();
                if name == b"." || name == b".." {
                    continue;
                }
                let is_dir = match entry.file_type() {
                    FileType::Directory => true,
                    FileType::Unknown => {
                        let st = rfs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW)?;
                        FileType::from_raw_mode(st.st_mode) == FileType::Directory
                    }
                    _ => false,
                };
                if !is_dir {
                    rfs::unlinkat(&cur, name, AtFlags::empty())?;
                    continue;
                }
                match rfs::unlinkat(&cur, name, AtFlags::REMOVEDIR) {
                    Ok(()) => continue,
                    Err(Errno::NOTEMPTY | Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                let child = open_dir_read(cur.as_fd(), name)?;
                if rfs::fstat(&child)?.st_dev != self.dev {
                    return Err(io::Error::other(format!(
                        "refusing to remove `{}`: it is another filesystem mounted inside the root",
                        show_bytes(name)
                    )));
                }
                names.push(name.to_vec());
                cur = child;
                continue 'dirs;
            }
            let Some(name) = names.pop() else {
                return Ok(());
            };
            let parent = open_dir_read(cur.as_fd(), b"..")?;
            rfs::unlinkat(&parent, name.as_slice(), AtFlags::REMOVEDIR)?;
            cur = parent;
        }
    }
}
