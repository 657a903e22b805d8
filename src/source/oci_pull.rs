//! Pulling an OCI image (`docker://`, `oci-layout:`, `oci-archive:`) into the cache.
//!
//! # Fetch
//!
//! 1. The top descriptor: a layout's tagged `index.json` entry, or the registry's manifest
//!    for the tag or digest (at most 4 MiB, its sha256 computed here and, for `@sha256:`
//!    references, compared with the one asked for).
//! 2. [`resolve_image`] over [`CacheFirst`] (the cache, then the source): index → platform →
//!    manifest → config, each document verified against its descriptor (digest and size).
//! 3. The verified documents, then every missing layer, enter the cache: streamed into a temp
//!    blob, counted against the descriptor's size as they arrive, hashed, and published under
//!    their digest only when both match. Registry layers download three at a time, through
//!    [`crate::transport::resume`]: a layer's partial file (`tmp/partial-<hex>.part`, keyed by
//!    its digest) survives an interrupted pull, and the next one asks for `Range: bytes=N-` and
//!    re-hashes the N bytes first; a registry that answers 200 restarts it from 0, a digest
//!    mismatch discards it (`oci_layer_fetch`).
//! 4. A ref (`refs/oci/<source>#<platform>.json`) records the manifest, config and layer
//!    digests and the config.
//!
//! A re-pull finds every blob in the cache and transfers only the top manifest.
//!
//! Materialising a fetched image into a machine is `oci_materialise`.
//!
//! `docker://` pulls first ask the signature policy ([`crate::verify::policy`]); local sources
//! are named by the person pulling and checked by digest, so the policy does not apply.
//! cosign signatures the policy or `--cosign-key` requires are checked right after the top
//! manifest arrives, before anything else is fetched ([`super::oci_signatures`]).

use std::io::{Cursor, Read, Write as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cache::refs::now_rfc3339;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::digest::Digest;
use crate::oci::blob::BlobSource;
use crate::oci::config::MAX_CONFIG_SIZE;
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{
    Descriptor, OciLayout, OciSource, PlatformSpec, ResolvedImage, extract_oci_archive,
    resolve_image,
};
use crate::progress::ProgressMode;
use crate::runtime;
use crate::source::oci_signatures::{
    RequiredKey, SignatureKind, SignatureStores, check_policy, load_cosign_key, verify_signatures,
};
use crate::source::registry::auth::{Credentials, find_credentials};
use crate::source::registry::{Registry, shown_url, top_media_type};
use crate::transport::read_limited;
use crate::verify::mode::{Checked, VerifyMode};

use super::oci_layer_fetch::{
    fetch_layers_local, fetch_layers_registry, lock_layers, missing_layers,
};

/// What to pull and how.
pub struct OciRequest<'a> {
    pub source: &'a OciSource,
    pub platform: PlatformSpec,
    /// `--creds`; otherwise the auth files are read.
    pub creds: Option<Credentials>,
    pub tls_verify: bool,
    /// `no` skips the docker:// policy (loudly); other modes ask it.
    pub verify: VerifyMode,
    /// `<sandboxes_dir>/policy.json`.
    pub policy_file: PathBuf,
    pub offline: bool,
    /// Bars for the layers' downloads (nothing unless on a terminal).
    pub progress: ProgressMode,
    /// A ref to verify from the cache in place of the cache's own (`cache import`): its
    /// documents and layers are checked from the cache, nothing is fetched or written.
    pub candidate: Option<&'a Ref>,
    /// `--cosign-key`: a cosign signature by this PEM public key is required, whatever the
    /// policy says (on top of what it requires).
    pub cosign_key: Option<PathBuf>,
    /// `--certificate-identity` …: a keyless signature by this identity is required, as
    /// `--cosign-key` requires a key's.
    pub keyless: Option<crate::source::oci_keyless::Keyless>,
    /// `<sandboxes_dir>/registries.d`: where simple signing's lookaside stores are configured.
    pub registries_d: PathBuf,
    /// `--lookaside`: the simple signing store to read instead of the configured one.
    pub lookaside: Option<PathBuf>,
}

/// A verified image whose every blob is in the cache.
pub struct OciFetched {
    pub resolved: ResolvedImage,
    pub verification: Verification,
    /// The image's platform (from its config).
    pub platform: String,
    /// Layer bytes transferred in this run (0 on a re-pull).
    pub layer_bytes_fetched: u64,
    /// The layers whose cached bytes this run hashed and found right: downloaded (hashed as
    /// they streamed into the cache), copied from a layout, or re-hashed where the cache held
    /// them. Materialising them holds them to their size only; a layer another process stored
    /// while this one waited for its lock is not in here, and is hashed when it is applied.
    pub hashed_layers: Vec<Digest>,
}

/// Blobs straight from the cache.
pub struct CacheBlobs<'a>(pub &'a Cache);

impl BlobSource for CacheBlobs<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let path = self.0.blob(digest).with_context(|| {
            format!(
                "blob {digest} is not in the cache (`cache fsck` or `cache gc` removed it?); \
                     pull the image again, without --offline"
            )
        })?;
        let f = fs_err::File::open(&path).map(fs_err::File::into_file)?;
        Ok(Box::new(f))
    }
}

/// The cache first, then `upstream`: what is cached is not fetched again.
struct CacheFirst<'a> {
    cache: &'a Cache,
    upstream: &'a dyn BlobSource,
    /// A document already fetched (a registry's top manifest), served without a request;
    /// `resolve_image` verifies it like any other before it is stored.
    fetched: Option<(Digest, &'a [u8])>,
}

impl BlobSource for CacheFirst<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        if let Some((d, bytes)) = self.fetched
            && d == *digest
        {
            return Ok(Box::new(Cursor::new(bytes.to_vec())));
        }
        if let Some(path) = self.cache.blob(digest) {
            // Only documents come through here (manifests, indexes, configs: small), so the
            // cached copy is re-hashed; one that rotted is dropped and fetched again.
            match self.cache.read_blob(digest) {
                Ok(bytes) => return Ok(Box::new(Cursor::new(bytes))),
                Err(e) => {
                    tracing::warn!("{e:#}; fetching it again");
                    fs_err::remove_file(&path)
                        .with_context(|| format!("removing corrupt blob {}", path.display()))?;
                }
            }
        }
        self.upstream.open_blob(digest)
    }
}

/// A registry's small documents (index entries, configs) for [`resolve_image`], fetched whole
/// and bounded; layers take the streaming path in [`fetch_layers_registry`]. `resolve_image`
/// is sync (it also reads layouts and the cache), so each document is one `block_on`; it is
/// never called from inside the runtime.
struct RegistryDocs<'a> {
    registry: &'a Registry,
}

impl BlobSource for RegistryDocs<'_> {
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        let bytes = runtime::block_on(async {
            let resp = self.registry.blob(digest).await?;
            let url = shown_url(&resp);
            // One byte over the largest document allowed, so VerifiedReader sees the excess.
            read_limited(resp, MAX_CONFIG_SIZE.max(MAX_MANIFEST_SIZE) + 1, &url).await
        })??;
        Ok(Box::new(Cursor::new(bytes)))
    }
}

/// A directory removed on drop (an extracted `oci-archive`).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = fs_err::remove_dir_all(&self.0) {
            tracing::warn!("could not remove {}: {e}", self.0.display());
        }
    }
}

/// The ref key: the source as shown, and the platform asked for.
pub fn ref_key(source: &OciSource, platform: &PlatformSpec) -> String {
    format!("{source}#{platform}")
}

/// Fetches `req.source` into `cache`, verified (see the module documentation).
pub fn fetch_oci(req: &OciRequest<'_>, cache: &Cache) -> Result<OciFetched> {
    let shown = req.source.to_string();
    let mut verification = Verification {
        mode: Checked::Digest,
        ..Verification::default()
    };
    // Policy and credentials first: a refused image costs no network traffic.
    let mut cosign_keys = Vec::new();
    let registry = match req.source {
        OciSource::Registry(reference) => {
            cosign_keys = check_policy(req, reference, &mut verification)?;
            if req.offline || req.candidate.is_some() {
                return fetch_offline(req, cache, verification, &cosign_keys);
            }
            let creds = match &req.creds {
                Some(c) => Some(c.clone()),
                None => find_credentials(reference)?,
            };
            Some(Registry::new(reference, creds, req.tls_verify)?)
        }
        // A layout or archive of another host: what it held is in the cache now.
        _ if req.candidate.is_some() => return fetch_offline(req, cache, verification, &[]),
        _ => None,
    };
    let _archive_dir;
    let layout;
    let docs;
    let mut top_bytes = Vec::new();
    let (top, upstream): (Descriptor, &dyn BlobSource) = match (req.source, &registry) {
        (OciSource::Layout { dir, tag }, _) => {
            layout = OciLayout::open(dir)?;
            (layout.resolve(tag.as_deref())?, &layout)
        }
        (OciSource::Archive { file, tag }, _) => {
            let dir = cache
                .layout()
                .tmp_dir()
                .join(format!("oci-archive-{:016x}", rand::random::<u64>()));
            fs_err::create_dir(&dir)?;
            _archive_dir = TempDir(dir.clone());
            let f = fs_err::File::open(file).map(fs_err::File::into_file)?;
            extract_oci_archive(f, &dir)
                .with_context(|| format!("reading the archive {}", file.display()))?;
            layout = OciLayout::open(&dir)?;
            (layout.resolve(tag.as_deref())?, &layout)
        }
        (OciSource::Registry(reference), Some(registry)) => {
            let wanted = reference.manifest_reference();
            let raw = runtime::block_on(registry.manifest(&wanted, MAX_MANIFEST_SIZE))?
                .with_context(|| format!("fetching the manifest of {shown}"))?;
            let digest = Digest::of(&raw.bytes);
            if let Some(pinned) = &reference.digest
                && *pinned != digest
            {
                bail!("the registry sent a manifest for {shown} whose sha256 is {digest}");
            }
            runtime::block_on(verify_signatures(
                registry,
                reference,
                &digest,
                &cosign_keys,
                &SignatureStores {
                    registries_d: &req.registries_d,
                    lookaside: req.lookaside.as_deref(),
                },
                &mut verification,
            ))?
            .with_context(|| format!("verifying the signatures of {shown}"))?;
            crate::faultpoint::reached("oci.signature");
            let media_type = top_media_type(&raw.bytes, raw.content_type.as_deref());
            let top = Descriptor::new(&media_type, digest, raw.bytes.len() as u64);
            top_bytes = raw.bytes;
            docs = RegistryDocs { registry };
            (top, &docs)
        }
        (OciSource::Registry(_), None) => bail!("internal: no registry client for {shown}"),
    };
    let source = CacheFirst {
        cache,
        upstream,
        fetched: (!top_bytes.is_empty()).then_some((top.digest, top_bytes.as_slice())),
    };
    let resolved = resolve_image(&source, &top, &req.platform)
        .with_context(|| format!("resolving {shown} for {}", req.platform))?;
    for index in &resolved.indexes {
        store_document(cache, &index.descriptor, &index.bytes)?;
    }
    store_document(
        cache,
        &resolved.manifest.descriptor,
        &resolved.manifest.bytes,
    )?;
    store_document(cache, &resolved.image.config, &resolved.config_bytes)?;
    crate::faultpoint::reached("oci.manifest");

    let (missing, mut hashed_layers) = missing_layers(cache, &resolved.layers)?;
    let (_locks, missing) = lock_layers(cache, missing)?;
    let layer_bytes_fetched = match &registry {
        Some(reg) => runtime::block_on(fetch_layers_registry(reg, cache, &missing, req.progress))??,
        None => fetch_layers_local(upstream, cache, &missing, req.progress)?,
    };
    // Every layer fetched above was hashed on its way into the cache (or the fetch failed).
    hashed_layers.extend(missing.iter().map(|l| l.descriptor.digest));
    let platform = resolved
        .config
        .platform()
        .map(|p| p.to_string())
        .unwrap_or_else(|| req.platform.to_string());
    write_ref(req, cache, &resolved, &verification)?;
    Ok(OciFetched {
        resolved,
        verification,
        platform,
        layer_bytes_fetched,
        hashed_layers,
    })
}

/// `--offline` for a registry: the ref of the last pull, every blob from the cache.
fn fetch_offline(
    req: &OciRequest<'_>,
    cache: &Cache,
    mut verification: Verification,
    cosign_keys: &[RequiredKey],
) -> Result<OciFetched> {
    let r = match req.candidate {
        Some(r) => {
            // An export carries no signatures: the exporting host's record of one is its word.
            if let Some(k) = cosign_keys.first() {
                bail!(
                    "{} requires a signature by {}, which an import cannot check (an export \
                     carries no signatures); pull {} online",
                    k.why,
                    k.path.display(),
                    req.source
                );
            }
            r.clone()
        }
        None => {
            let key = ref_key(req.source, &req.platform);
            cache.read_ref(RefKind::Oci, &key)?.with_context(|| {
                format!(
                    "--offline: {} was never pulled for {}",
                    req.source, req.platform
                )
            })?
        }
    };
    // The signatures cannot be fetched offline: the last online pull's record must show that
    // every key required now verified then (the manifest it names is the one used here).
    for k in cosign_keys {
        // A cosign key is named by its fingerprint; a keyring by its path (which key of it
        // signed is only known once a signature verified).
        let name = match (k.kind, &k.keyless) {
            (SignatureKind::Keyless, Some(kl)) => {
                // The last pull's record names who vouched; it must be who is asked for now.
                let v = &r.verification;
                let matches = v
                    .oidc_issuer
                    .as_deref()
                    .is_some_and(|i| kl.issuer.matches(i))
                    && v.signer.as_deref().is_some_and(|s| kl.identity.matches(s));
                if matches {
                    continue;
                }
                format!("keyless signature by identity {}", kl.identity)
            }
            (SignatureKind::Cosign, _) => load_cosign_key(&k.path)?.fingerprint,
            _ => format!("({}, ", k.path.display()),
        };
        if !r.verification.notes.iter().any(|n| n.contains(&name)) {
            bail!(
                "--offline: {} requires a signature by {}, and the last pull of {} did not \
                 verify one; pull it online",
                k.why,
                k.path.display(),
                req.source
            );
        }
    }
    if !cosign_keys.is_empty() {
        verification = r.verification.clone();
    }
    let manifest = r
        .blob("manifest")
        .context("the cached ref names no manifest (remove it with `sandbox cache rm`)")?;
    let media_type = r
        .details
        .get("manifest_media_type")
        .and_then(|v| v.as_str())
        .context("the cached ref names no manifest media type")?;
    let top = Descriptor::new(media_type, manifest.digest, manifest.size);
    let resolved = resolve_image(&CacheBlobs(cache), &top, &req.platform)
        .with_context(|| format!("resolving {} from the cache", req.source))?;
    let (missing, hashed_layers) = missing_layers(cache, &resolved.layers)?;
    if let Some(l) = missing.first() {
        if req.candidate.is_some() {
            bail!(
                "its manifest names layer {}, which is neither in the export nor in this cache",
                l.descriptor.digest
            );
        }
        bail!(
            "--offline: layer {} of {} is no longer in the cache",
            l.descriptor.digest,
            req.source
        );
    }
    let platform = resolved
        .config
        .platform()
        .map(|p| p.to_string())
        .unwrap_or_else(|| req.platform.to_string());
    Ok(OciFetched {
        resolved,
        verification,
        platform,
        layer_bytes_fetched: 0,
        hashed_layers,
    })
}

/// Stores a document already verified against `desc` (its bytes came through a
/// `VerifiedReader` or were hashed here); publishing checks the digest once more.
fn store_document(cache: &Cache, desc: &Descriptor, bytes: &[u8]) -> Result<()> {
    if cache.blob(&desc.digest).is_some() {
        return Ok(());
    }
    if bytes.len() as u64 != desc.size {
        bail!(
            "blob {} is {} bytes, its descriptor says {}",
            desc.digest,
            bytes.len(),
            desc.size
        );
    }
    let mut temp = cache.temp_blob()?;
    temp.write_all(bytes).context("writing to the cache")?;
    cache
        .publish(temp, Some(&desc.digest))
        .with_context(|| format!("storing {}", desc.digest))?;
    Ok(())
}

fn write_ref(
    req: &OciRequest<'_>,
    cache: &Cache,
    resolved: &ResolvedImage,
    verification: &Verification,
) -> Result<()> {
    let blob = |role: &str, d: &Descriptor| RefBlob {
        role: role.to_string(),
        digest: d.digest,
        size: d.size,
        url: None,
        etag: None,
        last_modified: None,
    };
    let mut blobs: Vec<RefBlob> = resolved
        .indexes
        .iter()
        .map(|i| blob("index", &i.descriptor))
        .collect();
    blobs.push(blob("manifest", &resolved.manifest.descriptor));
    blobs.push(blob("config", &resolved.image.config));
    blobs.extend(resolved.layers.iter().map(|l| blob("layer", &l.descriptor)));
    let provenance = resolved.provenance()?;
    let mut details = serde_json::Map::new();
    details.insert(
        "manifest_digest".into(),
        provenance.manifest_digest.to_string().into(),
    );
    details.insert(
        "manifest_media_type".into(),
        provenance.manifest_media_type.clone().into(),
    );
    details.insert(
        "config_digest".into(),
        provenance.config_digest.to_string().into(),
    );
    details.insert("platform".into(), req.platform.to_string().into());
    details.insert("config".into(), provenance.config);
    let r = Ref {
        source: req.source.to_string(),
        blobs,
        verification: verification.clone(),
        version: None,
        details,
        fetched_at: now_rfc3339(),
    };
    cache.write_ref(RefKind::Oci, &ref_key(req.source, &req.platform), &r)
}
