//! Listing a directory inside the root (OCI opaque whiteouts keep the entries their own layer
//! wrote and remove the rest, so they must see names one by one).

use std::os::fd::AsFd;

use rustix::fs::{self as rfs, AtFlags, FileType};
use rustix::io::Errno;

use super::resolve::ResolveError;
use super::{Root, errno_io, open_dir_read};
use crate::unpack::error::UnpackError;
use crate::unpack::path::EntryPath;

/// One name in a listed directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    pub name: Vec<u8>,
    /// A real directory (never a symlink to one).
    pub is_dir: bool,
}

impl Root {
    /// The names in the directory `entry` (without `.` and `..`), or `None` when it does not
    /// exist or is not a directory. The last component is not followed (a symlink there is
    /// "not a directory"); parents resolve like any entry's, so one that leads out is an error.
    pub(crate) fn list_dir(&self, entry: &EntryPath) -> Result<Option<Vec<Listed>>, UnpackError> {
        let opened = match entry.split_last() {
            None => open_dir_read(self.fd.as_fd(), b"."),
            Some((parent, name)) => match self.dir_of(parent, false) {
                Ok(dir) => open_dir_read(dir.fd.as_fd(), name),
                Err(ResolveError::Missing { .. } | ResolveError::NotDir { .. }) => return Ok(None),
                Err(e) => return Err(e.for_entry(entry)),
            },
        };
        let fd = match opened {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => return Ok(None),
            Err(e) => return Err(errno_io(entry, "opening directory", entry.normalized(), e)),
        };
        let listing_error = |e: Errno| errno_io(entry, "listing", entry.normalized(), e);
        let mut out = Vec::new();
        let mut dir = rfs::Dir::read_from(&fd).map_err(listing_error)?;
        while let Some(item) = dir.read() {
            let item = item.map_err(listing_error)?;
            let name = item.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            let is_dir = match item.file_type() {
                FileType::Directory => true,
                FileType::Unknown => rfs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
                    .map_err(listing_error)?,
                _ => false,
            };
            out.push(Listed {
                name: name.to_vec(),
                is_dir,
            });
        }
        Ok(Some(out))
    }
}
