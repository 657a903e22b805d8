//! Gathering [`FsFacts`] from the host: the filesystem types of the machines dir and the store
//! (`statfs(2)`), whether a store file can be reflinked into the machines dir (tried, on a
//! probe file), and which of `zfs` and `btrfs` can run.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::{FsFacts, FsKind};
use crate::machine::host::{Host, Program};
use crate::machine::zfs;

/// `statfs(2)` `f_type` of btrfs.
const BTRFS_SUPER_MAGIC: i64 = 0x9123_683e;

pub fn fs_kind(dir: &Path) -> Result<FsKind> {
    if zfs::on_zfs(dir)? {
        return Ok(FsKind::Zfs);
    }
    let st = rustix::fs::statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(if st.f_type as i64 == BTRFS_SUPER_MAGIC {
        FsKind::Btrfs
    } else {
        FsKind::Other
    })
}

/// What the host offers for sandboxes in `machines_dir` made from the store in `store_dir`
/// (both exist).
pub fn facts(machines_dir: &Path, store_dir: &Path, host: &dyn Host) -> Result<FsFacts> {
    Ok(FsFacts {
        machines_fs: fs_kind(machines_dir)?,
        store_fs: fs_kind(store_dir)?,
        reflink: can_reflink(store_dir, machines_dir),
        zfs_runs: host.available(Program::Zfs),
        btrfs_runs: host.available(Program::Btrfs),
    })
}

/// Whether a file in `from` can be cloned into `to`: one filesystem, and one that shares
/// extents. Tried on a small probe file, removed again.
pub fn can_reflink(from: &Path, to: &Path) -> bool {
    // Named like a staging tree (`.#NAME` and 8 hex digits), so that what a killed process
    // left is swept as one (`cache gc`).
    let tag = format!("{:08x}", rand::random::<u32>());
    let src = from.join(format!(".#reflink-probe{tag}"));
    let dst = to.join(format!(".#reflink-probe{tag}"));
    let tried = (|| -> std::io::Result<()> {
        let mut s = fs_err::File::create_new(&src)?;
        s.write_all(b"probe")?;
        s.sync_all()?;
        let d = fs_err::File::create_new(&dst)?;
        rustix::fs::ioctl_ficlone(d.file(), s.file())?;
        Ok(())
    })();
    let _ = fs_err::remove_file(&src);
    let _ = fs_err::remove_file(&dst);
    if let Err(e) = &tried {
        tracing::debug!(
            "no reflinks from {} to {}: {e}",
            from.display(),
            to.display()
        );
    }
    tried.is_ok()
}
