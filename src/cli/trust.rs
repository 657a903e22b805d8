//! The trust store as the commands see it.

use std::path::PathBuf;

use anyhow::Result;

use super::Settings;
use crate::verify::openpgp::TrustStore;

/// See `crate::pull::trust_store`.
pub fn trust_store(
    settings: &Settings,
    keyrings: &[PathBuf],
    with_builtin: bool,
) -> Result<TrustStore> {
    crate::pull::trust_store(&settings.paths, keyrings, with_builtin)
}
