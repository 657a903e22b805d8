//! The trust store as the commands see it.

use std::path::PathBuf;

use anyhow::Result;

use super::Settings;
use crate::verify::openpgp::{LXC_IMAGES_ORIGIN, TrustStore, load_trust_store, lxc_images_cert};

/// Every `--keyring` file, `<sandboxes_dir>/keys/`, and importd's keyrings; with
/// `with_builtin`, also the built-in LXC image key (pinned keys are trusted for their own source
/// only, so pulls of other sources leave it out).
pub fn trust_store(
    settings: &Settings,
    keyrings: &[PathBuf],
    with_builtin: bool,
) -> Result<TrustStore> {
    let mut store = load_trust_store(
        keyrings,
        &settings.paths.keys_dir(),
        &settings.paths.importd_keyrings(),
    )?;
    if with_builtin {
        store.add_cert(lxc_images_cert(), LXC_IMAGES_ORIGIN, true);
    }
    Ok(store)
}
