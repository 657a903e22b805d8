//! Verification modes, typed: what the user asks for (`--verify=`, a template's `verify`) and
//! what a pull actually checked, as recorded in refs, state records and `--json` output (the
//! same lowercase strings as ever: `no`, `checksum`, `signature`, `digest`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// `--verify=`: what must be verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    No,
    Checksum,
    Signature,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::No => "no",
            VerifyMode::Checksum => "checksum",
            VerifyMode::Signature => "signature",
        }
    }
}

impl fmt::Display for VerifyMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What was checked before an image was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Checked {
    /// Nothing (`--verify=no`).
    #[default]
    No,
    /// Its digest against a checksum file or `--checksum`.
    Checksum,
    /// Its digest against a checksum file (or itself) signed by a trusted key.
    Signature,
    /// Every blob against the digests of its manifest, no signature (an OCI image the policy
    /// accepts without one).
    Digest,
}

impl Checked {
    pub fn as_str(self) -> &'static str {
        match self {
            Checked::No => "no",
            Checked::Checksum => "checksum",
            Checked::Signature => "signature",
            Checked::Digest => "digest",
        }
    }
}

impl From<VerifyMode> for Checked {
    fn from(mode: VerifyMode) -> Checked {
        match mode {
            VerifyMode::No => Checked::No,
            VerifyMode::Checksum => Checked::Checksum,
            VerifyMode::Signature => Checked::Signature,
        }
    }
}

impl fmt::Display for Checked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_strings() {
        for (c, s) in [
            (Checked::No, "no"),
            (Checked::Checksum, "checksum"),
            (Checked::Signature, "signature"),
            (Checked::Digest, "digest"),
        ] {
            assert_eq!(serde_json::to_string(&c).unwrap(), format!("\"{s}\""));
            assert_eq!(
                serde_json::from_str::<Checked>(&format!("\"{s}\"")).unwrap(),
                c
            );
            assert_eq!(c.to_string(), s);
        }
        assert!(serde_json::from_str::<Checked>("\"maybe\"").is_err());
        assert_eq!(Checked::from(VerifyMode::Checksum), Checked::Checksum);
        assert_eq!(serde_json::to_string(&VerifyMode::No).unwrap(), "\"no\"");
    }
}
