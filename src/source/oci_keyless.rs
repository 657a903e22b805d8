//! Keyless cosign signatures of `docker://` images, found where cosign puts them and checked
//! offline by [`crate::verify::sigstore`]:
//! - Sigstore bundles attached as OCI 1.1 referrers of the manifest (cosign v3's default): the
//!   registry's referrers API, else the referrers tag schema's `sha256-HEX` index; each
//!   bundle's in-toto statement must name the manifest digest, with cosign's signature
//!   predicate type (an SBOM or provenance attestation by the same identity is not a
//!   signature);
//! - the legacy `sha256-HEX.sig` tag, whose layers carry the certificate, chain and Rekor
//!   entry in annotations ([`crate::verify::sigstore_legacy`]), the payload naming the
//!   manifest digest and repository as for key-based signatures.
//!
//! Each keyless requirement (`--certificate-identity` …, or a policy.json `fulcio`
//! requirement) needs one signature that verifies; the record names the identity and issuer.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use base64::Engine;

use super::oci_signatures::{RequiredKey, fetch_signatures};
use crate::cache::Verification;
use crate::digest::Digest;
use crate::oci::ImageReference;
use crate::oci::manifest::{ImageManifest, MAX_MANIFEST_SIZE};
use crate::source::registry::{Registry, shown_url};
use crate::transport::read_limited;
use crate::verify::cosign::{COSIGN_TYPE, check_payload, signature_tag};
use crate::verify::mode::Checked;
use crate::verify::policy::Fulcio;
use crate::verify::sigstore::{
    Expect, MAX_BUNDLE, Signed, Signer, TrustRoot, parse_bundle, verify_bundle,
};
use crate::verify::sigstore_legacy::{
    BUNDLE_ANNOTATION, CERTIFICATE_ANNOTATION, CHAIN_ANNOTATION, legacy_bundle, policy_trusted_root,
};

/// Referrers looked at per image at most (each costs a request or two).
const MAX_REFERRERS: usize = 32;
/// The in-toto predicate type of cosign's image signatures.
pub const COSIGN_SIGN_PREDICATE: &str = "https://sigstore.dev/cosign/sign/v1";

/// Where a keyless requirement's trust comes from.
#[derive(Debug, Clone)]
pub enum KeylessTrust {
    /// A trusted root file (`--trusted-root`, `<sandboxes_dir>/trusted_root.json`), or `None`
    /// for the built-in public-good one.
    Root(Option<PathBuf>),
    /// A policy.json `fulcio` requirement: its CA and Rekor key.
    Policy(Fulcio),
}

impl KeylessTrust {
    /// A path that names it in messages (the built-in root has none).
    pub fn path(&self) -> PathBuf {
        match self {
            KeylessTrust::Root(Some(p)) => p.clone(),
            KeylessTrust::Root(None) => PathBuf::from("(built-in Sigstore trusted root)"),
            KeylessTrust::Policy(f) => match &f.ca {
                crate::verify::policy::PemSource::Path(p) => p.clone(),
                crate::verify::policy::PemSource::Data(_) => PathBuf::from("(fulcio caData)"),
            },
        }
    }

    fn load(&self) -> Result<TrustRoot> {
        match self {
            KeylessTrust::Root(path) => TrustRoot::load_file(path.as_deref()),
            KeylessTrust::Policy(f) => {
                let (ca, ca_from) = f.ca.read("Fulcio CA")?;
                let (rekor, _) = f.rekor_key.read("Rekor public key")?;
                let json = policy_trusted_root(&ca, &rekor)?;
                TrustRoot::from_json(&json, format!("the Fulcio CA {ca_from} (policy.json)"))
            }
        }
    }
}

/// A keyless requirement: who may have signed, and the trust their certificate chains to.
#[derive(Debug, Clone)]
pub struct Keyless {
    pub trust: KeylessTrust,
    pub identity: Expect,
    pub issuer: Expect,
}

impl Keyless {
    /// A policy.json `fulcio` requirement: `subjectEmail` and `oidcIssuer` exactly.
    pub fn from_policy(f: Fulcio) -> Keyless {
        Keyless {
            identity: Expect::Exact(f.subject_email.clone()),
            issuer: Expect::Exact(f.oidc_issuer.clone()),
            trust: KeylessTrust::Policy(f),
        }
    }
}

/// A signature found for the manifest, ready to verify.
enum Found {
    /// A Sigstore bundle from a referrer: it signs the manifest digest (an in-toto subject).
    Bundle { json: Vec<u8>, source: String },
    /// A legacy `.sig` layer rewritten as a bundle over its payload.
    Legacy {
        json: String,
        payload: Vec<u8>,
        source: String,
    },
}

fn is_bundle_type(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.dev.sigstore.bundle")
}

/// The predicate type of a bundle's DSSE statement, if it has one.
fn dsse_predicate_type(bundle_json: &[u8]) -> Result<Option<String>> {
    let v: serde_json::Value = serde_json::from_slice(bundle_json).context("not JSON")?;
    let Some(payload) = v
        .get("dsseEnvelope")
        .and_then(|e| e.get("payload"))
        .and_then(|p| p.as_str())
    else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .context("the DSSE payload is not base64")?;
    let statement: serde_json::Value =
        serde_json::from_slice(&bytes).context("the DSSE payload is not an in-toto statement")?;
    Ok(statement
        .get("predicateType")
        .and_then(|t| t.as_str())
        .map(str::to_string))
}

/// The Sigstore bundles attached to `digest` as referrers.
async fn referrer_bundles(registry: &Registry, digest: &Digest) -> Result<Vec<Found>> {
    let Some(index) = registry.referrers_or_tag(digest).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    // cosign has listed its bundles with an empty artifact type: look at any that may be one.
    let candidates = index.manifests.iter().filter(|m| {
        m.artifact_type
            .as_deref()
            .is_none_or(|t| is_bundle_type(t) || t == "application/vnd.oci.empty.v1+json")
    });
    for m in candidates.take(MAX_REFERRERS) {
        let raw = registry
            .manifest(&m.digest.to_string(), MAX_MANIFEST_SIZE)
            .await
            .with_context(|| format!("fetching the referrer {}", m.digest))?;
        if Digest::of(&raw.bytes) != m.digest {
            bail!(
                "the referrer manifest {} does not hash to its digest",
                m.digest
            );
        }
        let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&raw.bytes) else {
            continue;
        };
        for layer in manifest
            .layers
            .iter()
            .filter(|l| is_bundle_type(&l.media_type))
        {
            if layer.size > MAX_BUNDLE {
                bail!(
                    "the bundle {} of referrer {} is {} bytes, more than the {MAX_BUNDLE} allowed",
                    layer.digest,
                    m.digest,
                    layer.size
                );
            }
            let resp = registry.blob(&layer.digest).await?;
            let url = shown_url(&resp);
            let json = read_limited(resp, MAX_BUNDLE, &url).await?;
            if Digest::of(&json) != layer.digest {
                bail!("GET {url}: the bundle's sha256 is not {}", layer.digest);
            }
            out.push(Found::Bundle {
                json,
                source: format!("referrer {}", m.digest),
            });
        }
    }
    Ok(out)
}

/// The keyless layers of the legacy `.sig` tag (layers without a certificate are key-based).
async fn legacy_signatures(
    registry: &Registry,
    reference: &ImageReference,
    digest: &Digest,
) -> Result<Vec<Found>> {
    let tag = signature_tag(digest);
    let shown = format!("{}/{}:{tag}", reference.registry, reference.repository);
    let signed = match fetch_signatures(registry, &tag, None).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("no cosign signature tag {shown}: {e:#}");
            return Ok(Vec::new());
        }
    };
    let mut out = Vec::new();
    for s in signed {
        let Some(cert) = s.annotations.get(CERTIFICATE_ANNOTATION) else {
            continue;
        };
        let source = format!("{shown} layer {}", s.layer);
        let Some(rekor) = s.annotations.get(BUNDLE_ANNOTATION) else {
            tracing::debug!("{source}: a certificate without a Rekor bundle annotation");
            continue;
        };
        let chain = s.annotations.get(CHAIN_ANNOTATION).map(String::as_str);
        let json = legacy_bundle(&s.payload, &s.signature, cert, chain, rekor)
            .with_context(|| format!("reading the keyless signature {source}"))?;
        out.push(Found::Legacy {
            json,
            payload: s.payload,
            source,
        });
    }
    Ok(out)
}

/// One found signature checked for one requirement: the identity and issuer it vouches with.
fn check(
    found: &Found,
    root: &TrustRoot,
    signer: &Signer,
    digest: &Digest,
    reference: &ImageReference,
) -> Result<crate::verify::sigstore::Vouched> {
    match found {
        Found::Bundle { json, .. } => {
            match dsse_predicate_type(json)? {
                Some(t) if t == COSIGN_SIGN_PREDICATE => {}
                Some(t) => bail!("an attestation of type `{t}`, not a signature"),
                None => {}
            }
            let bundle = parse_bundle(json)?;
            verify_bundle(root, &bundle, Signed::Digest(digest), signer)
        }
        Found::Legacy { json, payload, .. } => {
            let bundle = parse_bundle(json.as_bytes())?;
            let vouched = verify_bundle(root, &bundle, Signed::Bytes(payload), signer)?;
            check_payload(payload, COSIGN_TYPE, digest, reference)?;
            Ok(vouched)
        }
    }
}

fn source_of(found: &Found) -> &str {
    match found {
        Found::Bundle { source, .. } | Found::Legacy { source, .. } => source,
    }
}

/// Checks every keyless requirement against the signatures attached to `digest`.
pub async fn verify_keyless(
    registry: &Registry,
    reference: &ImageReference,
    digest: &Digest,
    required: &[RequiredKey],
    verification: &mut Verification,
) -> Result<()> {
    if required.is_empty() {
        return Ok(());
    }
    let mut found = referrer_bundles(registry, digest)
        .await
        .with_context(|| format!("listing the referrers of {digest}"))?;
    found.extend(legacy_signatures(registry, reference, digest).await?);
    for req in required {
        let Some(k) = &req.keyless else { continue };
        let root = k.trust.load()?;
        let signer = Signer::Keyless {
            identity: k.identity.clone(),
            issuer: k.issuer.clone(),
        };
        let mut tried = Vec::new();
        let mut passed = None;
        for f in &found {
            match check(f, &root, &signer, digest, reference) {
                Ok(v) => {
                    passed = Some((v, source_of(f).to_string()));
                    break;
                }
                Err(e) => tried.push(format!("{}: {e:#}", source_of(f))),
            }
        }
        let Some((vouched, source)) = passed else {
            let detail = if tried.is_empty() {
                format!(
                    "there is none: no Sigstore bundle among its referrers and no keyless \
                     layer in {}/{}:{}",
                    reference.registry,
                    reference.repository,
                    signature_tag(digest)
                )
            } else {
                tried.join("; ")
            };
            bail!(
                "no keyless signature of manifest {digest} by identity {} (issuer {}) that \
                 chains to {} verifies ({}): {detail}",
                k.identity,
                k.issuer,
                root.origin,
                req.why
            );
        };
        let issuer = vouched.issuer.clone().unwrap_or_default();
        if verification.mode != Checked::Signature {
            verification.mode = Checked::Signature;
            verification.signature_source = Some(format!("sigstore:{source}"));
            verification.signer = Some(vouched.identity.clone());
            verification.oidc_issuer = Some(issuer.clone());
            verification.key_origin = Some(root.origin.clone());
        }
        verification.notes.push(format!(
            "{source}: keyless signature by {} (issuer {issuer}, chained to {}, required by {}) \
             verified",
            vouched.identity, root.origin, req.why
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with_statement(statement: &str) -> Vec<u8> {
        let payload = base64::engine::general_purpose::STANDARD.encode(statement);
        format!(r#"{{"dsseEnvelope":{{"payload":"{payload}","payloadType":"application/vnd.in-toto+json"}}}}"#)
            .into_bytes()
    }

    #[test]
    fn a_bundle_is_a_signature_only_with_cosigns_predicate_type() {
        let sig =
            bundle_with_statement(&format!(r#"{{"predicateType":"{COSIGN_SIGN_PREDICATE}"}}"#));
        assert_eq!(
            dsse_predicate_type(&sig).unwrap().as_deref(),
            Some(COSIGN_SIGN_PREDICATE)
        );
        let sbom = bundle_with_statement(r#"{"predicateType":"https://cyclonedx.org/bom"}"#);
        assert_eq!(
            dsse_predicate_type(&sbom).unwrap().as_deref(),
            Some("https://cyclonedx.org/bom")
        );
        assert_eq!(
            dsse_predicate_type(br#"{"messageSignature":{}}"#).unwrap(),
            None
        );
        assert!(dsse_predicate_type(br#"{"dsseEnvelope":{"payload":"%%"}}"#).is_err());
    }

    #[test]
    fn bundle_media_types_of_every_version_are_recognised() {
        assert!(is_bundle_type(
            "application/vnd.dev.sigstore.bundle.v0.3+json"
        ));
        assert!(is_bundle_type(
            "application/vnd.dev.sigstore.bundle+json;version=0.2"
        ));
        assert!(!is_bundle_type(
            "application/vnd.dev.cosign.simplesigning.v1+json"
        ));
    }
}
