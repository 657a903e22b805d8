//! cosign's first keyless form, still the most common on registries: a signature layer of the
//! `sha256-HEX.sig` tag whose annotations carry the Fulcio certificate
//! (`dev.sigstore.cosign/certificate`), its chain (`…/chain`) and Rekor's signed entry
//! (`…/bundle`: `{"SignedEntryTimestamp", "Payload": {"body", "integratedTime", "logIndex",
//! "logID"}}`). It says what a Sigstore bundle v0.1 says, so it is rewritten as one and checked
//! by the same verifier ([`super::sigstore`]); the signed bytes are the layer's payload. And
//! the trusted root a containers `policy.json` `fulcio` requirement describes (a CA file and a
//! Rekor public key). Pure.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// The DER bodies of the `label` blocks (`CERTIFICATE`, `PUBLIC KEY`) of a PEM text, in order.
pub fn pem_blocks(text: &str, label: &str) -> Result<Vec<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(&begin) {
        let body = &rest[at + begin.len()..];
        let stop = body
            .find(&end)
            .with_context(|| format!("a PEM {label} block has no end line"))?;
        let b64: String = body[..stop].split_whitespace().collect();
        out.push(
            B64.decode(b64.as_bytes())
                .map_err(|e| anyhow!("a PEM {label} block is not base64: {e}"))?,
        );
        rest = &body[stop + end.len()..];
    }
    Ok(out)
}

#[derive(Deserialize)]
struct RekorBundle {
    #[serde(rename = "SignedEntryTimestamp")]
    set: String,
    #[serde(rename = "Payload")]
    payload: RekorPayload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RekorPayload {
    body: String,
    integrated_time: i64,
    log_index: i64,
    #[serde(rename = "logID")]
    log_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryKind {
    kind: String,
    api_version: String,
}

/// The Sigstore bundle (v0.1 JSON) that a legacy signature layer amounts to: `payload` and
/// its base64 `signature`, and the three annotations' values.
pub fn legacy_bundle(
    payload: &[u8],
    signature: &str,
    certificate: &str,
    chain: Option<&str>,
    rekor_bundle: &str,
) -> Result<String> {
    let mut certs = pem_blocks(certificate, "CERTIFICATE").context("the certificate")?;
    if certs.len() != 1 {
        bail!(
            "the certificate annotation holds {} certificates, not one",
            certs.len()
        );
    }
    if let Some(chain) = chain {
        certs.extend(pem_blocks(chain, "CERTIFICATE").context("the chain")?);
    }
    let rekor: RekorBundle =
        serde_json::from_str(rekor_bundle).context("the Rekor bundle annotation")?;
    let body = B64
        .decode(rekor.payload.body.as_bytes())
        .map_err(|e| anyhow!("the Rekor entry body is not base64: {e}"))?;
    let kind: EntryKind =
        serde_json::from_slice(&body).context("the Rekor entry body names no kind")?;
    let log_id = hex::decode(&rekor.payload.log_id)
        .map_err(|_| anyhow!("the Rekor log ID `{}` is not hex", rekor.payload.log_id))?;
    let certificates: Vec<serde_json::Value> = certs
        .iter()
        .map(|der| serde_json::json!({ "rawBytes": B64.encode(der) }))
        .collect();
    let bundle = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "verificationMaterial": {
            "x509CertificateChain": { "certificates": certificates },
            "tlogEntries": [{
                "logIndex": rekor.payload.log_index.to_string(),
                "logId": { "keyId": B64.encode(&log_id) },
                "kindVersion": { "kind": kind.kind, "version": kind.api_version },
                "integratedTime": rekor.payload.integrated_time.to_string(),
                "inclusionPromise": { "signedEntryTimestamp": rekor.set },
                "canonicalizedBody": rekor.payload.body,
            }],
        },
        "messageSignature": {
            "messageDigest": {
                "algorithm": "SHA2_256",
                "digest": B64.encode(Sha256::digest(payload)),
            },
            "signature": signature,
        },
    });
    Ok(bundle.to_string())
}

/// The trusted root (v0.1 JSON) of a `policy.json` `fulcio` requirement: the certificates of
/// `ca_pem` as one certificate authority, `rekor_pem` as the one transparency log, no CT logs
/// (containers/image checks no SCT for these), valid from the epoch on.
pub fn policy_trusted_root(ca_pem: &str, rekor_pem: &str) -> Result<String> {
    let certs = pem_blocks(ca_pem, "CERTIFICATE").context("the Fulcio CA")?;
    if certs.is_empty() {
        bail!("the Fulcio CA holds no certificate");
    }
    let keys = pem_blocks(rekor_pem, "PUBLIC KEY").context("the Rekor public key")?;
    let [key] = keys.as_slice() else {
        bail!(
            "the Rekor public key file holds {} keys, not one",
            keys.len()
        );
    };
    let details = key_details(key)?;
    let since = "1970-01-01T00:00:00Z";
    let root = serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
        "tlogs": [{
            "baseUrl": "policy.json",
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": B64.encode(key),
                "keyDetails": details,
                "validFor": { "start": since },
            },
            "logId": { "keyId": B64.encode(Sha256::digest(key)) },
        }],
        "certificateAuthorities": [{
            "subject": { "organization": "policy.json", "commonName": "fulcio" },
            "uri": "policy.json",
            "certChain": {
                "certificates": certs.iter().map(|der| serde_json::json!({ "rawBytes": B64.encode(der) })).collect::<Vec<_>>(),
            },
            "validFor": { "start": since },
        }],
        "ctlogs": [],
        "timestampAuthorities": [],
    });
    Ok(root.to_string())
}

/// The trusted-root name of the key type of a DER SubjectPublicKeyInfo, by the curve's OID.
fn key_details(spki: &[u8]) -> Result<&'static str> {
    const KINDS: &[(&[u8], &str)] = &[
        (
            &[0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07],
            "PKIX_ECDSA_P256_SHA_256",
        ),
        (
            &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22],
            "PKIX_ECDSA_P384_SHA_384",
        ),
        (
            &[0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x23],
            "PKIX_ECDSA_P521_SHA_512",
        ),
        (&[0x06, 0x03, 0x2B, 0x65, 0x70], "PKIX_ED25519"),
    ];
    KINDS
        .iter()
        .find(|(oid, _)| spki.windows(oid.len()).any(|w| w == *oid))
        .map(|(_, name)| *name)
        .context("the Rekor public key is not an ECDSA P-256/P-384/P-521 or Ed25519 key")
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAAEC\nAwQ=\n-----END CERTIFICATE-----\n";

    #[test]
    fn pem_blocks_are_read_in_order_and_other_labels_skipped() {
        let text = format!(
            "junk\n{CERT}-----BEGIN PUBLIC KEY-----\nBQY=\n-----END PUBLIC KEY-----\n{CERT}"
        );
        assert_eq!(
            pem_blocks(&text, "CERTIFICATE").unwrap(),
            vec![vec![0, 1, 2, 3, 4]; 2]
        );
        assert_eq!(pem_blocks(&text, "PUBLIC KEY").unwrap(), vec![vec![5, 6]]);
        assert!(pem_blocks("-----BEGIN CERTIFICATE-----\nAAEC", "CERTIFICATE").is_err());
    }

    #[test]
    fn a_legacy_signature_becomes_a_v0_1_bundle_with_the_same_facts() {
        let body = B64.encode(br#"{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{}}"#);
        let rekor = format!(
            r#"{{"SignedEntryTimestamp":"U0VU","Payload":{{"body":"{body}","integratedTime":1700000000,"logIndex":42,"logID":"0a0b"}}}}"#
        );
        let json = legacy_bundle(b"payload", "c2ln", CERT, Some(CERT), &rekor).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        let entry = &v["verificationMaterial"]["tlogEntries"][0];
        assert_eq!(entry["logIndex"], "42");
        assert_eq!(entry["integratedTime"], "1700000000");
        assert_eq!(entry["logId"]["keyId"], B64.encode([0x0a, 0x0b]));
        assert_eq!(entry["kindVersion"]["kind"], "hashedrekord");
        assert_eq!(entry["inclusionPromise"]["signedEntryTimestamp"], "U0VU");
        assert_eq!(
            v["verificationMaterial"]["x509CertificateChain"]["certificates"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            v["messageSignature"]["messageDigest"]["digest"],
            B64.encode(Sha256::digest(b"payload"))
        );
        // Two certificates in the leaf's annotation, or a body that is not an entry: refused.
        let two = format!("{CERT}{CERT}");
        assert!(legacy_bundle(b"p", "c2ln", &two, None, &rekor).is_err());
        assert!(legacy_bundle(b"p", "c2ln", CERT, None, "{}").is_err());
    }

    #[test]
    fn a_policy_trust_root_names_the_ca_and_the_log_by_its_key_id() {
        // A stand-in SPKI: only the P-256 curve OID matters here.
        let spki = [
            0x30, 0x0a, 0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07,
        ];
        let key = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            B64.encode(spki)
        );
        let v: serde_json::Value =
            serde_json::from_str(&policy_trusted_root(CERT, &key).unwrap()).unwrap();
        assert_eq!(
            v["tlogs"][0]["logId"]["keyId"],
            B64.encode(Sha256::digest(spki))
        );
        assert_eq!(
            v["tlogs"][0]["publicKey"]["keyDetails"],
            "PKIX_ECDSA_P256_SHA_256"
        );
        let rsa = "-----BEGIN PUBLIC KEY-----\nBQY=\n-----END PUBLIC KEY-----\n";
        assert!(policy_trusted_root(CERT, rsa).is_err());
        assert_eq!(
            v["certificateAuthorities"][0]["certChain"]["certificates"][0]["rawBytes"],
            B64.encode([0u8, 1, 2, 3, 4])
        );
        assert!(policy_trusted_root("", &key).is_err());
        assert!(policy_trusted_root(CERT, "").is_err());
    }
}
