//! `sandbox build`, the I/O side: pull the base image through the cache (verified exactly as
//! `sandbox pull` would), unpack it into a private staging directory (or a fresh ZFS dataset),
//! layer the plan and the guest fix-ups onto it (`fixups`), write the host files and the
//! provenance record (`hostfiles`, `state`), publish, and hand off to machinectl. The first
//! steps (`pull_and_render`, `unpack_and_layer`) are shared with `export`.
//!
//! Nothing half-built stays anywhere: the staging tree removes itself unless published, the
//! host files are restored unless the build commits, and a dataset created for a failed build
//! is destroyed. `--dry-run` (`dry_run`) reads the cache's refs without opening the cache (that
//! would create directories) and changes nothing.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::base::{ServerOrigin, ServerOverride, images_server, pull_spec};
use super::fixups::{self, FixupReport};
use super::hostcheck;
use super::hostfiles::{self, HostFiles};
use crate::cache::Cache;
use crate::config::plan::{KeyEdit, reapply};
use crate::digest::Digest;
use crate::digest::Hasher;
use crate::machine::host::{Host, Program, run_str};
use crate::machine::materialise::{self, MaterialiseOptions, Staging};
use crate::machine::place::{self, PlaceCtx, Tree};
use crate::machine::state::{self, SandboxState};
use crate::machine::storage::{Backend, Storage};
use crate::machine::zfs;
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::pull::{FetchedImage, fetch_verified};
use crate::template::compose::Composition;
use crate::template::dropin;
use crate::template::generate::NvidiaFiles;
use crate::template::library::Content;
use crate::template::plan::{Base, BuildPlan, Omission, RenderInputs};
use crate::unpack::Root;

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    pub name: String,
    /// `--enable` (a template's `enable = true` also enables).
    pub enable: bool,
    /// `--no-start`.
    pub no_start: bool,
    /// Replace an existing sandbox of the same name.
    pub force: bool,
    /// `nvidia-container-cli list`, parsed, when a template needs it.
    pub nvidia: Option<NvidiaFiles>,
    /// How an OCI base is fetched (registry options).
    pub oci: crate::pull::OciOptions,
    /// `--offline`: the base image from the cache alone.
    pub offline: bool,
    /// `--keyring` files, trusted for the base's signature (as `sandbox pull --keyring`).
    pub keyrings: Vec<PathBuf>,
    /// `--images-server` or `$SANDBOX_IMAGES_SERVER`: over the templates' `images_server`.
    pub images_server: Option<ServerOverride>,
    /// `--storage`: over the templates' `storage` [default: auto].
    pub storage: Option<Storage>,
}

/// What a build did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    pub state: SandboxState,
    pub fixups: FixupReport,
    /// The machinectl commands run, as shown to people.
    pub handoff: Vec<String>,
    /// Why the hand-off was skipped, when it was.
    pub skipped_handoff: Option<String>,
    /// `.nspawn` keys changed with `sandbox config` that a `--force` rebuild applied again over
    /// what the templates render, each with the templates' values it replaces.
    pub kept_edits: Vec<KeyEdit>,
}

/// cloud-init's instance id: the same templates, values, image and name give the same id
/// (a rebuild of an unchanged sandbox does not make cloud-init run again); any change gives a
/// new one.
pub fn instance_id(content_hash: &Digest, image: &Digest, name: &str) -> String {
    let mut h = Hasher::new();
    for field in [
        b"sandboxes-instance-v1".as_slice(),
        content_hash.as_bytes(),
        image.as_bytes(),
        name.as_bytes(),
    ] {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field);
    }
    format!("sandbox-{}", &h.finish().hex()[..16])
}

/// The machinectl command lines the hand-off runs, in order. Pure.
pub fn handoff_commands(name: &str, enable: bool, start: bool) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    if enable {
        out.push(vec!["enable".to_string(), name.to_string()]);
    }
    if start {
        out.push(vec!["start".to_string(), name.to_string()]);
    }
    out
}

pub(crate) fn render(
    c: &Composition,
    req: &BuildRequest,
    id: String,
    omit: &[Omission],
) -> Result<BuildPlan> {
    let (machine, nvidia, omit) = (req.name.clone(), req.nvidia.clone(), omit.to_vec());
    c.render(&RenderInputs {
        machine,
        instance_id: id,
        nvidia,
        omit,
    })
}

/// Builds the sandbox, as the module documentation describes.
pub fn build(
    paths: &HostPaths,
    progress: ProgressMode,
    host: &dyn Host,
    comp: &Composition,
    req: &BuildRequest,
) -> Result<BuildReport> {
    crate::machine::name::validate(&req.name)?;
    let spec = comp.spec();
    let machines_dir = &paths.machines_dir;
    hostfiles::recover_if_unlocked(paths, &req.name)?;
    let target = machines_dir.join(&req.name);
    let nspawn_path = paths.host(&format!("/etc/systemd/nspawn/{}.nspawn", req.name));
    // Refused before anything is pulled, `--force` or not: NAME holding another machine's file.
    materialise::existing_machine(machines_dir, &req.name)?;
    if !req.force {
        for existing in [&target, &nspawn_path] {
            if fs_err::symlink_metadata(existing).is_ok() {
                bail!(
                    "sandbox `{}` already exists ({}); pass --force to replace it",
                    req.name,
                    existing.display()
                );
            }
        }
    }
    let Pulled {
        cache,
        fetched,
        plan,
        pull,
    } = pull_and_render(paths, progress, comp, req, true)?;
    let _lock = cache.lock(
        &materialise::machine_lock_name(machines_dir, &req.name),
        &format!("another build or pull of machine `{}`", req.name),
    )?;
    materialise::sweep_staging(machines_dir, &req.name)?;
    hostfiles::recover_dead_build(&paths.sandboxes_dir, &req.name)?;
    materialise::ensure_machines_dir(machines_dir)?;
    let enable = req.enable || spec.enable;
    let previous = state::read_state(&paths.sandboxes_dir, &req.name)
        .ok()
        .flatten();

    let on_zfs = zfs::on_zfs(machines_dir)?;
    let zfs_runs = host.available(Program::Zfs);
    if on_zfs && !zfs_runs {
        tracing::warn!(
            "{} is on ZFS, but {}: building `{}` as a plain directory, not a dataset of its own",
            machines_dir.display(),
            host.unavailable(Program::Zfs),
            req.name
        );
    }
    let requested = req.storage.or(spec.storage).unwrap_or_default();
    let (backend, _) = place::choose_backend(paths, host, requested)?;
    let zfs_unpack = backend == Backend::Copy && on_zfs && zfs_runs;
    // That path unpacks the cached tarball straight away: its bytes are checked first.
    let refetched = if zfs_unpack {
        crate::pull::ensure_intact(paths, progress, &cache, &pull, &fetched)?
    } else {
        None
    };
    let fetched = refetched.unwrap_or(fetched);
    let (fixups, state, kept_edits) = if zfs_unpack {
        build_on_zfs(
            paths,
            progress,
            host,
            &cache,
            &plan,
            &fetched,
            req,
            previous.as_ref(),
            enable,
        )?
    } else {
        let intact =
            |f: &FetchedImage| crate::pull::ensure_intact(paths, progress, &cache, &pull, f);
        let ctx = PlaceCtx {
            paths,
            host,
            cache: &cache,
            backend,
            intact: &intact,
        };
        let source = spec.source.source.display();
        progress.phase(&format!("Making the rootfs ({backend})"));
        let bar = progress.task(&format!("Unpacking {}", fetched.file_name));
        let (tree, placement) = place::make_tree(
            &ctx,
            &fetched,
            &source,
            &req.name,
            req.force,
            previous.as_ref(),
            &bar,
        )
        .with_context(|| format!("unpacking {source}"))?;
        let fixups = layer_into(tree.path(), &plan, progress)?;
        crate::faultpoint::reached("build.layered");
        let state = make_state(paths, &plan, &fetched, req, None, enable, previous.as_ref())
            .placed(&placement);
        let (host_files, kept) = write_host_side(paths, &plan, &state, req.force)?;
        crate::faultpoint::reached("build.host_files");
        match tree {
            Tree::Staged(staging) => {
                let opts = MaterialiseOptions {
                    force: req.force,
                    read_only: false,
                };
                progress.phase(&format!("Publishing {}", req.name));
                materialise::publish(staging, machines_dir, &req.name, None, &opts)?;
            }
            Tree::InPlace(clone) => clone.keep(),
        }
        crate::faultpoint::reached("build.published");
        host_files.commit();
        (fixups, state, kept)
    };
    let (handoff, skipped_handoff) = hand_off(host, &req.name, enable, !req.no_start)?;
    Ok(BuildReport {
        state,
        fixups,
        handoff,
        skipped_handoff,
        kept_edits,
    })
}

/// The verified base image, the cache it is in, and the plan rendered for it.
pub(crate) struct Pulled {
    pub cache: Cache,
    pub fetched: FetchedImage,
    pub plan: BuildPlan,
    /// How it was pulled (for `pull::ensure_intact`).
    pub pull: crate::pull::PullSpec,
}

/// Checks the template against this host, pulls the base (verified) and renders the plan
/// with the instance id derived from the image's digest.
pub(crate) fn pull_and_render(
    paths: &HostPaths,
    progress: ProgressMode,
    comp: &Composition,
    req: &BuildRequest,
    defer_rehash: bool,
) -> Result<Pulled> {
    let spec = comp.spec();
    // Before anything is pulled: a template the host cannot serve fails now.
    let host = hostcheck::check(paths, &render(comp, req, "sandbox-check".into(), &[])?)?;
    host.warn();
    let cache = Cache::open(&paths.cache_dir())?;
    let mut pull = pull_spec(spec, req)?;
    pull.defer_rehash = defer_rehash;
    let server = images_server(spec, req.images_server.as_ref())?;
    progress.phase(&format!("Pulling {}", spec.source.source.display()));
    let fetched = fetch_verified(paths, progress, &cache, &pull);
    // Which server, and what chose it: a variable set long ago is easily forgotten.
    let fetched = match server.filter(|s| s.chosen_by != ServerOrigin::Default) {
        Some(s) => fetched.with_context(|| {
            format!(
                "the base from image server {} ({})",
                crate::transport::redact_url(&s.url),
                s.chosen_by
            )
        })?,
        None => fetched?,
    };
    let plan = render(
        comp,
        req,
        instance_id(&spec.content_hash, &fetched.image.digest, &req.name),
        &host.omit,
    )?;
    Ok(Pulled {
        cache,
        fetched,
        plan,
        pull,
    })
}

/// Unpacks the base into a new staging directory in `staging_parent` (removed on drop) and
/// layers the plan and the guest fix-ups onto it: the finished rootfs, not yet published.
pub(crate) fn unpack_and_layer(
    progress: ProgressMode,
    cache: &Cache,
    fetched: &FetchedImage,
    plan: &BuildPlan,
    staging_parent: &Path,
    name: &str,
) -> Result<(Staging, FixupReport)> {
    let staging = unpack_base(progress, cache, fetched, staging_parent, name)
        .with_context(|| format!("unpacking {}", plan.spec.source.source.display()))?;
    let fixups = layer_into(staging.path(), plan, progress)?;
    Ok((staging, fixups))
}

/// Unpacks the base into a new staging directory in `staging_parent` (removed on drop), as
/// every pull does (`materialise::materialise`).
pub(crate) fn unpack_base(
    progress: ProgressMode,
    cache: &Cache,
    fetched: &FetchedImage,
    staging_parent: &Path,
    name: &str,
) -> Result<Staging> {
    let bar = progress.task(&format!("Unpacking {}", fetched.file_name));
    // The build renders its own settings: an image's `.nspawn` is not used here.
    materialise::materialise(cache, fetched, staging_parent, name, &bar)
}

/// The plan's files and the fix-ups, then the bake steps (which see the finished tree).
pub(crate) fn layer_into(
    rootfs: &Path,
    plan: &BuildPlan,
    progress: ProgressMode,
) -> Result<FixupReport> {
    progress.phase("Layering the templates' files and the fix-ups");
    let root = Root::open(rootfs)?;
    let report = fixups::layer(&root, plan)
        .with_context(|| format!("preparing the rootfs {}", rootfs.display()))?;
    super::bake::run(rootfs, plan, progress)?;
    // After the bake steps: one of them may be what installs cloud-init.
    if !plan.seed_from.is_empty() && !fixups::has_cloud_init(&root)? {
        bail!(
            "the templates give cloud-init a seed ({}), but the image {} has no cloud-init \
             (no {}): the seed would never apply and the sandbox would come up without it. \
             Use an image with cloud-init (the `cloud` variant of an images: alias, e.g. \
             images:debian/bookworm/cloud), install it in a bake step ([build] run = \
             [\"apt-get install -y cloud-init\"]), or build without those templates",
            plan.seed_from.join(", "),
            plan.spec.source.source.display(),
            fixups::CLOUD_INIT_PATHS.join(" or ")
        );
    }
    Ok(report)
}

/// The record of this build; the settings an earlier record notes as changed with `sandbox
/// config` carry over (`write_host_side` applies them again).
fn make_state(
    paths: &HostPaths,
    plan: &BuildPlan,
    fetched: &FetchedImage,
    req: &BuildRequest,
    zfs_dataset: Option<String>,
    enabled: bool,
    previous: Option<&SandboxState>,
) -> SandboxState {
    let spec = &plan.spec;
    SandboxState {
        name: req.name.clone(),
        template: Some(spec.name.clone()),
        templates: spec.templates.clone(),
        content_hash: Some(spec.content_hash),
        vars: spec.vars.clone(),
        source: spec.source.source.display(),
        digest: fetched.image.digest,
        verification: fetched.verification.clone(),
        version: fetched.version.clone(),
        machines_dir: paths.machines_dir.clone(),
        rootfs: paths.machines_dir.join(&req.name),
        zfs_dataset,
        storage: None,
        stored_image: None,
        nspawn_file: Some(paths.host(&format!("/etc/systemd/nspawn/{}.nspawn", req.name))),
        dropin_dir: Some(paths.host(&dropin::dropin_dir(&req.name))),
        enabled,
        created_at: crate::cache::refs::now_rfc3339(),
        cloud_init_seed: plan.seed_from.clone(),
        user_edits: match previous {
            Some(p) if req.force => p.user_edits.clone(),
            _ => Vec::new(),
        },
    }
}

/// Writes the plan's host files and the state record; with `force`, removes the drop-ins an
/// earlier build wrote that this one does not. Restored on drop unless committed.
///
/// The `.nspawn` keys the record notes as changed with `sandbox config` are applied again to
/// the rendered file (returned, with the values they replace): a person's choice for this one
/// sandbox outlives a rebuild, as `/etc/systemd/nspawn` outlives `machinectl pull-tar --force`.
/// The sandbox's own drop-in (`30-sandbox-config.conf`) is never written by a build at all.
fn write_host_side(
    paths: &HostPaths,
    plan: &BuildPlan,
    state: &SandboxState,
    force: bool,
) -> Result<(HostFiles, Vec<KeyEdit>)> {
    let journal = hostfiles::journal_path(&paths.sandboxes_dir, &plan.machine);
    let mut files = HostFiles::journaled(journal);
    let nspawn = format!("etc/systemd/nspawn/{}.nspawn", plan.machine);
    let mut kept = Vec::new();
    for f in plan.files.iter().filter(|f| f.base == Base::Host) {
        let Content::Bytes(bytes) = &f.content else {
            bail!("internal: host file /{} is planned as a symlink", f.path);
        };
        if f.path == nspawn && !state.user_edits.is_empty() {
            let rendered = std::str::from_utf8(bytes).context("the rendered .nspawn file")?;
            let (text, k) = reapply(rendered, &state.user_edits)
                .context("applying the settings changed with `sandbox config` again")?;
            kept = k;
            files.write(&paths.host(&f.path), text.as_bytes(), f.mode)?;
            continue;
        }
        files.write(&paths.host(&f.path), bytes, f.mode)?;
    }
    if force {
        let dir = dropin::dropin_dir(&plan.machine);
        for name in [dropin::DEFAULT_DROPIN, dropin::TEMPLATES_DROPIN] {
            let rel = format!("{dir}/{name}");
            if plan.get(Base::Host, &rel).is_none() {
                files.remove(&paths.host(&rel))?;
            }
        }
    }
    let mut json = serde_json::to_vec_pretty(state).context("encoding the state record")?;
    json.push(b'\n');
    files.write(
        &state::state_path(&paths.sandboxes_dir, &state.name),
        &json,
        0o644,
    )?;
    Ok((files, kept))
}

/// ZFS: a dataset of its own, mounted at the machine's path, filled in place.
#[allow(clippy::too_many_arguments)]
fn build_on_zfs(
    paths: &HostPaths,
    progress: ProgressMode,
    host: &dyn Host,
    cache: &Cache,
    plan: &BuildPlan,
    fetched: &FetchedImage,
    req: &BuildRequest,
    previous: Option<&SandboxState>,
    enable: bool,
) -> Result<(FixupReport, SandboxState, Vec<KeyEdit>)> {
    let machines_dir = &paths.machines_dir;
    let target = machines_dir.join(&req.name);
    let parent = zfs::parent_dataset(host, machines_dir)?;
    let dataset = format!("{parent}/{}", req.name);
    if req.force {
        // The old sandbox goes first: a dataset cannot be created over an existing one. Unlike
        // the rename of a plain directory this is not atomic; a failure below leaves no sandbox.
        if let Some(old) = previous.and_then(|s| s.zfs_dataset.as_deref()) {
            zfs::destroy(host, old)
                .with_context(|| format!("removing the old sandbox `{}`", req.name))?;
        }
        // A plain directory (a sandbox from before ZFS), or the empty mountpoint a destroyed
        // dataset may leave.
        materialise::remove_tree(&target)?;
    }
    zfs::create(host, &dataset, &target)?;
    let mut guard = DatasetGuard {
        host,
        dataset: &dataset,
        mountpoint: &target,
        keep: false,
    };
    // A real `zfs create` mounts the new, empty dataset there; make sure it is a directory.
    if !target.is_dir() {
        fs_err::create_dir(&target)
            .with_context(|| format!("creating the mountpoint {}", target.display()))?;
    }
    // Unpacked into a staging dir inside the dataset (importd's flattening applies), then
    // moved up: renames within one filesystem.
    let staging = unpack_base(progress, cache, fetched, &target, &req.name)?;
    materialise::move_contents_up(&staging, &target)?;
    drop(staging);
    let fixups = layer_into(&target, plan, progress)?;
    let state = make_state(
        paths,
        plan,
        fetched,
        req,
        Some(dataset.clone()),
        enable,
        previous,
    );
    let (host_files, kept) = write_host_side(paths, plan, &state, req.force)?;
    host_files.commit();
    guard.keep = true;
    Ok((fixups, state, kept))
}

/// Destroys a dataset this build created unless the build got through.
struct DatasetGuard<'a> {
    host: &'a dyn Host,
    dataset: &'a str,
    mountpoint: &'a Path,
    keep: bool,
}

impl Drop for DatasetGuard<'_> {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = zfs::destroy(self.host, self.dataset) {
            tracing::warn!("could not destroy dataset {}: {e:#}", self.dataset);
        }
        // Without a real mount (or when destroy failed) the files are still there.
        if let Err(e) = materialise::remove_tree(self.mountpoint) {
            tracing::warn!("could not remove {}: {e:#}", self.mountpoint.display());
        }
    }
}

/// `machinectl enable`/`start`; skipped with a warning when there is no machinectl.
fn hand_off(
    host: &dyn Host,
    name: &str,
    enable: bool,
    start: bool,
) -> Result<(Vec<String>, Option<String>)> {
    let commands = handoff_commands(name, enable, start);
    if commands.is_empty() {
        return Ok((Vec::new(), None));
    }
    if !host.available(Program::Machinectl) {
        let why = format!(
            "{}; the sandbox is built but was not {}",
            host.unavailable(Program::Machinectl),
            if enable && start {
                "enabled or started"
            } else if enable {
                "enabled"
            } else {
                "started"
            }
        );
        tracing::warn!("{why}");
        return Ok((Vec::new(), Some(why)));
    }
    let mut done = Vec::new();
    for cmd in commands {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        run_str(host, Program::Machinectl, &args).with_context(|| {
            format!(
                "the sandbox `{name}` is built, but `machinectl {}` failed",
                cmd.join(" ")
            )
        })?;
        done.push(format!("machinectl {}", cmd.join(" ")));
    }
    Ok((done, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_follow_every_input() {
        let (a, b) = (Digest::of(b"a"), Digest::of(b"b"));
        let id = instance_id(&a, &b, "web");
        assert!(id.starts_with("sandbox-") && id.len() == 8 + 16, "{id}");
        assert_eq!(id, instance_id(&a, &b, "web"));
        assert_ne!(id, instance_id(&b, &b, "web"));
        assert_ne!(id, instance_id(&a, &a, "web"));
        assert_ne!(id, instance_id(&a, &b, "web2"));
    }

    #[test]
    fn handoff_order_is_enable_then_start() {
        assert_eq!(
            handoff_commands("web", true, true),
            vec![vec!["enable", "web"], vec!["start", "web"]]
        );
        assert_eq!(
            handoff_commands("web", false, true),
            vec![vec!["start", "web"]]
        );
        assert!(handoff_commands("web", false, false).is_empty());
    }
}
