//! Refs: what a source resolved to, and how it was verified. One JSON file per ref.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::verify::mode::Checked;

/// One blob a ref uses, with the HTTP validators it was fetched with.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RefBlob {
    /// What the blob is for this ref: `image`, `checksums`, `signature`, `nspawn`, `metadata`, `index`.
    pub role: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

/// How a source was verified: recorded in refs, provenance records and `--json` output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Verification {
    /// What was checked (`no`, `checksum`, `signature`, `digest`).
    pub mode: Checked,
    /// What the digest was checked against (a checksum file URL, `--checksum`, a products file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_source: Option<String>,
    /// The primary key fingerprint of the signer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// Who signed: an OpenPGP user ID, or a keyless certificate's identity (email or URI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The OIDC issuer a keyless certificate names (with `signer`, who vouched).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_issuer: Option<String>,
    /// Where the signer's key came from (a keyring file, the built-in LXC key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_origin: Option<String>,
    /// Things a reviewer should know, e.g. that a pinned key's SHA-1 self-signature was accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Verification {
    /// How people are told what was checked: `signature by FPR`, `checksum`, `digests
    /// verified, no signature`, or `NOT verified`.
    pub fn summary(&self) -> String {
        match (&self.key_fingerprint, self.mode) {
            (Some(fpr), _) => format!("signature by {fpr}"),
            (None, Checked::Signature) if self.oidc_issuer.is_some() => format!(
                "keyless signature by {} ({})",
                self.signer.as_deref().unwrap_or("?"),
                self.oidc_issuer.as_deref().unwrap_or("?")
            ),
            (None, Checked::Checksum) => "checksum".to_string(),
            (None, Checked::Digest | Checked::Signature) => {
                "digests verified, no signature".to_string()
            }
            (None, Checked::No) => "NOT verified".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ref {
    /// The source as given (secrets in URLs removed).
    pub source: String,
    pub blobs: Vec<RefBlob>,
    pub verification: Verification,
    /// The image version, for sources that have one (LXC images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Source-specific facts (server, arch, variant, …).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
    /// RFC 3339, UTC.
    pub fetched_at: String,
}

impl Ref {
    pub fn blob(&self, role: &str) -> Option<&RefBlob> {
        self.blobs.iter().find(|b| b.role == role)
    }
}

/// Now, as RFC 3339 UTC with seconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
