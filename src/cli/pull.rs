//! `sandbox pull`: fetch, verify, cache, materialise.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;

use super::Settings;
use super::trust::trust_store;
use crate::cache::store::hash_file;
use crate::cache::{Cache, RefBlob, Verification};
use crate::machine::materialise::{self, MaterialiseOptions};
use crate::machine::name;
use crate::source::SourceRef;
use crate::source::arch::{host_debian_arch, normalise_arch};
use crate::source::http::Http;
use crate::source::images::{self, ImagesRequest};
use crate::source::simplestreams as ss;
use crate::source::sums::VerifyMode;
use crate::source::tarball::{self, TarballRequest};
use crate::verify::Digest;

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
    /// An http(s):// or file:// URL or a local path of a rootfs tarball, or images:ALIAS[@VERSION].
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

/// What the fetch side hands to the materialise side.
struct Fetched {
    image: RefBlob,
    nspawn: Option<RefBlob>,
    verification: Verification,
    version: Option<String>,
    file_name: String,
}

pub fn run(settings: &Settings, args: PullArgs) -> Result<ExitCode> {
    let source = SourceRef::parse(&args.source)?;
    let alias = match &source {
        SourceRef::Url(_) | SourceRef::File(_) => None,
        SourceRef::Images(a) => Some(ss::parse_alias(a)?),
        SourceRef::Oci(_) => bail!(
            "OCI sources (docker://, oci-layout:, oci-archive:) are not yet available in this version"
        ),
    };
    let name = match args.name.as_deref() {
        Some("-") => None,
        Some(n) => Some(n.to_string()),
        None => Some(match &alias {
            Some(a) => ss::default_machine_name(a),
            None => tarball::default_name(&source).with_context(|| {
                format!(
                    "cannot derive a machine name from {}; give one as the second argument",
                    source.display()
                )
            })?,
        }),
    };
    if let Some(n) = &name {
        name::validate(n)
            .map_err(|e| anyhow::anyhow!("{e}; give another name as the second argument"))?;
        let target = settings.paths.machines_dir.join(n);
        if !args.force && std::fs::symlink_metadata(&target).is_ok() {
            bail!(
                "machine `{n}` already exists at {}; pass --force to replace it",
                target.display()
            );
        }
    }
    let mode = if args.checksum.is_some() && args.verify == VerifyMode::Signature {
        VerifyMode::Checksum
    } else {
        args.verify
    };
    if mode == VerifyMode::No {
        tracing::warn!(
            "--verify=no: {} will NOT be verified; anyone on the path to the server can change it",
            source.display()
        );
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cache = Cache::open(&settings.paths.cache_dir())?;
    let http = Http::new()?;
    let fetched = match alias {
        None => {
            let trust = if mode == VerifyMode::Signature {
                Some(trust_store(settings, &args.keyring, false)?)
            } else {
                None
            };
            let req = TarballRequest {
                source: &source,
                mode,
                pinned: args.checksum,
                trust: trust.as_ref(),
                offline: args.offline,
            };
            let t = runtime
                .block_on(tarball::fetch(&req, &cache, &http, settings.progress))
                .with_context(|| format!("pulling {}", source.display()))?;
            Fetched {
                image: t.image,
                nspawn: t.nspawn,
                verification: t.verification,
                version: None,
                file_name: t.file_name,
            }
        }
        Some(alias) => {
            if args.checksum.is_some() {
                bail!(
                    "--checksum pins tarball URLs; images: sources are checked against their signed SHA256SUMS"
                );
            }
            let server = images::server_url(args.images_server.as_deref())?;
            // The built-in LXC key vouches for the default server only.
            let builtin = images::is_default_server(&server);
            let trust = if mode == VerifyMode::Signature {
                Some(trust_store(settings, &args.keyring, builtin)?)
            } else {
                None
            };
            let arch = args
                .arch
                .as_deref()
                .map(normalise_arch)
                .unwrap_or_else(|| host_debian_arch().to_string());
            let req = ImagesRequest {
                alias,
                arch,
                server,
                mode,
                trust: trust.as_ref(),
                offline: args.offline,
                allow_downgrade: args.allow_downgrade,
            };
            let i = runtime
                .block_on(images::fetch(&req, &cache, &http, settings.progress))
                .with_context(|| format!("pulling {}", source.display()))?;
            Fetched {
                image: i.image,
                nspawn: None,
                verification: i.verification,
                version: Some(i.version),
                file_name: i.file_name,
            }
        }
    };
    let blob = cache
        .blob(&fetched.image.digest)
        .context("internal: the image left the cache")?;

    let mut result = PullResult {
        name: name.clone(),
        path: None,
        source: source.display(),
        digest: fetched.image.digest,
        verification: fetched.verification.clone(),
        version: fetched.version.clone(),
        nspawn: None,
    };
    if let Some(n) = &name {
        let _lock = cache.lock(
            &format!("machine-{}", settings.paths.machines_dir.join(n).display()),
            &format!("another pull into machine `{n}`"),
        )?;
        // A blob that rotted in the cache since it was verified must not become a machine.
        let (actual, _) = hash_file(&blob)?;
        if actual != fetched.image.digest {
            std::fs::remove_file(&blob).ok();
            bail!(
                "the cached image {} is corrupt (now {actual}); it was removed, pull again",
                fetched.image.digest
            );
        }
        let nspawn = match &fetched.nspawn {
            Some(b) => Some(cache.read_blob(&b.digest)?),
            None => None,
        };
        materialise::ensure_machines_dir(&settings.paths.machines_dir)?;
        let bar = settings
            .progress
            .task(&format!("Unpacking {}", fetched.file_name));
        let staging =
            materialise::unpack_into_staging(&blob, &settings.paths.machines_dir, n, &bar)
                .with_context(|| {
                    format!(
                        "materialising {} into {}",
                        source.display(),
                        settings.paths.machines_dir.display()
                    )
                })?;
        let opts = MaterialiseOptions {
            force: args.force,
            read_only: args.read_only,
        };
        let path = materialise::publish(
            staging,
            &settings.paths.machines_dir,
            n,
            nspawn.as_deref(),
            &opts,
        )?;
        if nspawn.is_some() {
            result.nspawn = Some(settings.paths.machines_dir.join(format!("{n}.nspawn")));
        }
        result.path = Some(path);
    }

    if settings.json {
        super::print_json(&result)?;
    } else {
        let how = match (
            &result.verification.key_fingerprint,
            result.verification.mode.as_str(),
        ) {
            (Some(fpr), _) => format!("signature by {fpr}"),
            (None, "checksum") => "checksum".to_string(),
            _ => "NOT verified".to_string(),
        };
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
