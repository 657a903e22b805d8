//! What `sandbox config NAME` shows: every setting systemd reads for the sandbox, each with
//! the file and line it is in and, where that can be told, where it came from. Pure: the
//! files' texts are read by the caller.
//!
//! Which files count, as systemd 252 reads them:
//! - one `.nspawn` file: `/etc/systemd/nspawn/NAME.nspawn` when it exists, else
//!   `<machines_dir>/NAME.nspawn` (next to the image, untrusted: systemd-nspawn ignores its
//!   privileged settings, flagged `ignored`);
//! - the unit's drop-ins, from `systemd-nspawn@NAME.service.d/` and the template-wide
//!   `systemd-nspawn@.service.d/`, read in the order of their file names (one of the same name
//!   in the sandbox's own directory hides the template-wide one).
//!
//! Where a value came from (`source`): `template` (with the template, from the composition
//! the state record names, when its content hash still matches, or from the `# from
//! TEMPLATE/FILE` lines of the templates' drop-in), `build` (the default drop-in),
//! `sandbox-config` (an edit the record notes, or the sandbox's own drop-in), `image` (the
//! `.nspawn` next to the image), or `other` (a file or line nobody recorded: `systemctl edit`,
//! a hand edit).

use std::path::PathBuf;

use serde::Serialize;

use super::ini_edit::{Document, Kind};
use super::keys::ignored_when_untrusted;
use crate::machine::state::{EditedFile, UserEdit};
use crate::template::dropin::{DEFAULT_DROPIN, TEMPLATES_DROPIN};
use crate::template::origins::NspawnOrigin;

/// The drop-in `sandbox config` writes service-level settings into: after the build's `10-`
/// and `20-` drop-ins, before `override.conf` (`systemctl edit`).
pub const CONFIG_DROPIN: &str = "30-sandbox-config.conf";

/// One file as read.
#[derive(Debug, Clone)]
pub(crate) struct FileText {
    pub path: PathBuf,
    pub text: String,
}

/// Whose drop-in directory a drop-in is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scope {
    /// `systemd-nspawn@NAME.service.d`.
    Sandbox,
    /// `systemd-nspawn@.service.d`: every sandbox.
    AllSandboxes,
}

#[derive(Debug, Clone)]
pub(crate) struct DropinText {
    pub scope: Scope,
    pub file: FileText,
}

/// Everything the view is made from.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewInputs<'a> {
    pub name: String,
    /// `/etc/systemd/nspawn/NAME.nspawn` (or its persisted copy when it is not bound).
    pub nspawn: Option<FileText>,
    /// `<machines_dir>/NAME.nspawn`.
    pub image_nspawn: Option<FileText>,
    pub dropins: Vec<DropinText>,
    /// From the composition the record names; `None` when it could not be told.
    pub origins: Option<&'a [NspawnOrigin]>,
    pub edits: &'a [UserEdit],
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct FileView {
    pub path: PathBuf,
    /// `nspawn` or `dropin`.
    pub kind: EditedFile,
    /// For drop-ins: `sandbox` or `all-sandboxes`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    /// systemd reads it.
    pub in_effect: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Setting {
    pub file: PathBuf,
    /// 1-based, the first line of a continued one.
    pub line: usize,
    pub section: String,
    pub key: String,
    pub value: String,
    /// `template`, `build`, `sandbox-config`, `image` or `other`.
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// Where in the template: `built-in:docker/docker.nspawn:3`, `docker/docker.conf`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_file: Option<String>,
    /// When `sandbox config` set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<String>,
    /// Why systemd does not apply it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct ConfigView {
    pub name: String,
    pub files: Vec<FileView>,
    /// In the order systemd reads them.
    pub settings: Vec<Setting>,
    pub user_edits: Vec<UserEdit>,
    pub notes: Vec<String>,
}

fn edit_of<'a>(edits: &'a [UserEdit], file: EditedFile, key: &str) -> Option<&'a UserEdit> {
    edits.iter().find(|e| e.file == file && e.key == key)
}

/// Builds the view (see the module documentation).
pub(crate) fn view(inputs: &ViewInputs<'_>) -> ConfigView {
    let mut files = Vec::new();
    let mut settings = Vec::new();

    if let Some(f) = &inputs.nspawn {
        files.push(FileView {
            path: f.path.clone(),
            kind: EditedFile::Nspawn,
            scope: None,
            in_effect: true,
            note: None,
        });
        for (line, section, key, value) in assignments(&f.text) {
            let name = format!("{section}.{key}");
            let edit = edit_of(inputs.edits, EditedFile::Nspawn, &name)
                .filter(|e| e.values.contains(&value));
            let origin = inputs.origins.and_then(|o| {
                o.iter()
                    .find(|o| o.section == section && o.key == key && o.value == value)
            });
            let source = match (edit, origin) {
                (Some(_), _) => "sandbox-config",
                (None, Some(_)) => "template",
                (None, None) => "other",
            };
            settings.push(Setting {
                file: f.path.clone(),
                line,
                section,
                key,
                value,
                source,
                template: origin
                    .filter(|_| edit.is_none())
                    .map(|o| o.template.clone()),
                template_file: origin.filter(|_| edit.is_none()).map(|o| o.place.clone()),
                edited_at: edit.map(|e| e.at.clone()),
                ignored: None,
            });
        }
    }
    if let Some(f) = &inputs.image_nspawn {
        let in_effect = inputs.nspawn.is_none();
        files.push(FileView {
            path: f.path.clone(),
            kind: EditedFile::Nspawn,
            scope: None,
            in_effect,
            note: Some(if in_effect {
                "next to the image: systemd-nspawn ignores its privileged settings".into()
            } else {
                "not read: systemd-nspawn reads only the first .nspawn file it finds, and the one \
                 in /etc/systemd/nspawn comes first"
                    .into()
            }),
        });
        if in_effect {
            for (line, section, key, value) in assignments(&f.text) {
                let ignored = ignored_when_untrusted(&section, &key).then(|| {
                    "a privileged setting in an untrusted file (next to the image)".to_string()
                });
                settings.push(Setting {
                    file: f.path.clone(),
                    line,
                    section,
                    key,
                    value,
                    source: "image",
                    template: None,
                    template_file: None,
                    edited_at: None,
                    ignored,
                });
            }
        }
    }

    let mut dropins: Vec<&DropinText> = inputs.dropins.iter().collect();
    dropins.sort_by(|a, b| {
        let name = |d: &DropinText| d.file.path.file_name().map(|n| n.to_os_string());
        (name(a), a.scope != Scope::Sandbox).cmp(&(name(b), b.scope != Scope::Sandbox))
    });
    let mut seen: Vec<std::ffi::OsString> = Vec::new();
    for d in dropins {
        let file_name = d.file.path.file_name().unwrap_or_default().to_os_string();
        let hidden = seen.contains(&file_name);
        seen.push(file_name.clone());
        files.push(FileView {
            path: d.file.path.clone(),
            kind: EditedFile::Dropin,
            scope: Some(d.scope),
            in_effect: !hidden,
            note: hidden.then(|| {
                "not read: a drop-in of the same name in the sandbox's own directory replaces it"
                    .to_string()
            }),
        });
        if hidden {
            continue;
        }
        let own = d.scope == Scope::Sandbox;
        let role = file_name.to_str().unwrap_or_default();
        let mut from_comment: Option<String> = None;
        let doc = Document::parse(&d.file.text);
        let lines: Vec<&str> = d.file.text.split_inclusive('\n').collect();
        for e in doc.entries() {
            match &e.kind {
                // `dropin::concatenate` opens each template's fragment with this line.
                Kind::Comment => {
                    if let Some(label) = lines[e.start].trim().strip_prefix("# from ") {
                        from_comment = Some(label.trim().to_string());
                    }
                }
                Kind::Assignment {
                    section: Some(section),
                    key,
                    value,
                    ..
                } => {
                    let name = format!("{section}.{key}");
                    let edit = edit_of(inputs.edits, EditedFile::Dropin, &name)
                        .filter(|e| own && role == CONFIG_DROPIN && e.values.contains(value));
                    let (source, template, template_file) = match role {
                        _ if !own => ("other", None, None),
                        DEFAULT_DROPIN => ("build", None, None),
                        TEMPLATES_DROPIN => (
                            "template",
                            from_comment
                                .as_deref()
                                .map(|f| f.split(['/', ' ']).next().unwrap_or(f).to_string()),
                            from_comment.clone(),
                        ),
                        CONFIG_DROPIN => ("sandbox-config", None, None),
                        _ => ("other", None, None),
                    };
                    settings.push(Setting {
                        file: d.file.path.clone(),
                        line: Document::line_of(e),
                        section: section.clone(),
                        key: key.clone(),
                        value: value.clone(),
                        source,
                        template,
                        template_file,
                        edited_at: edit.map(|e| e.at.clone()),
                        ignored: None,
                    });
                }
                _ => {}
            }
        }
    }
    ConfigView {
        name: inputs.name.clone(),
        files,
        settings,
        user_edits: inputs.edits.to_vec(),
        notes: inputs.notes.clone(),
    }
}

/// `(line, section, key, value)` of every assignment under a section.
fn assignments(text: &str) -> Vec<(usize, String, String, String)> {
    Document::parse(text)
        .entries()
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::Assignment {
                section: Some(s),
                key,
                value,
                ..
            } => Some((Document::line_of(e), s.clone(), key.clone(), value.clone())),
            _ => None,
        })
        .collect()
}

impl ConfigView {
    /// For people: each file, then its settings with where they came from.
    pub fn text(&self) -> String {
        let mut out = format!("Settings of sandbox `{}`:\n", self.name);
        if self.files.is_empty() {
            out.push_str("  (no .nspawn file and no drop-ins: systemd-nspawn's defaults)\n");
        }
        for f in &self.files {
            out.push('\n');
            out.push_str(&f.path.display().to_string());
            if let Some(Scope::AllSandboxes) = f.scope {
                out.push_str(" (every sandbox)");
            }
            out.push('\n');
            if let Some(note) = &f.note {
                out.push_str(&format!("  # {note}\n"));
            }
            let rows: Vec<(String, String)> = self
                .settings
                .iter()
                .filter(|s| s.file == f.path)
                .map(|s| (format!("{}.{}={}", s.section, s.key, s.value), origin(s)))
                .collect();
            let width = rows
                .iter()
                .map(|(a, _)| a.chars().count())
                .max()
                .unwrap_or(0);
            for (setting, from) in rows {
                let pad = width - setting.chars().count();
                out.push_str(&format!("  {setting}{}  {from}\n", " ".repeat(pad)));
            }
        }
        for note in &self.notes {
            out.push_str(&format!("\nNote: {note}\n"));
        }
        out
    }
}

fn origin(s: &Setting) -> String {
    let mut o = match (s.source, &s.template, &s.template_file) {
        ("template", Some(t), Some(f)) => format!("template {t} ({f})"),
        ("template", Some(t), None) => format!("template {t}"),
        ("template", None, _) => "templates".to_string(),
        ("build", ..) => "sandbox build".to_string(),
        ("sandbox-config", ..) => match &s.edited_at {
            Some(at) => format!("sandbox config, {at}"),
            None => "sandbox config".to_string(),
        },
        ("image", ..) => "image".to_string(),
        _ => "not recorded".to_string(),
    };
    if let Some(why) = &s.ignored {
        o.push_str(&format!("; ignored: {why}"));
    }
    o
}

#[cfg(test)]
mod tests;
