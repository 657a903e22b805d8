//! Pulling a source into the cache, verified: the one entry every command uses (`sandbox
//! pull`, the base of `sandbox build`, `--offline`, and `sandbox cache import`, which verifies an
//! imported ref here before it writes it). Chooses the source kind, builds the trust
//! store, fetches, and re-hashes a cached image before it is used (a corrupt blob is a miss:
//! fetched again). What comes out is one typed [`FetchedImage`], whatever the source kind;
//! `machine::materialise` turns it into a tree.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cache::store::hash_file;
use crate::cache::{Cache, Ref, RefBlob, Verification};
use crate::digest::Digest;
use crate::oci::{OciSource, PlatformSpec};
use crate::paths::HostPaths;
use crate::progress::ProgressMode;
use crate::runtime;
use crate::source::SourceRef;
use crate::source::arch::{host_debian_arch, normalise_arch};
use crate::source::images::{self, ImagesRequest};
use crate::source::oci_pull::{OciFetched, OciRequest, fetch_oci};
use crate::source::registry::auth::Credentials;
use crate::source::simplestreams as ss;
use crate::source::tarball::{self, TarballRequest};
use crate::transport::http::Http;
use crate::verify::mode::VerifyMode;
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
    /// OCI sources: the registry options of `sandbox pull`.
    pub oci: OciOptions,
    /// A cached image's bytes are not hashed again now: the caller calls [`ensure_intact`]
    /// before it reads them (a sandbox made from the unpacked-image store never does).
    pub defer_rehash: bool,
    /// A ref that is not (yet) in the cache, verified from the cache's blobs in place of the
    /// one the cache holds for this source (`cache import`). Implies `offline`; the fetch
    /// writes no ref, the caller writes it once this returned the verified image.
    pub candidate: Option<Box<Ref>>,
}

/// How an OCI base is fetched: what `sandbox pull` takes as options for `docker://`.
#[derive(Debug, Clone)]
pub struct OciOptions {
    /// `--creds`; otherwise the auth files are read.
    pub creds: Option<Credentials>,
    pub tls_verify: bool,
    /// `--cosign-key`: a cosign signature by this public key is required.
    pub cosign_key: Option<PathBuf>,
    /// `--lookaside`: the simple signing store to read instead of the configured one.
    pub lookaside: Option<PathBuf>,
    /// `--certificate-identity` …: a keyless signature that must verify.
    pub keyless: Option<crate::source::oci_keyless::Keyless>,
    /// `--platform` [default: the host's].
    pub platform: Option<PlatformSpec>,
}

impl Default for OciOptions {
    fn default() -> Self {
        OciOptions {
            creds: None,
            tls_verify: true,
            cosign_key: None,
            lookaside: None,
            keyless: None,
            platform: None,
        }
    }
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
            oci: OciOptions::default(),
            defer_rehash: false,
            candidate: None,
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

    /// Whether the network may be used: not with `--offline`, nor for a candidate ref.
    pub fn offline(&self) -> bool {
        self.offline || self.candidate.is_some()
    }
}

/// A verified image in the cache, whatever kind of source it came from.
pub struct FetchedImage {
    /// What names the image: the tarball, or an OCI image's manifest.
    pub image: RefBlob,
    pub content: Content,
    /// The `.nspawn` file published with a tarball (importd's companion file).
    pub nspawn: Option<RefBlob>,
    pub verification: Verification,
    /// The image version (LXC images).
    pub version: Option<String>,
    /// What the image is called in messages (the tarball's file name, the OCI reference).
    pub file_name: String,
}

/// What a tree is made from.
pub enum Content {
    /// A rootfs tarball; `blob` is its cache path. `checked`: its bytes were hashed against the
    /// image digest in this run (false only with [`PullSpec::defer_rehash`], until
    /// [`ensure_intact`]; nothing unpacks a blob that is not).
    Tarball {
        blob: PathBuf,
        checked: std::sync::atomic::AtomicBool,
    },
    /// An OCI image: its resolved manifest, config and ordered layers, every blob in the
    /// cache (each is held to its descriptor as it is read, and hashed again unless this
    /// fetch just hashed it). Boxed: it is large, and one per pull.
    Oci(Box<OciFetched>),
}

impl FetchedImage {
    /// The OCI image, when it is one.
    pub fn oci(&self) -> Option<&OciFetched> {
        match &self.content {
            Content::Oci(o) => Some(o),
            Content::Tarball { .. } => None,
        }
    }
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

/// Fetches `spec` into `cache`, verified as its mode asks. The network is done with when it
/// returns: what its connections held is freed before the caller unpacks.
pub fn fetch_verified(
    paths: &HostPaths,
    progress: ProgressMode,
    cache: &Cache,
    spec: &PullSpec,
) -> Result<FetchedImage> {
    let fetched = fetch(paths, progress, cache, spec);
    runtime::release();
    fetched
}

fn fetch(
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
                offline: spec.offline(),
                allow_downgrade: spec.allow_downgrade,
                candidate: None,
            };
            Request::Images(Box::new(req), trust)
        }
        SourceRef::Oci(s) => return fetch_oci_base(paths, progress, cache, spec, s),
    };
    let http = Http::new()?;
    let fetch_once = || -> Result<(FetchedImage, bool)> {
        match &request {
            Request::Tarball(trust) => {
                let req = TarballRequest {
                    source,
                    mode,
                    pinned: spec.checksum,
                    trust: trust.as_ref(),
                    offline: spec.offline(),
                    candidate: spec.candidate.as_deref(),
                };
                let t = runtime::block_on(tarball::fetch(&req, cache, &http, progress))??;
                let blob = cache
                    .blob(&t.image.digest)
                    .context("internal: the image left the cache")?;
                let image = FetchedImage {
                    image: t.image,
                    content: Content::Tarball {
                        blob,
                        checked: t.image_fresh.into(),
                    },
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
                    candidate: spec.candidate.as_deref(),
                    ..req.as_ref().clone()
                };
                let i = runtime::block_on(images::fetch(&req, cache, &http, progress))??;
                let blob = cache
                    .blob(&i.image.digest)
                    .context("internal: the image left the cache")?;
                let image = FetchedImage {
                    image: i.image,
                    content: Content::Tarball {
                        blob,
                        checked: i.image_fresh.into(),
                    },
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
    // A candidate's blobs were hashed as they were taken in; nothing is fetched again for it.
    if fresh || spec.candidate.is_some() || spec.defer_rehash {
        return Ok(fetched);
    }
    if intact(&fetched)? {
        return Ok(fetched);
    }
    let (fetched, _) =
        fetch_once().with_context(|| format!("pulling {} again", source.display()))?;
    Ok(fetched)
}

/// Hashes a cached tarball not yet checked in this run; false (and the blob removed) when
/// it rotted since it was verified: a miss, to fetch again.
fn intact(fetched: &FetchedImage) -> Result<bool> {
    use std::sync::atomic::Ordering;
    let Content::Tarball { blob, checked } = &fetched.content else {
        return Ok(true);
    };
    if checked.load(Ordering::Relaxed) {
        return Ok(true);
    }
    let (actual, _) = hash_file(blob)?;
    if actual == fetched.image.digest {
        checked.store(true, Ordering::Relaxed);
        return Ok(true);
    }
    tracing::warn!(
        "the cached image {} is corrupt (its bytes now hash to {actual}); fetching it again",
        fetched.image.digest
    );
    fs_err::remove_file(blob)
        .with_context(|| format!("removing corrupt blob {}", blob.display()))?;
    Ok(false)
}

/// Makes sure the bytes of `fetched` (from a pull with [`PullSpec::defer_rehash`]) are what
/// was verified before they are read: hashes them once; a blob that rotted is removed and
/// fetched again with `spec`, and the new image returned.
pub fn ensure_intact(
    paths: &HostPaths,
    progress: ProgressMode,
    cache: &Cache,
    spec: &PullSpec,
    fetched: &FetchedImage,
) -> Result<Option<FetchedImage>> {
    if intact(fetched)? {
        return Ok(None);
    }
    let again = PullSpec {
        defer_rehash: false,
        ..spec.clone()
    };
    fetch_verified(paths, progress, cache, &again).map(Some)
}

/// An OCI image (`docker://`, `oci-layout:`, `oci-archive:`) for the asked platform (the
/// host's by default), verified (policy, signatures, every blob checked).
fn fetch_oci_base(
    paths: &HostPaths,
    progress: ProgressMode,
    cache: &Cache,
    spec: &PullSpec,
    source: &str,
) -> Result<FetchedImage> {
    if spec.checksum.is_some() {
        bail!("a checksum pins tarballs; pin an OCI base by its digest: docker://REPO@sha256:HEX");
    }
    if !spec.keyrings.is_empty() || !spec.extra_keys.is_empty() {
        bail!(
            "OpenPGP keyrings verify tarball and images: sources; an OCI base is verified by the \
             signature policy (policy.json) or a cosign key"
        );
    }
    let oci = OciSource::parse(source)?;
    let req = OciRequest {
        source: &oci,
        platform: spec.oci.platform.clone().unwrap_or_else(PlatformSpec::host),
        creds: spec.oci.creds.clone(),
        tls_verify: spec.oci.tls_verify,
        verify: spec.mode(),
        policy_file: paths.sandboxes_dir.join("policy.json"),
        offline: spec.offline(),
        progress,
        candidate: spec.candidate.as_deref(),
        cosign_key: spec.oci.cosign_key.clone(),
        keyless: spec.oci.keyless.clone(),
        registries_d: paths.sandboxes_dir.join("registries.d"),
        lookaside: spec.oci.lookaside.clone(),
    };
    let fetched = fetch_oci(&req, cache).with_context(|| format!("pulling {oci}"))?;
    let manifest = &fetched.resolved.manifest.descriptor;
    Ok(FetchedImage {
        image: RefBlob {
            role: "manifest".to_string(),
            digest: manifest.digest,
            size: manifest.size,
            url: None,
            etag: None,
            last_modified: None,
        },
        nspawn: None,
        verification: fetched.verification.clone(),
        version: None,
        file_name: oci.to_string(),
        content: Content::Oci(Box::new(fetched)),
    })
}
