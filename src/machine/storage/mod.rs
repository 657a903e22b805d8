//! How a sandbox's tree is made from a verified image: the storage backends.
//!
//! The first sandbox of an image unpacks it once into the unpacked-image store
//! (`machine::store`); later sandboxes of that image are made from the stored tree, by the
//! cheapest means the machines dir's filesystem offers:
//! - `zfs`: the stored image is a dataset with a snapshot; each sandbox a `zfs clone` of it.
//! - `btrfs`: the stored image is a read-only subvolume; each sandbox a writable snapshot.
//! - `reflink`: a copy of the stored tree whose file data shares extents (`FICLONE`), where
//!   the store and the machines dir share one filesystem that can (XFS, btrfs).
//! - `copy`: anything else (ext4): the image is unpacked for each sandbox, as before; no store.
//!
//! [`choose`] is pure: it decides from [`FsFacts`], which `detect` gathers from the host.

pub mod btrfs;
pub mod detect;
pub mod reflink;

use std::fmt;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// `--storage`: what the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// The best the machines dir's filesystem offers.
    #[default]
    Auto,
    Zfs,
    Btrfs,
    Reflink,
    Copy,
}

impl Storage {
    pub fn as_str(self) -> &'static str {
        match self {
            Storage::Auto => "auto",
            Storage::Zfs => "zfs",
            Storage::Btrfs => "btrfs",
            Storage::Reflink => "reflink",
            Storage::Copy => "copy",
        }
    }

    pub fn parse(s: &str) -> Result<Storage> {
        Ok(match s {
            "auto" => Storage::Auto,
            "zfs" => Storage::Zfs,
            "btrfs" => Storage::Btrfs,
            "reflink" => Storage::Reflink,
            "copy" => Storage::Copy,
            _ => bail!("`{s}` is not a storage backend: auto, zfs, btrfs, reflink or copy"),
        })
    }
}

/// The backend in use for one sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Zfs,
    Btrfs,
    Reflink,
    Copy,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Zfs => "zfs",
            Backend::Btrfs => "btrfs",
            Backend::Reflink => "reflink",
            Backend::Copy => "copy",
        }
    }

    /// Whether sandboxes of this backend are made from the unpacked-image store.
    pub fn uses_store(self) -> bool {
        self != Backend::Copy
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A filesystem as `statfs(2)` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Zfs,
    Btrfs,
    Other,
}

/// What the host offers, as far as the choice of a backend goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsFacts {
    pub machines_fs: FsKind,
    pub store_fs: FsKind,
    /// A file in the store could be cloned (`FICLONE`) into the machines dir: one filesystem,
    /// and one that shares extents.
    pub reflink: bool,
    /// `zfs` can run (not under `--root` without `$SANDBOX_ZFS`).
    pub zfs_runs: bool,
    /// `btrfs` can run.
    pub btrfs_runs: bool,
}

/// The backend for `requested` on a host with `facts`, and why. An explicit backend the host
/// cannot serve is an error that says what is missing; `auto` falls back to the next one.
pub fn choose(requested: Storage, facts: &FsFacts) -> Result<(Backend, String)> {
    let zfs = || -> Result<String, String> {
        match (facts.machines_fs, facts.zfs_runs) {
            (FsKind::Zfs, true) => Ok("the machines dir is on ZFS".into()),
            (FsKind::Zfs, false) => Err("the machines dir is on ZFS, but zfs cannot run".into()),
            _ => Err("the machines dir is not on ZFS".into()),
        }
    };
    let btrfs = || -> Result<String, String> {
        if facts.machines_fs != FsKind::Btrfs {
            return Err("the machines dir is not on btrfs".into());
        }
        if facts.store_fs != FsKind::Btrfs || !facts.reflink {
            return Err(
                "the store (<sandboxes_dir>/store) is not on the machines dir's btrfs filesystem"
                    .into(),
            );
        }
        if !facts.btrfs_runs {
            return Err("the machines dir is on btrfs, but btrfs cannot run".into());
        }
        Ok("the machines dir and the store share a btrfs filesystem".into())
    };
    let reflink = || -> Result<String, String> {
        if facts.reflink {
            Ok("the machines dir and the store share a filesystem with reflinks".into())
        } else {
            Err(
                "a file of the store cannot be reflinked into the machines dir (another \
                 filesystem, or one without reflinks)"
                    .into(),
            )
        }
    };
    let pick = |backend: Backend, check: &dyn Fn() -> Result<String, String>| match check() {
        Ok(why) => Ok((backend, why)),
        Err(why) => bail!("--storage={backend}: {why}"),
    };
    match requested {
        Storage::Zfs => pick(Backend::Zfs, &zfs),
        Storage::Btrfs => pick(Backend::Btrfs, &btrfs),
        Storage::Reflink => pick(Backend::Reflink, &reflink),
        Storage::Copy => Ok((Backend::Copy, "asked for".into())),
        Storage::Auto => {
            if let Ok(why) = zfs() {
                return Ok((Backend::Zfs, why));
            }
            if let Ok(why) = btrfs() {
                return Ok((Backend::Btrfs, why));
            }
            match reflink() {
                Ok(why) => Ok((Backend::Reflink, why)),
                Err(why) => Ok((Backend::Copy, why)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(machines_fs: FsKind, store_fs: FsKind, reflink: bool) -> FsFacts {
        FsFacts {
            machines_fs,
            store_fs,
            reflink,
            zfs_runs: true,
            btrfs_runs: true,
        }
    }

    #[test]
    fn auto_takes_the_best_the_filesystem_offers() {
        let cases = [
            (facts(FsKind::Zfs, FsKind::Other, false), Backend::Zfs),
            (facts(FsKind::Btrfs, FsKind::Btrfs, true), Backend::Btrfs),
            // Two btrfs filesystems: nothing can be shared.
            (facts(FsKind::Btrfs, FsKind::Btrfs, false), Backend::Copy),
            (facts(FsKind::Other, FsKind::Other, true), Backend::Reflink),
            (facts(FsKind::Other, FsKind::Other, false), Backend::Copy),
        ];
        for (f, want) in cases {
            assert_eq!(choose(Storage::Auto, &f).unwrap().0, want, "{f:?}");
        }
        let mut no_zfs = facts(FsKind::Zfs, FsKind::Other, false);
        no_zfs.zfs_runs = false;
        assert_eq!(choose(Storage::Auto, &no_zfs).unwrap().0, Backend::Copy);
        let mut no_btrfs = facts(FsKind::Btrfs, FsKind::Btrfs, true);
        no_btrfs.btrfs_runs = false;
        assert_eq!(
            choose(Storage::Auto, &no_btrfs).unwrap().0,
            Backend::Reflink
        );
    }

    #[test]
    fn an_explicit_backend_the_host_cannot_serve_says_why() {
        let ext4 = facts(FsKind::Other, FsKind::Other, false);
        for (asked, says) in [
            (Storage::Zfs, "not on ZFS"),
            (Storage::Btrfs, "not on btrfs"),
            (Storage::Reflink, "cannot be reflinked"),
        ] {
            let e = choose(asked, &ext4).unwrap_err().to_string();
            assert!(e.contains(says), "{asked:?}: {e}");
        }
        assert_eq!(choose(Storage::Copy, &ext4).unwrap().0, Backend::Copy);
        let zfs = facts(FsKind::Zfs, FsKind::Zfs, false);
        assert_eq!(choose(Storage::Copy, &zfs).unwrap().0, Backend::Copy);
    }

    #[test]
    fn storage_names_parse_as_the_cli_spells_them() {
        for (s, want) in [
            ("auto", Storage::Auto),
            ("zfs", Storage::Zfs),
            ("btrfs", Storage::Btrfs),
            ("reflink", Storage::Reflink),
            ("copy", Storage::Copy),
        ] {
            assert_eq!(Storage::parse(s).unwrap(), want);
        }
        assert!(Storage::parse("overlay").is_err());
    }
}
