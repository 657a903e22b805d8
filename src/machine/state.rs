//! The provenance record of a built sandbox: `<sandboxes_dir>/state/NAME.json`.
//!
//! Written by `sandbox build` after the sandbox is published, read by `sandbox ls`, `rm` and
//! `host`. It says what the sandbox was built from (templates, their content hash, variable
//! values, the source and the digest of the image, how that image was verified) and every
//! host path the build created, so removal needs no guessing. Variable values are recorded
//! as given; templates must not put secrets in variables (they belong in `user-data`, which
//! stays inside the rootfs, mode 0600).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::atomic::write_file;
use crate::cache::Verification;
use crate::digest::Digest;

/// One sandbox's provenance and the paths it owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub name: String,
    /// As requested: `debian+docker`.
    pub template: String,
    /// Every template applied, in order (extends resolved).
    pub templates: Vec<String>,
    pub content_hash: Digest,
    pub vars: BTreeMap<String, String>,
    /// The image source as written in the template (credentials removed).
    pub source: String,
    /// The digest of the image the rootfs was unpacked from.
    pub digest: Digest,
    pub verification: Verification,
    /// The image version (LXC images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub machines_dir: PathBuf,
    pub rootfs: PathBuf,
    /// The ZFS dataset holding the rootfs, when the machines dir is on ZFS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zfs_dataset: Option<String>,
    /// `ROOT/etc/systemd/nspawn/NAME.nspawn`.
    pub nspawn_file: PathBuf,
    /// `ROOT/etc/systemd/system/systemd-nspawn@NAME.service.d`.
    pub dropin_dir: PathBuf,
    /// `machinectl enable` was run (or asked for) by the build.
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// `<sandboxes_dir>/state`.
pub fn state_dir(sandboxes_dir: &Path) -> PathBuf {
    sandboxes_dir.join("state")
}

/// `<sandboxes_dir>/state/NAME.json`.
pub fn state_path(sandboxes_dir: &Path, name: &str) -> PathBuf {
    state_dir(sandboxes_dir).join(format!("{name}.json"))
}

/// Writes the record atomically (temp file, fsync, rename), creating the state dir.
pub fn write_state(sandboxes_dir: &Path, state: &SandboxState) -> Result<()> {
    let dir = state_dir(sandboxes_dir);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(state).context("encoding a sandbox state record")?;
    json.push(b'\n');
    write_file(&state_path(sandboxes_dir, &state.name), &json)
}

/// The record of `name`; `None` when there is none (a machine not built by `sandbox build`).
pub fn read_state(sandboxes_dir: &Path, name: &str) -> Result<Option<SandboxState>> {
    let path = state_path(sandboxes_dir, name);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("reading the sandbox state record {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::mode::Checked;

    #[test]
    fn a_record_round_trips_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state(dir.path(), "web").unwrap(), None);
        let state = SandboxState {
            name: "web".into(),
            template: "debian+docker".into(),
            templates: vec!["debian".into(), "docker".into()],
            content_hash: Digest::of(b"templates"),
            vars: BTreeMap::from([("bridge".into(), "br1".into())]),
            source: "images:debian/bookworm/cloud".into(),
            digest: Digest::of(b"image"),
            verification: Verification {
                mode: Checked::Signature,
                ..Default::default()
            },
            version: Some("20261129_05:24".into()),
            machines_dir: "/var/lib/machines".into(),
            rootfs: "/var/lib/machines/web".into(),
            zfs_dataset: None,
            nspawn_file: "/etc/systemd/nspawn/web.nspawn".into(),
            dropin_dir: "/etc/systemd/system/systemd-nspawn@web.service.d".into(),
            enabled: true,
            created_at: "2026-11-29T02:30:00Z".into(),
        };
        write_state(dir.path(), &state).unwrap();
        assert_eq!(read_state(dir.path(), "web").unwrap(), Some(state));
        std::fs::write(state_path(dir.path(), "bad"), b"{").unwrap();
        let err = read_state(dir.path(), "bad").unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
    }
}
