//! Checking an LXC image build before its rootfs is fetched: the build's signed `SHA256SUMS`
//! (or a per-file signature), the products file's digest, and re-verification from the cache for
//! a build already held (stale and offline pulls).

use anyhow::{Context, Result, bail};

use super::images::{Build, ImagesRequest, ref_key};
use super::site::Site;
use super::sums;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::digest::Digest;
use crate::verify::checksums::ChecksumEntry;
use crate::verify::mode::{Checked, VerifyMode};
use crate::verify::openpgp::TrustStore;

pub(super) type SignatureFile = (String, Vec<u8>);

/// The ref role of a detached signature over the rootfs tarball itself.
pub(super) const IMAGE_SIGNATURE: &str = "image-signature";

/// What checking a build established before its rootfs is fetched.
pub(super) struct BuildCheck {
    /// The digest the rootfs must have; `None` only for a legacy build vouched for by a
    /// per-file signature alone (then `per_file_sig` decides before anything is published).
    pub(super) expected: Option<Digest>,
    pub(super) verification: Verification,
    /// The checksum file and its signature, recorded in the ref.
    pub(super) blobs: Vec<RefBlob>,
    /// The verified checksum entries, which also vouch for the metadata tarball.
    pub(super) entries: Option<Vec<ChecksumEntry>>,
    /// A signature over the rootfs tarball itself, still to check against its bytes.
    pub(super) per_file_sig: Option<SignatureFile>,
}

/// Checks the build as the mode asks. A build the cache already holds (same version) is
/// verified again from the cached checksum file and signature, without the network.
pub(super) async fn verify_build(
    req: &ImagesRequest<'_>,
    build: &Build,
    site: &Site,
    cache: &Cache,
) -> Result<BuildCheck> {
    let listed = build.rootfs_digest;
    let from_products = || Verification {
        mode: req.mode.into(),
        checksum_source: build
            .details
            .get("products_url")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        ..Default::default()
    };
    let unverified = || Verification {
        mode: Checked::No,
        ..Default::default()
    };
    let key = ref_key(&req.server, &req.alias.alias, &req.arch);
    let cached = cache.read_ref(RefKind::Images, &key)?.filter(|r| {
        r.version.as_deref() == Some(build.version.as_str())
            && r.blob("image")
                .is_some_and(|b| cache.blob(&b.digest).is_some())
    });
    if let Some(r) = &cached
        && let Some(check) = verify_from_cache(req, build, r, cache)?
    {
        return Ok(check);
    }
    if req.offline {
        bail!(
            "--offline: the cache does not hold images:{} {} verified as --verify={} asks; run once without --offline",
            req.alias.alias,
            build.version,
            req.mode.as_str()
        );
    }
    let check = |expected, verification, blobs, entries, per_file_sig| BuildCheck {
        expected,
        verification,
        blobs,
        entries,
        per_file_sig,
    };
    match req.mode {
        VerifyMode::No => Ok(check(listed, unverified(), vec![], None, None)),
        VerifyMode::Checksum if listed.is_some() => {
            Ok(check(listed, from_products(), vec![], None, None))
        }
        mode => match sums_only(site, mode, req.trust, cache).await? {
            Some(s) => {
                let signed = s.digest_of(&build.rootfs_name)?;
                if let Some(listed) = listed
                    && listed != signed
                {
                    bail!(
                        "{}: the products file says {listed} for {}, the signed checksum file says {signed}; refusing both",
                        site.location("SHA256SUMS"),
                        build.rootfs_name
                    );
                }
                Ok(check(
                    Some(signed),
                    s.verification,
                    s.blobs,
                    Some(s.entries),
                    None,
                ))
            }
            None if mode == VerifyMode::Signature => {
                // The fallback: a signature over the tarball itself.
                let sig_name = format!("{}.asc", build.rootfs_name);
                let Some(sig) = site.get_small(&sig_name, sums::SIGNATURE_LIMIT).await? else {
                    bail!(
                        "no signature for images:{} {}: neither {} nor {} exists. Pass --verify=checksum to rely on \
                         the products file's digest over HTTPS alone",
                        req.alias.alias,
                        build.version,
                        site.location("SHA256SUMS.asc"),
                        site.location(&sig_name)
                    );
                };
                let sig = (site.location(&sig_name), sig.bytes);
                Ok(check(listed, from_products(), vec![], None, Some(sig)))
            }
            None => bail!(
                "no checksum for {}: the legacy index has no digests and there is no SHA256SUMS",
                site.location(&build.rootfs_name)
            ),
        },
    }
}

/// Verifies a cached build again from what its ref stored; `None` when the cache does not hold
/// what `req.mode` needs (e.g. it was pulled with a weaker mode).
pub(super) fn verify_from_cache(
    req: &ImagesRequest<'_>,
    build: &Build,
    r: &Ref,
    cache: &Cache,
) -> Result<Option<BuildCheck>> {
    let image = r.blob("image").context("the cache ref has no image")?;
    let has = |role: &str| r.blob(role).is_some();
    let with_sums = |mode| -> Result<Option<BuildCheck>> {
        let s = sums::reverify_cached(cache, &r.blobs, &r.verification, mode, req.trust)?;
        let digest = s.digest_of(&build.rootfs_name)?;
        if digest != image.digest {
            bail!(
                "the cached checksum file says {digest} for {}, the cached image is {}",
                build.rootfs_name,
                image.digest
            );
        }
        Ok(Some(BuildCheck {
            expected: Some(digest),
            verification: s.verification,
            blobs: s.blobs,
            entries: Some(s.entries),
            per_file_sig: None,
        }))
    };
    match req.mode {
        VerifyMode::No => Ok(Some(BuildCheck {
            expected: Some(image.digest),
            verification: Verification {
                mode: Checked::No,
                ..Default::default()
            },
            blobs: vec![],
            entries: None,
            per_file_sig: None,
        })),
        VerifyMode::Signature if has("checksums") && has("signature") => {
            with_sums(VerifyMode::Signature)
        }
        VerifyMode::Signature if has(IMAGE_SIGNATURE) => {
            let sig = r.blob(IMAGE_SIGNATURE).context("checked above")?;
            let bytes = cache.read_blob(&sig.digest)?;
            Ok(Some(BuildCheck {
                expected: Some(image.digest),
                verification: Verification {
                    mode: req.mode.into(),
                    checksum_source: r.verification.checksum_source.clone(),
                    ..Default::default()
                },
                blobs: vec![],
                entries: None,
                per_file_sig: Some((sig.url.clone().unwrap_or_default(), bytes)),
            }))
        }
        VerifyMode::Checksum if has("checksums") => with_sums(VerifyMode::Checksum),
        VerifyMode::Checksum if build.rootfs_digest == Some(image.digest) => Ok(Some(BuildCheck {
            expected: Some(image.digest),
            verification: Verification {
                mode: Checked::Checksum,
                checksum_source: r.verification.checksum_source.clone(),
                ..Default::default()
            },
            blobs: vec![],
            entries: None,
            per_file_sig: None,
        })),
        _ => Ok(None),
    }
}

/// The build's `SHA256SUMS`, checked as `mode` asks; `None` when the build has none (or, in
/// signature mode, has no signature for it).
async fn sums_only(
    site: &Site,
    mode: VerifyMode,
    trust: Option<&TrustStore>,
    cache: &Cache,
) -> Result<Option<sums::VerifiedSums>> {
    let Some(text) = site.get_small("SHA256SUMS", sums::CHECKSUM_LIMIT).await? else {
        return Ok(None);
    };
    sums::check_named(site, "SHA256SUMS", text.bytes, mode, trust, cache).await
}
