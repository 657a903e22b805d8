//! Which `docker://` images may be pulled: a containers `policy.json`
//! (`<sandboxes_dir>/policy.json`), read the way containers/image reads it, minimal for now.
//!
//! ```json
//! {"default": [{"type": "reject"}],
//!  "transports": {"docker": {"reg.io/team/app": [{"type": "insecureAcceptAnything"}]}}}
//! ```
//!
//! Scopes are matched most specific first: `host/ns/repo`, `host/ns`, `host`, then the
//! transport's `""` entry, then `default`. A missing file means reject: registry images carry
//! no digest a person pinned, so without a policy saying otherwise they are refused (fail
//! closed). `sigstoreSigned` with a `keyPath` (a cosign public key) and `signedBy` with
//! `keyType: GPGKeys` and a `keyPath` (a keyring; containers simple signing) make the pull check
//! signatures ([`Decision::Verify`], done by `source::oci_signatures`). Other forms (keyless
//! sigstore, `keyPaths`, `keyData`, X.509) are understood but not checked, so they refuse:
//! accepting them unchecked would silently weaken a policy someone wrote on purpose.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::oci::reference::ImageReference;

/// One requirement of a policy scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    InsecureAcceptAnything,
    Reject,
    /// Simple signing (GPG): `keyType` and `keyPath` as written.
    SignedBy {
        key_type: Option<String>,
        key_path: Option<PathBuf>,
    },
    /// cosign: `keyPath` to a PEM public key, or a keyless `fulcio` requirement (with the
    /// Rekor key that vouches for the signing time); neither is a policy that cannot hold.
    SigstoreSigned {
        key_path: Option<PathBuf>,
        fulcio: Option<Fulcio>,
    },
}

/// A keyless `sigstoreSigned` requirement: `fulcio` (`caPath` or `caData`, `oidcIssuer`,
/// `subjectEmail`) and `rekorPublicKeyPath` or `rekorPublicKeyData`, as containers/image
/// spells them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fulcio {
    pub ca: PemSource,
    pub oidc_issuer: String,
    pub subject_email: String,
    pub rekor_key: PemSource,
}

/// A PEM named by a policy: a file, or the text itself (`…Data`, base64-decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PemSource {
    Path(PathBuf),
    Data(String),
}

impl PemSource {
    /// The PEM text, and where it came from (for messages).
    pub fn read(&self, what: &str) -> Result<(String, String)> {
        match self {
            PemSource::Path(p) => Ok((
                fs_err::read_to_string(p).with_context(|| format!("reading the {what}"))?,
                p.display().to_string(),
            )),
            PemSource::Data(text) => Ok((text.clone(), format!("the {what} data in the policy"))),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawFulcio {
    ca_path: Option<PathBuf>,
    ca_data: Option<String>,
    oidc_issuer: Option<String>,
    subject_email: Option<String>,
}

/// A PEM given as a path or as base64 data (exactly one).
fn pem_source(
    path: Option<PathBuf>,
    data: Option<String>,
    what: &str,
    at: &str,
) -> Result<PemSource> {
    use base64::Engine;
    match (path, data) {
        (Some(p), None) => Ok(PemSource::Path(p)),
        (None, Some(d)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .map_err(|e| anyhow::anyhow!("{at}: {what} is not base64: {e}"))?;
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{at}: {what} is not PEM text"))?;
            Ok(PemSource::Data(text))
        }
        (Some(_), Some(_)) => bail!("{at}: {what}: give a path or data, not both"),
        (None, None) => bail!("{at}: {what} is missing"),
    }
}

fn fulcio(
    raw: RawFulcio,
    rekor_path: Option<PathBuf>,
    rekor_data: Option<String>,
    at: &str,
) -> Result<Fulcio> {
    Ok(Fulcio {
        ca: pem_source(raw.ca_path, raw.ca_data, "fulcio caPath/caData", at)?,
        oidc_issuer: raw
            .oidc_issuer
            .with_context(|| format!("{at}: fulcio has no oidcIssuer"))?,
        subject_email: raw
            .subject_email
            .with_context(|| format!("{at}: fulcio has no subjectEmail"))?,
        rekor_key: pem_source(
            rekor_path,
            rekor_data,
            "rekorPublicKeyPath/rekorPublicKeyData",
            at,
        )?,
    })
}

#[derive(Debug, Deserialize)]
struct RawRequirement {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "keyType")]
    key_type: Option<String>,
    #[serde(rename = "keyPath")]
    key_path: Option<PathBuf>,
    fulcio: Option<RawFulcio>,
    #[serde(rename = "rekorPublicKeyPath")]
    rekor_public_key_path: Option<PathBuf>,
    #[serde(rename = "rekorPublicKeyData")]
    rekor_public_key_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawPolicy {
    default: Option<Vec<RawRequirement>>,
    #[serde(default)]
    transports:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<RawRequirement>>>,
}

/// A parsed policy: the `default` and the `docker` transport's scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    default: Vec<Requirement>,
    docker: Vec<(String, Vec<Requirement>)>,
}

/// What the policy says about one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Pull it; the scope that allowed it (for provenance).
    Accept {
        scope: String,
    },
    /// Pull it only if a cosign signature by one of these keys (PEM files) verifies.
    /// Pull it only if, for each of these keys, a signature by it verifies: cosign keys (PEM
    /// files) and GPG keyrings for simple signing (`signedBy`, from the lookaside store).
    Verify {
        scope: String,
        cosign_keys: Vec<PathBuf>,
        gpg_keyrings: Vec<PathBuf>,
        /// Keyless requirements: a Fulcio certificate for this email, from this issuer.
        keyless: Vec<Fulcio>,
    },
    Reject {
        scope: String,
        reason: String,
    },
}

fn requirements(raw: Vec<RawRequirement>, at: &str) -> Result<Vec<Requirement>> {
    if raw.is_empty() {
        // containers/image refuses an empty list too: "no requirements" is not "accept".
        bail!("{at}: an empty list of requirements");
    }
    raw.into_iter()
        .map(|r| {
            Ok(match r.kind.as_str() {
                "insecureAcceptAnything" => Requirement::InsecureAcceptAnything,
                "reject" => Requirement::Reject,
                "signedBy" => Requirement::SignedBy {
                    key_type: r.key_type,
                    key_path: r.key_path,
                },
                "sigstoreSigned" => Requirement::SigstoreSigned {
                    fulcio: match r.fulcio {
                        Some(_) if r.key_path.is_some() => {
                            bail!("{at}: sigstoreSigned with both keyPath and fulcio")
                        }
                        Some(f) => Some(fulcio(
                            f,
                            r.rekor_public_key_path,
                            r.rekor_public_key_data,
                            at,
                        )?),
                        None => None,
                    },
                    key_path: r.key_path,
                },
                other => bail!("{at}: unknown requirement type `{other}`"),
            })
        })
        .collect()
}

impl Policy {
    /// Parses a `policy.json`.
    pub fn parse(json: &[u8]) -> Result<Policy> {
        let raw: RawPolicy = serde_json::from_slice(json).context("not a valid policy")?;
        let default = requirements(
            raw.default
                .context("the policy has no `default` requirements")?,
            "default",
        )?;
        let mut docker = Vec::new();
        for (transport, scopes) in raw.transports {
            if transport != "docker" {
                continue;
            }
            for (scope, reqs) in scopes {
                let reqs = requirements(reqs, &format!("transports.docker.\"{scope}\""))?;
                docker.push((scope, reqs));
            }
        }
        Ok(Policy { default, docker })
    }

    /// The policy of `<sandboxes_dir>/policy.json`, or reject-everything when it is missing.
    pub fn load(path: &Path) -> Result<Policy> {
        match fs_err::read(path) {
            Ok(bytes) => {
                Policy::parse(&bytes).with_context(|| format!("reading {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy {
                default: vec![Requirement::Reject],
                docker: Vec::new(),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The requirements for `reference` and the scope they came from.
    fn scope_for(&self, reference: &ImageReference) -> (String, &[Requirement]) {
        let mut path = format!("{}/{}", reference.registry, reference.repository);
        loop {
            if let Some((scope, reqs)) = self.docker.iter().find(|(s, _)| *s == path) {
                return (format!("docker:{scope}"), reqs);
            }
            match path.rsplit_once('/') {
                Some((parent, _)) => path = parent.to_string(),
                None => break,
            }
        }
        if let Some((_, reqs)) = self.docker.iter().find(|(s, _)| s.is_empty()) {
            return ("docker:\"\"".to_string(), reqs);
        }
        ("default".to_string(), &self.default)
    }

    /// Decides on `reference`: every requirement of its scope must hold, so each
    /// `sigstoreSigned` key adds a signature the pull must find.
    pub fn decide(&self, reference: &ImageReference) -> Decision {
        let (scope, reqs) = self.scope_for(reference);
        let mut cosign_keys = Vec::new();
        let mut gpg_keyrings = Vec::new();
        let mut keyless = Vec::new();
        for r in reqs {
            let reason = match r {
                Requirement::InsecureAcceptAnything => continue,
                Requirement::SigstoreSigned {
                    key_path: Some(path),
                    ..
                } => {
                    cosign_keys.push(path.clone());
                    continue;
                }
                Requirement::SigstoreSigned {
                    fulcio: Some(f), ..
                } => {
                    keyless.push(f.clone());
                    continue;
                }
                Requirement::Reject => "its scope says reject".to_string(),
                Requirement::SigstoreSigned { .. } => {
                    "its sigstoreSigned requirement names neither a keyPath nor a fulcio \
                     certificate authority with a rekorPublicKeyPath, so no signature can meet it"
                        .to_string()
                }
                Requirement::SignedBy {
                    key_type,
                    key_path: Some(path),
                } if key_type.as_deref().is_none_or(|t| t == "GPGKeys") => {
                    gpg_keyrings.push(path.clone());
                    continue;
                }
                Requirement::SignedBy { key_type, .. } => format!(
                    "it requires a simple signing signature (signedBy) of keyType `{}` or \
                     without a keyPath; only GPGKeys with a keyPath can be verified",
                    key_type.as_deref().unwrap_or("GPGKeys")
                ),
            };
            return Decision::Reject { scope, reason };
        }
        if cosign_keys.is_empty() && gpg_keyrings.is_empty() && keyless.is_empty() {
            Decision::Accept { scope }
        } else {
            Decision::Verify {
                scope,
                cosign_keys,
                gpg_keyrings,
                keyless,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(s: &str) -> ImageReference {
        ImageReference::parse(s).unwrap()
    }

    const POLICY: &str = r#"{
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "reg.io/team": [{"type": "insecureAcceptAnything"}],
                "reg.io/team/locked": [{"type": "reject"}],
                "signed.io": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k"}],
                "sig.io": [{"type": "sigstoreSigned", "keyPath": "/k"}],
                "keyless.io": [{"type": "sigstoreSigned"}],
                "x509.io": [{"type": "signedBy", "keyType": "X509Certificates", "keyPath": "/c"}]
            },
            "atomic": {"reg.io": [{"type": "insecureAcceptAnything"}]}
        }
    }"#;

    #[test]
    fn the_most_specific_scope_decides() {
        let p = Policy::parse(POLICY.as_bytes()).unwrap();
        assert_eq!(
            p.decide(&reference("reg.io/team/app:1")),
            Decision::Accept {
                scope: "docker:reg.io/team".into()
            }
        );
        assert!(matches!(
            p.decide(&reference("reg.io/team/locked:1")),
            Decision::Reject { scope, .. } if scope == "docker:reg.io/team/locked"
        ));
        // `atomic` is another transport: it does not open reg.io for docker://.
        assert!(matches!(
            p.decide(&reference("reg.io/other")),
            Decision::Reject { scope, .. } if scope == "default"
        ));
        for (r, why) in [
            ("x509.io/a", "keyType `X509Certificates`"),
            ("keyless.io/a", "neither a keyPath nor a fulcio"),
        ] {
            match p.decide(&reference(r)) {
                Decision::Reject { reason, .. } => assert!(reason.contains(why), "{reason}"),
                d => panic!("{r}: {d:?}"),
            }
        }
        assert_eq!(
            p.decide(&reference("sig.io/a")),
            Decision::Verify {
                scope: "docker:sig.io".into(),
                cosign_keys: vec![PathBuf::from("/k")],
                gpg_keyrings: vec![],
                keyless: vec![],
            }
        );
        assert_eq!(
            p.decide(&reference("signed.io/a")),
            Decision::Verify {
                scope: "docker:signed.io".into(),
                cosign_keys: vec![],
                gpg_keyrings: vec![PathBuf::from("/k")],
                keyless: vec![],
            }
        );
    }

    #[test]
    fn a_fulcio_requirement_is_read_as_containers_image_writes_it() {
        use base64::Engine;
        let data = base64::engine::general_purpose::STANDARD.encode("-----BEGIN PUBLIC KEY-----");
        let policy = format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{
                "ghcr.io/org": [{{"type": "sigstoreSigned",
                    "fulcio": {{"caPath": "/etc/fulcio.pem", "oidcIssuer": "https://issuer",
                               "subjectEmail": "dev@example.com"}},
                    "rekorPublicKeyData": "{data}",
                    "signedIdentity": {{"type": "matchRepository"}}}}]}}}}}}"#
        );
        let p = Policy::parse(policy.as_bytes()).unwrap();
        let Decision::Verify { keyless, .. } = p.decide(&reference("ghcr.io/org/app:1")) else {
            panic!("not a verify decision");
        };
        assert_eq!(
            keyless,
            vec![Fulcio {
                ca: PemSource::Path(PathBuf::from("/etc/fulcio.pem")),
                oidc_issuer: "https://issuer".into(),
                subject_email: "dev@example.com".into(),
                rekor_key: PemSource::Data("-----BEGIN PUBLIC KEY-----".into()),
            }]
        );
        // Each part is required, exactly once; unknown fulcio fields are refused.
        for (bad, why) in [
            (
                r#""fulcio": {"oidcIssuer": "i", "subjectEmail": "e"}, "rekorPublicKeyPath": "/r""#,
                "caPath/caData is missing",
            ),
            (
                r#""fulcio": {"caPath": "/c", "subjectEmail": "e"}, "rekorPublicKeyPath": "/r""#,
                "no oidcIssuer",
            ),
            (
                r#""fulcio": {"caPath": "/c", "oidcIssuer": "i"}, "rekorPublicKeyPath": "/r""#,
                "no subjectEmail",
            ),
            (
                r#""fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e"}"#,
                "rekorPublicKeyPath/rekorPublicKeyData is missing",
            ),
            (
                r#""fulcio": {"caPath": "/c", "caData": "eA==", "oidcIssuer": "i", "subjectEmail": "e"}, "rekorPublicKeyPath": "/r""#,
                "not both",
            ),
            (
                r#""fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e", "x": 1}, "rekorPublicKeyPath": "/r""#,
                "unknown field",
            ),
            (
                r#""keyPath": "/k", "fulcio": {"caPath": "/c", "oidcIssuer": "i", "subjectEmail": "e"}, "rekorPublicKeyPath": "/r""#,
                "both keyPath and fulcio",
            ),
        ] {
            let text = format!(r#"{{"default": [{{"type": "sigstoreSigned", {bad}}}]}}"#);
            let err = format!("{:#}", Policy::parse(text.as_bytes()).unwrap_err());
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_missing_policy_rejects_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = Policy::load(&dir.path().join("policy.json")).unwrap();
        assert!(matches!(
            p.decide(&reference("a.io/b")),
            Decision::Reject { .. }
        ));
        assert!(Policy::parse(br#"{"default":[]}"#).is_err());
        assert!(Policy::parse(br#"{"transports":{}}"#).is_err());
        assert!(Policy::parse(br#"{"default":[{"type":"maybe"}]}"#).is_err());
        let open = Policy::parse(
            br#"{"default":[{"type":"reject"}],"transports":{"docker":{"":[{"type":"insecureAcceptAnything"}]}}}"#,
        )
        .unwrap();
        assert!(matches!(
            open.decide(&reference("any.io/x")),
            Decision::Accept { .. }
        ));
    }
}
