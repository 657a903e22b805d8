//! `sandbox build --dry-run`: the plan and every command a build would run, from the
//! templates and the cache's refs, read without opening the cache (that would create
//! directories); nothing is changed.

use anyhow::Result;

use super::base::{images_server, pull_spec};
use super::execute::{BuildRequest, handoff_commands, instance_id, render};
use super::hostcheck;
use crate::cache::Ref;
use crate::cache::layout::{CacheLayout, RefKind};
use crate::machine::state;
use crate::machine::zfs;
use crate::paths::HostPaths;
use crate::source::SourceRef;
use crate::template::compose::Composition;
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
