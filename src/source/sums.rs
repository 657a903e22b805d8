//! Finding and checking the checksum file (and its signature) that vouches for an image.
//!
//! Lookup order, as the issue and importd define it: `<file>.sha256`, else `SHA256SUMS`, from
//! the image's directory; signatures `<checksum file>.gpg` (binary), else `.asc` (armored).
//! In signature mode a checksum file is only trusted after its signature verified.

use anyhow::{Context, Result, bail};

use super::site::Site;
use crate::cache::{Cache, RefBlob, Verification};
use crate::digest::Digest;
use crate::verify::checksums::{self, ChecksumEntry};
use crate::verify::mode::VerifyMode;
use crate::verify::openpgp::{SignatureCheck, TrustStore, verify_detached};

pub const CHECKSUM_LIMIT: u64 = 4 << 20;
pub const SIGNATURE_LIMIT: u64 = 1 << 20;

/// A verified checksum file.
pub struct VerifiedSums {
    pub entries: Vec<ChecksumEntry>,
    pub verification: Verification,
    /// The checksum file and signature as cache blobs, so `--offline` can verify again.
    pub blobs: Vec<RefBlob>,
}

impl VerifiedSums {
    /// The digest the checksum file gives for `file_name`.
    pub fn digest_of(&self, file_name: &str) -> Result<Digest> {
        let source = self
            .verification
            .checksum_source
            .as_deref()
            .unwrap_or("the checksum file");
        checksums::lookup(&self.entries, file_name)
            .with_context(|| format!("checking {file_name} against {source}"))
    }
}

/// Records what a good signature proved into `v`.
pub fn record_signature(v: &mut Verification, check: &SignatureCheck) {
    v.key_fingerprint = Some(check.primary_fingerprint.clone());
    v.signer = check.user_ids.first().cloned();
    v.key_origin = Some(check.origin.clone());
    if check.sha1_self_signature_accepted {
        v.notes.push(format!(
            "the signing key {} is only self-signed with SHA-1; accepted because it is pinned ({})",
            check.primary_fingerprint, check.origin
        ));
    }
}

/// Fetches, stores and verifies the checksum file for `file_name` on `site`: the first of
/// `<file>.sha256` and `SHA256SUMS` that exists (and, in signature mode, has a signature).
pub async fn fetch_and_verify(
    site: &Site,
    file_name: &str,
    mode: VerifyMode,
    trust: Option<&TrustStore>,
    cache: &Cache,
) -> Result<VerifiedSums> {
    let mut tried = Vec::new();
    for sums_name in [format!("{file_name}.sha256"), "SHA256SUMS".to_string()] {
        match site.get_small(&sums_name, CHECKSUM_LIMIT).await? {
            None => tried.push(site.location(&sums_name)),
            Some(sums) => match check_named(site, &sums_name, sums.bytes, mode, trust, cache)
                .await?
            {
                Some(verified) => return Ok(verified),
                None => tried
                    .extend(["gpg", "asc"].map(|ext| site.location(&format!("{sums_name}.{ext}")))),
            },
        }
    }
    // No checksum file anywhere is most often no image at all (a typo in the URL): say that.
    if site.exists(file_name).await == Some(false) {
        bail!(
            "the image {} is not there (the server has no such file); check the URL",
            site.location(file_name)
        );
    }
    match mode {
        VerifyMode::Signature => bail!(
            "no signed checksum file for {file_name}: tried {}. Pass --verify=checksum to accept an unsigned \
             checksum, or --checksum sha256:HEX to pin the digest",
            tried.join(", ")
        ),
        _ => bail!(
            "no checksum file for {file_name}: tried {}. Pass --checksum sha256:HEX to pin the digest, or \
             --verify=no to skip verification",
            tried.join(", ")
        ),
    }
}

/// Checks the checksum file `sums_name` (already fetched): in signature mode, with its detached
/// signature `<sums_name>.gpg` (binary) or `.asc` (armored); `Ok(None)` when it has neither.
/// A signature that is there but bad is an error, never a fallback.
pub async fn check_named(
    site: &Site,
    sums_name: &str,
    sums: Vec<u8>,
    mode: VerifyMode,
    trust: Option<&TrustStore>,
    cache: &Cache,
) -> Result<Option<VerifiedSums>> {
    let sums_loc = site.location(sums_name);
    let mut verification = Verification {
        mode: mode.into(),
        checksum_source: Some(sums_loc.clone()),
        ..Default::default()
    };
    let mut blobs = Vec::new();
    if mode == VerifyMode::Signature {
        let trust = trust.context("internal: signature mode without a trust store")?;
        let mut found = None;
        for ext in ["gpg", "asc"] {
            let sig_name = format!("{sums_name}.{ext}");
            if let Some(sig) = site.get_small(&sig_name, SIGNATURE_LIMIT).await? {
                found = Some((site.location(&sig_name), sig.bytes));
                break;
            }
        }
        let Some((sig_loc, sig)) = found else {
            return Ok(None);
        };
        let check = verify_detached(trust, &sums[..], &sig)
            .with_context(|| format!("verifying {sums_loc} with the signature {sig_loc}"))?;
        crate::faultpoint::reached("sums.verified");
        record_signature(&mut verification, &check);
        verification.signature_source = Some(sig_loc.clone());
        blobs.push(RefBlob {
            role: "signature".into(),
            digest: cache.put_bytes(&sig)?,
            size: sig.len() as u64,
            url: Some(sig_loc),
            etag: None,
            last_modified: None,
        });
    }
    let text = std::str::from_utf8(&sums).with_context(|| format!("{sums_loc} is not text"))?;
    let entries = checksums::parse(text).with_context(|| format!("parsing {sums_loc}"))?;
    blobs.insert(
        0,
        RefBlob {
            role: "checksums".into(),
            digest: cache.put_bytes(&sums)?,
            size: sums.len() as u64,
            url: Some(sums_loc),
            etag: None,
            last_modified: None,
        },
    );
    Ok(Some(VerifiedSums {
        entries,
        verification,
        blobs,
    }))
}

/// Verifies again, from the cache alone, what a ref recorded (for `--offline`).
pub fn reverify_cached(
    cache: &Cache,
    blobs: &[RefBlob],
    recorded: &Verification,
    mode: VerifyMode,
    trust: Option<&TrustStore>,
) -> Result<VerifiedSums> {
    let sums = blobs
        .iter()
        .find(|b| b.role == "checksums")
        .with_context(|| {
            format!(
                "the cache holds no checksum file for this source (it was pulled with --verify={})",
                recorded.mode
            )
        })?;
    let sums_bytes = cache.read_blob(&sums.digest)?;
    let mut verification = Verification {
        mode: mode.into(),
        checksum_source: recorded.checksum_source.clone(),
        ..Default::default()
    };
    let mut kept = vec![sums.clone()];
    if mode == VerifyMode::Signature {
        let sig = blobs
            .iter()
            .find(|b| b.role == "signature")
            .with_context(|| {
                format!(
                    "the cache holds no signature for this source (it was pulled with --verify={})",
                    recorded.mode
                )
            })?;
        let sig_bytes = cache.read_blob(&sig.digest)?;
        let trust = trust.context("internal: signature mode without a trust store")?;
        let check = verify_detached(trust, &sums_bytes[..], &sig_bytes)
            .context("verifying the cached checksum file with its cached signature")?;
        record_signature(&mut verification, &check);
        verification.signature_source = recorded.signature_source.clone();
        kept.push(sig.clone());
    }
    let text = std::str::from_utf8(&sums_bytes).context("the cached checksum file is not text")?;
    let entries = checksums::parse(text).context("parsing the cached checksum file")?;
    Ok(VerifiedSums {
        entries,
        verification,
        blobs: kept,
    })
}
