//! Editing a finished rootfs (what `sandbox build` layers over an unpacked image): writing a
//! file or symlink, reading a small file, asking what is at a path. The same rules as for
//! archive entries hold: parents are resolved inside the root, the last component is never
//! followed (a file is written by unlinking what was there and creating it `O_EXCL`), so an
//! image that plants `etc/machine-id -> /etc/shadow` gets its symlink replaced, not the
//! host's file written.

use std::io::{Read as _, Write as _};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::resolve::ResolveError;
use super::{Root, errno_io};
use crate::unpack::error::UnpackError;
use crate::unpack::path::EntryPath;

/// What is at a path inside the root, the last component not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Existing {
    /// Nothing (or a parent is missing or not a directory).
    Missing,
    File,
    Dir,
    /// A symlink and its target, as stored.
    Symlink(Vec<u8>),
    /// A device node, fifo or socket.
    Other,
}

impl Root {
    /// What is at `rel`, without following its last component.
    pub fn inspect(&self, rel: &Path) -> Result<Existing, UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        let Some((parent, name)) = entry.split_last() else {
            return Ok(Existing::Dir);
        };
        let dir = match self.dir_of(parent, false) {
            Ok(dir) => dir,
            Err(ResolveError::Missing { .. } | ResolveError::NotDir { .. }) => {
                return Ok(Existing::Missing);
            }
            Err(e) => return Err(e.for_entry(&entry)),
        };
        let stat = match rfs::statat(dir.fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(Existing::Missing),
            Err(e) => return Err(errno_io(&entry, "inspecting", name, e)),
        };
        Ok(match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Existing::File,
            FileType::Directory => Existing::Dir,
            FileType::Symlink => {
                let target = rfs::readlinkat(dir.fd.as_fd(), name, Vec::new())
                    .map_err(|e| errno_io(&entry, "reading symlink", name, e))?;
                Existing::Symlink(target.into_bytes())
            }
            _ => Existing::Other,
        })
    }

    /// The bytes of the regular file at `rel` (its last component not followed), at most
    /// `limit` of them; `None` when it is missing or not a regular file.
    pub fn read_file(&self, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>, UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        let Some((parent, name)) = entry.split_last() else {
            return Ok(None);
        };
        let dir = match self.dir_of(parent, false) {
            Ok(dir) => dir,
            Err(ResolveError::Missing { .. } | ResolveError::NotDir { .. }) => return Ok(None),
            Err(e) => return Err(e.for_entry(&entry)),
        };
        // O_NONBLOCK: a fifo planted at the path must not hang the build.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rfs::openat(dir.fd.as_fd(), name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP | Errno::NXIO) => return Ok(None),
            Err(e) => return Err(errno_io(&entry, "opening", name, e)),
        };
        let stat = rfs::fstat(&fd).map_err(|e| errno_io(&entry, "inspecting", name, e))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|e| UnpackError::io(&entry.show(), "reading", e))?;
        Ok(Some(data))
    }

    /// Writes `data` as a new regular file at `rel` with `mode` (permission bits only),
    /// creating missing parents (0755). A file, symlink or special file already there is
    /// replaced; a directory is an error, as removing a tree is never what writing a file means.
    pub fn write_file(&self, rel: &Path, mode: u32, data: &[u8]) -> Result<(), UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        self.refuse_dir(&entry, rel)?;
        let mut file = self.create_file(&entry)?;
        file.write_all(data)
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(mode & 0o777)))
            .map_err(|e| UnpackError::io(&entry.show(), "writing", e))
    }

    /// Creates a symlink at `rel` to `target`, replacing a file or symlink there (not a
    /// directory, see [`Root::write_file`]).
    pub fn write_symlink(&self, rel: &Path, target: &[u8]) -> Result<(), UnpackError> {
        let entry = EntryPath::parse(rel.as_os_str().as_bytes())?;
        self.refuse_dir(&entry, rel)?;
        self.create_symlink(&entry, target).map(|_| ())
    }

    fn refuse_dir(&self, entry: &EntryPath, rel: &Path) -> Result<(), UnpackError> {
        if self.inspect(rel)? == Existing::Dir {
            return Err(UnpackError::invalid(
                &entry.show(),
                "a directory is in the way (not replaced)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_replace_planted_symlinks_and_never_leave_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("shadow");
        fs_err::write(&victim, b"secret").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs_err::create_dir_all(d.join("etc")).unwrap();
        std::os::unix::fs::symlink(&victim, d.join("etc/machine-id")).unwrap();
        std::os::unix::fs::symlink(outside.path(), d.join("out")).unwrap();
        std::os::unix::fs::symlink("etc", d.join("conf")).unwrap();
        let root = Root::open(d).unwrap();

        assert_eq!(
            root.inspect(Path::new("etc/machine-id")).unwrap(),
            Existing::Symlink(victim.as_os_str().as_bytes().to_vec())
        );
        // Reading does not follow the planted symlink either.
        assert_eq!(
            root.read_file(Path::new("etc/machine-id"), 64).unwrap(),
            None
        );
        root.write_file(Path::new("etc/machine-id"), 0o444, b"")
            .unwrap();
        assert_eq!(fs_err::read(&victim).unwrap(), b"secret");
        let meta = d.join("etc/machine-id").symlink_metadata().unwrap();
        assert!(meta.is_file() && meta.len() == 0);
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);

        // A parent symlink leading out is refused; one staying inside is followed.
        assert!(root.write_file(Path::new("out/x"), 0o644, b"x").is_err());
        assert!(!outside.path().join("x").exists());
        root.write_file(Path::new("conf/new/file"), 0o600, b"in")
            .unwrap();
        assert_eq!(fs_err::read(d.join("etc/new/file")).unwrap(), b"in");
        assert_eq!(
            root.read_file(Path::new("conf/new/file"), 1).unwrap(),
            Some(b"i".to_vec())
        );

        // A directory in the way is not replaced by a file or a symlink.
        assert!(root.write_file(Path::new("etc"), 0o644, b"x").is_err());
        assert!(root.write_symlink(Path::new("etc"), b"/tmp").is_err());
        assert!(d.join("etc/new/file").is_file());
        root.write_symlink(Path::new("etc/link"), b"/nowhere")
            .unwrap();
        assert_eq!(
            fs_err::read_link(d.join("etc/link")).unwrap(),
            Path::new("/nowhere")
        );
        assert_eq!(
            root.inspect(Path::new("missing/x")).unwrap(),
            Existing::Missing
        );
    }
}
