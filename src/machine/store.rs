//! The unpacked-image store, `<sandboxes_dir>/store/`: each verified image unpacked once, kept
//! read-only, and the source of every later sandbox of that image (`machine::place`).
//!
//! `store/<key>/` is the tree (a plain directory, a read-only btrfs subvolume, or the mount of
//! a ZFS dataset `<parent>/sandbox-images/<key>` with the snapshot `@sandbox`), and
//! `store/<key>.json` its record: the image it came from, how that image was verified, the
//! backend, and a seal over the tree's metadata that `cache fsck` checks again. The key is
//! derived from the image digest, the unpack options that change the tree and the backend
//! ([`key_for`]). A record is written only once its tree is complete and read-only; a tree
//! without a record is a leftover of a dead process and is removed by the next make of that
//! key (under its lock). `cache gc` removes stored images no sandbox uses.

use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::host::{Host, Program, run_str};
use super::materialise::{self, move_contents_up, remove_tree, set_immutable};
use super::storage::{Backend, btrfs};
use super::zfs;
use crate::atomic::write_file;
use crate::cache::{Cache, Verification};
use crate::digest::Digest;
use crate::paths::HostPaths;
use crate::progress::Progress;
use crate::pull::FetchedImage;
use crate::unpack::UnpackOptions;

/// The snapshot of a stored image's dataset that sandboxes are cloned from.
pub const SNAPSHOT: &str = "sandbox";
/// The dataset (under the machines dir's parent dataset) that holds stored images.
pub const IMAGES_DATASET: &str = "sandbox-images";

/// A stored image's record, `store/<key>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    pub key: String,
    /// The image source, as shown (credentials removed).
    pub source: String,
    /// The image digest (a tarball's, or an OCI manifest's).
    pub image: Digest,
    pub verification: Verification,
    pub backend: Backend,
    pub tree: PathBuf,
    /// ZFS: the dataset whose `@sandbox` snapshot sandboxes are cloned from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    pub preserve_owner: bool,
    pub keep_selinux: bool,
    /// sha256 over every entry's path, type, mode, owner, size, mtime and link target.
    pub seal: Digest,
    pub entries: u64,
    pub made_at: String,
}

/// The store's directory and the names in it.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn new(paths: &HostPaths) -> Store {
        Store {
            dir: paths.sandboxes_dir.join("store"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the store directory (0700: nobody else looks into stored trees).
    pub fn create_dir(&self) -> Result<()> {
        if !self.dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .with_context(|| format!("creating the image store {}", self.dir.display()))?;
        }
        Ok(())
    }

    pub fn tree(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    pub fn read(&self, key: &str) -> Result<Option<StoreRecord>> {
        let path = self.record_path(key);
        match fs_err::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("reading the store record {}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every record, in key order; unreadable ones are reported by `cache fsck`, skipped here.
    pub fn list(&self) -> Result<Vec<StoreRecord>> {
        let mut out = Vec::new();
        let entries = match fs_err::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e.into()),
        };
        let mut keys: Vec<String> = Vec::new();
        for entry in entries {
            let name = entry?.file_name();
            if let Some(key) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
                keys.push(key.to_string());
            }
        }
        keys.sort();
        for key in keys {
            match self.read(&key) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => {}
                Err(e) => tracing::warn!("{e:#}"),
            }
        }
        Ok(out)
    }

    fn write(&self, r: &StoreRecord) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(r).context("encoding a store record")?;
        json.push(b'\n');
        write_file(&self.record_path(&r.key), &json)
    }

    /// Removes a stored image (its tree or dataset, then its record).
    pub fn remove(&self, host: &dyn Host, r: &StoreRecord) -> Result<()> {
        remove_tree_of(host, r.backend, &r.tree, r.dataset.as_deref())?;
        fs_err::remove_file(self.record_path(&r.key))?;
        Ok(())
    }
}

/// What `cache gc` (or `cache rm`) did to the store.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StoreSweep {
    /// Stored images removed: `KEY (SOURCE)`.
    pub removed: Vec<String>,
    /// Stored images kept because sandboxes use them: `KEY (SOURCE): used by A, B`.
    pub kept: Vec<String>,
}

/// The sandboxes that use the stored image `r`: state records that name it and whose rootfs
/// is there, and for ZFS every clone of its snapshot.
pub fn users(paths: &HostPaths, host: &dyn Host, r: &StoreRecord) -> Result<Vec<String>> {
    let mut users = Vec::new();
    for name in super::state::names(&paths.sandboxes_dir)? {
        let view = super::state::read_view(&paths.sandboxes_dir, &name).unwrap_or_default();
        if view.and_then(|v| v.stored_image).as_deref() == Some(r.key.as_str())
            && fs_err::symlink_metadata(paths.machines_dir.join(&name)).is_ok()
        {
            users.push(name);
        }
    }
    if let Some(ds) = &r.dataset
        && dataset_exists(host, ds)
    {
        // Whatever the records say, a dataset with clones cannot go.
        let snap = format!("{ds}@{SNAPSHOT}");
        let out = run_str(host, Program::Zfs, &["list", "-H", "-o", "clones", &snap])?;
        for clone in out
            .stdout
            .trim()
            .split(',')
            .filter(|c| !c.is_empty() && *c != "-")
        {
            let shown = format!("the clone {clone}");
            if !users.iter().any(|u| clone.ends_with(&format!("/{u}"))) {
                users.push(shown);
            }
        }
    }
    Ok(users)
}

/// Removes every stored image that `pick` selects and no sandbox uses.
pub fn sweep(
    paths: &HostPaths,
    host: &dyn Host,
    pick: impl Fn(&StoreRecord) -> bool,
) -> Result<StoreSweep> {
    let store = Store::new(paths);
    let mut out = StoreSweep::default();
    for r in store.list()?.into_iter().filter(|r| pick(r)) {
        let users = users(paths, host, &r)?;
        let shown = format!("{} ({})", r.key, r.source);
        if users.is_empty() {
            store.remove(host, &r)?;
            out.removed.push(shown);
        } else {
            out.kept
                .push(format!("{shown}: used by {}", users.join(", ")));
        }
    }
    Ok(out)
}

/// What `cache fsck` found in the store.
#[derive(Debug, Default, Clone, Serialize)]
pub struct StoreCheck {
    pub checked: usize,
    /// Trees gone or changed since they were stored (their seal no longer matches); removed
    /// when no sandbox uses them, so the next pull stores the image afresh.
    pub corrupt: Vec<String>,
    /// Stored images whose image no cache ref names any more (`cache rm`, or an export to
    /// another host): kept, but nothing in the cache vouches for them now.
    pub unvouched: Vec<String>,
}

/// Checks every stored image: its tree against its seal, and its provenance against the
/// cache's refs (`vouched`: the image digests the refs name, with how each was verified).
pub fn check(
    paths: &HostPaths,
    host: &dyn Host,
    vouched: &[(Digest, Verification)],
) -> Result<StoreCheck> {
    let store = Store::new(paths);
    let mut out = StoreCheck::default();
    for r in store.list()? {
        out.checked += 1;
        let shown = format!("{} ({})", r.key, r.source);
        let problem = if !r.tree.is_dir() {
            Some(format!("{shown}: its tree {} is gone", r.tree.display()))
        } else {
            match seal(&r.tree) {
                Ok((s, _)) if s == r.seal => None,
                Ok(_) => Some(format!(
                    "{shown}: {} changed since it was stored",
                    r.tree.display()
                )),
                Err(e) => Some(format!("{shown}: {e:#}")),
            }
        };
        if let Some(p) = problem {
            let users = users(paths, host, &r)?;
            if users.is_empty() {
                store.remove(host, &r)?;
                out.corrupt.push(format!("{p}; removed"));
            } else {
                out.corrupt
                    .push(format!("{p}; kept, used by {}", users.join(", ")));
            }
            continue;
        }
        let vouched_for = vouched
            .iter()
            .any(|(d, v)| *d == r.image && v.mode == r.verification.mode);
        if !vouched_for {
            out.unvouched.push(format!(
                "{shown}: no cache ref names {} verified as `{}`",
                r.image, r.verification.mode
            ));
        }
    }
    Ok(out)
}

/// The store key of `image` unpacked with `opts` for `backend`. Pure.
pub fn key_for(image: &Digest, opts: &UnpackOptions, backend: Backend) -> String {
    let mut h = Sha256::new();
    h.update(b"sandbox-store-v1\0");
    h.update(image.to_string().as_bytes());
    h.update(
        format!(
            "\0owner={}\0selinux={}\0{backend}",
            opts.preserve_owner, opts.keep_selinux
        )
        .as_bytes(),
    );
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    hex[..32].to_string()
}

/// The stored tree of `image` for `backend`, when the store holds a complete one.
pub fn lookup(
    store: &Store,
    image: &FetchedImage,
    backend: Backend,
) -> Result<Option<StoreRecord>> {
    if !backend.uses_store() {
        return Ok(None);
    }
    let key = key_for(
        &image.image.digest,
        &UnpackOptions::for_this_host()?,
        backend,
    );
    Ok(store
        .read(&key)?
        .filter(|r| r.backend == backend && r.tree.is_dir()))
}

/// What makes a stored image on this host.
pub struct StoreCtx<'a> {
    pub store: &'a Store,
    pub host: &'a dyn Host,
    pub backend: Backend,
    /// ZFS: the dataset holding the machines dir (stored images go under it).
    pub zfs_parent: Option<&'a str>,
}

/// The stored tree of `image`, made now (unpacked once) unless it is there already; `true`
/// when it was made by this call.
pub fn ensure(
    ctx: &StoreCtx<'_>,
    cache: &Cache,
    image: &FetchedImage,
    source: &str,
    progress: &Progress,
) -> Result<(StoreRecord, bool)> {
    if !ctx.backend.uses_store() {
        bail!("internal: the {} backend keeps no store", ctx.backend);
    }
    ctx.store.create_dir()?;
    let opts = UnpackOptions::for_this_host()?;
    let key = key_for(&image.image.digest, &opts, ctx.backend);
    let _lock = cache.lock(
        &format!("store-{key}"),
        &format!("another pull storing {source}"),
    )?;
    // Trees of this key a process that died was making.
    materialise::sweep_staging(ctx.store.dir(), &key)?;
    let tree = ctx.store.tree(&key);
    if let Some(r) = ctx.store.read(&key)?
        && r.backend == ctx.backend
        && tree.is_dir()
    {
        tracing::debug!("{source}: using the stored tree {}", tree.display());
        return Ok((r, false));
    }
    let dataset = match (ctx.backend, ctx.zfs_parent) {
        (Backend::Zfs, Some(parent)) => Some(format!("{parent}/{IMAGES_DATASET}/{key}")),
        (Backend::Zfs, None) => bail!("internal: a ZFS store without the parent dataset"),
        _ => None,
    };
    // A tree without a record: what a dead process left.
    if fs_err::symlink_metadata(&tree).is_ok() || dataset.is_some() {
        clear_leftover(ctx, &tree, dataset.as_deref())?;
    }
    tracing::info!(
        "{source}: unpacking it once into the image store ({})",
        ctx.backend
    );
    let made = match ctx.backend {
        Backend::Reflink => {
            let staging = materialise::materialise(cache, image, ctx.store.dir(), &key, progress)?;
            rename_noreplace(staging.path(), &tree)?;
            staging.keep();
            set_immutable(&tree)?;
            Ok(())
        }
        Backend::Btrfs => make_subvolume(ctx, cache, image, &key, &tree, progress),
        Backend::Zfs => make_dataset(
            ctx,
            cache,
            image,
            &key,
            &tree,
            dataset.as_deref().unwrap_or_default(),
            progress,
        ),
        Backend::Copy => unreachable!("checked above"),
    };
    made.with_context(|| format!("storing {source}"))?;
    let (seal, entries) = seal(&tree)?;
    let record = StoreRecord {
        key,
        source: source.to_string(),
        image: image.image.digest,
        verification: image.verification.clone(),
        backend: ctx.backend,
        tree,
        dataset,
        preserve_owner: opts.preserve_owner,
        keep_selinux: opts.keep_selinux,
        seal,
        entries,
        made_at: crate::cache::refs::now_rfc3339(),
    };
    ctx.store.write(&record)?;
    Ok((record, true))
}

fn clear_leftover(ctx: &StoreCtx<'_>, tree: &Path, dataset: Option<&str>) -> Result<()> {
    if let Some(ds) = dataset {
        if !dataset_exists(ctx.host, ds) {
            return remove_tree(tree);
        }
        tracing::warn!("removing the unfinished stored image {ds}");
    } else {
        tracing::warn!("removing the unfinished stored image {}", tree.display());
    }
    remove_tree_of(ctx.host, ctx.backend, tree, dataset)
}

fn remove_tree_of(
    host: &dyn Host,
    backend: Backend,
    tree: &Path,
    dataset: Option<&str>,
) -> Result<()> {
    match (backend, dataset) {
        (Backend::Zfs, Some(ds)) => {
            if dataset_exists(host, ds) {
                zfs::destroy(host, ds)?;
            }
            // Without a real mount (or once destroyed) a directory may stay behind.
            remove_tree(tree)
        }
        (Backend::Btrfs, _) if tree.is_dir() => {
            btrfs::delete(host, tree).or_else(|e| {
                // Not a subvolume (a leftover plain directory): an ordinary removal.
                tracing::debug!("{e:#}");
                remove_tree(tree)
            })
        }
        _ => remove_tree(tree),
    }
}

fn dataset_exists(host: &dyn Host, ds: &str) -> bool {
    run_str(host, Program::Zfs, &["list", "-H", "-o", "name", ds]).is_ok()
}

/// A btrfs subvolume, filled in place (unpacked into a staging dir inside it, then moved up),
/// made read-only, then renamed to `tree`.
fn make_subvolume(
    ctx: &StoreCtx<'_>,
    cache: &Cache,
    image: &FetchedImage,
    key: &str,
    tree: &Path,
    progress: &Progress,
) -> Result<()> {
    let sub = ctx
        .store
        .dir()
        .join(format!(".#{key}{:08x}", rand::random::<u32>()));
    btrfs::create(ctx.host, &sub)?;
    let filled = (|| -> Result<()> {
        let staging = materialise::materialise(cache, image, &sub, key, progress)?;
        move_contents_up(&staging, &sub)?;
        drop(staging);
        rename_noreplace(&sub, tree)?;
        btrfs::set_readonly(ctx.host, tree, true)
    })();
    if let Err(e) = filled {
        for p in [&sub, &tree.to_path_buf()] {
            if p.is_dir() {
                let _ = remove_tree_of(ctx.host, Backend::Btrfs, p, None);
            }
        }
        return Err(e);
    }
    Ok(())
}

/// A ZFS dataset mounted at `tree`, filled in place, snapshotted and made read-only.
fn make_dataset(
    ctx: &StoreCtx<'_>,
    cache: &Cache,
    image: &FetchedImage,
    key: &str,
    tree: &Path,
    dataset: &str,
    progress: &Progress,
) -> Result<()> {
    let container = dataset
        .rsplit_once('/')
        .map(|(c, _)| c.to_string())
        .context("internal: a stored image dataset has a parent")?;
    if !dataset_exists(ctx.host, &container) {
        run_str(
            ctx.host,
            Program::Zfs,
            &[
                "create",
                "-o",
                "canmount=off",
                "-o",
                "mountpoint=none",
                &container,
            ],
        )?;
    }
    zfs::create(ctx.host, dataset, tree)?;
    let filled = (|| -> Result<()> {
        // A real `zfs create` mounts the new, empty dataset there.
        if !tree.is_dir() {
            fs_err::create_dir(tree)?;
        }
        let staging = materialise::materialise(cache, image, tree, key, progress)?;
        move_contents_up(&staging, tree)?;
        drop(staging);
        let snap = format!("{dataset}@{SNAPSHOT}");
        run_str(ctx.host, Program::Zfs, &["snapshot", &snap])?;
        run_str(ctx.host, Program::Zfs, &["set", "readonly=on", dataset])?;
        Ok(())
    })();
    if let Err(e) = filled {
        let _ = remove_tree_of(ctx.host, Backend::Zfs, tree, Some(dataset));
        return Err(e);
    }
    Ok(())
}

fn rename_noreplace(from: &Path, to: &Path) -> Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    )
    .with_context(|| format!("renaming {} to {}", from.display(), to.display()))
}

/// A digest over the metadata of every entry of `tree` (in name order, never following a
/// symlink), and how many entries it has: what a changed stored tree no longer matches.
pub fn seal(tree: &Path) -> Result<(Digest, u64)> {
    let mut h = Sha256::new();
    let mut entries = 0;
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = tree.join(&rel);
        let mut names: Vec<_> = fs_err::read_dir(&dir)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names.into_iter().rev() {
            let path = dir.join(&name);
            let m = fs_err::symlink_metadata(&path)?;
            let r = rel.join(&name);
            entries += 1;
            let mut line = Vec::new();
            line.extend_from_slice(r.as_os_str().as_bytes());
            write!(
                line,
                "\0{:o}\0{}:{}\0{}\0{}.{}\0{}",
                m.mode(),
                m.uid(),
                m.gid(),
                if m.is_dir() { 0 } else { m.len() },
                m.mtime(),
                m.mtime_nsec(),
                m.rdev()
            )
            .context("internal: formatting a seal line")?;
            if m.file_type().is_symlink() {
                line.push(0);
                line.extend_from_slice(fs_err::read_link(&path)?.as_os_str().as_bytes());
            }
            line.push(b'\n');
            h.update(&line);
            if m.is_dir() {
                stack.push(r);
            }
        }
    }
    let bytes: [u8; 32] = h.finalize().into();
    Ok((Digest::from_bytes(bytes), entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_image_the_options_and_the_backend() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let root = UnpackOptions {
            preserve_owner: true,
            keep_selinux: false,
            ..Default::default()
        };
        let user = UnpackOptions {
            preserve_owner: false,
            keep_selinux: false,
            ..Default::default()
        };
        let k = key_for(&a, &root, Backend::Btrfs);
        assert_eq!(k.len(), 32);
        assert_eq!(k, key_for(&a, &root, Backend::Btrfs));
        assert_ne!(k, key_for(&b, &root, Backend::Btrfs));
        assert_ne!(k, key_for(&a, &user, Backend::Btrfs));
        assert_ne!(k, key_for(&a, &root, Backend::Reflink));
    }

    #[test]
    fn the_seal_changes_with_any_metadata_and_not_otherwise() {
        let dir = std::env::temp_dir().join(format!("seal-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/a"), b"one").unwrap();
        std::os::unix::fs::symlink("a", dir.join("etc/l")).unwrap();
        let (s1, n) = seal(&dir).unwrap();
        assert_eq!(n, 3);
        assert_eq!(seal(&dir).unwrap().0, s1);
        std::fs::write(dir.join("etc/a"), b"one!").unwrap();
        let (s2, _) = seal(&dir).unwrap();
        assert_ne!(s1, s2);
        std::fs::remove_file(dir.join("etc/l")).unwrap();
        std::os::unix::fs::symlink("b", dir.join("etc/l")).unwrap();
        assert_ne!(seal(&dir).unwrap().0, s2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
