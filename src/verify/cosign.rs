//! cosign key-based signatures, checked without the network: the signature tag's name, the
//! "simple signing" payload cosign signs, and the ECDSA P-256 signature over it.
//!
//! cosign stores the signatures of manifest `sha256:HEX` as an image tagged `sha256-HEX.sig`
//! in the same repository. Each layer of media type [`SIMPLESIGNING_MEDIA_TYPE`] is one
//! payload (JSON, `critical.image.docker-manifest-digest` and
//! `critical.identity.docker-reference`), signed by the base64 DER ECDSA signature in its
//! [`SIGNATURE_ANNOTATION`]. A signature only vouches for the digest and repository its
//! payload names: a good signature over a payload for another image (replayed from another
//! tag or repository) must not pass, so the payload is checked as well as the signature.

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::{DecodePublicKey as _, EncodePublicKey as _};
use serde::Deserialize;

use crate::digest::Digest;
use crate::oci::reference::ImageReference;

/// The media type of a cosign signature payload layer.
/// The artifact type of a cosign signature attached as an OCI 1.1 referrer.
pub const COSIGN_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
pub const SIMPLESIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The layer annotation that holds the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";

/// Payloads larger than this are refused before reading: a payload is a few hundred bytes.
pub const MAX_PAYLOAD_SIZE: u64 = 64 << 10;

/// The tag cosign stores the signatures of `digest` under: `sha256-HEX.sig`.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// A cosign public key, and how it is named in records: `sha256:` of its DER
/// SubjectPublicKeyInfo (what `sha256sum` of `openssl pkey -pubin -outform DER` prints).
#[derive(Debug, Clone)]
pub struct CosignKey {
    key: VerifyingKey,
    pub fingerprint: String,
}

impl CosignKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding a P-256 key.
    pub fn from_pem(pem: &str) -> Result<CosignKey> {
        let key = VerifyingKey::from_public_key_pem(pem.trim()).map_err(|e| {
            anyhow::anyhow!("not a PEM P-256 public key (SubjectPublicKeyInfo): {e}")
        })?;
        let der = key
            .to_public_key_der()
            .map_err(|e| anyhow::anyhow!("encoding the public key: {e}"))?;
        Ok(CosignKey {
            key,
            fingerprint: format!("sha256:{}", Digest::of(der.as_bytes()).hex()),
        })
    }

    /// Checks `signature_b64` (base64 of a DER ECDSA signature) over `payload`.
    pub fn verify(&self, payload: &[u8], signature_b64: &str) -> Result<()> {
        let der = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .context("the signature annotation is not base64")?;
        let sig = Signature::from_der(&der)
            .map_err(|_| anyhow::anyhow!("the signature is not a DER ECDSA signature"))?;
        self.key.verify(payload, &sig).map_err(|_| {
            anyhow::anyhow!(
                "the signature does not verify with key {}",
                self.fingerprint
            )
        })
    }
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: Image,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct Image {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The `critical.type` cosign writes.
pub const COSIGN_TYPE: &str = "cosign container image signature";

/// The `critical.type` of containers simple signing (`skopeo copy --sign-by`).
pub const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";

/// Checks that a simple-signing payload of `critical.type` `kind` names `digest` and
/// `reference`'s repository; returns the identity it names (`critical.identity`).
///
/// The identity may carry a tag or digest (containers' simple signing writes `host/repo:tag`);
/// only its repository part is compared, as `matchRepository` / cosign do: the manifest
/// digest already pins the content.
pub fn check_payload(
    payload: &[u8],
    kind: &str,
    digest: &Digest,
    reference: &ImageReference,
) -> Result<String> {
    let p: Payload = serde_json::from_slice(payload)
        .context("the payload is not simple-signing JSON (critical.identity, critical.image)")?;
    if p.critical.kind != kind {
        bail!(
            "the payload's critical.type is `{}`, not `{kind}`",
            p.critical.kind
        );
    }
    let signed: Digest = p
        .critical
        .image
        .docker_manifest_digest
        .parse()
        .with_context(|| {
            format!(
                "the payload's docker-manifest-digest `{}` is not a sha256 digest",
                p.critical.image.docker_manifest_digest
            )
        })?;
    if signed != *digest {
        bail!("the payload signs manifest {signed}, not the pulled {digest}");
    }
    let named = &p.critical.identity.docker_reference;
    if !same_repository(named, reference) {
        bail!(
            "the payload names `{named}`, not the repository {}/{}",
            reference.registry,
            reference.repository
        );
    }
    Ok(p.critical.identity.docker_reference)
}

/// containers' default `signedIdentity` (`matchRepoDigestOrExact`): a pull by tag needs a
/// signature whose identity is exactly `host/repo:tag`, so a signature made for `:1` does not
/// vouch for whatever `:latest` points at; a pull by digest needs only the repository (checked
/// by [`check_payload`]).
pub fn check_exact_tag(identity: &str, reference: &ImageReference) -> Result<()> {
    let (Some(tag), None) = (&reference.tag, &reference.digest) else {
        return Ok(());
    };
    let last = identity.rsplit('/').next().unwrap_or(identity);
    if identity.contains('@') || !last.ends_with(&format!(":{tag}")) {
        bail!("the payload names `{identity}`, not the pulled tag `{tag}`");
    }
    Ok(())
}

/// Whether `named` (`host/repo`, `host/repo:tag` or `host/repo@sha256:…`) is `reference`'s
/// repository. `docker.io` and `index.docker.io` are one registry.
fn same_repository(named: &str, reference: &ImageReference) -> bool {
    let Ok(parsed) = ImageReference::parse(named) else {
        return false;
    };
    let canon = |r: &str| {
        if r == "index.docker.io" {
            "docker.io".to_string()
        } else {
            r.to_string()
        }
    };
    canon(&parsed.registry) == canon(&reference.registry)
        && parsed.repository == reference.repository
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;

    fn payload(digest: &str, reference: &str) -> Vec<u8> {
        format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{reference}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#
        )
        .into_bytes()
    }

    fn check_payload_c(p: &[u8], d: &Digest, r: &ImageReference) -> Result<String> {
        check_payload(p, COSIGN_TYPE, d, r)
    }

    fn key() -> (SigningKey, CosignKey) {
        let sk = SigningKey::from_slice(&rand::random::<[u8; 32]>()).unwrap();
        let pem = sk
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .unwrap();
        (sk, CosignKey::from_pem(&pem).unwrap())
    }

    fn sign(sk: &SigningKey, data: &[u8]) -> String {
        let sig: Signature = sk.sign(data);
        base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_bytes() {
        let (sk, k) = key();
        let (_, other) = key();
        let data = payload(&Digest::of(b"m").to_string(), "reg.io/a/b");
        let sig = sign(&sk, &data);
        k.verify(&data, &sig).unwrap();
        assert!(other.verify(&data, &sig).is_err());
        let mut tampered = data.clone();
        tampered[3] ^= 1;
        assert!(k.verify(&tampered, &sig).is_err());
        assert!(k.verify(&data, "not base64!").is_err());
        assert_ne!(k.fingerprint, other.fingerprint);
        assert!(
            CosignKey::from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----")
                .is_err()
        );
    }

    #[test]
    fn payloads_must_name_the_digest_and_repository() {
        let d = Digest::of(b"manifest");
        let r = ImageReference::parse("reg.io:5000/team/app:1").unwrap();
        check_payload_c(&payload(&d.to_string(), "reg.io:5000/team/app"), &d, &r).unwrap();
        check_payload_c(&payload(&d.to_string(), "reg.io:5000/team/app:2"), &d, &r).unwrap();
        let other = Digest::of(b"other");
        let e = check_payload_c(&payload(&other.to_string(), "reg.io:5000/team/app"), &d, &r)
            .unwrap_err();
        assert!(e.to_string().contains("not the pulled"), "{e}");
        for wrong in [
            "reg.io:5000/team/app2",
            "other.io:5000/team/app",
            "reg.io/team/app",
        ] {
            assert!(
                check_payload_c(&payload(&d.to_string(), wrong), &d, &r).is_err(),
                "{wrong}"
            );
        }
        assert!(check_payload_c(b"{}", &d, &r).is_err());
        check_exact_tag("reg.io:5000/team/app:1", &r).unwrap();
        for wrong in [
            "reg.io:5000/team/app",
            "reg.io:5000/team/app:12",
            "reg.io:5000/team/app@sha256:00",
        ] {
            assert!(check_exact_tag(wrong, &r).is_err(), "{wrong}");
        }
        let by_digest = ImageReference::parse(&format!("reg.io:5000/team/app@{d}")).unwrap();
        check_exact_tag("reg.io:5000/team/app:9", &by_digest).unwrap();
        let atomic = String::from_utf8(payload(&d.to_string(), "reg.io:5000/team/app"))
            .unwrap()
            .replace(COSIGN_TYPE, SIMPLE_SIGNING_TYPE)
            .into_bytes();
        assert!(check_payload_c(&atomic, &d, &r).is_err());
        check_payload(&atomic, SIMPLE_SIGNING_TYPE, &d, &r).unwrap();
        assert_eq!(signature_tag(&d), format!("sha256-{}.sig", d.hex()));
    }
}
