//! Making a sandbox's tree from a verified image, by the storage backend in force: the one
//! seam `sandbox pull` and `sandbox build` both go through.
//!
//! - `copy`: the image is unpacked into a staging tree (`materialise::materialise`).
//! - `btrfs`: a writable snapshot of the stored subvolume, as a staging tree.
//! - `reflink`: a copy of the stored tree sharing its data, as a staging tree.
//! - `zfs`: a `zfs clone` of the stored image's snapshot, mounted at the machine's path: made
//!   in place, not renamed (a dataset per sandbox; not atomic, as the README says).
//!
//! A staging tree is published by `materialise::publish` (one rename; `--force` swaps).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::host::{Host, Program, run_str};
use super::materialise::{self, Staging, remove_tree};
use super::state::SandboxState;
use super::storage::{self, Backend, Storage, detect, reflink};
use super::store::{self, SNAPSHOT, Store, StoreCtx};
use super::zfs;
use crate::cache::Cache;
use crate::paths::HostPaths;
use crate::progress::Progress;
use crate::pull::FetchedImage;

/// How a sandbox's tree was made: recorded in its state record, shown by `sandbox ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub backend: Backend,
    /// The key of the stored image it shares (every backend but `copy`).
    pub stored: Option<String>,
    /// ZFS: the sandbox's own dataset (the clone).
    pub dataset: Option<String>,
}

/// A sandbox's tree, not yet published.
pub enum Tree<'a> {
    /// A staging tree in the machines dir, published by one rename.
    Staged(Staging),
    /// Already at the machine's path (a ZFS clone): destroyed on drop unless kept.
    InPlace(ZfsClone<'a>),
}

impl Tree<'_> {
    pub fn path(&self) -> &Path {
        match self {
            Tree::Staged(s) => s.path(),
            Tree::InPlace(c) => &c.target,
        }
    }
}

/// A ZFS clone made for a sandbox, destroyed on drop unless kept.
pub struct ZfsClone<'a> {
    host: &'a dyn Host,
    dataset: String,
    target: PathBuf,
    keep: bool,
}

impl ZfsClone<'_> {
    /// The sandbox got through: its dataset stays.
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for ZfsClone<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = zfs::destroy(self.host, &self.dataset) {
            tracing::warn!("could not destroy dataset {}: {e:#}", self.dataset);
        }
        // Without a real mount (or when destroy failed) the files are still there.
        if let Err(e) = remove_tree(&self.target) {
            tracing::warn!("could not remove {}: {e:#}", self.target.display());
        }
    }
}

/// Which backend makes sandboxes in the machines dir, and why (creates the machines dir and
/// the store directory, which the choice probes).
pub fn choose_backend(
    paths: &HostPaths,
    host: &dyn Host,
    requested: Storage,
) -> Result<(Backend, String)> {
    materialise::ensure_machines_dir(&paths.machines_dir)?;
    if requested == Storage::Copy {
        return Ok((Backend::Copy, "asked for".into()));
    }
    let store = Store::new(paths);
    store.create_dir()?;
    let facts = detect::facts(&paths.machines_dir, store.dir(), host)?;
    let (backend, why) = storage::choose(requested, &facts)?;
    tracing::debug!("storage: {backend} ({why})");
    Ok((backend, why))
}

/// What makes sandbox trees on this host.
pub struct PlaceCtx<'a> {
    pub paths: &'a HostPaths,
    pub host: &'a dyn Host,
    pub cache: &'a Cache,
    pub backend: Backend,
    /// Checks the image's cached bytes before they are read (`pull::ensure_intact`), and
    /// gives the image fetched again when they rotted. Not called for a tree the store holds.
    pub intact: &'a dyn Fn(&FetchedImage) -> Result<Option<FetchedImage>>,
}

/// Makes the tree of sandbox `name` from `image` (`source` as shown). For ZFS, `force`
/// removes the sandbox `previous` names first (a dataset cannot be cloned over another).
pub fn make_tree<'a>(
    ctx: &PlaceCtx<'a>,
    image: &FetchedImage,
    source: &str,
    name: &str,
    force: bool,
    previous: Option<&SandboxState>,
    progress: &Progress,
) -> Result<(Tree<'a>, Placement)> {
    let machines_dir = &ctx.paths.machines_dir;
    let st = Store::new(ctx.paths);
    // The image's bytes are read only when no stored tree stands for it.
    let needs_bytes =
        ctx.backend == Backend::Copy || store::lookup(&st, image, ctx.backend)?.is_none();
    let refetched = if needs_bytes {
        (ctx.intact)(image)?
    } else {
        None
    };
    let image = refetched.as_ref().unwrap_or(image);
    if ctx.backend == Backend::Copy {
        let staging = materialise::materialise(ctx.cache, image, machines_dir, name, progress)?;
        let placement = Placement {
            backend: Backend::Copy,
            stored: None,
            dataset: None,
        };
        return Ok((Tree::Staged(staging), placement));
    }
    let zfs_parent = match ctx.backend {
        Backend::Zfs => Some(zfs::parent_dataset(ctx.host, machines_dir)?),
        _ => None,
    };
    let sctx = StoreCtx {
        store: &st,
        host: ctx.host,
        backend: ctx.backend,
        zfs_parent: zfs_parent.as_deref(),
    };
    let (record, fresh) = store::ensure(&sctx, ctx.cache, image, source, progress)?;
    if !fresh {
        progress.finish();
    }
    let mut placement = Placement {
        backend: ctx.backend,
        stored: Some(record.key.clone()),
        dataset: None,
    };
    let tree = match ctx.backend {
        Backend::Btrfs => {
            let path = staging_path(machines_dir, name);
            storage::btrfs::snapshot(ctx.host, &record.tree, &path)?;
            Tree::Staged(Staging::adopt(path))
        }
        Backend::Reflink => {
            let staging = Staging::create(machines_dir, name)?;
            reflink::clone_tree(&record.tree, staging.path()).with_context(|| {
                format!(
                    "copying the stored tree {} with shared data",
                    record.tree.display()
                )
            })?;
            Tree::Staged(staging)
        }
        Backend::Zfs => {
            let origin = record
                .dataset
                .as_deref()
                .context("the stored image's record names no dataset")?;
            let target = machines_dir.join(name);
            let parent = zfs_parent
                .as_deref()
                .context("internal: no parent dataset")?;
            let dataset = format!("{parent}/{name}");
            if materialise::existing_machine(machines_dir, name)? {
                if !force {
                    bail!(
                        "machine `{name}` already exists at {}; pass --force to replace it",
                        target.display()
                    );
                }
                // Unlike the rename of a plain directory this is not atomic: a failure below
                // leaves no sandbox.
                if let Some(old) = previous.and_then(|s| s.zfs_dataset.as_deref()) {
                    zfs::destroy(ctx.host, old)
                        .with_context(|| format!("removing the old sandbox `{name}`"))?;
                }
                remove_tree(&target)?;
            }
            let snap = format!("{origin}@{SNAPSHOT}");
            let mountpoint = format!("mountpoint={}", target.display());
            run_str(
                ctx.host,
                Program::Zfs,
                &["clone", "-o", &mountpoint, &snap, &dataset],
            )?;
            let clone = ZfsClone {
                host: ctx.host,
                dataset: dataset.clone(),
                target: target.clone(),
                keep: false,
            };
            // A real clone is mounted there already.
            if !target.is_dir() {
                fs_err::create_dir(&target)?;
            }
            placement.dataset = Some(dataset);
            Tree::InPlace(clone)
        }
        Backend::Copy => unreachable!("handled above"),
    };
    Ok((tree, placement))
}

fn staging_path(machines_dir: &Path, name: &str) -> PathBuf {
    machines_dir.join(format!(".#{name}{:08x}", rand::random::<u32>()))
}
