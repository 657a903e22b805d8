//! cosign's keyless flags, as `cosign verify` spells them: who must have signed
//! (`--certificate-identity[-regexp]`, `--certificate-oidc-issuer[-regexp]`) and the trusted
//! root their certificate chains to (`--trusted-root`). Used by `verify --bundle` and `pull`.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use crate::source::oci_keyless::{Keyless, KeylessTrust};
use crate::verify::sigstore::{Expect, TrustRoot};

#[derive(Args, Debug, Clone, Default)]
pub struct KeylessArgs {
    /// Keyless: the identity the signing certificate must name (its SAN: an email or a URI).
    #[arg(long, value_name = "IDENTITY")]
    pub certificate_identity: Option<String>,
    /// Keyless: a regular expression (RE2 syntax, matched anywhere; anchor it with ^…$) the
    /// certificate's identity must match.
    #[arg(long, value_name = "REGEX", conflicts_with = "certificate_identity")]
    pub certificate_identity_regexp: Option<String>,
    /// Keyless: the OIDC issuer the signing certificate must name.
    #[arg(long, value_name = "URL")]
    pub certificate_oidc_issuer: Option<String>,
    /// Keyless: a regular expression the certificate's OIDC issuer must match.
    #[arg(long, value_name = "REGEX", conflicts_with = "certificate_oidc_issuer")]
    pub certificate_oidc_issuer_regexp: Option<String>,
    /// The Sigstore trusted root (JSON) keyless certificates must chain to, instead of
    /// `<sandboxes_dir>/trusted_root.json` or the built-in public-good root.
    #[arg(long, value_name = "FILE")]
    pub trusted_root: Option<PathBuf>,
}

impl KeylessArgs {
    /// Whether any keyless flag is given.
    pub fn any(&self) -> bool {
        self.certificate_identity.is_some()
            || self.certificate_identity_regexp.is_some()
            || self.certificate_oidc_issuer.is_some()
            || self.certificate_oidc_issuer_regexp.is_some()
    }

    /// The identity and issuer asked for, or `None` when no keyless flag is given; an error
    /// when only one of the two is (cosign refuses that too).
    pub fn expectations(&self) -> Result<Option<(Expect, Expect)>> {
        if !self.any() {
            return Ok(None);
        }
        Ok(Some((
            Expect::from_flags(
                self.certificate_identity.as_deref(),
                self.certificate_identity_regexp.as_deref(),
                "certificate-identity",
            )?,
            Expect::from_flags(
                self.certificate_oidc_issuer.as_deref(),
                self.certificate_oidc_issuer_regexp.as_deref(),
                "certificate-oidc-issuer",
            )?,
        )))
    }

    /// The keyless requirement of a pull, its trusted root chosen now (see
    /// [`TrustRoot::choose`]).
    pub fn requirement(&self, sandboxes_dir: &Path) -> Result<Option<Keyless>> {
        Ok(self.expectations()?.map(|(identity, issuer)| Keyless {
            trust: KeylessTrust::Root(TrustRoot::choose(
                self.trusted_root.as_deref(),
                sandboxes_dir,
            )),
            identity,
            issuer,
        }))
    }
}
