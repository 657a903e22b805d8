//! A real filesystem on a loop file (btrfs, or XFS with reflinks) mounted in a test's root,
//! unmounted and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct LoopFs {
    mountpoint: PathBuf,
}

#[derive(Debug, Clone, Copy)]
pub enum FsType {
    Btrfs,
    XfsReflink,
    /// Plain ext4 (small ones fill up for disk-full tests).
    Ext4,
}

impl LoopFs {
    /// Makes a `size_mib` filesystem in `image` and mounts it on `mountpoint` (created).
    pub fn mount(kind: FsType, image: &Path, mountpoint: &Path, size_mib: u64) -> LoopFs {
        let f = std::fs::File::create(image).expect("creating the loop image");
        f.set_len(size_mib << 20).expect("sizing the loop image");
        drop(f);
        let (mkfs, args): (&str, &[&str]) = match kind {
            FsType::Btrfs => ("mkfs.btrfs", &["-q", "-f"]),
            FsType::XfsReflink => ("mkfs.xfs", &["-q", "-f", "-m", "reflink=1"]),
            FsType::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
        };
        super::run_tool(
            Command::new(super::require_tool(mkfs))
                .args(args)
                .arg(image),
            None,
        );
        std::fs::create_dir_all(mountpoint).expect("creating the mountpoint");
        super::run_tool(
            Command::new(super::require_tool("mount"))
                .args(["-o", "loop"])
                .arg(image)
                .arg(mountpoint),
            None,
        );
        LoopFs {
            mountpoint: mountpoint.to_path_buf(),
        }
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .status();
    }
}
