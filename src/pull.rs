//! Pulling a source into the cache, verified: the orchestration `sandbox pull` and
//! `sandbox build` share. Chooses the source kind, builds the trust store, fetches, and
//! re-hashes a cached image before it is used (a corrupt blob is a miss: fetched again).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cache::store::hash_file;
use crate::cache::{Cache, RefBlob, Verification};
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::source::SourceRef;
use crate::source::arch::{host_debian_arch, normalise_arch};
use crate::source::http::Http;
use crate::source::images::{self, ImagesRequest};
use crate::source::simplestreams as ss;
use crate::source::sums::VerifyMode;
use crate::source::tarball::{self, TarballRequest};
use crate::verify::Digest;
use crate::verify::openpgp::{LXC_IMAGES_ORIGIN, TrustStore, load_trust_store, lxc_images_cert};

/// What to pull and how to verify it.
#[derive(Debug, Clone)]
pub struct PullSpec {
    pub source: SourceRef,
    pub verify: VerifyMode,
    /// `--checksum`: pins a tarball's digest.
    pub checksum: Option<Digest>,
    /// `--keyring` files, trusted (pinned) for this pull.
    pub keyrings: Vec<PathBuf>,
    /// Keys given as bytes (e.g. shipped inside a template), trusted (pinned) for this pull:
    /// (where they come from, armored or binary keyring).
    pub extra_keys: Vec<(String, Vec<u8>)>,
    pub offline: bool,
    /// images: the arch (any spelling) [default: the host's].
    pub arch: Option<String>,
    /// images: the server [default: images.linuxcontainers.org].
    pub images_server: Option<String>,
    pub allow_downgrade: bool,
}

impl PullSpec {
    pub fn new(source: SourceRef) -> Self {
        PullSpec {
            source,
            verify: VerifyMode::Signature,
            checksum: None,
            keyrings: Vec::new(),
            extra_keys: Vec::new(),
            offline: false,
            arch: None,
            images_server: None,
            allow_downgrade: false,
        }
    }

    /// The mode in force: `--checksum` replaces the checksum file in signature mode.
    pub fn mode(&self) -> VerifyMode {
        if self.checksum.is_some() && self.verify == VerifyMode::Signature {
            VerifyMode::Checksum
        } else {
            self.verify
        }
    }
}

/// A verified image in the cache.
pub struct FetchedImage {
    pub image: RefBlob,
    /// The blob's path, its bytes checked against `image.digest` in this run.
    pub blob: PathBuf,
    pub nspawn: Option<RefBlob>,
    pub verification: Verification,
    /// The image version (LXC images).
    pub version: Option<String>,
    pub file_name: String,
}

/// Every `--keyring` file, `<sandboxes_dir>/keys/`, and importd's keyrings; with
/// `with_builtin`, also the built-in LXC image key (pinned keys are trusted for their own source
/// only, so pulls of other sources leave it out).
pub fn trust_store(
    paths: &HostPaths,
    keyrings: &[PathBuf],
    with_builtin: bool,
) -> Result<TrustStore> {
    let mut store = load_trust_store(keyrings, &paths.keys_dir(), &paths.importd_keyrings())?;
    if with_builtin {
        store.add_cert(lxc_images_cert(), LXC_IMAGES_ORIGIN, true);
    }
    Ok(store)
}

/// What to fetch: the trust store is built once, the fetch may run twice.
enum Request {
    Tarball(Option<TrustStore>),
    Images(Box<ImagesRequest<'static>>, Option<TrustStore>),
}

/// Fetches `spec` into `cache`, verified as its mode asks.
pub fn fetch_verified(
    paths: &HostPaths,
    progress: ProgressMode,
    cache: &Cache,
    spec: &PullSpec,
) -> Result<FetchedImage> {
    let source = &spec.source;
    let mode = spec.mode();
    if mode == VerifyMode::No {
        tracing::warn!(
            "--verify=no: {} will NOT be verified; anyone on the path to the server can change it",
            source.display()
        );
    }
    let make_trust = |builtin: bool| -> Result<Option<TrustStore>> {
        if mode != VerifyMode::Signature {
            return Ok(None);
        }
        let mut store = trust_store(paths, &spec.keyrings, builtin)?;
        for (origin, bytes) in &spec.extra_keys {
            store
                .add_bytes(bytes, origin, true)
                .with_context(|| format!("reading the keyring {origin}"))?;
        }
        Ok(Some(store))
    };
    let request = match source {
        SourceRef::Url(_) | SourceRef::File(_) => Request::Tarball(make_trust(false)?),
        SourceRef::Images(a) => {
            if spec.checksum.is_some() {
                bail!(
                    "--checksum pins tarball URLs; images: sources are checked against their signed SHA256SUMS"
                );
            }
            let server = images::server_url(spec.images_server.as_deref())?;
            // The built-in LXC key vouches for the default server only.
            let trust = make_trust(images::is_default_server(&server))?;
            let arch = spec
                .arch
                .as_deref()
                .map(normalise_arch)
                .unwrap_or_else(|| host_debian_arch().to_string());
            let req = ImagesRequest {
                alias: ss::parse_alias(a)?,
                arch,
                server,
                mode,
                trust: None,
                offline: spec.offline,
                allow_downgrade: spec.allow_downgrade,
            };
            Request::Images(Box::new(req), trust)
        }
        SourceRef::Oci(_) => {
            // `sandbox pull` takes them through `source::oci_pull`, which caches blobs and
            // layers rather than one tarball; nothing else can use them yet.
            bail!(
                "OCI sources (docker://, oci-layout:, oci-archive:) can only be pulled with `sandbox pull` in this version"
            )
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let http = Http::new()?;
    let fetch_once = || -> Result<(FetchedImage, bool)> {
        match &request {
            Request::Tarball(trust) => {
                let req = TarballRequest {
                    source,
                    mode,
                    pinned: spec.checksum,
                    trust: trust.as_ref(),
                    offline: spec.offline,
                };
                let t = runtime.block_on(tarball::fetch(&req, cache, &http, progress))?;
                let blob = cache
                    .blob(&t.image.digest)
                    .context("internal: the image left the cache")?;
                let image = FetchedImage {
                    image: t.image,
                    blob,
                    nspawn: t.nspawn,
                    verification: t.verification,
                    version: None,
                    file_name: t.file_name,
                };
                Ok((image, t.image_fresh))
            }
            Request::Images(req, trust) => {
                let req = ImagesRequest {
                    trust: trust.as_ref(),
                    ..req.as_ref().clone()
                };
                let i = runtime.block_on(images::fetch(&req, cache, &http, progress))?;
                let blob = cache
                    .blob(&i.image.digest)
                    .context("internal: the image left the cache")?;
                let image = FetchedImage {
                    image: i.image,
                    blob,
                    nspawn: None,
                    verification: i.verification,
                    version: Some(i.version),
                    file_name: i.file_name,
                };
                Ok((image, i.image_fresh))
            }
        }
    };
    let (fetched, fresh) = fetch_once().with_context(|| format!("pulling {}", source.display()))?;
    if fresh {
        return Ok(fetched);
    }
    // A blob that rotted in the cache since it was verified is a miss: drop it, fetch again.
    let (actual, _) = hash_file(&fetched.blob)?;
    if actual == fetched.image.digest {
        return Ok(fetched);
    }
    tracing::warn!(
        "the cached image {} is corrupt (its bytes now hash to {actual}); fetching it again",
        fetched.image.digest
    );
    std::fs::remove_file(&fetched.blob)
        .with_context(|| format!("removing corrupt blob {}", fetched.blob.display()))?;
    let (fetched, _) =
        fetch_once().with_context(|| format!("pulling {} again", source.display()))?;
    Ok(fetched)
}
