//! Signature checks for `docker://` pulls, against the registry: cosign key-based signatures
//! (the `sha256-HEX.sig` tag of the same repository, see [`crate::oci::cosign`]).
//!
//! Every key asked for (each `sigstoreSigned` requirement of the policy scope, and
//! `--cosign-key`) must have made at least one good signature whose payload names the pulled
//! manifest digest and repository; otherwise the pull fails before any layer is fetched,
//! naming the tag and every signature that was tried and why it failed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::cache::Verification;
use crate::oci::cosign::{
    COSIGN_TYPE, CosignKey, MAX_PAYLOAD_SIZE, SIGNATURE_ANNOTATION, SIMPLESIGNING_MEDIA_TYPE,
    check_payload, signature_tag,
};
use crate::oci::manifest::MAX_MANIFEST_SIZE;
use crate::oci::registry::{Registry, read_limited, shown_url};
use crate::oci::{ImageManifest, ImageReference};
use crate::verify::Digest;

/// A cosign key a pull requires, and where the requirement came from (for messages).
#[derive(Debug, Clone)]
pub struct RequiredCosignKey {
    pub path: PathBuf,
    /// `--cosign-key` or `policy.json scope …`.
    pub why: String,
}

/// Reads a cosign public key file.
pub fn load_cosign_key(path: &Path) -> Result<CosignKey> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the cosign public key {}", path.display()))?;
    CosignKey::from_pem(&pem).with_context(|| format!("reading {}", path.display()))
}

/// One signature layer of a signature image: its payload, and its base64 signature.
struct SignedPayload {
    payload: Vec<u8>,
    signature: String,
    layer: Digest,
}

/// Checks `required` cosign keys against the signatures of `digest` in `registry`'s
/// repository, and records in `verification` which key passed (the first one as its main
/// fields, all of them in the notes).
pub async fn verify_cosign(
    registry: &Registry,
    reference: &ImageReference,
    digest: &Digest,
    required: &[RequiredCosignKey],
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
    let signed = fetch_signatures(registry, &tag)
        .await
        .with_context(|| format!("fetching the cosign signatures {shown_tag}"))?;
    for (i, (req, key)) in keys.iter().enumerate() {
        let mut tried = Vec::new();
        let mut passed = false;
        for s in &signed {
            let outcome = key
                .verify(&s.payload, &s.signature)
                .and_then(|()| check_payload(&s.payload, COSIGN_TYPE, digest, reference));
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
        if i == 0 {
            verification.mode = "signature".to_string();
            verification.signature_source = Some(format!("cosign:{shown_tag}"));
            verification.key_fingerprint = Some(key.fingerprint.clone());
            verification.key_origin = Some(req.path.display().to_string());
        }
        verification.notes.push(format!(
            "cosign signature by {} ({}, required by {}) verified over manifest {digest}",
            key.fingerprint,
            req.path.display(),
            req.why
        ));
    }
    Ok(())
}

/// The signature layers of the image tagged `tag` (payloads fetched and bounded; layers of
/// other media types, or without a signature annotation, are skipped).
async fn fetch_signatures(registry: &Registry, tag: &str) -> Result<Vec<SignedPayload>> {
    let raw = registry.manifest(tag, MAX_MANIFEST_SIZE).await?;
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
        });
    }
    Ok(out)
}
