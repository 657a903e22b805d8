//! The provenance record of a built sandbox: `<sandboxes_dir>/state/NAME.json`.
//!
//! Written by `sandbox build` after the sandbox is published ([`write_state`]), read back
//! whole by `build --force` ([`read_state`]) and, leniently, by `sandbox ls` and `rm`
//! ([`read_view`]: every field optional, so a record from another version or edited by hand
//! still lists and still removes). It says what the sandbox was built from (templates, their content hash, variable
//! values, the source and the digest of the image, how that image was verified) and every
//! host path the build created, so removal needs no guessing. Variable values are recorded
//! as given; templates must not put secrets in variables (they belong in `user-data`, which
//! stays inside the rootfs, mode 0600). `sandbox config` adds the keys a person changed
//! (`user_edits`), so that `build --force` can keep them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::place::Placement;
use super::storage::Backend;
use crate::atomic::write_file;
use crate::cache::Verification;
use crate::digest::Digest;

/// One sandbox's provenance and the paths it owns: written by `build` (every field) and by
/// `pull` for the machine it makes (no template fields: `template` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    pub name: String,
    /// As requested: `debian+docker`; `None` for a pulled machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Every template applied, in order (extends resolved).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_hash: Option<Digest>,
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// The image source (credentials removed): as written in the template, or pulled.
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
    /// How the rootfs was made (`--storage`): `copy`, `reflink`, `btrfs` or `zfs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Backend>,
    /// The key of the stored image (`<sandboxes_dir>/store/KEY`) the rootfs shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_image: Option<String>,
    /// `ROOT/etc/systemd/nspawn/NAME.nspawn` (a build), `<machines_dir>/NAME.nspawn` (a pull
    /// that brought one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nspawn_file: Option<PathBuf>,
    /// `ROOT/etc/systemd/system/systemd-nspawn@NAME.service.d` (a build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropin_dir: Option<PathBuf>,
    /// `machinectl enable` was run (or asked for) by the build.
    #[serde(default)]
    pub enabled: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// The template files cloud-init applies at first boot (`TEMPLATE/user-data`, …); the
    /// build checked that the image has cloud-init. Empty: no seed of the templates' own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cloud_init_seed: Vec<String>,
    /// Keys changed with `sandbox config`, one entry per key (the last change wins), sorted;
    /// `build --force` keeps them. Absent in records from before `sandbox config`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_edits: Vec<UserEdit>,
}

/// Which file a `sandbox config` edit went into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EditedFile {
    /// `/etc/systemd/nspawn/NAME.nspawn`.
    Nspawn,
    /// The sandbox's own drop-in, `systemd-nspawn@NAME.service.d/30-sandbox-config.conf`.
    Dropin,
}

/// One key a person (or a UI) changed with `sandbox config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserEdit {
    pub file: EditedFile,
    /// `Section.Key`, e.g. `Network.Zone`.
    pub key: String,
    /// The key's values in that file after the edit, in order; empty: it was removed.
    pub values: Vec<String>,
    /// When, RFC 3339, UTC.
    pub at: String,
}

impl SandboxState {
    /// Records `edit`, replacing an earlier one of the same file and key.
    pub fn note_edit(&mut self, edit: UserEdit) {
        self.user_edits
            .retain(|e| !(e.file == edit.file && e.key == edit.key));
        self.user_edits.push(edit);
        self.user_edits
            .sort_by(|a, b| (a.file, &a.key).cmp(&(b.file, &b.key)));
    }
}

impl SandboxState {
    /// The record of a machine `sandbox pull` made: what it came from and how it was verified,
    /// no template fields.
    #[allow(clippy::too_many_arguments)]
    pub fn pulled(
        name: &str,
        source: &str,
        digest: Digest,
        verification: &Verification,
        version: Option<String>,
        machines_dir: &Path,
        nspawn_file: Option<PathBuf>,
        created_at: String,
    ) -> SandboxState {
        SandboxState {
            name: name.to_string(),
            template: None,
            templates: Vec::new(),
            content_hash: None,
            vars: BTreeMap::new(),
            source: source.to_string(),
            digest,
            verification: verification.clone(),
            version,
            machines_dir: machines_dir.to_path_buf(),
            rootfs: machines_dir.join(name),
            zfs_dataset: None,
            storage: None,
            stored_image: None,
            nspawn_file,
            dropin_dir: None,
            enabled: false,
            created_at,
            cloud_init_seed: Vec::new(),
            user_edits: Vec::new(),
        }
    }

    /// Records how the rootfs was made.
    pub fn placed(mut self, p: &Placement) -> SandboxState {
        self.storage = Some(p.backend);
        self.stored_image = p.stored.clone();
        if p.dataset.is_some() {
            self.zfs_dataset = p.dataset.clone();
        }
        self
    }
}

/// `<sandboxes_dir>/state`.
pub fn state_dir(sandboxes_dir: &Path) -> PathBuf {
    sandboxes_dir.join("state")
}

/// `<sandboxes_dir>/state/NAME.json`.
pub fn state_path(sandboxes_dir: &Path, name: &str) -> PathBuf {
    state_dir(sandboxes_dir).join(format!("{name}.json"))
}

/// The names of every state record, in order; none when the state dir does not exist.
pub fn names(sandboxes_dir: &Path) -> Result<Vec<String>> {
    let entries = match fs_err::read_dir(state_dir(sandboxes_dir)) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let file = entry?.file_name();
        if let Some(n) = file.to_str().and_then(|f| f.strip_suffix(".json"))
            && !n.starts_with('.')
        {
            names.push(n.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Writes the record atomically (temp file, fsync, rename), creating the state dir.
pub fn write_state(sandboxes_dir: &Path, state: &SandboxState) -> Result<()> {
    let dir = state_dir(sandboxes_dir);
    fs_err::create_dir_all(&dir)
        .with_context(|| format!("creating the state directory {}", dir.display()))?;
    let mut json = serde_json::to_vec_pretty(state).context("encoding a sandbox state record")?;
    json.push(b'\n');
    write_file(&state_path(sandboxes_dir, &state.name), &json)?;
    crate::faultpoint::reached("state.written");
    Ok(())
}

/// The record of `name`; `None` when there is none (a machine not built by `sandbox build`).
pub fn read_state(sandboxes_dir: &Path, name: &str) -> Result<Option<SandboxState>> {
    read_record(sandboxes_dir, name)
}

/// `<sandboxes_dir>/state/NAME.json` as `T`; `None` when there is none.
fn read_record<T: serde::de::DeserializeOwned>(
    sandboxes_dir: &Path,
    name: &str,
) -> Result<Option<T>> {
    let path = state_path(sandboxes_dir, name);
    match fs_err::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("parsing the state record {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// A record as `ls` and `rm` read it: typed, every field optional, and the older or hand-edited
/// shapes accepted (a source as a string or as `{source|reference|url|name}`, verification as
/// the recorded object or a bare mode word). A field in a shape this version does not know is
/// `None`, never an error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct RecordView {
    #[serde(default, deserialize_with = "lenient::text")]
    pub template: Option<String>,
    #[serde(default, deserialize_with = "lenient::texts")]
    pub templates: Vec<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub source: Option<String>,
    #[serde(default, deserialize_with = "lenient::verification")]
    pub verification: Option<Verification>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub digest: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub version: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub created_at: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub zfs_dataset: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub storage: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub stored_image: Option<String>,
}

impl RecordView {
    /// The template as listed: `template`, else the applied `templates` joined with `,`.
    pub fn template_shown(&self) -> Option<String> {
        self.template
            .clone()
            .or_else(|| (!self.templates.is_empty()).then(|| self.templates.join(",")))
    }
}

/// Reads `<sandboxes_dir>/state/NAME.json` leniently; `None` when there is none.
pub fn read_view(sandboxes_dir: &Path, name: &str) -> Result<Option<RecordView>> {
    read_record(sandboxes_dir, name)
}

/// The lenient field readers of [`RecordView`]: each takes any JSON value.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    use crate::cache::Verification;

    /// A string as is, a number as written, an object by its most telling field.
    fn as_text(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Object(o) => ["source", "reference", "url", "name"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str))
                .map(str::to_string),
            _ => None,
        }
    }

    pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(as_text(&Value::deserialize(d)?))
    }

    pub fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(a) => a.iter().filter_map(as_text).collect(),
            _ => Vec::new(),
        })
    }

    /// The recorded object; a bare mode word (`checksum`) as a record of that mode; anything
    /// else (an unknown mode) is `None`.
    pub fn verification<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Verification>, D::Error> {
        Ok(match Value::deserialize(d)? {
            v @ Value::Object(_) => serde_json::from_value(v).ok(),
            v @ Value::String(_) => serde_json::from_value(v).ok().map(|mode| Verification {
                mode,
                ..Verification::default()
            }),
            _ => None,
        })
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
            template: Some("debian+docker".into()),
            templates: vec!["debian".into(), "docker".into()],
            content_hash: Some(Digest::of(b"templates")),
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
            storage: Some(Backend::Btrfs),
            stored_image: Some("0123456789abcdef0123456789abcdef".into()),
            nspawn_file: Some("/etc/systemd/nspawn/web.nspawn".into()),
            dropin_dir: Some("/etc/systemd/system/systemd-nspawn@web.service.d".into()),
            enabled: true,
            created_at: "2026-11-29T02:30:00Z".into(),
            cloud_init_seed: vec!["docker/user-data".into()],
            user_edits: vec![],
        };
        write_state(dir.path(), &state).unwrap();
        assert_eq!(read_state(dir.path(), "web").unwrap(), Some(state.clone()));
        // Edits: one per key, the last wins, and they survive a round trip.
        let mut edited = state;
        let edit = |key: &str, values: &[&str], at: &str| UserEdit {
            file: EditedFile::Nspawn,
            key: key.into(),
            values: values.iter().map(|v| v.to_string()).collect(),
            at: at.into(),
        };
        edited.note_edit(edit("Network.Zone", &["a"], "1"));
        edited.note_edit(edit("Exec.Boot", &[], "2"));
        edited.note_edit(edit("Network.Zone", &["b"], "3"));
        assert_eq!(
            edited.user_edits,
            [
                edit("Exec.Boot", &[], "2"),
                edit("Network.Zone", &["b"], "3")
            ]
        );
        write_state(dir.path(), &edited).unwrap();
        assert_eq!(read_state(dir.path(), "web").unwrap(), Some(edited));
        fs_err::write(state_path(dir.path(), "bad"), b"{").unwrap();
        let err = read_state(dir.path(), "bad").unwrap_err();
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
    }

    #[test]
    fn views_read_every_shape_a_record_has_had() {
        let view: RecordView = serde_json::from_value(serde_json::json!({
            "templates": ["a", "b"], "source": {"reference": "https://x/y.tar.xz"},
            "verification": "checksum", "template": null, "digest": 7, "unknown": [1]
        }))
        .unwrap();
        assert_eq!(view.template_shown().as_deref(), Some("a,b"));
        assert_eq!(view.source.as_deref(), Some("https://x/y.tar.xz"));
        assert_eq!(
            view.verification.map(|v| v.mode),
            Some(crate::verify::mode::Checked::Checksum)
        );
        assert_eq!(view.digest.as_deref(), Some("7"));
        let view: RecordView = serde_json::from_value(serde_json::json!({
            "verification": {"mode": "signature", "key_fingerprint": "E7FB"},
            "zfs_dataset": "tank/m/web", "source": [1, 2]
        }))
        .unwrap();
        let v = view.verification.clone().unwrap();
        assert_eq!(v.mode, crate::verify::mode::Checked::Signature);
        assert_eq!(v.key_fingerprint.as_deref(), Some("E7FB"));
        assert_eq!(view.zfs_dataset.as_deref(), Some("tank/m/web"));
        assert_eq!(view.source, None);
        // A record build writes reads as a view too.
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_view(dir.path(), "none").unwrap(), None);
    }
}
