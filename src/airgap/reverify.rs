//! Re-verifying an imported ref against the importing host, before it is written: its blobs
//! must be present and hash to their names, and the ref must pass `pull::fetch_verified` as
//! its candidate, with this host's keys and policy (the exporting host's word is not taken).

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cache::store::hash_file;
use crate::cache::{Cache, Ref, RefKind};
use crate::digest::Digest;
use crate::oci::PlatformSpec;
use crate::pull::PullSpec;
use crate::source::SourceRef;
use crate::verify::mode::{Checked, VerifyMode};

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

/// The pull that verifies `r` again on this host: its source, read back from the ref, in the
/// mode it was recorded with, with `r` as the candidate (checked from the cache, not written).
/// `None` for an index ref, which holds unsigned documents only.
pub fn candidate_spec(kind: RefKind, r: &Ref, keyrings: &[PathBuf]) -> Result<Option<PullSpec>> {
    if kind == RefKind::Index {
        return Ok(None);
    }
    let source = SourceRef::parse(&r.source)?;
    let fits = match kind {
        RefKind::Tarball => matches!(source, SourceRef::Url(_) | SourceRef::File(_)),
        RefKind::Images => matches!(source, SourceRef::Images(_)),
        RefKind::Oci => matches!(source, SourceRef::Oci(_)),
        RefKind::Index => false,
    };
    if !fits {
        bail!(
            "a {} ref cannot have the source {}",
            kind.dir_name(),
            r.source
        );
    }
    let detail = |key: &str| {
        r.details
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut spec = PullSpec::new(source);
    spec.verify = match r.verification.mode {
        Checked::No => VerifyMode::No,
        Checked::Checksum => VerifyMode::Checksum,
        // An OCI image's digests are always checked; the policy says what else it needs.
        Checked::Signature | Checked::Digest => VerifyMode::Signature,
    };
    if kind == RefKind::Tarball
        && r.verification.mode == Checked::Checksum
        && r.blob("checksums").is_none()
    {
        // Pinned by `--checksum` on the exporting host: that pin is all there is to check.
        spec.checksum = r.blob("image").map(|b| b.digest);
    }
    spec.keyrings = keyrings.to_vec();
    spec.arch = detail("arch");
    spec.images_server = detail("server");
    if kind == RefKind::Oci {
        let platform = detail("platform").context("the ref names no platform")?;
        spec.oci.platform = Some(PlatformSpec::parse(&platform)?);
    }
    spec.allow_downgrade = true;
    spec.candidate = Some(Box::new(r.clone()));
    Ok(Some(spec))
}

/// What re-verification of `r` amounts to, once it passed: a checksum the cache keeps no file
/// for (a products file's, or `--checksum`) is the exporting host's record.
pub fn outcome(r: &Ref) -> Outcome {
    match r.verification.mode {
        Checked::No => Outcome::Unverified,
        Checked::Checksum if r.blob("checksums").is_none() => Outcome::AsRecorded(
            r.verification
                .checksum_source
                .clone()
                .unwrap_or_else(|| "an unrecorded checksum".into()),
        ),
        _ => Outcome::Verified,
    }
}

/// Adds who signed it on the exporting host, so a refusal names the key to look for.
pub fn with_signer(e: anyhow::Error, r: &Ref) -> anyhow::Error {
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
