//! `sandbox config NAME`: a sandbox's effective settings, and lossless edits of single keys
//! (for people and for a web UI that must never rewrite a whole file to change one option).
//!
//! The design, by file:
//! - `ini_edit`: the lossless editor of systemd's configuration syntax (pure): an edit touches
//!   the lines of one key, every other byte of the file stays;
//! - `keys`: what an edit may name and which file a key belongs in: `[Exec]`, `[Files]`,
//!   `[Network]` into `/etc/systemd/nspawn/NAME.nspawn`, checked by systemd 252's `.nspawn`
//!   rules (`template::nspawn_rules`); `[Unit]` and `[Service]` into the sandbox's own drop-in
//!   `30-sandbox-config.conf`, checked by `unit_rules` (pure);
//! - `plan`: the texts before and after (pure), and `reapply`, which `build --force` uses to
//!   keep the edits a state record notes on a newly rendered `.nspawn`;
//! - `diff`: the unified diff `--dry-run` shows (pure);
//! - `view`: the effective settings, each with its file, line and origin (pure);
//! - `files`: the host paths, reads, atomic writes, and the persisted copies `sandbox host
//!   setup` keeps (the only I/O, with the state record here in `mod.rs`).
//!
//! Edits are noted in the state record (`user_edits`: which key, its values, when). The
//! sandbox's drop-in is never written by a build, and `build --force` applies the noted
//! `.nspawn` edits again over what the templates render, naming each one it keeps: a setting
//! someone chose for one sandbox outlives a rebuild from a newer image, as an incus instance's
//! config outlives `incus rebuild` and `/etc/systemd/nspawn` outlives `machinectl pull-tar
//! --force`.
//!
//! A machine `sandbox pull` made may have only `<machines_dir>/NAME.nspawn`. systemd-nspawn
//! reads one `.nspawn` file, the one in `/etc` first, so the first edit starts
//! `/etc/systemd/nspawn/NAME.nspawn` as a copy of it, with the privileged settings systemd
//! ignored there (the file is untrusted) turned into comments: what applied before still
//! applies, and nothing the image asked for is granted by the edit.

pub(crate) mod diff;
mod files;
pub(crate) mod ini_edit;
pub(crate) mod keys;
pub(crate) mod plan;
pub(crate) mod unit_rules;
pub(crate) mod view;

use anyhow::{Context, Result};
use serde::Serialize;
use std::path::PathBuf;

use self::files::Places;
use self::keys::{Change, Op};
use self::plan::KeyEdit;
use self::view::{ConfigView, ViewInputs};
use crate::machine::host::{Host, Program, run_str};
use crate::machine::state::{self, EditedFile, SandboxState, UserEdit};
use crate::paths::HostPaths;
use crate::template::{Composition, Library};

/// What to change: `Section.Key[+|-]=VALUE` arguments, `--unset` keys, and `--reset` keys
/// (back to what the templates give, the note of the edit forgotten).
#[derive(Debug, Clone, Default)]
pub struct EditRequest {
    pub assignments: Vec<String>,
    pub unset: Vec<String>,
    pub reset: Vec<String>,
    pub dry_run: bool,
}

/// One file an edit changed (or would change).
#[derive(Debug, Clone, Serialize)]
pub struct ChangedFile {
    pub path: PathBuf,
    /// The file did not exist.
    pub created: bool,
    /// The persisted copy written too (not bound onto `path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persisted_copy: Option<PathBuf>,
    /// Unified diff from the old text to the new.
    pub diff: String,
}

/// What `sandbox config NAME KEY=VALUE…` did.
#[derive(Debug, Clone, Serialize)]
pub struct EditReport {
    pub name: String,
    pub dry_run: bool,
    /// Each key with its values before and after.
    pub keys: Vec<KeyEditJson>,
    pub files: Vec<ChangedFile>,
    /// The state record notes the edits.
    pub recorded: bool,
    /// Host commands run (`systemctl daemon-reload` after a drop-in changed).
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub notes: Vec<String>,
}

/// A key's change as `--json` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyEditJson {
    pub key: String,
    pub file: EditedFile,
    pub before: Vec<String>,
    pub after: Vec<String>,
}

impl From<&KeyEdit> for KeyEditJson {
    fn from(k: &KeyEdit) -> Self {
        KeyEditJson {
            key: k.key.clone(),
            file: k.file,
            before: k.before.clone(),
            after: k.after.clone(),
        }
    }
}

/// The record, when there is a readable one; a note otherwise.
fn record(paths: &HostPaths, name: &str, notes: &mut Vec<String>) -> Option<SandboxState> {
    match state::read_state(&paths.sandboxes_dir, name) {
        Ok(Some(s)) => Some(s),
        Ok(None) => {
            notes.push(format!(
                "`{name}` has no state record (it was not made by sandbox build or pull): \
                 origins are not known and edits are not noted"
            ));
            None
        }
        Err(e) => {
            notes.push(format!(
                "{e:#}; origins are not known and edits are not noted"
            ));
            None
        }
    }
}

/// The templates' origins of each `.nspawn` value, when the templates the record names still
/// compose to the recorded content hash.
fn origins(
    paths: &HostPaths,
    record: &SandboxState,
    notes: &mut Vec<String>,
) -> Option<Vec<crate::template::origins::NspawnOrigin>> {
    let requested: Vec<String> = record
        .template
        .as_ref()?
        .split('+')
        .map(String::from)
        .collect();
    let sets: Vec<(String, String)> = record.vars.clone().into_iter().collect();
    let library = Library::standard(&paths.sandboxes_dir);
    match Composition::load(&library, &requested, &sets) {
        Ok(c) if Some(c.spec().content_hash) == record.content_hash => Some(c.nspawn_origins()),
        Ok(_) => {
            notes.push(format!(
                "the templates {} changed since the build: which template set a .nspawn value is \
                 not shown",
                record.templates.join(", ")
            ));
            None
        }
        Err(e) => {
            notes.push(format!(
                "the templates of the build cannot be read ({e:#}): which template set a .nspawn \
                 value is not shown"
            ));
            None
        }
    }
}

/// The effective settings of sandbox `name`.
pub fn show(paths: &HostPaths, name: &str) -> Result<ConfigView> {
    crate::machine::remove::ensure_exists(paths, name)?;
    let places = Places::of(paths, name);
    let mut notes = Vec::new();
    let record = record(paths, name, &mut notes);
    let origins = record.as_ref().and_then(|r| origins(paths, r, &mut notes));
    let nspawn = places.nspawn.read()?;
    if let Some(f) = &nspawn
        && f.path == places.nspawn.persisted
    {
        notes.push(format!(
            "{} is not there; shown is its persisted copy {}, which `sandbox host setup` binds \
             into place",
            places.nspawn.live.display(),
            f.path.display()
        ));
    }
    let inputs = ViewInputs {
        name: name.to_string(),
        nspawn,
        image_nspawn: files::read_image_nspawn(&places)?,
        dropins: files::read_dropins(&places)?,
        origins: origins.as_deref(),
        edits: record.as_ref().map_or(&[], |r| r.user_edits.as_slice()),
        notes,
    };
    Ok(view::view(&inputs))
}

/// Parses the request into changes, each with its file; unsets and resets first. A reset of a
/// drop-in key removes it from the sandbox's drop-in (the templates' value is in theirs); of a
/// `.nspawn` key, it sets the values the templates compose to, which `origins` must know.
fn changes(
    req: &EditRequest,
    origins: Option<&[crate::template::origins::NspawnOrigin]>,
) -> Result<Vec<(Change, EditedFile)>> {
    let mut out = Vec::new();
    for k in &req.reset {
        let (key, file) = keys::parse_key(k).with_context(|| format!("--reset {k}"))?;
        out.push((
            Change {
                key: key.clone(),
                op: Op::Unset,
            },
            file,
        ));
        if file == EditedFile::Nspawn {
            let Some(origins) = origins else {
                anyhow::bail!(
                    "--reset {k}: the templates' value cannot be told (see `sandbox config NAME`); \
                     set it with {k}=VALUE or remove it with --unset {k}"
                );
            };
            for o in origins
                .iter()
                .filter(|o| o.section == key.section && o.key == key.key)
            {
                out.push((
                    Change {
                        key: key.clone(),
                        op: Op::Set(o.value.clone()),
                    },
                    file,
                ));
            }
        }
    }
    for k in &req.unset {
        let (key, file) = keys::parse_key(k).with_context(|| format!("--unset {k}"))?;
        out.push((Change { key, op: Op::Unset }, file));
    }
    for a in &req.assignments {
        let (change, file) = keys::parse_change(a)?;
        let named = |list: &[String]| list.iter().any(|u| u.trim() == change.key.to_string());
        if named(&req.unset) || named(&req.reset) {
            anyhow::bail!(
                "{} is both set and unset or reset; give one of them",
                change.key
            );
        }
        out.push((change, file));
    }
    if out.is_empty() {
        anyhow::bail!(
            "nothing to change: give Section.Key=VALUE, --unset Section.Key or --reset Section.Key"
        );
    }
    Ok(out)
}

/// Changes the keys `req` names, as the module documentation describes.
pub fn edit(
    paths: &HostPaths,
    host: &dyn Host,
    name: &str,
    req: &EditRequest,
) -> Result<EditReport> {
    // Checked before anything is read: a typo fails the same on every host.
    changes(req, Some(&[]))?;
    crate::machine::remove::ensure_exists(paths, name)?;
    let places = Places::of(paths, name);
    let mut notes = Vec::new();
    let mut record = record(paths, name, &mut notes);
    let origins = match &record {
        Some(r) if !req.reset.is_empty() => origins(paths, r, &mut notes),
        _ => None,
    };
    let changes = changes(req, origins.as_deref())?;

    let nspawn_now = places.nspawn.read()?;
    let image = files::read_image_nspawn(&places)?;
    let nspawn_before = match (&nspawn_now, &image) {
        (Some(f), _) => f.text.clone(),
        (None, Some(img)) if changes.iter().any(|(_, f)| *f == EditedFile::Nspawn) => {
            notes.push(format!(
                "{} starts as a copy of {}, which systemd-nspawn no longer reads once it exists; \
                 the privileged settings it ignored there are comments",
                places.nspawn.live.display(),
                img.path.display()
            ));
            let header = format!(
                "# Made by `sandbox config` from {} (systemd-nspawn reads only this file now).\n",
                img.path.display()
            );
            format!(
                "{header}{}",
                ini_edit::comment_out(
                    &img.text,
                    keys::ignored_when_untrusted,
                    "left out: systemd-nspawn ignored it in the untrusted file next to the image"
                )
            )
        }
        (None, _) => String::new(),
    };
    let dropin_now = places.config_dropin.read()?;
    let dropin_before = dropin_now
        .as_ref()
        .map_or(String::new(), |f| f.text.clone());
    let planned = plan::plan(&nspawn_before, &dropin_before, &changes)?;

    let mut files = Vec::new();
    let targets = [
        (&places.nspawn, &nspawn_now, &planned.nspawn),
        (&places.config_dropin, &dropin_now, &planned.dropin),
    ];
    let mut dropin_changed = false;
    for (i, (place, now, (_, after))) in targets.into_iter().enumerate() {
        let old = now.as_ref().map_or("", |f| f.text.as_str());
        if old == after {
            continue;
        }
        let label = place.live.display().to_string();
        let mut changed = ChangedFile {
            path: place.live.clone(),
            created: now.is_none(),
            persisted_copy: None,
            diff: diff::unified(&label, &label, old, after),
        };
        if !req.dry_run {
            changed.persisted_copy = place.write(after)?;
        }
        dropin_changed |= i == 1;
        files.push(changed);
    }

    let mut recorded = false;
    if !req.dry_run
        && (!files.is_empty() || !req.reset.is_empty())
        && let Some(r) = record.as_mut()
    {
        let at = crate::cache::refs::now_rfc3339();
        for k in &req.reset {
            r.user_edits.retain(|e| e.key != k.trim());
        }
        let reset = |key: &str| req.reset.iter().any(|k| k.trim() == key);
        for k in planned
            .keys
            .iter()
            .filter(|k| k.before != k.after && !reset(&k.key))
        {
            r.note_edit(UserEdit {
                file: k.file,
                key: k.key.clone(),
                values: k.after.clone(),
                at: at.clone(),
            });
        }
        state::write_state(&paths.sandboxes_dir, r)?;
        recorded = true;
    }

    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    if dropin_changed && !req.dry_run {
        if paths.root != std::path::Path::new("/") {
            skipped.push(
                "systemctl daemon-reload: under --root nothing acts on the running host".into(),
            );
        } else if !host.available(Program::Systemctl) {
            skipped.push(format!(
                "systemctl daemon-reload: {}",
                host.unavailable(Program::Systemctl)
            ));
        } else {
            run_str(host, Program::Systemctl, &["daemon-reload"])
                .context("reloading systemd after changing the drop-in")?;
            ran.push("systemctl daemon-reload".into());
        }
    }
    if !files.is_empty() && !req.dry_run {
        notes.push(format!(
            "the sandbox uses the new settings from its next start (machinectl restart {name})"
        ));
    }
    Ok(EditReport {
        name: name.to_string(),
        dry_run: req.dry_run,
        keys: planned.keys.iter().map(KeyEditJson::from).collect(),
        files,
        recorded,
        ran,
        skipped,
        notes,
    })
}
