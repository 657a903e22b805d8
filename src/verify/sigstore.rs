//! Sigstore bundles (keyless cosign signatures), verified offline with the sigstore-rust
//! verifier (`sigstore-verify`): the certificate chain to a trusted Fulcio root, the
//! certificate's SCT, its identity (SAN) and OIDC issuer, the transparency-log entry (inclusion
//! proof and checkpoint, or signed entry timestamp), RFC 3161 timestamps, and the signing time
//! within the certificate's validity. The cryptographic protocol is the crate's; what is ours:
//! where the trust material comes from ([`TrustRoot`]), how a person names who may sign
//! ([`Signer`], cosign's flags), and the record of who vouched ([`Vouched`]).
//!
//! Nothing is fetched at verify time: the Sigstore public-good trusted root is built into the
//! binary (public data, carried by the crate), replaced by `--trusted-root FILE` or by
//! `<sandboxes_dir>/trusted_root.json` for a private Sigstore deployment.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use sigstore_verify::trust_root::{SIGSTORE_PRODUCTION_TRUSTED_ROOT, TrustedRoot};
use sigstore_verify::types::{Bundle, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

use crate::digest::Digest;

/// A trusted root bigger than this is refused (the public-good one is about 10 KiB).
const MAX_TRUSTED_ROOT: u64 = 4 << 20;
/// A bundle bigger than this is refused (a bundle is a few KiB).
pub const MAX_BUNDLE: u64 = 1 << 20;

/// The trust material bundles are checked against, and where it came from (for messages and
/// records).
pub struct TrustRoot {
    verifier: Verifier,
    pub origin: String,
    /// Whether certificates must carry an SCT from one of its CT logs: only when it names
    /// some (a private deployment, or a policy.json `fulcio` CA, may run no CT log).
    check_sct: bool,
}

impl TrustRoot {
    /// `explicit` (`--trusted-root`), else `<sandboxes_dir>/trusted_root.json` when it exists,
    /// else the built-in Sigstore public-good root.
    pub fn load(explicit: Option<&Path>, sandboxes_dir: &Path) -> Result<TrustRoot> {
        TrustRoot::load_file(TrustRoot::choose(explicit, sandboxes_dir).as_deref())
    }

    /// Which file [`TrustRoot::load`] reads: `explicit`, else `<sandboxes_dir>/trusted_root.json`
    /// when it exists; `None` for the built-in root.
    pub fn choose(explicit: Option<&Path>, sandboxes_dir: &Path) -> Option<PathBuf> {
        let local = sandboxes_dir.join("trusted_root.json");
        match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => local.is_file().then_some(local),
        }
    }

    /// The trusted root in `path`, or the built-in one.
    pub fn load_file(path: Option<&Path>) -> Result<TrustRoot> {
        match path {
            Some(path) => {
                let bytes = crate::atomic::read_limited(path, MAX_TRUSTED_ROOT)?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| anyhow!("{}: not UTF-8 JSON", path.display()))?;
                TrustRoot::from_json(&text, path.display().to_string())
                    .with_context(|| format!("reading the trusted root {}", path.display()))
            }
            None => TrustRoot::from_json(
                SIGSTORE_PRODUCTION_TRUSTED_ROOT,
                "the Sigstore public-good trusted root (built in)".to_string(),
            ),
        }
    }

    /// A trusted root from its JSON (`dev.sigstore.trustedroot` v0.1/v0.2).
    pub fn from_json(json: &str, origin: String) -> Result<TrustRoot> {
        let root = TrustedRoot::from_json(json).map_err(|e| anyhow!("not a trusted root: {e}"))?;
        let verifier = Verifier::new(&root).map_err(|e| anyhow!("unusable trust material: {e}"))?;
        Ok(TrustRoot {
            verifier,
            origin,
            check_sct: !root.ctlogs.is_empty(),
        })
    }
}

/// One expectation on a certificate field: exact, or a regular expression matched anywhere
/// in the value, as cosign's `--certificate-identity-regexp` is (anchor it with `^…$`).
#[derive(Debug, Clone)]
pub enum Expect {
    Exact(String),
    Regex(regex::Regex),
}

impl Expect {
    /// `exact` or `regexp` (exactly one of them), for the field `what` (named in errors).
    pub fn from_flags(exact: Option<&str>, regexp: Option<&str>, what: &str) -> Result<Expect> {
        match (exact, regexp) {
            (Some(e), None) => Ok(Expect::Exact(e.to_string())),
            (None, Some(r)) => regex::Regex::new(r)
                .map(Expect::Regex)
                .map_err(|e| anyhow!("--{what}-regexp `{r}` is not a regular expression: {e}")),
            (Some(_), Some(_)) => bail!("give --{what} or --{what}-regexp, not both"),
            (None, None) => bail!("a keyless signature needs --{what} or --{what}-regexp"),
        }
    }

    pub fn matches(&self, value: &str) -> bool {
        match self {
            Expect::Exact(e) => e == value,
            Expect::Regex(r) => r.is_match(value),
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Exact(e) => write!(f, "`{e}`"),
            Expect::Regex(r) => write!(f, "matching /{}/", r.as_str()),
        }
    }
}

/// Who may have signed: a certificate identity and OIDC issuer (keyless), or a public key (a
/// managed-key bundle).
#[derive(Debug, Clone)]
pub enum Signer {
    Keyless { identity: Expect, issuer: Expect },
    Key { pem: String, origin: String },
}

/// What was signed: the bytes, or their sha256 (from a registry, or `sha256:HEX` on the
/// command line).
pub enum Signed<'a> {
    Bytes(&'a [u8]),
    Digest(&'a Digest),
}

/// Who vouched for a verified bundle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Vouched {
    /// The certificate's identity (SAN: email or URI), or the key's origin.
    pub identity: String,
    /// The OIDC issuer the certificate names; `None` for a key.
    pub issuer: Option<String>,
    /// When the transparency log says the entry was made (Unix seconds), if it says.
    pub logged_at: Option<i64>,
}

/// Parses a bundle (v0.1, v0.2 or v0.3 media type).
pub fn parse_bundle(json: &[u8]) -> Result<Bundle> {
    let text = std::str::from_utf8(json).map_err(|_| anyhow!("the bundle is not UTF-8 JSON"))?;
    Bundle::from_json(text).map_err(|e| anyhow!("not a Sigstore bundle: {e}"))
}

/// Verifies `bundle` over `signed` for `signer` against `root`.
pub fn verify_bundle(
    root: &TrustRoot,
    bundle: &Bundle,
    signed: Signed<'_>,
    signer: &Signer,
) -> Result<Vouched> {
    let artifact: sigstore_verify::types::Artifact<'_> = match signed {
        Signed::Bytes(b) => b.into(),
        Signed::Digest(d) => Sha256Hash::new(*d.as_bytes()).into(),
    };
    match signer {
        Signer::Keyless { identity, issuer } => {
            // The crate matches identities exactly; regular expressions are checked below, on
            // what it verified. The issuer is checked the same way for both forms.
            let mut policy = VerificationPolicy::any_identity();
            if !root.check_sct {
                policy = policy.skip_sct();
            }
            let result = root
                .verifier
                .verify(artifact, bundle, &policy)
                .map_err(|e| anyhow!("{e}"))?;
            let got_identity = result
                .identity()
                .map(|s| s.as_str().to_string())
                .context("the certificate names no identity")?;
            let got_issuer = result
                .issuer()
                .map(str::to_string)
                .context("the certificate names no OIDC issuer")?;
            if !identity.matches(&got_identity) {
                bail!("the certificate's identity is `{got_identity}`, not {identity}");
            }
            if !issuer.matches(&got_issuer) {
                bail!("the certificate's OIDC issuer is `{got_issuer}`, not {issuer}");
            }
            Ok(Vouched {
                identity: got_identity,
                issuer: Some(got_issuer),
                logged_at: result.integrated_time().map(|t| t.as_second()),
            })
        }
        Signer::Key { pem, origin } => {
            let key = DerPublicKey::from_pem(pem)
                .map_err(|e| anyhow!("{origin}: not a PEM public key: {e}"))?;
            let result = root
                .verifier
                .verify(artifact, bundle, &PublicKeyVerificationPolicy::new(key))
                .map_err(|e| anyhow!("{e}"))?;
            Ok(Vouched {
                identity: origin.clone(),
                issuer: None,
                logged_at: result.integrated_time().map(|t| t.as_second()),
            })
        }
    }
}
