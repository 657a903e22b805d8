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
    /// cosign: `keyPath` to a PEM public key; `None` for keyless (Fulcio) policies.
    SigstoreSigned {
        key_path: Option<PathBuf>,
    },
}

#[derive(Debug, Deserialize)]
struct RawRequirement {
    #[serde(rename = "type")]
    kind: String,
    #[serde(rename = "keyType")]
    key_type: Option<String>,
    #[serde(rename = "keyPath")]
    key_path: Option<PathBuf>,
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
        for r in reqs {
            let reason = match r {
                Requirement::InsecureAcceptAnything => continue,
                Requirement::SigstoreSigned {
                    key_path: Some(path),
                } => {
                    cosign_keys.push(path.clone());
                    continue;
                }
                Requirement::Reject => "its scope says reject".to_string(),
                Requirement::SigstoreSigned { key_path: None } => {
                    "it requires a keyless sigstore signature (Fulcio certificates), and only \
                     key-based cosign signatures (`keyPath`) can be verified"
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
        if cosign_keys.is_empty() && gpg_keyrings.is_empty() {
            Decision::Accept { scope }
        } else {
            Decision::Verify {
                scope,
                cosign_keys,
                gpg_keyrings,
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
            ("keyless.io/a", "keyless"),
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
            }
        );
        assert_eq!(
            p.decide(&reference("signed.io/a")),
            Decision::Verify {
                scope: "docker:signed.io".into(),
                cosign_keys: vec![],
                gpg_keyrings: vec![PathBuf::from("/k")],
            }
        );
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
