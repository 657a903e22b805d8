//! A copy of a stored tree whose file data shares extents with it (`FICLONE`): the metadata
//! (owners, modes, times, extended attributes with ACLs and file capabilities, device nodes,
//! symlinks, hard links) is copied, the data is not.
//!
//! The source is the read-only store; the destination a fresh staging directory (mode 0700)
//! that only this process writes to. The walk never follows a symlink: every path used under
//! the destination names a directory this copy made itself.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rustix::fs::{
    self as rfs, AtFlags, CWD, Dev, FileType, Mode, Timespec, Timestamps, XattrFlags,
};

/// What a copy made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CopyStats {
    pub entries: u64,
    /// Bytes of file data shared with the source rather than written.
    pub shared_bytes: u64,
}

/// Copies the tree `src` into the existing, empty directory `dst` (which gets `src`'s owner,
/// mode, times and attributes), sharing every regular file's data.
pub fn clone_tree(src: &Path, dst: &Path) -> Result<CopyStats> {
    let mut copy = Copy {
        stats: CopyStats::default(),
        links: HashMap::new(),
    };
    copy.dir_contents(src, dst)?;
    let meta = fs_err::symlink_metadata(src)?;
    apply_meta(src, dst, &meta)?;
    Ok(copy.stats)
}

struct Copy {
    stats: CopyStats,
    /// (dev, ino) of a source file with several links → its first copy.
    links: HashMap<(u64, u64), PathBuf>,
}

impl Copy {
    fn dir_contents(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let mut names: Vec<_> = fs_err::read_dir(src)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            self.entry(&src.join(&name), &dst.join(&name))?;
        }
        Ok(())
    }

    fn entry(&mut self, src: &Path, dst: &Path) -> Result<()> {
        let meta = fs_err::symlink_metadata(src)?;
        let ft = meta.file_type();
        self.stats.entries += 1;
        if ft.is_dir() {
            rfs::mkdirat(CWD, dst, Mode::from_raw_mode(0o700))
                .with_context(|| format!("creating {}", dst.display()))?;
            self.dir_contents(src, dst)?;
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                if let Some(first) = self.links.get(&(meta.dev(), meta.ino())) {
                    fs_err::hard_link(first, dst)?;
                    return Ok(());
                }
                self.links
                    .insert((meta.dev(), meta.ino()), dst.to_path_buf());
            }
            let from = fs_err::File::open(src)?;
            let to = fs_err::File::create_new(dst)?;
            rfs::ioctl_ficlone(to.file(), from.file()).with_context(|| {
                format!(
                    "sharing the data of {} with {} (FICLONE)",
                    src.display(),
                    dst.display()
                )
            })?;
            self.stats.shared_bytes += meta.len();
        } else if ft.is_symlink() {
            let target = fs_err::read_link(src)?;
            rfs::symlinkat(&target, CWD, dst)
                .with_context(|| format!("creating the symlink {}", dst.display()))?;
        } else {
            let kind = if ft.is_block_device() {
                FileType::BlockDevice
            } else if ft.is_char_device() {
                FileType::CharacterDevice
            } else if ft.is_fifo() {
                FileType::Fifo
            } else {
                FileType::Socket
            };
            rfs::mknodat(
                CWD,
                dst,
                kind,
                Mode::from_raw_mode(0o600),
                meta.rdev() as Dev,
            )
            .with_context(|| format!("creating the node {}", dst.display()))?;
        }
        apply_meta(src, dst, &meta)
    }
}

/// Owner, then mode (a chown clears set-id bits), then attributes (a chown clears file
/// capabilities), then times. Never follows a symlink.
fn apply_meta(src: &Path, dst: &Path, meta: &std::fs::Metadata) -> Result<()> {
    let is_link = meta.file_type().is_symlink();
    rfs::chownat(
        CWD,
        dst,
        Some(rfs::Uid::from_raw(meta.uid())),
        Some(rfs::Gid::from_raw(meta.gid())),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_context(|| format!("chown {}", dst.display()))?;
    if !is_link {
        rfs::chmodat(
            CWD,
            dst,
            Mode::from_raw_mode(meta.mode() & 0o7777),
            AtFlags::empty(),
        )
        .with_context(|| format!("chmod {}", dst.display()))?;
    }
    copy_xattrs(src, dst)?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec() as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec() as _,
        },
    };
    rfs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .with_context(|| format!("setting the times of {}", dst.display()))?;
    Ok(())
}

fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let names = list_xattrs(src)?;
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let value = get_xattr(src, name)?;
        rfs::lsetxattr(dst, name, &value, XattrFlags::empty()).with_context(|| {
            format!(
                "setting the attribute {} of {}",
                OsStr::from_bytes(name).to_string_lossy(),
                dst.display()
            )
        })?;
    }
    Ok(())
}

fn list_xattrs(path: &Path) -> Result<Vec<u8>> {
    grow_read(1024, |buf| rfs::llistxattr(path, buf))
        .with_context(|| format!("listing the attributes of {}", path.display()))
}

fn get_xattr(path: &Path, name: &[u8]) -> Result<Vec<u8>> {
    grow_read(256, |buf| rfs::lgetxattr(path, name, buf))
        .with_context(|| format!("reading an attribute of {}", path.display()))
}

/// Calls `read` with a buffer that grows while the kernel says it is too small (`ERANGE`).
fn grow_read(
    start: usize,
    mut read: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; start];
    loop {
        match read(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => {
                let bigger = buf.len() * 4;
                buf.resize(bigger, 0);
            }
            Err(e) => return Err(e.into()),
        }
    }
}
