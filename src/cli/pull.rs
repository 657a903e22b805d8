//! `sandbox pull`: fetch, verify, cache, materialise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::Settings;
use crate::cache::{Cache, Verification};
use crate::digest::Digest;
use crate::machine::host::SystemHost;
use crate::machine::materialise::{self, MaterialiseOptions};
use crate::machine::name;
use crate::machine::place::{self, PlaceCtx, Tree};
use crate::machine::state::{self, SandboxState};
use crate::machine::storage::Storage;
use crate::oci::{OciSource, PlatformSpec};
use crate::pull::{FetchedImage, OciOptions, PullSpec, fetch_verified};
use crate::source::oci_pull::OciFetched;
use crate::source::registry::auth::{Credentials, CredsParser};
use crate::source::simplestreams as ss;
use crate::source::{SourceRef, naming};
use crate::verify::mode::VerifyMode;

#[derive(Args, Debug)]
pub struct PullArgs {
    /// What must be verified: nothing, a checksum file, or a signed checksum file.
    #[arg(long, value_enum, default_value = "signature", value_name = "MODE")]
    pub verify: VerifyMode,
    /// Pin the image's digest (sha256:HEX) instead of fetching a checksum file.
    #[arg(long, value_name = "sha256:HEX")]
    pub checksum: Option<Digest>,
    /// A keyring (armored or binary) to trust for this pull; may be repeated.
    #[arg(long, value_name = "FILE")]
    pub keyring: Vec<PathBuf>,
    /// Replace an existing machine of the same name.
    #[arg(long)]
    pub force: bool,
    /// Make the result immutable (chattr +i on its top directory).
    #[arg(long)]
    pub read_only: bool,
    /// How the tree is made: from the unpacked-image store by a ZFS clone, a btrfs snapshot
    /// or a reflinked copy, or unpacked anew (copy) [default: the best the machines dir's
    /// filesystem offers].
    #[arg(long, value_enum, default_value = "auto", value_name = "BACKEND")]
    pub storage: Storage,
    /// Use only the cache; never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// images: the architecture to pull (Debian names: amd64, arm64, …) [default: the host's].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<String>,
    /// images: the simplestreams server [default: $SANDBOX_IMAGES_SERVER or https://images.linuxcontainers.org].
    #[arg(long, value_name = "URL", env = "SANDBOX_IMAGES_SERVER")]
    pub images_server: Option<String>,
    /// images: accept a version older than the one pulled last time.
    #[arg(long)]
    pub allow_downgrade: bool,
    /// OCI: the platform to pick from a multi-platform image, os/arch[/variant] [default: the host's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// docker://: registry credentials (visible to other local users in the process list:
    /// prefer an auth file, $REGISTRY_AUTH_FILE or ~/.docker/config.json).
    #[arg(long, value_name = "USER:PASSWORD", value_parser = CredsParser)]
    pub creds: Option<Credentials>,
    /// docker://: require HTTPS with a valid certificate; `false` also allows plain http
    /// (a registry on localhost).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub tls_verify: bool,
    /// docker://: require a cosign signature of the image by this PEM public key, whatever
    /// the signature policy says (and on top of what it requires).
    #[arg(long, value_name = "FILE")]
    pub cosign_key: Option<PathBuf>,
    /// docker://: require a keyless (Sigstore) signature by this identity and issuer, whatever
    /// the signature policy says (and on top of what it requires).
    #[command(flatten)]
    pub keyless: super::keyless_args::KeylessArgs,
    /// docker://: read simple signing (signedBy) signatures from this lookaside directory
    /// instead of the one `<sandboxes_dir>/registries.d/*.yaml` configures.
    #[arg(long, value_name = "DIR")]
    pub lookaside: Option<PathBuf>,
    /// An http(s):// or file:// URL or a local path of a rootfs tarball, images:ALIAS[@VERSION],
    /// docker://REF, oci-layout:DIR[:TAG] or oci-archive:FILE[:TAG].
    pub source: String,
    /// The machine name [default: the file name minus its tar suffix, or the alias with `/` → `-`];
    /// `-` only fills the cache.
    pub name: Option<String>,
}

#[derive(Serialize)]
struct PullResult {
    name: Option<String>,
    path: Option<PathBuf>,
    source: String,
    digest: Digest,
    verification: Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nspawn: Option<PathBuf>,
}

pub fn run(settings: &Settings, args: PullArgs) -> Result<ExitCode> {
    let source = SourceRef::parse(&args.source)?;
    let oci = check_options(&source, &args)?;
    // How the image is named in messages and records (an OCI reference as parsed).
    let shown = oci
        .as_ref()
        .map_or_else(|| source.display(), |o| o.to_string());
    let name = match args.name.as_deref() {
        Some("-") => None,
        Some(n) => Some(n.to_string()),
        None => Some(default_name(&source)?),
    };
    if let Some(n) = &name {
        check_name(settings, n, args.force)?;
    }
    let spec = PullSpec {
        source: source.clone(),
        verify: args.verify,
        checksum: args.checksum,
        keyrings: args.keyring.clone(),
        extra_keys: Vec::new(),
        offline: args.offline,
        arch: args.arch.clone(),
        // An empty `$SANDBOX_IMAGES_SERVER` is unset, as `build` reads it.
        images_server: args.images_server.clone().filter(|s| !s.trim().is_empty()),
        allow_downgrade: args.allow_downgrade,
        oci: OciOptions {
            creds: args.creds.clone(),
            tls_verify: args.tls_verify,
            cosign_key: args.cosign_key.clone(),
            keyless: args.keyless.requirement(&settings.paths.sandboxes_dir)?,
            lookaside: args.lookaside.clone(),
            platform: match &args.platform {
                Some(p) => Some(PlatformSpec::parse(p)?),
                None => None,
            },
        },
        // A machine made from the store never reads the cached tarball: it is hashed again
        // only when it is unpacked (`pull::ensure_intact`). `-` (cache only) checks it now.
        defer_rehash: name.is_some(),
        candidate: None,
    };
    let cache = Cache::open(&settings.paths.cache_dir())?;
    let fetched = fetch_verified(&settings.paths, settings.progress, &cache, &spec)?;

    let mut placed = Placed::default();
    if let Some(n) = &name {
        let machines_dir = &settings.paths.machines_dir;
        let _lock = cache.lock(
            &materialise::machine_lock_name(machines_dir, n),
            &format!("another pull into machine `{n}`"),
        )?;
        materialise::sweep_staging(machines_dir, n)?;
        crate::assemble::hostfiles::recover_dead_build(&settings.paths.sandboxes_dir, n)?;
        let host = SystemHost::for_paths(&settings.paths);
        let (backend, _) = place::choose_backend(&settings.paths, &host, args.storage)?;
        let previous = state::read_state(&settings.paths.sandboxes_dir, n)
            .ok()
            .flatten();
        let bar = settings
            .progress
            .task(&format!("Unpacking {}", fetched.file_name));
        let into = || format!("materialising {shown} into {}", machines_dir.display());
        let intact = |f: &FetchedImage| {
            crate::pull::ensure_intact(&settings.paths, settings.progress, &cache, &spec, f)
        };
        let ctx = PlaceCtx {
            paths: &settings.paths,
            host: &host,
            cache: &cache,
            backend,
            intact: &intact,
        };
        let (tree, placement) = place::make_tree(
            &ctx,
            &fetched,
            &shown,
            n,
            args.force,
            previous.as_ref(),
            &bar,
        )
        .with_context(into)?;
        let nspawn =
            materialise::image_settings(&cache, &fetched, tree.path()).with_context(into)?;
        let opts = MaterialiseOptions {
            force: args.force,
            read_only: args.read_only,
        };
        let path = match tree {
            Tree::Staged(staging) => {
                materialise::publish(staging, machines_dir, n, nspawn.as_deref(), &opts)
                    .with_context(into)?
            }
            Tree::InPlace(clone) => {
                materialise::finish_in_place(machines_dir, n, nspawn.as_deref(), &opts)
                    .with_context(into)?;
                clone.keep();
                machines_dir.join(n)
            }
        };
        placed = Placed {
            path: Some(path),
            nspawn: nspawn.map(|_| machines_dir.join(format!("{n}.nspawn"))),
        };
        // The machine's record, as a build writes one: `ls` shows what it came from.
        let record = SandboxState::pulled(
            n,
            &shown,
            fetched.image.digest,
            &fetched.verification,
            fetched.version.clone(),
            machines_dir,
            placed.nspawn.clone(),
            crate::cache::refs::now_rfc3339(),
        )
        .placed(&placement);
        state::write_state(&settings.paths.sandboxes_dir, &record)?;
    }
    match fetched.oci() {
        None => report_tarball(settings, shown, name, &fetched, placed),
        Some(o) => report_oci(settings, shown, name, o, placed),
    }
}

/// The options that only some source kinds take: refused for the others. For an OCI source,
/// its parsed form.
fn check_options(source: &SourceRef, args: &PullArgs) -> Result<Option<OciSource>> {
    let SourceRef::Oci(s) = source else {
        if let SourceRef::Images(a) = source {
            ss::parse_alias(a)?;
        }
        if args.platform.is_some() || args.creds.is_some() || !args.tls_verify {
            bail!(
                "--platform, --creds and --tls-verify are for OCI sources (docker://, oci-layout:, oci-archive:)"
            );
        }
        if args.cosign_key.is_some() || args.lookaside.is_some() || args.keyless.any() {
            bail!("--cosign-key, --lookaside and --certificate-identity are for docker:// sources");
        }
        return Ok(None);
    };
    let oci = OciSource::parse(s)?;
    if (args.cosign_key.is_some() || args.lookaside.is_some() || args.keyless.any())
        && !matches!(oci, OciSource::Registry(_))
    {
        bail!(
            "--cosign-key, --lookaside and --certificate-identity are for docker:// sources: \
             {oci} is checked by digest only"
        );
    }
    if args.checksum.is_some() {
        bail!("--checksum pins tarballs; pin an OCI image by its digest: docker://REPO@sha256:HEX");
    }
    if !args.keyring.is_empty() {
        bail!(
            "--keyring is for tarball and images: signatures; OCI signatures are not yet checked"
        );
    }
    Ok(Some(oci))
}

/// The machine name when none is given (`source::naming`).
fn default_name(source: &SourceRef) -> Result<String> {
    naming::default_name(source)?.with_context(|| {
        format!(
            "cannot derive a machine name from {}; give one as the second argument",
            source.display()
        )
    })
}

/// Where a pull put its machine, when it made one.
#[derive(Default)]
struct Placed {
    path: Option<PathBuf>,
    nspawn: Option<PathBuf>,
}

fn report_tarball(
    settings: &Settings,
    source: String,
    name: Option<String>,
    fetched: &FetchedImage,
    placed: Placed,
) -> Result<ExitCode> {
    let result = PullResult {
        name,
        path: placed.path,
        source,
        digest: fetched.image.digest,
        verification: fetched.verification.clone(),
        version: fetched.version.clone(),
        nspawn: placed.nspawn,
    };
    if settings.json {
        super::print_json(&result)?;
    } else {
        let how = result.verification.summary();
        match &result.path {
            Some(p) => settings.say(format!(
                "Pulled {} into {} ({}, {how})",
                result.source,
                p.display(),
                result.digest
            )),
            None => settings.say(format!(
                "Cached {} ({}, {how})",
                result.source, result.digest
            )),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A valid name, and free unless `--force`.
fn check_name(settings: &Settings, n: &str, force: bool) -> Result<()> {
    name::validate(n)
        .map_err(|e| anyhow::anyhow!("{e}; give another name as the second argument"))?;
    let target = settings.paths.machines_dir.join(n);
    // Something there that is not a machine (another machine's settings file) is refused
    // before anything is fetched, `--force` or not.
    let exists = crate::machine::materialise::existing_machine(&settings.paths.machines_dir, n)?;
    if !force && exists {
        bail!(
            "machine `{n}` already exists at {}; pass --force to replace it",
            target.display()
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct OciPullResult {
    name: Option<String>,
    path: Option<PathBuf>,
    source: String,
    /// The manifest digest: what names this image.
    digest: Digest,
    manifest_digest: Digest,
    config_digest: Digest,
    platform: String,
    verification: Verification,
    #[serde(skip_serializing_if = "Option::is_none")]
    nspawn: Option<PathBuf>,
    layer_bytes_fetched: u64,
}

fn report_oci(
    settings: &Settings,
    source: String,
    name: Option<String>,
    fetched: &OciFetched,
    placed: Placed,
) -> Result<ExitCode> {
    let manifest_digest = fetched.resolved.manifest.descriptor.digest;
    let result = OciPullResult {
        name,
        path: placed.path,
        source,
        digest: manifest_digest,
        manifest_digest,
        config_digest: fetched.resolved.image.config.digest,
        platform: fetched.platform.clone(),
        verification: fetched.verification.clone(),
        nspawn: placed.nspawn,
        layer_bytes_fetched: fetched.layer_bytes_fetched,
    };
    if settings.json {
        super::print_json(&result)?;
    } else {
        let how = result.verification.summary();
        match &result.path {
            Some(p) => settings.say(format!(
                "Pulled {} ({}) into {} ({}, {how})",
                result.source,
                result.platform,
                p.display(),
                result.manifest_digest
            )),
            None => settings.say(format!(
                "Cached {} ({}, {}, {how})",
                result.source, result.platform, result.manifest_digest
            )),
        }
    }
    Ok(ExitCode::SUCCESS)
}
