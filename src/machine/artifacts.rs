//! What on the host belongs to sandbox NAME, and the shape each of those paths must have to be
//! NAME's: pure path computation and classification, no I/O.
//!
//! Paths derived from one name can be another machine's: `x.nspawn` is a valid machine name,
//! so `<machines_dir>/x.nspawn` is either machine `x`'s settings file or machine `x.nspawn`'s
//! root. A path only counts as NAME's when its kind accepts what is there: a settings file is
//! a regular file (or a link to one), never a directory; a root is a directory, never a
//! regular file. Anything else is left alone and named.
//!
//! The one read of the filesystem here is `Shape::at`; everything else is pure.

use std::fs::Metadata;
use std::path::{Path, PathBuf};

use super::hostsetup;
use crate::paths::HostPaths;

/// What a derived path is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The machine's tree (or its persisted copy).
    Root,
    /// A `NAME.nspawn` settings file.
    Settings,
    /// A `systemd-nspawn@NAME.service.d` drop-in directory.
    Dropin,
    /// The `machines.target.wants` link.
    WantsLink,
    /// `<sandboxes_dir>/state/NAME.json`.
    StateRecord,
}

/// One path that may belong to a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub path: PathBuf,
    pub kind: Kind,
}

/// What is found at a path, without following a link; for a link, what it points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Dir,
    File,
    /// A symbolic link; `to` is the shape of its target, `None` when it dangles or loops.
    Link {
        to: Option<LinkTarget>,
    },
    /// A device, socket or FIFO.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkTarget {
    Dir,
    File,
    Other,
}

impl Shape {
    /// `meta` from `symlink_metadata`, `target` from `metadata` (followed) when it is a link.
    pub fn of(meta: &Metadata, target: Option<&Metadata>) -> Shape {
        let t = meta.file_type();
        if t.is_symlink() {
            let to = target.map(|m| {
                if m.is_dir() {
                    LinkTarget::Dir
                } else if m.is_file() {
                    LinkTarget::File
                } else {
                    LinkTarget::Other
                }
            });
            Shape::Link { to }
        } else if t.is_dir() {
            Shape::Dir
        } else if t.is_file() {
            Shape::File
        } else {
            Shape::Other
        }
    }

    /// What is at `path` now; `None` when nothing is.
    pub fn at(path: &Path) -> Option<Shape> {
        let meta = fs_err::symlink_metadata(path).ok()?;
        let target = if meta.file_type().is_symlink() {
            fs_err::metadata(path).ok()
        } else {
            None
        };
        Some(Shape::of(&meta, target.as_ref()))
    }

    fn describe(self) -> &'static str {
        match self {
            Shape::Dir => "a directory",
            Shape::File => "a regular file",
            Shape::Link {
                to: Some(LinkTarget::Dir),
            } => "a link to a directory",
            Shape::Link { .. } => "a link",
            Shape::Other => "a special file",
        }
    }
}

impl Kind {
    /// Whether `shape` can be this kind of artifact. Removing a link never touches its
    /// target, so links are accepted where the target would be.
    pub fn accepts(self, shape: Shape) -> bool {
        use LinkTarget as T;
        match self {
            Kind::Root | Kind::Dropin => matches!(
                shape,
                Shape::Dir
                    | Shape::Link {
                        to: Some(T::Dir) | None
                    }
            ),
            Kind::Settings | Kind::StateRecord => matches!(
                shape,
                Shape::File
                    | Shape::Link {
                        to: Some(T::File) | None
                    }
            ),
            Kind::WantsLink => matches!(shape, Shape::Link { .. } | Shape::File),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Root => "a machine directory",
            Kind::Settings => "a settings file",
            Kind::Dropin => "a drop-in directory",
            Kind::WantsLink => "a unit link",
            Kind::StateRecord => "a state record",
        }
    }
}

/// Why `path` of kind `kind`, found as `shape`, is not the sandbox's; `None` when it is.
pub fn refusal(artifact: &Artifact, shape: Shape) -> Option<String> {
    if artifact.kind.accepts(shape) {
        return None;
    }
    let mut why = format!(
        "{} is {}, not {}",
        artifact.path.display(),
        shape.describe(),
        artifact.kind.describe()
    );
    if artifact.kind == Kind::Settings && matches!(shape, Shape::Dir | Shape::Link { .. }) {
        if let Some(other) = artifact.path.file_name() {
            why.push_str(&format!(
                " (it is the machine `{}`)",
                other.to_string_lossy()
            ));
        }
    }
    Some(why)
}

/// Every path that may belong to sandbox `name`, in the order they are removed: the rootfs
/// first (the biggest and the one that makes it a sandbox), the record last, so an interrupted
/// `rm` can be run again and still finds the sandbox.
///
/// Both `.nspawn` places count (importd puts it next to the image, `build` in
/// `/etc/systemd/nspawn`), and `machines.target.wants/systemd-nspawn@NAME.service` is listed
/// because `machinectl remove` leaves it behind. The persisted copies under
/// `<sandboxes_dir>/persist/` (see `hostsetup`) are listed too: when `host setup` has bound
/// them into place they are the same files, otherwise they would come back at the next setup.
pub fn artifacts(paths: &HostPaths, name: &str) -> Vec<Artifact> {
    let unit = format!("systemd-nspawn@{name}.service");
    let nspawn = format!("{name}.nspawn");
    let persist = hostsetup::persist_dir(paths);
    let a = |path: PathBuf, kind| Artifact { path, kind };
    vec![
        a(paths.machines_dir.join(name), Kind::Root),
        a(
            persist.join(hostsetup::PERSIST_MACHINES).join(name),
            Kind::Root,
        ),
        a(paths.machines_dir.join(&nspawn), Kind::Settings),
        a(
            persist.join(hostsetup::PERSIST_MACHINES).join(&nspawn),
            Kind::Settings,
        ),
        a(
            paths.host("/etc/systemd/nspawn").join(&nspawn),
            Kind::Settings,
        ),
        a(
            persist.join(hostsetup::PERSIST_NSPAWN).join(&nspawn),
            Kind::Settings,
        ),
        a(
            paths.host("/etc/systemd/system").join(format!("{unit}.d")),
            Kind::Dropin,
        ),
        a(
            persist
                .join(hostsetup::PERSIST_DROPINS)
                .join(format!("{unit}.d")),
            Kind::Dropin,
        ),
        a(
            paths
                .host("/etc/systemd/system/machines.target.wants")
                .join(&unit),
            Kind::WantsLink,
        ),
        a(
            persist.join(hostsetup::PERSIST_WANTS).join(&unit),
            Kind::WantsLink,
        ),
        a(
            super::state::state_path(&paths.sandboxes_dir, name),
            Kind::StateRecord,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathInputs;

    fn paths() -> HostPaths {
        HostPaths::resolve(&PathInputs {
            root: Some("/r".into()),
            ..Default::default()
        })
    }

    #[test]
    fn artifacts_stay_in_their_directories() {
        let p = paths();
        let list = artifacts(&p, "web");
        let shown: Vec<String> = list.iter().map(|a| a.path.display().to_string()).collect();
        for want in [
            "/r/var/lib/machines/web",
            "/r/var/lib/machines/web.nspawn",
            "/r/etc/systemd/nspawn/web.nspawn",
            "/r/etc/systemd/system/systemd-nspawn@web.service.d",
            "/r/etc/systemd/system/machines.target.wants/systemd-nspawn@web.service",
            "/r/var/lib/sandboxes/state/web.json",
            "/r/var/lib/sandboxes/persist/machines/web",
        ] {
            assert!(shown.iter().any(|s| s == want), "{want} missing: {shown:?}");
        }
        assert!(shown.iter().all(|s| s.starts_with("/r/")), "{shown:?}");
        assert_eq!(
            shown.last().map(String::as_str),
            Some("/r/var/lib/sandboxes/state/web.json")
        );
    }

    #[test]
    fn one_machines_settings_path_is_never_another_machines_root() {
        let p = paths();
        // `x.nspawn` is x's settings path and x.nspawn's root: only the kind tells them apart.
        let of_x = artifacts(&p, "x");
        let of_x_nspawn = artifacts(&p, "x.nspawn");
        let settings = of_x
            .iter()
            .find(|a| a.path.ends_with("machines/x.nspawn"))
            .unwrap();
        let root = of_x_nspawn
            .iter()
            .find(|a| a.path.ends_with("machines/x.nspawn"))
            .unwrap();
        assert_eq!(settings.path, root.path);
        assert_eq!((settings.kind, root.kind), (Kind::Settings, Kind::Root));
        // A directory there is x.nspawn's, a file is x's; neither is both.
        for shape in [Shape::Dir, Shape::File] {
            assert_ne!(
                settings.kind.accepts(shape),
                root.kind.accepts(shape),
                "{shape:?}"
            );
        }
        let why = refusal(settings, Shape::Dir).unwrap();
        assert!(why.contains("is a directory, not a settings file"), "{why}");
        assert!(why.contains("the machine `x.nspawn`"), "{why}");
        assert!(
            refusal(root, Shape::File)
                .unwrap()
                .contains("not a machine directory")
        );
    }

    #[test]
    fn kinds_accept_their_shapes_and_links_to_them() {
        use LinkTarget as T;
        let link = |to| Shape::Link { to };
        let cases = [
            (Kind::Root, Shape::Dir, true),
            (Kind::Root, link(Some(T::Dir)), true),
            (Kind::Root, Shape::File, false),
            (Kind::Root, link(Some(T::File)), false),
            (Kind::Settings, Shape::File, true),
            (Kind::Settings, link(Some(T::File)), true),
            (Kind::Settings, link(None), true),
            (Kind::Settings, Shape::Dir, false),
            (Kind::Settings, link(Some(T::Dir)), false),
            (Kind::Settings, Shape::Other, false),
            (Kind::Dropin, Shape::Dir, true),
            (Kind::Dropin, Shape::File, false),
            (Kind::WantsLink, link(Some(T::File)), true),
            (Kind::WantsLink, Shape::Dir, false),
            (Kind::StateRecord, Shape::File, true),
            (Kind::StateRecord, Shape::Dir, false),
        ];
        for (kind, shape, want) in cases {
            assert_eq!(kind.accepts(shape), want, "{kind:?} {shape:?}");
        }
    }
}
