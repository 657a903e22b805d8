//! Where a sandbox's settings live on the host, read and written. The only I/O of `config`
//! besides the state record.
//!
//! Each file has two places: the one systemd reads (`/etc/systemd/nspawn/NAME.nspawn`, the
//! drop-in directories in `/etc/systemd/system`) and its persisted copy under
//! `<sandboxes_dir>/persist/` that `sandbox host setup` binds onto it (`machine::hostsetup`).
//! When the two are one directory (bound), a write goes through once. When they are not
//! (before the boot's `setup`, after `host undo`, under `--root`), the next `setup` would take
//! the persisted copy over the one in `/etc`, so a write goes to both, and a read takes the
//! file in `/etc`, else its persisted copy. Writes are atomic (`crate::atomic`).

use std::os::unix::fs::MetadataExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::view::{CONFIG_DROPIN, DropinText, FileText, Scope};
use crate::machine::hostsetup::{self, PERSIST_DROPINS, PERSIST_NSPAWN, TEMPLATE_DROPIN};
use crate::paths::HostPaths;
use crate::template::dropin;

/// A file systemd reads, and its persisted copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Place {
    pub live: PathBuf,
    pub persisted: PathBuf,
}

/// The places of one sandbox's settings.
#[derive(Debug, Clone)]
pub(crate) struct Places {
    pub nspawn: Place,
    /// `<machines_dir>/NAME.nspawn`.
    pub image_nspawn: PathBuf,
    /// The sandbox's drop-in directory, and the template-wide one.
    pub dropin_dir: Place,
    pub shared_dropin_dir: Place,
    /// `30-sandbox-config.conf` in the sandbox's drop-in directory.
    pub config_dropin: Place,
}

impl Places {
    /// Pure: every path from the name.
    pub fn of(paths: &HostPaths, name: &str) -> Places {
        let persist = hostsetup::persist_dir(paths);
        let nspawn_name = format!("{name}.nspawn");
        let own = format!("systemd-nspawn@{name}.service.d");
        let dir = |d: &str| Place {
            live: paths.host(hostsetup::SYSTEM_ETC).join(d),
            persisted: persist.join(PERSIST_DROPINS).join(d),
        };
        let dropin_dir = dir(&own);
        debug_assert_eq!(dropin_dir.live, paths.host(&dropin::dropin_dir(name)));
        Places {
            nspawn: Place {
                live: paths.host("/etc/systemd/nspawn").join(&nspawn_name),
                persisted: persist.join(PERSIST_NSPAWN).join(&nspawn_name),
            },
            image_nspawn: paths.machines_dir.join(&nspawn_name),
            config_dropin: Place {
                live: dropin_dir.live.join(CONFIG_DROPIN),
                persisted: dropin_dir.persisted.join(CONFIG_DROPIN),
            },
            dropin_dir,
            shared_dropin_dir: dir(TEMPLATE_DROPIN),
        }
    }
}

/// The same directory (a bind mount shows the device and inode of its source).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (fs_err::metadata(a), fs_err::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn is_file(path: &Path) -> bool {
    fs_err::metadata(path).is_ok_and(|m| m.is_file())
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = fs_err::read(path)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", path.display()))
}

impl Place {
    /// The file in `/etc`, else its persisted copy; `None` when neither exists.
    pub fn read(&self) -> Result<Option<FileText>> {
        for path in [&self.live, &self.persisted] {
            if is_file(path) {
                return Ok(Some(FileText {
                    path: path.clone(),
                    text: read_text(path)?,
                }));
            }
        }
        Ok(None)
    }

    /// Writes `text` atomically where systemd reads it (creating the directory) and, when the
    /// persisted copy's directory exists and is not bound there, into the persisted copy too.
    /// Returns the persisted path when it was written separately.
    pub fn write(&self, text: &str) -> Result<Option<PathBuf>> {
        let mode = fs_err::metadata(&self.live)
            .map(|m| m.permissions().mode() & 0o7777)
            .unwrap_or(0o644);
        let live_dir = parent(&self.live);
        fs_err::create_dir_all(live_dir)?;
        crate::atomic::write_file_mode(&self.live, text.as_bytes(), mode)?;
        let persisted_dir = parent(&self.persisted);
        if persisted_dir.is_dir() && !same_dir(live_dir, persisted_dir) {
            crate::atomic::write_file_mode(&self.persisted, text.as_bytes(), mode)?;
            return Ok(Some(self.persisted.clone()));
        }
        Ok(None)
    }
}

fn parent(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("/"))
}

/// The image's `.nspawn`, when `<machines_dir>/NAME.nspawn` is a file (it may be the rootfs
/// of a machine called `NAME.nspawn`).
pub(crate) fn read_image_nspawn(places: &Places) -> Result<Option<FileText>> {
    if !is_file(&places.image_nspawn) {
        return Ok(None);
    }
    Ok(Some(FileText {
        path: places.image_nspawn.clone(),
        text: read_text(&places.image_nspawn)?,
    }))
}

/// Every `*.conf` drop-in of the sandbox and of all sandboxes; from the persisted copy of a
/// directory that has none in `/etc`.
pub(crate) fn read_dropins(places: &Places) -> Result<Vec<DropinText>> {
    let mut out = Vec::new();
    for (scope, place) in [
        (Scope::Sandbox, &places.dropin_dir),
        (Scope::AllSandboxes, &places.shared_dropin_dir),
    ] {
        let mut files = conf_files(&place.live)?;
        if files.is_empty() {
            files = conf_files(&place.persisted)?;
        }
        for path in files {
            let text = read_text(&path)?;
            out.push(DropinText {
                scope,
                file: FileText { path, text },
            });
        }
    }
    Ok(out)
}

fn conf_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with(".conf") && !name.starts_with('.') && is_file(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathInputs;

    #[test]
    fn places_follow_the_name_and_host_setup() {
        let paths = HostPaths::resolve(&PathInputs {
            root: Some("/r".into()),
            ..Default::default()
        });
        let p = Places::of(&paths, "web");
        assert_eq!(p.nspawn.live, Path::new("/r/etc/systemd/nspawn/web.nspawn"));
        assert_eq!(
            p.nspawn.persisted,
            Path::new("/r/var/lib/sandboxes/persist/nspawn/web.nspawn")
        );
        assert_eq!(p.image_nspawn, Path::new("/r/var/lib/machines/web.nspawn"));
        assert_eq!(
            p.config_dropin.live,
            Path::new("/r/etc/systemd/system/systemd-nspawn@web.service.d/30-sandbox-config.conf")
        );
        assert_eq!(
            p.config_dropin.persisted,
            Path::new(
                "/r/var/lib/sandboxes/persist/dropins/systemd-nspawn@web.service.d/30-sandbox-config.conf"
            )
        );
        assert_eq!(
            p.shared_dropin_dir.live,
            Path::new("/r/etc/systemd/system/systemd-nspawn@.service.d")
        );
    }

    #[test]
    fn a_write_reaches_an_unbound_persisted_copy_and_a_bound_one_once() {
        let dir = tempfile::tempdir().unwrap();
        let place = Place {
            live: dir.path().join("etc/web.nspawn"),
            persisted: dir.path().join("persist/web.nspawn"),
        };
        // No persisted directory: only /etc.
        assert_eq!(place.write("a\n").unwrap(), None);
        assert_eq!(place.read().unwrap().unwrap().text, "a\n");
        // An unbound persisted directory gets the same bytes.
        fs_err::create_dir_all(dir.path().join("persist")).unwrap();
        assert_eq!(place.write("b\n").unwrap(), Some(place.persisted.clone()));
        assert_eq!(fs_err::read_to_string(&place.persisted).unwrap(), "b\n");
        // The same directory (as a bind mount shows it): written once.
        let bound = Place {
            live: dir.path().join("persist/x.nspawn"),
            persisted: dir.path().join("persist/../persist/x.nspawn"),
        };
        assert_eq!(bound.write("c\n").unwrap(), None);
        // Without /etc, the persisted copy is what is read.
        fs_err::remove_file(&place.live).unwrap();
        assert_eq!(place.read().unwrap().unwrap().path, place.persisted);
    }
}
