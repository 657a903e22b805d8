//! Materialising a verified image into the machines dir: [`materialise`] makes its tree in a
//! private staging directory next to the target (a tarball unpacked, or an OCI image's layers
//! applied), then [`publish`] puts it in place with one rename. `sandbox pull` and `sandbox
//! build` both go this way.
//!
//! The staging directory is `.#NAME<random>` with mode 0700 (machined hides `.#` entries, and
//! nobody else can look into a half-written tree). On any failure it is removed, so the machines
//! dir never holds half an image. Publishing is `renameat2(RENAME_NOREPLACE)`; `--force` swaps
//! the old tree out with `RENAME_EXCHANGE` and removes it afterwards.

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rustix::fs::{CWD, IFlags, RenameFlags, ioctl_getflags, ioctl_setflags, renameat_with};

use super::artifacts::{self, Artifact, Kind, Shape};
use crate::atomic::write_file;
use crate::cache::Cache;
use crate::cleanup::{self, Pending, Undo};
use crate::oci::{apply_image_with_progress, settings_for};
use crate::progress::Progress;
use crate::pull::{Content, FetchedImage};
use crate::source::oci_pull::CacheBlobs;
use crate::unpack::decompress;
use crate::unpack::{Root, UnpackOptions, unpack_tar};

#[derive(Debug, Clone, Default)]
pub struct MaterialiseOptions {
    /// Replace an existing machine of the same name.
    pub force: bool,
    /// Mark the result immutable (`chattr +i` on the top directory).
    pub read_only: bool,
}

/// A staging directory that removes itself unless published (on an error, and on a signal:
/// see `cleanup`).
pub struct Staging {
    path: PathBuf,
    published: bool,
    pending: Option<Pending>,
}

impl Staging {
    /// Creates `.#NAME<random>` (mode 0700) in `machines_dir`.
    pub fn create(machines_dir: &Path, name: &str) -> Result<Staging> {
        let path = machines_dir.join(format!(".#{name}{:08x}", rand::random::<u32>()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating staging directory {}", path.display()))?;
        Ok(Staging::adopt(path))
    }

    /// Takes `path`, a tree made elsewhere (a snapshot), as a staging tree: removed on drop
    /// unless published.
    pub fn adopt(path: PathBuf) -> Staging {
        Staging {
            pending: Some(cleanup::register(Undo::RemoveTree(path.clone()))),
            path,
            published: false,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the tree, wherever it was moved: it is no longer removed on drop.
    pub fn keep(mut self) {
        self.published = true;
        self.pending = None;
    }

    /// Adopts another directory as the staging tree (used when flattening).
    fn replace_with(&mut self, other: PathBuf) -> Result<()> {
        remove_tree(&self.path)?;
        self.pending = Some(cleanup::register(Undo::RemoveTree(other.clone())));
        self.path = other;
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published
            && let Err(e) = remove_tree(&self.path)
        {
            tracing::warn!(
                "could not remove staging directory {}: {e:#}",
                self.path.display()
            );
        }
    }
}

/// The name of the lock a pull or build of machine `name` holds while it makes the tree.
pub fn machine_lock_name(machines_dir: &Path, name: &str) -> String {
    format!("machine-{}", machines_dir.join(name).display())
}

/// The machine whose staging tree `entry` (a name in the machines dir) is: `.#NAME` followed
/// by the 8 hex digits of [`Staging::create`]. Pure.
pub fn staging_owner(entry: &str) -> Option<&str> {
    let rest = entry.strip_prefix(".#")?;
    let cut = rest.len().checked_sub(8)?;
    let (name, tag) = rest.split_at(cut);
    (!name.is_empty() && tag.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// Removes the staging trees of machine `name` in `machines_dir`. Call only while holding the
/// machine's lock ([`machine_lock_name`]): then no live process is writing one, and what is
/// there was left by a process that died (kill -9, power loss).
pub fn sweep_staging(machines_dir: &Path, name: &str) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match fs_err::read_dir(machines_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let file = entry?.file_name();
        let Some(entry_name) = file.to_str() else {
            continue;
        };
        if staging_owner(entry_name) == Some(name) {
            let path = machines_dir.join(entry_name);
            tracing::warn!(
                "removing {}, an unfinished tree of `{name}` that a process which died left",
                path.display()
            );
            remove_tree(&path)?;
            removed.push(path);
        }
    }
    Ok(removed)
}

/// Removes every staging tree in `machines_dir` whose machine no live process is making (its
/// machine lock is free): what `cache gc` sweeps.
pub fn sweep_dead_staging(cache: &Cache, machines_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut owners = std::collections::BTreeSet::new();
    match fs_err::read_dir(machines_dir) {
        Ok(entries) => {
            for entry in entries {
                if let Some(owner) = entry?.file_name().to_str().and_then(staging_owner) {
                    owners.insert(owner.to_string());
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    }
    let mut removed = Vec::new();
    for owner in owners {
        let Some(_lock) = cache.try_lock(&machine_lock_name(machines_dir, &owner))? else {
            continue;
        };
        removed.extend(sweep_staging(machines_dir, &owner)?);
    }
    Ok(removed)
}

/// Creates the machines dir (0700, as systemd does) if it is missing.
pub fn ensure_machines_dir(machines_dir: &Path) -> Result<()> {
    if !machines_dir.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(machines_dir)
            .with_context(|| format!("creating machines directory {}", machines_dir.display()))?;
    }
    Ok(())
}

/// Makes the tree of `image` in a new staging directory in `parent` (the machines dir, or
/// where a build assembles its rootfs): a tarball is unpacked, an OCI image's layers are
/// applied from the cache (each blob held to its descriptor as it is read, hashed again unless
/// the fetch just hashed it, each layer against its diff_id), with the same safety and options either way.
pub fn materialise(
    cache: &Cache,
    image: &FetchedImage,
    parent: &Path,
    name: &str,
    progress: &Progress,
) -> Result<Staging> {
    match &image.content {
        Content::Tarball { blob, checked } => {
            if !checked.load(std::sync::atomic::Ordering::Relaxed) {
                bail!(
                    "internal: the cached image {} was not checked before unpacking",
                    blob.display()
                );
            }
            unpack_into_staging(blob, parent, name, progress)
        }
        Content::Oci(oci) => {
            let staging = Staging::create(parent, name)?;
            crate::faultpoint::reached("unpack.staging");
            let root = Root::open(staging.path())
                .with_context(|| format!("opening {}", staging.path().display()))?;
            // The fetch hashed every layer it vouches for moments ago (the cache's shared
            // lock, held since, keeps gc out): those are held to their size only.
            apply_image_with_progress(
                &root,
                &CacheBlobs(cache),
                &oci.resolved,
                &oci.hashed_layers,
                &UnpackOptions::for_this_host()?,
                progress,
            )
            .map_err(|e| on_full_disk(e, parent))?;
            progress.finish();
            Ok(staging)
        }
    }
}

/// The `.nspawn` that goes next to `image`'s tree in `staging` when it is pulled as a
/// machine: a tarball's companion file, or what an OCI image needs (`oci::settings_for`).
pub fn image_settings(cache: &Cache, image: &FetchedImage, tree: &Path) -> Result<Option<Vec<u8>>> {
    match &image.content {
        Content::Tarball { .. } => match &image.nspawn {
            Some(b) => Ok(Some(cache.read_blob(&b.digest)?)),
            None => Ok(None),
        },
        Content::Oci(oci) => {
            let root = Root::open(tree).with_context(|| format!("opening {}", tree.display()))?;
            let config = oci.resolved.config.config.as_ref();
            Ok(settings_for(&root, config, &image.file_name)?.map(String::into_bytes))
        }
    }
}

/// Unpacks the (compressed) tarball at `blob` into a new staging directory and returns it.
fn unpack_into_staging(
    blob: &Path,
    machines_dir: &Path,
    name: &str,
    progress: &Progress,
) -> Result<Staging> {
    let mut staging = Staging::create(machines_dir, name)?;
    crate::faultpoint::reached("unpack.staging");
    let file = fs_err::File::open(blob).map(fs_err::File::into_file)?;
    let (compression, reader) = decompress::open_file(file, progress)
        .with_context(|| format!("reading {}", blob.display()))?;
    tracing::debug!(
        "unpacking {} ({} compression)",
        blob.display(),
        compression.name()
    );
    let root = Root::open(staging.path())?;
    let opts = UnpackOptions::for_this_host()?;
    let kind = match compression.name() {
        "none" => "uncompressed".to_string(),
        name => format!("{name}-compressed"),
    };
    let summary = unpack_tar(reader, &root, &opts)
        .with_context(|| format!("unpacking the {kind} tarball"))
        .map_err(|e| on_full_disk(e, machines_dir))?;
    drop(root);
    crate::faultpoint::reached("unpack.done");
    if summary.entries == 0 {
        // A valid checksum over an empty file (or an empty archive) is no root filesystem.
        bail!(
            "the image {} holds no files: it is no root filesystem (an empty {kind} tarball)",
            blob.display()
        );
    }
    progress.finish();
    if !summary.root_entry_seen {
        // No `./` entry to take the mode from: a rootfs top directory is 0755.
        fs_err::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .with_context(|| format!("setting the mode of {}", staging.path().display()))?;
    }
    flatten(&mut staging, machines_dir, name)?;
    Ok(staging)
}

/// An unpack that ran out of space says which filesystem filled up (the unfinished tree goes
/// when its staging directory is dropped, as the error returns).
fn on_full_disk(e: anyhow::Error, dir: &Path) -> anyhow::Error {
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(crate::atomic::is_disk_full)
    });
    if !full {
        return e;
    }
    e.context(format!(
        "the filesystem of {} is full: the unfinished tree is removed; free space there (the \
         verified image stays in the cache) and run this again",
        dir.display()
    ))
}

fn has_os_release(dir: &Path) -> bool {
    ["etc/os-release", "usr/lib/os-release"]
        .iter()
        .any(|p| fs_err::symlink_metadata(dir.join(p)).is_ok())
}

/// importd's rule: a tree whose only top entry is a directory holding an OS tree is replaced
/// by that directory.
fn flatten(staging: &mut Staging, machines_dir: &Path, name: &str) -> Result<()> {
    if has_os_release(staging.path()) {
        return Ok(());
    }
    let mut entries = fs_err::read_dir(staging.path())?;
    let (Some(first), None) = (entries.next(), entries.next()) else {
        return Ok(());
    };
    let first = first?;
    let is_dir = first.file_type().map(|t| t.is_dir()).unwrap_or(false);
    if !is_dir || !has_os_release(&first.path()) {
        return Ok(());
    }
    let inner = machines_dir.join(format!(".#{name}{:08x}", rand::random::<u32>()));
    fs_err::rename(first.path(), &inner)
        .with_context(|| format!("moving {} up", first.path().display()))?;
    tracing::info!(
        "flattened the tarball's single top directory {:?}",
        first.file_name()
    );
    staging.replace_with(inner)
}

/// Moves every entry of `staging` into `dest` (its parent, a dataset or subvolume that must be
/// the tree itself) and gives `dest` the staging directory's mode and owner (the tarball's
/// `./` entry): renames within one filesystem.
pub fn move_contents_up(staging: &Staging, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let src = staging.path();
    let meta = fs_err::metadata(src)?;
    for entry in fs_err::read_dir(src)? {
        let entry = entry?;
        let to: PathBuf = dest.join(entry.file_name());
        fs_err::rename(entry.path(), &to)?;
    }
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("chown {}", dest.display()))?;
    fs_err::set_permissions(dest, meta.permissions())?;
    Ok(())
}

/// Whether machine `name` exists in `machines_dir`. An error when something that is not a
/// machine is there, which no `--force` may replace: a regular file at NAME is another
/// machine's settings file when NAME is `x.nspawn`.
pub fn existing_machine(machines_dir: &Path, name: &str) -> Result<bool> {
    let target = machines_dir.join(name);
    let Some(shape) = Shape::at(&target) else {
        return Ok(false);
    };
    let root = Artifact {
        path: target,
        kind: Kind::Root,
    };
    match artifacts::refusal(&root, shape) {
        None => Ok(true),
        Some(why) => bail!("not making machine `{name}` there: {why}"),
    }
}

/// Publishes `staging` as `machines_dir/NAME` (and `NAME.nspawn` when given).
pub fn publish(
    mut staging: Staging,
    machines_dir: &Path,
    name: &str,
    nspawn: Option<&[u8]>,
    opts: &MaterialiseOptions,
) -> Result<PathBuf> {
    let target = machines_dir.join(name);
    let nspawn_path = machines_dir.join(format!("{name}.nspawn"));
    // Neither path may be something other than what it is for, `--force` or not (see
    // `existing_machine`); a directory at NAME.nspawn is the machine `NAME.nspawn`.
    let exists = existing_machine(machines_dir, name)?;
    if nspawn.is_some()
        && let Some(shape) = Shape::at(&nspawn_path)
    {
        let settings = Artifact {
            path: nspawn_path.clone(),
            kind: Kind::Settings,
        };
        if let Some(why) = artifacts::refusal(&settings, shape) {
            bail!("not publishing machine `{name}` with its settings file: {why}");
        }
    }
    if exists && !opts.force {
        bail!(
            "machine `{name}` already exists at {}; pass --force to replace it",
            target.display()
        );
    }
    if !opts.force && nspawn.is_some() && nspawn_path.exists() {
        bail!(
            "{} already exists; pass --force to replace it",
            nspawn_path.display()
        );
    }
    crate::faultpoint::reached("publish.ready");
    if exists {
        // Swap atomically, then remove the old tree, which now sits at the staging path.
        unset_immutable(&target)?;
        renameat_with(CWD, staging.path(), CWD, &target, RenameFlags::EXCHANGE).with_context(
            || {
                format!(
                    "replacing {} with {}",
                    target.display(),
                    staging.path().display()
                )
            },
        )?;
        crate::faultpoint::reached("publish.exchanged");
        // From here the staging path holds the old tree: dropping `staging` removes it.
    } else {
        renameat_with(CWD, staging.path(), CWD, &target, RenameFlags::NOREPLACE).map_err(|e| {
            if e == rustix::io::Errno::EXIST {
                anyhow::anyhow!(
                    "machine `{name}` appeared at {} while pulling; pass --force to replace it",
                    target.display()
                )
            } else {
                anyhow::Error::new(std::io::Error::from(e)).context(format!(
                    "renaming {} to {}",
                    staging.path().display(),
                    target.display()
                ))
            }
        })?;
        staging.published = true;
        staging.pending = None;
        crate::faultpoint::reached("publish.renamed");
    }
    let finish = || -> Result<()> {
        if let Some(bytes) = nspawn {
            write_file(&nspawn_path, bytes)?;
        }
        if opts.read_only {
            set_immutable(&target)?;
        }
        Ok(())
    };
    if let Err(e) = finish() {
        if !exists {
            // Nothing half-done stays: take the new tree back out.
            let _ = remove_tree(&target);
        }
        return Err(e);
    }
    drop(staging);
    Ok(target)
}

/// Finishes machine `name` whose tree was made in place (a ZFS clone): its `.nspawn` next to
/// it (never over another machine's file, nor over one without `--force`), and `--read-only`.
pub fn finish_in_place(
    machines_dir: &Path,
    name: &str,
    nspawn: Option<&[u8]>,
    opts: &MaterialiseOptions,
) -> Result<()> {
    let target = machines_dir.join(name);
    if let Some(bytes) = nspawn {
        let nspawn_path = machines_dir.join(format!("{name}.nspawn"));
        if let Some(shape) = Shape::at(&nspawn_path) {
            let settings = Artifact {
                path: nspawn_path.clone(),
                kind: Kind::Settings,
            };
            if let Some(why) = artifacts::refusal(&settings, shape) {
                bail!("not publishing machine `{name}` with its settings file: {why}");
            }
            if !opts.force {
                bail!(
                    "{} already exists; pass --force to replace it",
                    nspawn_path.display()
                );
            }
        }
        write_file(&nspawn_path, bytes)?;
    }
    if opts.read_only {
        set_immutable(&target)?;
    }
    Ok(())
}

/// `chattr +i` on the top directory.
pub fn set_immutable(dir: &Path) -> Result<()> {
    let fd = fs_err::File::open(dir).map(fs_err::File::into_file)?;
    let flags = ioctl_getflags(&fd)
        .with_context(|| format!("reading the attributes of {}", dir.display()))?;
    ioctl_setflags(&fd, flags | IFlags::IMMUTABLE).with_context(|| {
        format!(
            "making {} immutable (chattr +i); the filesystem may not support it",
            dir.display()
        )
    })
}

/// `chattr -i` on the top directory, if it is set.
pub fn unset_immutable(dir: &Path) -> Result<()> {
    let Ok(fd) = File::open(dir) else {
        return Ok(());
    };
    let Ok(flags) = ioctl_getflags(&fd) else {
        return Ok(());
    };
    if flags.contains(IFlags::IMMUTABLE) {
        ioctl_setflags(&fd, flags - IFlags::IMMUTABLE)
            .with_context(|| format!("clearing the immutable flag of {}", dir.display()))?;
    }
    Ok(())
}

/// Removes a tree without following symlinks (std's remove_dir_all is safe against symlink
/// races since Rust 1.58.1), clearing the immutable flag of its top directory first.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
        Ok(m) if m.is_dir() => {
            unset_immutable(path)?;
            // Entry by entry at the top, so a kill can be shown to leave only a staging
            // name behind (what remains is swept as any dead process's staging tree).
            for entry in fs_err::read_dir(path)? {
                let entry = entry?;
                let child = entry.path();
                if entry.file_type()?.is_dir() {
                    fs_err::remove_dir_all(&child)?;
                } else {
                    fs_err::remove_file(&child)?;
                }
                crate::faultpoint::reached("remove.entry");
            }
            Ok(fs_err::remove_dir(path)?)
        }
        Ok(_) => Ok(fs_err::remove_file(path)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_trees_name_their_machine_exactly() {
        assert_eq!(staging_owner(".#web0a1b2c3d"), Some("web"));
        assert_eq!(staging_owner(".#web10a1b2c3d"), Some("web1"));
        assert_eq!(staging_owner(".#web0a1b2c3"), Some("we"));
        for not in ["web", ".#0a1b2c3d", ".#webxyz12345", "#web0a1b2c3d", ".#"] {
            assert_eq!(staging_owner(not), None, "{not}");
        }
    }

    #[test]
    fn a_sweep_takes_only_the_named_machines_staging_trees() {
        let dir = tempfile::tempdir().unwrap();
        for n in [".#web0a1b2c3d", ".#web10a1b2c3d", "web", ".#webdeadbeef"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        std::fs::write(dir.path().join(".#webdeadbeef/x"), b"x").unwrap();
        let mut removed = sweep_staging(dir.path(), "web").unwrap();
        removed.sort();
        assert_eq!(
            removed,
            [
                dir.path().join(".#web0a1b2c3d"),
                dir.path().join(".#webdeadbeef")
            ]
        );
        assert!(dir.path().join(".#web10a1b2c3d").is_dir());
        assert!(dir.path().join("web").is_dir());
    }
}
