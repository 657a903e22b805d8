//! `sandbox build --dry-run`: the plan and every command a build would run, from the
//! templates and the cache's refs, read without opening the cache (that would create
//! directories); nothing is changed.

use crate::machine::storage::Storage;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::base::{images_server, pull_spec};
use super::execute::{BuildRequest, handoff_commands, instance_id, render};
use super::hostcheck;
use crate::cache::Ref;
use crate::cache::layout::{CacheLayout, RefKind};
use crate::digest::Digest;
use crate::machine::state;
use crate::machine::zfs;
use crate::paths::HostPaths;
use crate::source::SourceRef;
use crate::template::compose::Composition;
use crate::template::library::Content;
use crate::template::plan::{BakeStep, Base};
use crate::verify::mode::VerifyMode;

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
    let bytes = fs_err::read(file).ok()?;
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

/// What `--dry-run` shows: the source and the digest it would use, what the host check found,
/// every file, every command. `--json` prints it as an object (file contents left out: seed
/// files may hold secrets); people get [`DryRun::text`].
#[derive(Debug, Serialize)]
pub struct DryRun {
    pub dry_run: bool,
    pub name: String,
    pub templates: Vec<String>,
    pub source: String,
    pub verify: VerifyMode,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images_server: Option<String>,
    /// The cached image's digest, when the cache has it (the build pulls it otherwise).
    pub image: Option<Digest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub rootfs: PathBuf,
    /// `--force`: an existing sandbox of that name is replaced.
    pub replaces: bool,
    pub state: PathBuf,
    /// The `zfs` commands, when the machines dir is on ZFS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zfs: Option<String>,
    /// What the host check left out or did not check.
    pub host: Vec<String>,
    /// The machinectl commands the build would run.
    pub handoff: Vec<String>,
    /// Paths removed from the rootfs before the files are written.
    pub remove: Vec<String>,
    pub files: Vec<DryRunFile>,
    pub bake: Vec<BakeStep>,
    #[serde(skip)]
    text: String,
}

#[derive(Debug, Serialize)]
pub struct DryRunFile {
    /// `host` or `rootfs`.
    pub base: &'static str,
    pub path: String,
    pub mode: u32,
    /// A symbolic link's target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
}

impl DryRun {
    /// The listing for people (file contents included).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The dry run of `req`. Reads the cache's refs only; writes nothing.
pub fn dry_run(paths: &HostPaths, comp: &Composition, req: &BuildRequest) -> Result<DryRun> {
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
    let host = hostcheck::check(paths, &render(comp, req, "sandbox-check".into(), &[])?)?;
    let plan = render(comp, req, instance, &host.omit)?;
    let mut out = String::new();
    out.push_str(&format!(
        "# dry run: nothing is pulled, written or started\n# pull: {} (verify: {})\n{}",
        spec.source.source.display(),
        pull.mode().as_str(),
        host.dry_run_text()
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
    let state_path = state::state_path(&paths.sandboxes_dir, &req.name);
    out.push_str(&format!("# state: {}\n", state_path.display()));
    let storage = req.storage.or(spec.storage).unwrap_or_default();
    out.push_str(&format!(
        "# storage: {} (auto: a ZFS clone, a btrfs snapshot or a reflinked copy of the stored image where the filesystem allows, else unpacked)\n",
        storage.as_str()
    ));
    let zfs_line = zfs::on_zfs(&paths.machines_dir).unwrap_or(false).then(|| {
        let make = if storage == Storage::Copy {
            zfs::create_args("<parent>/NAME", &machine).join(" ")
        } else {
            format!(
                "clone -o mountpoint={} <parent>/{}/<image>@{} <parent>/NAME",
                machine.display(),
                crate::machine::store::IMAGES_DATASET,
                crate::machine::store::SNAPSHOT
            )
        };
        format!(
            "zfs list -H -o name {}; zfs {make}",
            paths.machines_dir.display()
        )
    });
    if let Some(z) = &zfs_line {
        out.push_str(&format!("# zfs: {z}\n"));
    }
    out.push_str(&format!(
        "# fix-ups where needed: /etc/machine-id emptied, /etc/hostname = {}, a dangling /etc/resolv.conf replaced, pts/0…pts/9 in /etc/securetty, systemd-networkd enabled (veth)\n",
        req.name
    ));
    let enable = req.enable || spec.enable;
    let handoff: Vec<String> = handoff_commands(&req.name, enable, !req.no_start)
        .into_iter()
        .map(|cmd| format!("machinectl {}", cmd.join(" ")))
        .collect();
    for cmd in &handoff {
        out.push_str(&format!("# run: {cmd}\n"));
    }
    out.push_str(&plan.dry_run_text());
    let host_notes = host
        .omit
        .iter()
        .map(|o| format!("{}={} left out: {}", o.key, o.value, o.why))
        .chain(host.skipped.iter().cloned())
        .collect();
    let files = plan
        .files
        .iter()
        .map(|f| DryRunFile {
            base: match f.base {
                Base::Host => "host",
                Base::Rootfs => "rootfs",
            },
            path: format!("/{}", f.path),
            mode: f.mode,
            symlink: match &f.content {
                Content::Symlink(t) => Some(t.clone()),
                Content::Bytes(_) => None,
            },
        })
        .collect();
    Ok(DryRun {
        dry_run: true,
        name: req.name.clone(),
        templates: spec.templates.clone(),
        source: spec.source.source.display(),
        verify: pull.mode(),
        images_server: server.map(|s| crate::transport::redact_url(&s.url)),
        image: digest,
        version: cached.and_then(|r| r.version),
        rootfs: machine,
        replaces: req.force,
        state: state_path,
        zfs: zfs_line,
        host: host_notes,
        handoff,
        remove: plan.remove.clone(),
        files,
        bake: plan.bake.clone(),
        text: out,
    })
}
