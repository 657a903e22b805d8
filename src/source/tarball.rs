//! Pulling a rootfs tarball (URL or local file) into the cache, verified.
//!
//! Order matters for "verify every byte": the checksum file (and its signature) are fetched and
//! checked first, so the image's expected digest is known before a byte of it is stored; a
//! download whose digest differs is discarded before it reaches `blobs/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::fetch::{Wanted, fetch_file};
use super::site::Site;
use super::sums::{self, VerifiedSums};
use super::{SourceRef, strip_tar_suffix};
use crate::cache::refs::now_rfc3339;
use crate::cache::{Cache, Ref, RefBlob, RefKind, Verification};
use crate::digest::Digest;
use crate::progress::ProgressMode;
use crate::transport::http::Http;
use crate::verify::mode::{Checked, VerifyMode};
use crate::verify::openpgp::TrustStore;

/// What to pull and how to check it.
pub struct TarballRequest<'a> {
    pub source: &'a SourceRef,
    pub mode: VerifyMode,
    /// `--checksum sha256:HEX`: the digest is pinned, no checksum file is needed.
    pub pinned: Option<Digest>,
    pub trust: Option<&'a TrustStore>,
    pub offline: bool,
    /// A ref to verify from the cache in place of the cache's own (`cache import`); it is
    /// not written.
    pub candidate: Option<&'a Ref>,
}

/// A tarball in the cache, verified, with its `.nspawn` companion when there is one.
pub struct CachedTarball {
    pub image: RefBlob,
    /// The image's bytes were hashed in this run.
    pub image_fresh: bool,
    pub nspawn: Option<RefBlob>,
    pub verification: Verification,
    pub file_name: String,
}

fn site_of(source: &SourceRef, http: &Http) -> Result<(Site, String)> {
    let file_name = source
        .file_name()
        .with_context(|| format!("{} does not name a file", source.display()))?;
    let site = match source {
        SourceRef::Url(url) => Site::Http {
            base: url.clone(),
            http: http.clone(),
        },
        SourceRef::File(path) => {
            let abs = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            Site::Local {
                dir: abs
                    .parent()
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| PathBuf::from("/")),
            }
        }
        _ => bail!("internal: {} is not a tarball source", source.display()),
    };
    Ok((site, file_name))
}

/// The `.nspawn` file importd looks for next to an image: the image name minus its suffixes.
fn nspawn_name(file_name: &str) -> String {
    format!("{}.nspawn", strip_tar_suffix(file_name))
}

/// Fetches (or finds in the cache) and verifies a tarball; records the ref.
pub async fn fetch(
    req: &TarballRequest<'_>,
    cache: &Cache,
    http: &Http,
    progress: ProgressMode,
) -> Result<CachedTarball> {
    let (site, file_name) = site_of(req.source, http)?;
    let key = req.source.display();
    if let Some(r) = req.candidate {
        return fetch_offline(req, cache, Some(r.clone()), file_name);
    }
    let previous = cache.read_ref(RefKind::Tarball, &key)?;
    if req.offline {
        return fetch_offline(req, cache, previous, file_name);
    }

    let sums = match (req.mode, req.pinned) {
        (_, Some(_)) | (VerifyMode::No, None) => None,
        (mode, None) => {
            Some(sums::fetch_and_verify(&site, &file_name, mode, req.trust, cache).await?)
        }
    };
    let expected = match (&sums, req.pinned) {
        (_, Some(pin)) => Some(pin),
        (Some(s), None) => Some(s.digest_of(&file_name)?),
        (None, None) => None,
    };
    let verification = match (&sums, req.pinned) {
        (_, Some(pin)) => Verification {
            mode: Checked::Checksum,
            checksum_source: Some(format!("--checksum {pin}")),
            ..Default::default()
        },
        (Some(s), None) => s.verification.clone(),
        (None, None) => Verification {
            mode: Checked::No,
            ..Default::default()
        },
    };

    let prev_blob = |c: &Cache| {
        c.read_ref(RefKind::Tarball, &key)
            .ok()
            .flatten()
            .and_then(|r| r.blob("image").cloned())
    };
    let fetched = fetch_file(
        &site,
        cache,
        Wanted {
            file_name: &file_name,
            role: "image",
            previous: &prev_blob,
            expected: expected.as_ref(),
            check: None,
        },
        progress,
    )
    .await?;
    let (image, image_fresh, _download_lock) = (fetched.blob, fetched.fresh, fetched.lock);

    let nspawn_file = nspawn_name(&file_name);
    let nspawn = match site.get_small(&nspawn_file, 1 << 20).await? {
        None => None,
        Some(f) => {
            // Whatever vouches for it, it must be a settings file: an answer that is a tar or
            // a web page is never installed as one.
            let text = std::str::from_utf8(&f.bytes).map_err(|_| {
                anyhow::anyhow!(
                    "{} is not a .nspawn settings file (not UTF-8 text); not using it",
                    site.location(&nspawn_file)
                )
            })?;
            crate::ini::parse(text, &site.location(&nspawn_file)).with_context(|| {
                format!(
                    "{} is not a .nspawn settings file; not using it",
                    site.location(&nspawn_file)
                )
            })?;
            let digest = Digest::of(&f.bytes);
            if let Some(s) = &sums {
                let listed = s.digest_of(&nspawn_file).with_context(|| {
                    format!(
                        "{} is there but the verified checksum file does not vouch for it",
                        site.location(&nspawn_file)
                    )
                })?;
                if listed != digest {
                    bail!(
                        "{}: checksum mismatch: expected {listed}, got {digest}",
                        site.location(&nspawn_file)
                    );
                }
            } else if req.mode != VerifyMode::No {
                bail!(
                    "{} is there, but --checksum pins only the image; pass --verify=no to accept an unverified .nspawn file",
                    site.location(&nspawn_file)
                );
            }
            cache.put_bytes(&f.bytes)?;
            Some(RefBlob {
                role: "nspawn".into(),
                digest,
                size: f.bytes.len() as u64,
                url: Some(site.location(&nspawn_file)),
                etag: None,
                last_modified: None,
            })
        }
    };

    let mut blobs = vec![image.clone()];
    blobs.extend(sums.iter().flat_map(|s: &VerifiedSums| s.blobs.clone()));
    blobs.extend(nspawn.clone());
    let record = Ref {
        source: key.clone(),
        blobs,
        verification: verification.clone(),
        version: None,
        details: Default::default(),
        fetched_at: now_rfc3339(),
    };
    cache.write_ref(RefKind::Tarball, &key, &record)?;
    Ok(CachedTarball {
        image,
        image_fresh,
        nspawn,
        verification,
        file_name,
    })
}

fn fetch_offline(
    req: &TarballRequest<'_>,
    cache: &Cache,
    previous: Option<Ref>,
    file_name: String,
) -> Result<CachedTarball> {
    let key = req.source.display();
    let r = previous.with_context(|| {
        format!("--offline: {key} is not in the cache; pull it once without --offline")
    })?;
    let image = r
        .blob("image")
        .cloned()
        .context("the cache ref has no image")?;
    if cache.blob(&image.digest).is_none() {
        bail!(
            "--offline: the cache lost the image of {key} ({}); pull it again without --offline",
            image.digest
        );
    }
    let verification = match (req.mode, req.pinned) {
        (_, Some(pin)) => {
            if pin != image.digest {
                bail!(
                    "--offline: the cached image of {key} is {}, not the pinned {pin}",
                    image.digest
                );
            }
            Verification {
                mode: Checked::Checksum,
                checksum_source: Some(format!("--checksum {pin}")),
                ..Default::default()
            }
        }
        (VerifyMode::No, None) => Verification {
            mode: Checked::No,
            ..Default::default()
        },
        (mode, None) => {
            let sums = sums::reverify_cached(cache, &r.blobs, &r.verification, mode, req.trust)?;
            let listed = sums.digest_of(&file_name)?;
            if listed != image.digest {
                bail!(
                    "--offline: the cached checksum file says {listed} for {file_name}, the cached image is {}",
                    image.digest
                );
            }
            sums.verification
        }
    };
    Ok(CachedTarball {
        nspawn: r.blob("nspawn").cloned(),
        image,
        image_fresh: false,
        verification,
        file_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspawn_file_is_named_after_the_image() {
        assert_eq!(nspawn_name("debian.tar.xz"), "debian.nspawn");
        assert_eq!(nspawn_name("rootfs.tgz"), "rootfs.nspawn");
        assert_eq!(nspawn_name("raw"), "raw.nspawn");
    }
}
