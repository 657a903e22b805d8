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

use super::fixups::{self, FixupReport};
use super::hostfiles::HostFiles;
use crate::cache::layout::{CacheLayout, RefKind};
use crate::cache::{Cache, Ref};
use crate::digest::Digest;
use crate::digest::Hasher;
use crate::machine::host::{Host, Program, run_str};
use crate::machine::materialise::{self, MaterialiseOptions, Staging};
use crate::machine::state::{self, SandboxState};
use crate::machine::zfs;
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::pull::{FetchedImage, PullSpec, fetch_verified};
use crate::source::SourceRef;
use crate::template::compose::Composition;
use crate::template::dropin;
use crate::template::generate::NvidiaFiles;
use crate::template::library::Content;
use crate::template::plan::{Base, BuildPlan, Keyring, RenderInputs, TemplateSpec};
use crate::unpack::Root;
use crate::verify::mode::VerifyMode;

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
}

/// `--images-server URL` or `$SANDBOX_IMAGES_SERVER`, as the command line gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOverride {
    pub url: String,
    /// Given by `$SANDBOX_IMAGES_SERVER`, not by the flag.
    pub from_env: bool,
}

/// The simplestreams server an `images:` base is fetched from, and what chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagesServer {
    /// Normalised (ends in `/`), as the cache keys it.
    pub url: url::Url,
    pub chosen_by: ServerOrigin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOrigin {
    Flag,
    Env,
    /// A template's `images_server` (`file:line`).
    Template(String),
    Default,
}

impl std::fmt::Display for ServerOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerOrigin::Flag => f.write_str("--images-server"),
            ServerOrigin::Env => f.write_str("$SANDBOX_IMAGES_SERVER"),
            ServerOrigin::Template(place) => write!(f, "images_server at {place}"),
            ServerOrigin::Default => f.write_str("the default"),
        }
    }
}

/// The server for an `images:` base, with `sandbox pull`'s precedence: the flag (or the
/// variable) over the templates' `images_server` over the default. `None` for other sources,
/// which ignore the flag and the variable as `sandbox pull` does (a template's key with another
/// source is refused when composing). Pure.
pub fn images_server(
    spec: &TemplateSpec,
    given: Option<&ServerOverride>,
) -> Result<Option<ImagesServer>> {
    if !matches!(spec.source.source, SourceRef::Images(_)) {
        return Ok(None);
    }
    let (url, chosen_by) = match (given, &spec.images_server) {
        (Some(g), _) => (
            Some(g.url.as_str()),
            if g.from_env {
                ServerOrigin::Env
            } else {
                ServerOrigin::Flag
            },
        ),
        (None, Some(t)) => (
            Some(t.url.as_str()),
            ServerOrigin::Template(t.place.clone()),
        ),
        (None, None) => (None, ServerOrigin::Default),
    };
    let url = crate::source::images::server_url(url).with_context(|| chosen_by.to_string())?;
    Ok(Some(ImagesServer { url, chosen_by }))
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
}

/// How the template's source is pulled: its verification settings, its keyrings (host files
/// and `--keyring` as `sandbox pull --keyring`, template files as pinned keys for this pull),
/// the image server (`images_server`), and the request's OCI and offline options. The trust
/// store is `sandbox pull`'s: the built-in LXC key counts for the default server only.
pub fn pull_spec(spec: &TemplateSpec, req: &BuildRequest) -> Result<PullSpec> {
    let mut pull = PullSpec::new(spec.source.source.clone());
    pull.verify = spec.source.verify.unwrap_or(VerifyMode::Signature);
    pull.checksum = spec.source.checksum;
    pull.images_server =
        images_server(spec, req.images_server.as_ref())?.map(|s| s.url.to_string());
    pull.keyrings = req.keyrings.clone();
    pull.oci = req.oci.clone();
    pull.offline = req.offline;
    for k in &spec.source.keyrings {
        match k {
            Keyring::Host(path) => pull.keyrings.push(path.clone()),
            Keyring::Template { label, bytes } => {
                pull.extra_keys.push((label.clone(), bytes.clone()))
            }
        }
    }
    Ok(pull)
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

/// The cache's record of `source` (an `images:` one on `server`), read without opening (and so
/// creating) the cache.
fn cached_ref(paths: &HostPaths, source: &SourceRef, server: Option<&url::Url>) -> Option<Ref> {
    let layout = CacheLayout::new(paths.cache_dir());
    let file = match source {
        SourceRef::Url(_) | SourceRef::File(_) => {
            layout.ref_file(RefKind::Tarball, &source.display())
        }
        SourceRef::Images(a) => {
            let alias = crate::source::simplestreams::parse_alias(a).ok()?;
            let arch = crate::source::arch::host_debian_arch();
            let key = crate::source::images::ref_key(server?, &alias.alias, arch);
            layout.ref_file(RefKind::Images, &key)
        }
        SourceRef::Oci(s) => {
            let oci = crate::oci::OciSource::parse(s).ok()?;
            let key = crate::source::oci_pull::ref_key(&oci, &crate::oci::PlatformSpec::host());
            layout.ref_file(RefKind::Oci, &key)
        }
    };
    let bytes = std::fs::read(file).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Which keys a signature from `server` is checked against, for `--dry-run`.
fn trust_note(paths: &HostPaths, server: &url::Url) -> String {
    let keys = format!(
        "--keyring, {}/, importd's keyrings, the template's keyring",
        paths.keys_dir().display()
    );
    if crate::source::images::is_default_server(server) {
        format!("# trust: the built-in LXC image key, {keys}\n")
    } else {
        format!(
            "# trust: {keys} (the built-in LXC image key is for {} only)\n",
            crate::source::images::DEFAULT_SERVER
        )
    }
}

fn render(comp: &Composition, req: &BuildRequest, instance_id: String) -> Result<BuildPlan> {
    comp.render(&RenderInputs {
        machine: req.name.clone(),
        instance_id,
        nvidia: req.nvidia.clone(),
    })
}

/// What `--dry-run` prints: the source and the digest it would use, every file with its
/// content, every command. Reads the cache's refs only; writes nothing.
pub fn dry_run(paths: &HostPaths, comp: &Composition, req: &BuildRequest) -> Result<String> {
    let spec = comp.spec();
    let pull = pull_spec(spec, req)?;
    let server = images_server(spec, req.images_server.as_ref())?;
    let cached = cached_ref(paths, &spec.source.source, server.as_ref().map(|s| &s.url));
    let digest = cached.as_ref().and_then(|r| {
        r.blob("image")
            .or_else(|| r.blob("manifest"))
            .map(|b| b.digest)
    });
    let instance = match &digest {
        Some(d) => instance_id(&spec.content_hash, d, &req.name),
        // The id depends on the image's digest, known only once it is pulled.
        None => "sandbox-(derived from the image digest after the pull)".to_string(),
    };
    let plan = render(comp, req, instance)?;
    let mut out = String::new();
    out.push_str(&format!(
        "# dry run: nothing is pulled, written or started\n# pull: {} (verify: {})\n",
        spec.source.source.display(),
        pull.mode().as_str()
    ));
    if let Some(s) = &server {
        out.push_str(&format!(
            "# images server: {} ({})\n",
            crate::transport::redact_url(&s.url),
            s.chosen_by
        ));
        if pull.mode() == VerifyMode::Signature {
            out.push_str(&trust_note(paths, &s.url));
        }
    }
    match (&digest, &cached) {
        (Some(d), Some(r)) => out.push_str(&format!(
            "# image: {d} (cached{})\n",
            r.version
                .as_ref()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default()
        )),
        _ => out.push_str("# image: not cached yet (the build pulls it first)\n"),
    }
    let machine = paths.machines_dir.join(&req.name);
    out.push_str(&format!(
        "# rootfs: {}{}\n",
        machine.display(),
        if req.force {
            " (replaced: --force)"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "# state: {}\n",
        state::state_path(&paths.sandboxes_dir, &req.name).display()
    ));
    if zfs::on_zfs(&paths.machines_dir).unwrap_or(false) {
        out.push_str(&format!(
            "# zfs: zfs list -H -o name {}; zfs {}\n",
            paths.machines_dir.display(),
            zfs::create_args("<parent>/NAME", &machine).join(" ")
        ));
    }
    out.push_str(&format!(
        "# fix-ups where needed: /etc/machine-id emptied, /etc/hostname = {}, a dangling /etc/resolv.conf replaced, pts/0…pts/9 in /etc/securetty, systemd-networkd enabled (veth)\n",
        req.name
    ));
    let enable = req.enable || spec.enable;
    for cmd in handoff_commands(&req.name, enable, !req.no_start) {
        out.push_str(&format!("# run: machinectl {}\n", cmd.join(" ")));
    }
    out.push_str(&plan.dry_run_text());
    Ok(out)
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
    let target = machines_dir.join(&req.name);
    let nspawn_path = paths.host(&format!("/etc/systemd/nspawn/{}.nspawn", req.name));
    // Refused before anything is pulled, `--force` or not: NAME holding another machine's file.
    materialise::existing_machine(machines_dir, &req.name)?;
    if !req.force {
        for existing in [&target, &nspawn_path] {
            if std::fs::symlink_metadata(existing).is_ok() {
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
    } = pull_and_render(paths, progress, comp, req)?;
    let _lock = cache.lock(
        &format!("machine-{}", target.display()),
        &format!("another build or pull of machine `{}`", req.name),
    )?;
    materialise::ensure_machines_dir(machines_dir)?;
    let enable = req.enable || spec.enable;
    let previous = state::read_state(&paths.sandboxes_dir, &req.name)
        .ok()
        .flatten();

    let on_zfs = zfs::on_zfs(machines_dir)?;
    if on_zfs && !host.available(Program::Zfs) {
        tracing::warn!(
            "{} is on ZFS, but {}: building `{}` as a plain directory, not a dataset of its own",
            machines_dir.display(),
            host.unavailable(Program::Zfs),
            req.name
        );
    }
    let (fixups, state) = if on_zfs && host.available(Program::Zfs) {
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
        let (staging, fixups) =
            unpack_and_layer(progress, &cache, &fetched, &plan, machines_dir, &req.name)?;
        let state = make_state(paths, &plan, &fetched, req, None, enable);
        let host_files = write_host_side(paths, &plan, &state, req.force)?;
        let opts = MaterialiseOptions {
            force: req.force,
            read_only: false,
        };
        materialise::publish(staging, machines_dir, &req.name, None, &opts)?;
        host_files.commit();
        (fixups, state)
    };
    let (handoff, skipped_handoff) = hand_off(host, &req.name, enable, !req.no_start)?;
    Ok(BuildReport {
        state,
        fixups,
        handoff,
        skipped_handoff,
    })
}

/// The verified base image, the cache it is in, and the plan rendered for it.
pub(crate) struct Pulled {
    pub cache: Cache,
    pub fetched: FetchedImage,
    pub plan: BuildPlan,
}

/// Checks the template against this host, pulls the base (verified) and renders the plan
/// with the instance id derived from the image's digest.
pub(crate) fn pull_and_render(
    paths: &HostPaths,
    progress: ProgressMode,
    comp: &Composition,
    req: &BuildRequest,
) -> Result<Pulled> {
    let spec = comp.spec();
    // Before anything is pulled: a template the host cannot serve fails now.
    render(comp, req, "sandbox-check".into())?;
    let cache = Cache::open(&paths.cache_dir())?;
    let pull = pull_spec(spec, req)?;
    let server = images_server(spec, req.images_server.as_ref())?;
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
    )?;
    Ok(Pulled {
        cache,
        fetched,
        plan,
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

fn make_state(
    paths: &HostPaths,
    plan: &BuildPlan,
    fetched: &FetchedImage,
    req: &BuildRequest,
    zfs_dataset: Option<String>,
    enabled: bool,
) -> SandboxState {
    let spec = &plan.spec;
    SandboxState {
        name: req.name.clone(),
        template: spec.name.clone(),
        templates: spec.templates.clone(),
        content_hash: spec.content_hash,
        vars: spec.vars.clone(),
        source: spec.source.source.display(),
        digest: fetched.image.digest,
        verification: fetched.verification.clone(),
        version: fetched.version.clone(),
        machines_dir: paths.machines_dir.clone(),
        rootfs: paths.machines_dir.join(&req.name),
        zfs_dataset,
        nspawn_file: paths.host(&format!("/etc/systemd/nspawn/{}.nspawn", req.name)),
        dropin_dir: paths.host(&dropin::dropin_dir(&req.name)),
        enabled,
        created_at: crate::cache::refs::now_rfc3339(),
        cloud_init_seed: plan.seed_from.clone(),
    }
}

/// Writes the plan's host files and the state record; with `force`, removes the drop-ins an
/// earlier build wrote that this one does not. Restored on drop unless committed.
fn write_host_side(
    paths: &HostPaths,
    plan: &BuildPlan,
    state: &SandboxState,
    force: bool,
) -> Result<HostFiles> {
    let mut files = HostFiles::new();
    for f in plan.files.iter().filter(|f| f.base == Base::Host) {
        let Content::Bytes(bytes) = &f.content else {
            bail!("internal: host file /{} is planned as a symlink", f.path);
        };
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
    Ok(files)
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
) -> Result<(FixupReport, SandboxState)> {
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
        std::fs::create_dir(&target)
            .with_context(|| format!("creating the mountpoint {}", target.display()))?;
    }
    // Unpacked into a staging dir inside the dataset (importd's flattening applies), then
    // moved up: renames within one filesystem.
    let staging = unpack_base(progress, cache, fetched, &target, &req.name)?;
    move_contents_up(&staging, &target)?;
    drop(staging);
    let fixups = layer_into(&target, plan, progress)?;
    let state = make_state(paths, plan, fetched, req, Some(dataset.clone()), enable);
    let host_files = write_host_side(paths, plan, &state, req.force)?;
    host_files.commit();
    guard.keep = true;
    Ok((fixups, state))
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

/// Moves every entry of `staging` into `dest` (its parent) and gives `dest` the staging
/// directory's mode and owner (the tarball's `./` entry).
fn move_contents_up(staging: &Staging, dest: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let src = staging.path();
    let meta = std::fs::metadata(src).with_context(|| format!("inspecting {}", src.display()))?;
    for entry in std::fs::read_dir(src).with_context(|| format!("listing {}", src.display()))? {
        let entry = entry.with_context(|| format!("listing {}", src.display()))?;
        let to: PathBuf = dest.join(entry.file_name());
        std::fs::rename(entry.path(), &to)
            .with_context(|| format!("moving {} to {}", entry.path().display(), to.display()))?;
    }
    std::os::unix::fs::lchown(dest, Some(meta.uid()), Some(meta.gid()))
        .with_context(|| format!("chown {}", dest.display()))?;
    std::fs::set_permissions(dest, meta.permissions())
        .with_context(|| format!("chmod {}", dest.display()))
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

    fn spec(source: &str, template_server: Option<&str>) -> TemplateSpec {
        use crate::template::plan::{ServerDecl, SourceSpec};
        TemplateSpec {
            name: "t".into(),
            templates: vec!["t".into()],
            content_hash: Digest::of(b"t"),
            source: SourceSpec {
                source: SourceRef::parse(source).unwrap(),
                raw: source.into(),
                from_template: "t".into(),
                verify: None,
                checksum: None,
                keyrings: Vec::new(),
            },
            images_server: template_server.map(|url| ServerDecl {
                url: url.into(),
                from_template: "mirror".into(),
                place: "/t/mirror/template.toml:2".into(),
            }),
            vars: Default::default(),
            enable: false,
        }
    }

    #[test]
    fn the_command_line_wins_over_the_template_over_the_default() {
        let flag = ServerOverride {
            url: "http://flag/x".into(),
            from_env: false,
        };
        let env = ServerOverride {
            url: "http://env/".into(),
            from_env: true,
        };
        let images = spec("images:debian/bookworm/cloud", Some("http://tpl/"));
        let chosen = |spec: &TemplateSpec, given: Option<&ServerOverride>| {
            let s = images_server(spec, given).unwrap().unwrap();
            (s.url.to_string(), s.chosen_by.to_string())
        };
        assert_eq!(
            chosen(&images, Some(&flag)),
            ("http://flag/x/".into(), "--images-server".into())
        );
        assert_eq!(
            chosen(&images, Some(&env)),
            ("http://env/".into(), "$SANDBOX_IMAGES_SERVER".into())
        );
        assert_eq!(
            chosen(&images, None),
            (
                "http://tpl/".into(),
                "images_server at /t/mirror/template.toml:2".into()
            )
        );
        let plain = spec("images:debian/bookworm/cloud", None);
        assert_eq!(
            chosen(&plain, None),
            (
                "https://images.linuxcontainers.org/".into(),
                "the default".into()
            )
        );
        // Other sources take no server, whatever the command line says (as `sandbox pull`).
        let tarball = spec("https://example.org/rootfs.tar.xz", None);
        assert_eq!(images_server(&tarball, Some(&flag)).unwrap(), None);

        let bad = ServerOverride {
            url: "ftp://x/".into(),
            from_env: true,
        };
        let e = format!("{:#}", images_server(&plain, Some(&bad)).unwrap_err());
        assert!(
            e.starts_with("$SANDBOX_IMAGES_SERVER: image server ftp://x/"),
            "{e}"
        );
    }

    #[test]
    fn the_pull_takes_the_server_and_the_keyrings() {
        let req = BuildRequest {
            keyrings: vec!["/k.asc".into()],
            images_server: Some(ServerOverride {
                url: "http://127.0.0.1:1/sub".into(),
                from_env: false,
            }),
            offline: true,
            ..Default::default()
        };
        let pull = pull_spec(&spec("images:debian/bookworm/cloud", None), &req).unwrap();
        assert_eq!(
            pull.images_server.as_deref(),
            Some("http://127.0.0.1:1/sub/")
        );
        assert_eq!(pull.keyrings, vec![PathBuf::from("/k.asc")]);
        assert!(pull.offline);
        let pull = pull_spec(
            &spec("images:debian/bookworm/cloud", None),
            &BuildRequest::default(),
        )
        .unwrap();
        assert_eq!(
            pull.images_server.as_deref(),
            Some("https://images.linuxcontainers.org/")
        );
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
