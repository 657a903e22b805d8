//! Where templates come from: a list of search roots (the user's templates directory first,
//! then the templates embedded in the binary), and the in-memory form every later step reads.
//!
//! Reading a user directory is the only I/O in `build`; everything after `Template` is pure.
//! A template found in an earlier root hides one of the same name in a later root, which is
//! how `<sandboxes_dir>/templates/debian` replaces the shipped `debian`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::embedded;
use super::manifest;

/// The file that makes a directory a template.
pub const MANIFEST: &str = "template.toml";
/// A template's files above this size are refused: templates are configuration, and a huge
/// file is far more likely a mistake (a rootfs tarball dropped into `files/`) than intent.
pub const MAX_FILE_SIZE: u64 = 16 << 20;

/// Where a template was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Shipped in the binary.
    Embedded,
    /// A directory on the host (its full path).
    Dir(PathBuf),
}

/// One file of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateFile {
    /// Permission bits (`0o644`, `0o755`, …); never setuid, setgid or sticky.
    pub mode: u32,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A symlink under `files/`, copied into the rootfs as a symlink with this target.
    Symlink(String),
}

/// A template as read: its name, where it came from, and its files by relative path (`/`
/// separated, e.g. `user-data`, `files/etc/motd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub name: String,
    pub origin: Origin,
    pub files: BTreeMap<String, TemplateFile>,
}

impl Template {
    /// How a file of this template is named in messages: its host path, or `built-in:NAME/FILE`.
    pub fn display_path(&self, rel: &str) -> String {
        match &self.origin {
            Origin::Embedded => format!("built-in:{}/{rel}", self.name),
            Origin::Dir(dir) => dir.join(rel).display().to_string(),
        }
    }

    /// The text of a file, or an error naming it when it is not UTF-8.
    pub fn text(&self, rel: &str) -> Result<Option<&str>> {
        match self.files.get(rel).map(|f| &f.content) {
            None => Ok(None),
            Some(Content::Symlink(_)) => {
                bail!("{} must be a file, not a symlink", self.display_path(rel))
            }
            Some(Content::Bytes(b)) => std::str::from_utf8(b)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", self.display_path(rel))),
        }
    }
}

/// Template names: what can safely be a directory name and an `extends` entry.
pub fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        bail!(
            "`{name}` is not a valid template name (letters, digits, `-`, `_`, `.`, starting with a letter or digit, at most 64)"
        );
    }
    Ok(())
}

/// A place templates are looked up in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Root {
    /// A directory whose subdirectories are templates; a missing directory holds none.
    Dir(PathBuf),
    /// The templates shipped in the binary.
    Embedded,
}

/// What `sandbox templates` shows for one template.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TemplateInfo {
    pub name: String,
    pub description: String,
    /// `built-in` or the template's directory.
    pub origin: String,
    /// A user template that hides a shipped one of the same name.
    pub overrides_builtin: bool,
    /// Why the template cannot be used, when its `template.toml` does not parse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The search roots, first match wins.
#[derive(Debug, Clone)]
pub struct Library {
    roots: Vec<Root>,
}

impl Library {
    pub fn new(roots: Vec<Root>) -> Library {
        Library { roots }
    }

    /// `<sandboxes_dir>/templates/`, then the shipped templates.
    pub fn standard(sandboxes_dir: &Path) -> Library {
        Library::new(vec![
            Root::Dir(sandboxes_dir.join("templates")),
            Root::Embedded,
        ])
    }

    pub fn roots(&self) -> &[Root] {
        &self.roots
    }

    /// The template `name` from the first root that has it.
    pub fn load(&self, name: &str) -> Result<Template> {
        validate_name(name)?;
        for root in &self.roots {
            if let Some(t) = load_from(root, name)? {
                return Ok(t);
            }
        }
        let known: Vec<String> = self.names()?.into_iter().collect();
        let hint = match closest(name, &known) {
            Some(k) => format!("; did you mean `{k}`?"),
            None => String::new(),
        };
        bail!(
            "no template named `{name}`{hint} (searched {}; known: {})",
            self.describe_roots(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )
    }

    /// Every template name over all roots, sorted.
    pub fn names(&self) -> Result<std::collections::BTreeSet<String>> {
        let mut names = std::collections::BTreeSet::new();
        for root in &self.roots {
            names.extend(names_in(root)?);
        }
        Ok(names)
    }

    /// Name, description and origin of every template that a lookup would find, sorted by name.
    pub fn list(&self) -> Result<Vec<TemplateInfo>> {
        let mut out = Vec::new();
        for name in self.names()? {
            let mut found = Vec::new();
            for root in &self.roots {
                if names_in(root)?.contains(&name) {
                    found.push(root);
                }
            }
            let Some(first) = found.first() else { continue };
            let overrides_builtin =
                matches!(first, Root::Dir(_)) && found.iter().any(|r| matches!(r, Root::Embedded));
            let (origin, description, problem) = match load_from(first, &name) {
                Ok(Some(t)) => {
                    let origin = match &t.origin {
                        Origin::Embedded => "built-in".to_string(),
                        Origin::Dir(d) => d.display().to_string(),
                    };
                    match describe(&t) {
                        Ok(d) => (origin, d, None),
                        Err(e) => (origin, String::new(), Some(format!("{e:#}"))),
                    }
                }
                Ok(None) => continue,
                Err(e) => (root_label(first), String::new(), Some(format!("{e:#}"))),
            };
            out.push(TemplateInfo {
                name,
                description,
                origin,
                overrides_builtin,
                problem,
            });
        }
        Ok(out)
    }

    fn describe_roots(&self) -> String {
        self.roots
            .iter()
            .map(root_label)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn root_label(root: &Root) -> String {
    match root {
        Root::Embedded => "the built-in templates".to_string(),
        Root::Dir(d) => d.display().to_string(),
    }
}

fn describe(t: &Template) -> Result<String> {
    let text = t.text(MANIFEST)?.unwrap_or_default();
    let m = manifest::parse(text, &t.display_path(MANIFEST))?;
    Ok(m.description.unwrap_or_default())
}

fn names_in(root: &Root) -> Result<Vec<String>> {
    match root {
        Root::Embedded => {
            let mut names: Vec<String> = embedded::FILES
                .iter()
                .filter_map(|f| f.path.split_once('/').map(|(n, _)| n.to_string()))
                .collect();
            names.dedup();
            Ok(names)
        }
        Root::Dir(dir) => {
            let entries = match fs_err::read_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if validate_name(&name).is_ok() && entry.path().join(MANIFEST).is_file() {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        }
    }
}

fn load_from(root: &Root, name: &str) -> Result<Option<Template>> {
    match root {
        Root::Embedded => {
            let prefix = format!("{name}/");
            let files: BTreeMap<String, TemplateFile> = embedded::FILES
                .iter()
                .filter_map(|f| f.path.strip_prefix(&prefix).map(|rel| (rel, f)))
                .map(|(rel, f)| {
                    let file = TemplateFile {
                        mode: f.mode,
                        content: Content::Bytes(f.bytes.to_vec()),
                    };
                    (rel.to_string(), file)
                })
                .collect();
            if !files.contains_key(MANIFEST) {
                return Ok(None);
            }
            Ok(Some(Template {
                name: name.to_string(),
                origin: Origin::Embedded,
                files,
            }))
        }
        Root::Dir(dir) => {
            let tdir = dir.join(name);
            if !tdir.join(MANIFEST).is_file() {
                return Ok(None);
            }
            let mut files = BTreeMap::new();
            read_tree(&tdir, &tdir, &mut files)
                .with_context(|| format!("reading template `{name}` from {}", tdir.display()))?;
            Ok(Some(Template {
                name: name.to_string(),
                origin: Origin::Dir(tdir),
                files,
            }))
        }
    }
}

/// Reads a template directory. Symlinks are kept as symlinks (never followed) and allowed only
/// under `files/`; top-level names starting with `.` (editor and VCS litter) are skipped.
fn read_tree(top: &Path, dir: &Path, files: &mut BTreeMap<String, TemplateFile>) -> Result<()> {
    let mut entries: Vec<_> = fs_err::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(top)
            .ok()
            .and_then(Path::to_str)
            .with_context(|| format!("{}: file names in templates must be UTF-8", path.display()))?
            .to_string();
        if dir == top && rel.starts_with('.') {
            continue;
        }
        let meta = fs_err::symlink_metadata(&path)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            read_tree(top, &path, files)?;
        } else if ft.is_symlink() {
            if !rel.starts_with("files/") {
                bail!("{}: symlinks are allowed only under files/", path.display());
            }
            let target = fs_err::read_link(&path)?;
            let target = target
                .to_str()
                .with_context(|| format!("{}: symlink target is not UTF-8", path.display()))?
                .to_string();
            files.insert(
                rel,
                TemplateFile {
                    mode: 0o777,
                    content: Content::Symlink(target),
                },
            );
        } else if ft.is_file() {
            if meta.len() > MAX_FILE_SIZE {
                bail!(
                    "{}: {} bytes is over the {} MiB limit for a template file",
                    path.display(),
                    meta.len(),
                    MAX_FILE_SIZE >> 20
                );
            }
            let bytes = fs_err::read(&path)?;
            let mode = meta.permissions().mode() & 0o777;
            files.insert(
                rel,
                TemplateFile {
                    mode,
                    content: Content::Bytes(bytes),
                },
            );
        } else {
            bail!(
                "{}: templates hold only directories, files and symlinks",
                path.display()
            );
        }
    }
    Ok(())
}
/// The known name a typo most likely meant: the nearest by edit distance, within a third of
/// its length (at least 1, at most 3 edits). Pure.
pub fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    known
        .iter()
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Levenshtein distance over characters, adjacent swaps counting one (`dokcer` → `docker`).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod typo_tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_template_it_meant() {
        let known: Vec<String> = ["debian", "docker", "ubuntu", "zone", "podman"]
            .map(String::from)
            .to_vec();
        assert_eq!(closest("dokcer", &known), Some("docker"));
        assert_eq!(closest("debain", &known), Some("debian"));
        assert_eq!(closest("ubunt", &known), Some("ubuntu"));
        assert_eq!(closest("kubernetes", &known), None);
        assert_eq!(closest("zon", &known), Some("zone"));
        assert_eq!(edit_distance("abc", "abc"), 0);
        assert_eq!(edit_distance("", "ab"), 2);
    }
}
