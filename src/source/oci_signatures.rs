//! Signature checks for `docker://` pulls: cosign key-based signatures (the `sha256-HEX.sig`
//! tag of the same repository, see [`crate::verify::cosign`]) and containers simple signing (GPG
//! signed messages in a lookaside store, see [`crate::verify::lookaside`]).
//!
//! Every key asked for (each `sigstoreSigned` / `signedBy` requirement of the policy scope, and
//! `--cosign-key`) must have made at least one good signature whose payload names the pulled
//! manifest digest and repository; otherwise the pull fails before any layer is fetched,
//! naming where it looked and every signature that was tried and why it failed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache::Verification;
use crate::digest::Digest;
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::{ImageManifest, ImageReference};
use crate::source::oci_pull::OciRequest;
use crate::source::registry::{Registry, shown_url};
use crate::transport::read_limited;
use crate::verify::cosign::{
    COSIGN_ARTIFACT_TYPE, COSIGN_TYPE, CosignKey, MAX_PAYLOAD_SIZE, SIGNATURE_ANNOTATION,
    SIMPLESIGNING_MEDIA_TYPE, check_payload, signature_tag,
};
use crate::verify::cosign::{SIMPLE_SIGNING_TYPE, check_exact_tag};
use crate::verify::lookaside::{load_registries_d, lookaside_dir, lookaside_for, signature_path};
use crate::verify::mode::{Checked, VerifyMode};
use crate::verify::openpgp::{TrustStore, verify_inline};
use crate::verify::policy::{Decision, Policy};

pub use super::oci_keyless::{Keyless, KeylessTrust};

/// Simple signing signatures read per image at most.
const MAX_SIMPLE_SIGNATURES: u32 = 128;

/// Where simple signing signatures are read.
pub struct SignatureStores<'a> {
    /// `<sandboxes_dir>/registries.d`.
    pub registries_d: &'a Path,
    /// `--lookaside DIR`, which wins over registries.d.
    pub lookaside: Option<&'a Path>,
}

/// Which kind of signature a required key makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureKind {
    /// A cosign PEM public key.
    Cosign,
    /// A GPG keyring for containers simple signing.
    SimpleSigning,
    /// A keyless (Fulcio certificate) signature: see [`RequiredKey::keyless`].
    Keyless,
}

/// A key a pull requires a signature by, and where the requirement came from (for messages).
#[derive(Debug, Clone)]
pub struct RequiredKey {
    pub kind: SignatureKind,
    pub path: PathBuf,
    /// `--cosign-key` or `policy.json scope …`.
    pub why: String,
    /// For [`SignatureKind::Keyless`]: who may have signed, and the trust they chain to.
    pub keyless: Option<Keyless>,
}

/// Asks the signature policy about a `docker://` image (or, with `--verify=no`, warns and
/// records that nothing was checked); the cosign keys whose signatures the pull must find.
pub fn check_policy(
    req: &OciRequest<'_>,
    reference: &ImageReference,
    verification: &mut Verification,
) -> Result<Vec<RequiredKey>> {
    let shown = req.source;
    let mut keys = Vec::new();
    if let Some(path) = &req.cosign_key {
        // Asked for on the command line: it holds even with --verify=no.
        keys.push(RequiredKey {
            kind: SignatureKind::Cosign,
            path: path.clone(),
            why: "--cosign-key".to_string(),
            keyless: None,
        });
    }
    if let Some(k) = &req.keyless {
        // Asked for on the command line: it holds even with --verify=no, as --cosign-key does.
        keys.push(RequiredKey {
            kind: SignatureKind::Keyless,
            path: k.trust.path(),
            why: "--certificate-identity".to_string(),
            keyless: Some(k.clone()),
        });
    }
    // Naming who must have signed is a trust decision of its own (see below).
    let named = match (&req.cosign_key, &req.keyless) {
        (Some(_), Some(_)) => Some("--cosign-key and --certificate-identity"),
        (Some(_), None) => Some("--cosign-key"),
        (None, Some(_)) => Some("--certificate-identity"),
        (None, None) => None,
    };
    match req.verify {
        VerifyMode::No => {
            tracing::warn!(
                "--verify=no: the signature policy is NOT consulted for {shown}; \
                 whoever controls the registry decides what you run"
            );
            verification.mode = Checked::No;
        }
        _ => match Policy::load(&req.policy_file)?.decide(reference) {
            Decision::Accept { scope } => verification.notes.push(format!(
                "accepted without a signature by {} (scope {scope})",
                req.policy_file.display()
            )),
            Decision::Verify {
                scope,
                cosign_keys,
                gpg_keyrings,
                keyless,
            } => {
                let why = format!("{} scope {scope}", req.policy_file.display());
                let cosign = cosign_keys.into_iter().map(|p| (SignatureKind::Cosign, p));
                let gpg = gpg_keyrings
                    .into_iter()
                    .map(|p| (SignatureKind::SimpleSigning, p));
                keys.extend(cosign.chain(gpg).map(|(kind, path)| RequiredKey {
                    kind,
                    path,
                    why: why.clone(),
                    keyless: None,
                }));
                keys.extend(keyless.into_iter().map(|f| {
                    let k = Keyless::from_policy(f);
                    RequiredKey {
                        kind: SignatureKind::Keyless,
                        path: k.trust.path(),
                        why: why.clone(),
                        keyless: Some(k),
                    }
                }));
            }
            // Naming the key or identity that must have signed is a trust decision of its
            // own, as --keyring is for tarballs: without a policy file, only an image signed
            // so passes (it is required above). A policy that exists and rejects stays.
            Decision::Reject { .. } if named.is_some() && !req.policy_file.exists() => {
                verification.notes.push(format!(
                    "no {} exists: accepted only if signed as {} requires",
                    req.policy_file.display(),
                    named.unwrap_or_default()
                ));
            }
            Decision::Reject { scope, reason } if named.is_some() => {
                bail!(
                    "the signature policy refuses this image: {reason} ({}, scope {scope}); \
                     {} adds a signer that must sign, it does not override a policy \
                     that rejects: require the signer for this repository in that file \
                     ({{\"type\": \"sigstoreSigned\", …}})",
                    req.policy_file.display(),
                    named.unwrap_or_default()
                )
            }
            Decision::Reject { scope, reason } => {
                let file = req.policy_file.display();
                let whose = if req.policy_file.exists() {
                    format!("{file}, scope {scope}")
                } else {
                    format!("{file} does not exist, so every registry image is rejected")
                };
                bail!(
                    "the signature policy refuses this image: {reason} ({whose}); to \
                     take it unsigned, allow the repository in {file} with \
                     {{\"type\": \"insecureAcceptAnything\"}}, or pass --verify=no"
                )
            }
        },
    }
    Ok(keys)
}

/// Reads a cosign public key file.
pub fn load_cosign_key(path: &Path) -> Result<CosignKey> {
    let pem = fs_err::read_to_string(path)
        .with_context(|| format!("reading the cosign public key {}", path.display()))?;
    CosignKey::from_pem(&pem).with_context(|| format!("reading {}", path.display()))
}

/// One signature layer of a signature image: its payload, its base64 signature, and its
/// annotations (a keyless one carries its certificate and Rekor entry there).
pub(super) struct SignedPayload {
    pub payload: Vec<u8>,
    pub signature: String,
    pub layer: Digest,
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Checks every `required` key: simple signing from the lookaside store of `stores`, cosign
/// from `registry`. Records in `verification` which keys passed (the first one as its
/// main fields, all of them in the notes).
pub async fn verify_signatures(
    registry: &Registry,
    reference: &ImageReference,
    digest: &Digest,
    required: &[RequiredKey],
    stores: &SignatureStores<'_>,
    verification: &mut Verification,
) -> Result<()> {
    let of = |kind| -> Vec<RequiredKey> {
        required
            .iter()
            .filter(|k| k.kind == kind)
            .cloned()
            .collect()
    };
    for k in &of(SignatureKind::SimpleSigning) {
        verify_simple_signing(stores, reference, digest, k, verification)?;
    }
    verify_cosign(
        registry,
        reference,
        digest,
        &of(SignatureKind::Cosign),
        verification,
    )
    .await?;
    super::oci_keyless::verify_keyless(
        registry,
        reference,
        digest,
        &of(SignatureKind::Keyless),
        verification,
    )
    .await
}

/// Records a key that passed: the first one fills the main fields.
fn record(verification: &mut Verification, source: String, fingerprint: String, req: &RequiredKey) {
    if verification.mode != Checked::Signature {
        verification.mode = Checked::Signature;
        verification.signature_source = Some(source.clone());
        verification.key_fingerprint = Some(fingerprint.clone());
        verification.key_origin = Some(req.path.display().to_string());
    }
    verification.notes.push(format!(
        "{source}: signature by {fingerprint} ({}, required by {}) verified",
        req.path.display(),
        req.why
    ));
}

/// A simple signing signature by the keyring `req.path` in the lookaside store.
fn verify_simple_signing(
    stores: &SignatureStores<'_>,
    reference: &ImageReference,
    digest: &Digest,
    req: &RequiredKey,
    verification: &mut Verification,
) -> Result<()> {
    let dir = match stores.lookaside {
        Some(dir) => dir.to_path_buf(),
        None => configured_lookaside(stores.registries_d, reference, req)?,
    };
    let mut store = TrustStore::new();
    store.add_file(&req.path, false)?;
    let mut tried = Vec::new();
    // containers/image reads until the first missing file; a bound keeps a store full of
    // junk from making a pull verify without end.
    for n in 1..=MAX_SIMPLE_SIGNATURES {
        let path = signature_path(&dir, reference, digest, n);
        let msg = match fs_err::read(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) => return Err(e.into()),
        };
        let outcome = verify_inline(&store, &msg)
            .map_err(anyhow::Error::from)
            .and_then(|(payload, check)| {
                let identity = check_payload(&payload, SIMPLE_SIGNING_TYPE, digest, reference)?;
                check_exact_tag(&identity, reference)?;
                Ok(check)
            });
        match outcome {
            Ok(check) => {
                let source = format!("simple-signing:{}", path.display());
                record(verification, source, check.primary_fingerprint.clone(), req);
                if verification.signer.is_none() {
                    verification.signer = check.user_ids.first().cloned();
                }
                return Ok(());
            }
            Err(e) => tried.push(format!("{}: {e:#}", path.display())),
        }
    }
    let first = signature_path(&dir, reference, digest, 1);
    let detail = if tried.is_empty() {
        format!("there is no {}", first.display())
    } else {
        tried.join("; ")
    };
    bail!(
        "no simple signing signature of manifest {digest} by a key of {} ({}) verifies: {detail}",
        req.path.display(),
        req.why
    )
}

/// The lookaside directory registries.d configures for `reference`.
fn configured_lookaside(
    registries_d: &Path,
    reference: &ImageReference,
    req: &RequiredKey,
) -> Result<PathBuf> {
    let entries = load_registries_d(registries_d)?;
    let url = lookaside_for(&entries, reference).with_context(|| {
        format!(
            "{} requires a simple signing signature by {}, and no lookaside store for {}/{} is \
             configured in {}/*.yaml (or given with --lookaside)",
            req.why,
            req.path.display(),
            reference.registry,
            reference.repository,
            registries_d.display()
        )
    })?;
    lookaside_dir(&url)
}

/// Checks `required` cosign keys against the signatures of `digest` in `registry`'s
/// repository.
async fn verify_cosign(
    registry: &Registry,
    reference: &ImageReference,
    digest: &Digest,
    required: &[RequiredKey],
    verification: &mut Verification,
) -> Result<()> {
    if required.is_empty() {
        return Ok(());
    }
    let keys = required
        .iter()
        .map(|r| load_cosign_key(&r.path).map(|k| (r, k)))
        .collect::<Result<Vec<_>>>()?;
    let tag = signature_tag(digest);
    let shown_tag = format!("{}/{}:{tag}", reference.registry, reference.repository);
    // Signatures attached as OCI 1.1 referrers (cosign's oci-1-1 mode; the registry's API or
    // the referrers tag schema), then the `sha256-<hex>.sig` tag; the tag may be missing when
    // referrers hold some.
    let mut signed = Vec::new();
    let mut sources = Vec::new();
    if let Some(index) = registry
        .referrers_or_tag(digest)
        .await
        .with_context(|| format!("listing the referrers of {digest}"))?
    {
        for m in index
            .manifests
            .iter()
            .filter(|m| m.artifact_type.as_deref() == Some(COSIGN_ARTIFACT_TYPE))
        {
            let found = fetch_signatures(registry, &m.digest.to_string(), Some(&m.digest))
                .await
                .with_context(|| format!("fetching the cosign signature referrer {}", m.digest))?;
            signed.extend(found);
            sources.push(format!("referrer {}", m.digest));
        }
    }
    match fetch_signatures(registry, &tag, None).await {
        Ok(found) => {
            signed.extend(found);
            sources.push(shown_tag.clone());
        }
        Err(e) if !signed.is_empty() => {
            tracing::debug!("no cosign signature tag {shown_tag} ({e:#}); using the referrers");
        }
        Err(e) => return Err(e.context(format!("fetching the cosign signatures {shown_tag}"))),
    }
    let shown_tag = sources.join(", ");
    for (req, key) in &keys {
        let mut tried = Vec::new();
        let mut passed = false;
        for s in &signed {
            let outcome = key
                .verify(&s.payload, &s.signature)
                .and_then(|()| check_payload(&s.payload, COSIGN_TYPE, digest, reference).map(drop));
            match outcome {
                Ok(()) => {
                    passed = true;
                    break;
                }
                Err(e) => tried.push(format!("layer {}: {e:#}", s.layer)),
            }
        }
        if !passed {
            let detail = if tried.is_empty() {
                "it holds no signature layers".to_string()
            } else {
                tried.join("; ")
            };
            bail!(
                "no cosign signature of manifest {digest} by the key {} ({}, {}) verifies in \
                 {shown_tag}: {detail}",
                req.path.display(),
                key.fingerprint,
                req.why
            );
        }
        record(
            verification,
            format!("cosign:{shown_tag}"),
            key.fingerprint.clone(),
            req,
        );
    }
    Ok(())
}

/// The signature layers of the manifest `reference` (a tag, or a digest it must hash to) (payloads fetched and bounded; layers of
/// other media types, or without a signature annotation, are skipped).
pub(super) async fn fetch_signatures(
    registry: &Registry,
    reference: &str,
    expected: Option<&Digest>,
) -> Result<Vec<SignedPayload>> {
    let raw = registry.manifest(reference, MAX_MANIFEST_SIZE).await?;
    if let Some(expected) = expected
        && Digest::of(&raw.bytes) != *expected
    {
        bail!("the signature manifest {reference} does not hash to {expected}");
    }
    let manifest: ImageManifest = serde_json::from_slice(&raw.bytes)
        .context("the signature manifest is not an image manifest")?;
    let mut out = Vec::new();
    for layer in manifest.layers {
        if layer.media_type != SIMPLESIGNING_MEDIA_TYPE {
            continue;
        }
        let Some(signature) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            continue;
        };
        if layer.size > MAX_PAYLOAD_SIZE {
            bail!(
                "payload {} is {} bytes, more than the {MAX_PAYLOAD_SIZE} allowed",
                layer.digest,
                layer.size
            );
        }
        let resp = registry.blob(&layer.digest).await?;
        let url = shown_url(&resp);
        let payload = read_limited(resp, MAX_PAYLOAD_SIZE, &url).await?;
        if Digest::of(&payload) != layer.digest {
            bail!("GET {url}: the payload's sha256 is not {}", layer.digest);
        }
        out.push(SignedPayload {
            payload,
            signature: signature.clone(),
            layer: layer.digest,
            annotations: layer.annotations.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
#[path = "oci_signatures_tests.rs"]
mod tests;
