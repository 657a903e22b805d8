//! Re-verifying an imported ref against the importing host, before it is written: its blobs
//! must be present and hash to their names, and a signature ref must verify again with this
//! host's keys (the exporting host's word is not taken).

use std::collections::BTreeSet;
use std::io::BufReader;

use anyhow::{Context, Result, bail};

use crate::cache::store::hash_file;
use crate::cache::{Cache, Ref, RefKind};
use crate::digest::Digest;
use crate::source::sums;
use crate::verify::mode::{Checked, VerifyMode};
use crate::verify::openpgp::{TrustStore, verify_detached};

const IMAGE_SIGNATURE: &str = "image-signature";

/// What re-verification concluded about a ref that passed.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Verified again as it was recorded (signature or checksum file).
    Verified,
    /// Accepted on its record: a checksum from a products file or `--checksum`, which the
    /// cache keeps no file for. The string says what it was checked against.
    AsRecorded(String),
    /// Pulled with `--verify=no`: nothing to check beyond the blobs' own digests.
    Unverified,
}

/// Checks that every blob of `r` is in the cache and hashes to its name. `hashed` holds
/// digests already checked (by the import itself), which are not hashed twice.
pub fn check_blobs(cache: &Cache, r: &Ref, hashed: &mut BTreeSet<Digest>) -> Result<()> {
    for b in &r.blobs {
        let Some(path) = cache.blob(&b.digest) else {
            bail!("its {} blob {} is missing", b.role, b.digest);
        };
        if hashed.contains(&b.digest) {
            continue;
        }
        let (got, len) = hash_file(&path)?;
        if got != b.digest {
            bail!(
                "its {} blob {} is corrupt in this cache; run `sandbox cache fsck`",
                b.role,
                b.digest
            );
        }
        if len != b.size {
            bail!(
                "its {} blob {} has {len} bytes, the ref says {}",
                b.role,
                b.digest,
                b.size
            );
        }
        hashed.insert(b.digest);
    }
    Ok(())
}

/// The name the checksum file lists the image under: the last segment of its URL.
fn image_file_name(r: &Ref) -> Result<String> {
    let image = r.blob("image").context("the ref has no image")?;
    let loc = image.url.as_deref().unwrap_or(&r.source);
    let path = loc.split(['?', '#']).next().unwrap_or(loc);
    match path.rsplit('/').next() {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => bail!("cannot tell the image's file name from {loc}"),
    }
}

/// Verifies a tarball or images ref again from the (imported) cache with `trust`.
pub fn verify_image_ref(
    cache: &Cache,
    kind: RefKind,
    r: &Ref,
    trust: &TrustStore,
) -> Result<Outcome> {
    if kind == RefKind::Index || kind == RefKind::Oci {
        return Ok(Outcome::Verified);
    }
    let image = r.blob("image").context("the ref has no image")?;
    let has = |role: &str| r.blob(role).is_some();
    let with_sums = |mode: VerifyMode| -> Result<Outcome> {
        let s = sums::reverify_cached(cache, &r.blobs, &r.verification, mode, Some(trust))?;
        let name = image_file_name(r)?;
        let listed = s.digest_of(&name)?;
        if listed != image.digest {
            bail!(
                "its checksum file says {listed} for {name}, its image is {}",
                image.digest
            );
        }
        Ok(Outcome::Verified)
    };
    match r.verification.mode {
        Checked::Signature if has("checksums") && has("signature") => {
            with_sums(VerifyMode::Signature).map_err(|e| with_signer(e, r))
        }
        Checked::Signature if has(IMAGE_SIGNATURE) => {
            let sig = r.blob(IMAGE_SIGNATURE).context("checked above")?;
            let sig_bytes = cache.read_blob(&sig.digest)?;
            let path = cache
                .blob(&image.digest)
                .context("its image is not in the cache")?;
            let file = fs_err::File::open(&path).map(fs_err::File::into_file)?;
            verify_detached(
                trust,
                BufReader::with_capacity(256 * 1024, file),
                &sig_bytes,
            )
            .context("verifying its image with its detached signature")
            .map_err(|e| with_signer(e, r))?;
            Ok(Outcome::Verified)
        }
        Checked::Signature => {
            bail!("it was recorded as signature-verified but carries no signature")
        }
        Checked::Checksum if has("checksums") => with_sums(VerifyMode::Checksum),
        Checked::Checksum => Ok(Outcome::AsRecorded(
            r.verification
                .checksum_source
                .clone()
                .unwrap_or_else(|| "an unrecorded checksum".into()),
        )),
        Checked::No => Ok(Outcome::Unverified),
        Checked::Digest => bail!("verification mode `digest` cannot be checked again on import"),
    }
}

/// Adds who signed it on the exporting host, so a refusal names the key to look for.
fn with_signer(e: anyhow::Error, r: &Ref) -> anyhow::Error {
    let v = &r.verification;
    match (&v.key_fingerprint, &v.signer) {
        (Some(fpr), Some(who)) => e.context(format!(
            "it was signed by key {fpr} ({who}); trust that key here with --keyring or `sandbox keys add`"
        )),
        (Some(fpr), None) => e.context(format!(
            "it was signed by key {fpr}; trust that key here with --keyring or `sandbox keys add`"
        )),
        _ => e,
    }
}
