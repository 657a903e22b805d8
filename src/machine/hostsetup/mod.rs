//! `sandbox host setup|undo|status`: make a TrueNAS SCALE host keep its sandboxes across
//! upgrades, and let systemd-networkd serve the containers' network links.
//!
//! A SCALE upgrade replaces the boot pool, and with it `/etc` and `/var/lib/machines`. So the
//! directories systemd-nspawn and machinectl use are kept on the data pool, under
//! `<sandboxes_dir>/persist/`, and bind-mounted into place:
//!
//! | persisted as                         | bound onto                                          |
//! |--------------------------------------|-----------------------------------------------------|
//! | `persist/machines`                   | the machines dir (`/var/lib/machines`)              |
//! | `persist/nspawn`                     | `/etc/systemd/nspawn`                               |
//! | `persist/machines.target.wants`      | `/etc/systemd/system/machines.target.wants`         |
//! | `persist/dropins/systemd-nspawn@*.service.d` | `/etc/systemd/system/` (one bind per directory) |
//!
//! Drop-in directories are per sandbox, so there is no single directory to bind: every
//! `systemd-nspawn@*.service.d` found in `/etc/systemd/system` or in `persist/dropins` is
//! persisted and bound on its own, including the template-wide `systemd-nspawn@.service.d`
//! (always created, so there is one place for settings that apply to every sandbox). A
//! drop-in made after `setup` stays in `/etc` until `setup` runs again, which the boot unit and
//! the TrueNAS post-init script do.
//!
//! Networking: `80-container-{ve,vz,vb}.network` from `/usr/lib/systemd/network` are linked
//! into `/etc/systemd/network`, and systemd-networkd is enabled when it is not.
//!
//! Re-applying at boot: `setup` writes `sandboxes-host.service` (which runs `sandbox host setup`)
//! into `/etc/systemd/system` and enables it, and keeps a copy in `persist/`, because `/etc`
//! does not survive an upgrade; on TrueNAS `sandbox host setup` is added as a post-init script.
//!
//! The work is split the same way everywhere here: `inspect` reads the host into a `HostState`
//! (the only I/O apart from `execute`), `plan_setup` / `plan_undo` turn that state into a list
//! of `Action`s (pure, table-tested), `execute` carries them out. `status` prints the state, and
//! a second `setup` is idempotent because it plans from what is already in place.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::paths::HostPaths;

pub const PERSIST_MACHINES: &str = "machines";
pub const PERSIST_NSPAWN: &str = "nspawn";
pub const PERSIST_WANTS: &str = "machines.target.wants";
pub const PERSIST_DROPINS: &str = "dropins";
pub const UNIT_NAME: &str = "sandboxes-host.service";
/// The template-wide drop-in directory, created by `setup`.
pub const TEMPLATE_DROPIN: &str = "systemd-nspawn@.service.d";
/// systemd's container network files: veth (`-n`), zones (`--network-zone`), bridges.
pub const NETWORK_FILES: [&str; 3] = [
    "80-container-ve.network",
    "80-container-vz.network",
    "80-container-vb.network",
];
pub(crate) const NETWORK_LIB: &str = "/usr/lib/systemd/network";
pub(crate) const NETWORK_ETC: &str = "/etc/systemd/network";
pub(crate) const SYSTEM_ETC: &str = "/etc/systemd/system";

/// `<sandboxes_dir>/persist`.
pub fn persist_dir(paths: &HostPaths) -> PathBuf {
    paths.sandboxes_dir.join("persist")
}

/// `systemd-nspawn@NAME.service.d` (NAME may be empty: the template-wide one).
pub fn is_dropin_dir_name(name: &str) -> bool {
    name.starts_with("systemd-nspawn@") && name.ends_with(".service.d")
}

/// One directory kept on the data pool and bound into place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersistItem {
    /// Short name for people: `machines`, `nspawn`, `machines.target.wants`, or the drop-in
    /// directory's name.
    pub label: String,
    /// Where systemd looks for it (under `--root`).
    pub target: PathBuf,
    /// Where it is kept.
    pub persist: PathBuf,
}

/// The directories to persist, given the drop-in directory names found (pure).
/// The machines dir is left out when it already lives under the sandboxes dir (given with
/// `--machines-dir`): it needs no binding then.
pub fn persist_items(paths: &HostPaths, dropins: &[String]) -> Vec<PersistItem> {
    let persist = persist_dir(paths);
    let mut items = Vec::new();
    if !paths.machines_dir.starts_with(&paths.sandboxes_dir) {
        items.push(PersistItem {
            label: PERSIST_MACHINES.into(),
            target: paths.machines_dir.clone(),
            persist: persist.join(PERSIST_MACHINES),
        });
    }
    items.push(PersistItem {
        label: PERSIST_NSPAWN.into(),
        target: paths.host("/etc/systemd/nspawn"),
        persist: persist.join(PERSIST_NSPAWN),
    });
    items.push(PersistItem {
        label: PERSIST_WANTS.into(),
        target: paths.host(SYSTEM_ETC).join(PERSIST_WANTS),
        persist: persist.join(PERSIST_WANTS),
    });
    let mut names: Vec<&String> = dropins.iter().filter(|n| is_dropin_dir_name(n)).collect();
    names.sort();
    names.dedup();
    for name in names {
        items.push(PersistItem {
            label: name.clone(),
            target: paths.host(SYSTEM_ETC).join(name),
            persist: persist.join(PERSIST_DROPINS).join(name),
        });
    }
    items
}

/// What is in place for one persisted directory.
#[derive(Debug, Clone, Serialize)]
pub struct ItemState {
    #[serde(flatten)]
    pub item: PersistItem,
    /// The persisted directory exists.
    pub persisted: bool,
    /// The target is a mount point (`mountpoint -q`).
    pub bound: bool,
    pub target_exists: bool,
    /// Entries of the target that the persisted directory lacks (moved in by `setup`).
    pub to_move: Vec<String>,
    /// Entries in both places while not bound: the persisted one wins, the other is hidden.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NetworkFileState {
    pub name: String,
    /// `/etc/systemd/network/NAME` (under `--root`).
    pub path: PathBuf,
    /// The host ships `/usr/lib/systemd/network/NAME`.
    pub shipped: bool,
    /// Something is at `path` (our link, a copy, or the admin's own file).
    pub present: bool,
    /// `path` is a symlink to the shipped file: `setup` made it, `undo` removes it.
    pub linked_by_us: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitState {
    /// `/etc/systemd/system/sandboxes-host.service`.
    pub path: PathBuf,
    pub persisted_path: PathBuf,
    pub wants_link: PathBuf,
    /// The unit in `/etc` has exactly the wanted text.
    pub installed: bool,
    pub persisted: bool,
    pub enabled: bool,
    /// Present in `/etc` at all (with any text): `undo` removes it.
    pub present: bool,
}

/// Everything `status` shows and the plans are made from.
#[derive(Debug, Clone, Serialize)]
pub struct HostState {
    pub persist_dir: PathBuf,
    pub items: Vec<ItemState>,
    pub network_files: Vec<NetworkFileState>,
    /// `None`: systemctl is missing or could not tell.
    pub networkd_enabled: Option<bool>,
    pub unit: UnitState,
    /// `--root` other than `/`: systemctl gets `--root` and nothing is started.
    #[serde(skip)]
    pub root: Option<PathBuf>,
    #[serde(skip)]
    pub unit_text: String,
}

/// One step of `setup` or `undo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Creates a directory (and its parents) with `mode`.
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// Rename `from` to `to` (an entry of a target into its persisted directory).
    Move {
        from: PathBuf,
        to: PathBuf,
    },
    BindMount {
        from: PathBuf,
        to: PathBuf,
    },
    Unmount {
        path: PathBuf,
    },
    Symlink {
        link: PathBuf,
        target: PathBuf,
    },
    WriteFile {
        path: PathBuf,
        contents: String,
    },
    /// Removes a file or symlink (never a directory).
    RemoveFile {
        path: PathBuf,
    },
    EnableNetworkd {
        root: Option<PathBuf>,
    },
    /// `systemctl daemon-reload` and `systemctl start --no-block machines.target`: on the
    /// running host only. After an upgrade systemd has read the empty `/etc` at boot, so the
    /// drop-ins and `machines.target.wants` bound in later are unknown to it and no sandbox
    /// would start until the next boot.
    StartMachines,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Mkdir { path, .. } => write!(f, "create {}", path.display()),
            Action::Move { from, to } => {
                write!(f, "move {} to {}", from.display(), to.display())
            }
            Action::BindMount { from, to } => {
                write!(f, "bind {} onto {}", from.display(), to.display())
            }
            Action::Unmount { path } => write!(f, "unmount {}", path.display()),
            Action::Symlink { link, target } => {
                write!(f, "link {} -> {}", link.display(), target.display())
            }
            Action::WriteFile { path, .. } => write!(f, "write {}", path.display()),
            Action::RemoveFile { path } => write!(f, "remove {}", path.display()),
            Action::EnableNetworkd { .. } => write!(f, "enable systemd-networkd"),
            Action::StartMachines => write!(f, "reload systemd and start machines.target"),
        }
    }
}

/// The boot unit's text (pure). `exe`, `sandboxes_dir` and `machines_dir` are as the running
/// host sees them (not under `--root`).
pub fn render_unit(exe: &Path, sandboxes_dir: &Path, machines_dir: &Path) -> String {
    format!(
        "# Written by `sandbox host setup`; a copy is kept in {persist}.\n\
         [Unit]\n\
         Description=Bind the sandboxes' persisted systemd-nspawn state into place\n\
         RequiresMountsFor={sandboxes}\n\
         After=local-fs.target zfs-mount.service\n\
         Before=machines.target systemd-networkd.service\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={exe} --sandboxes-dir {sandboxes} --machines-dir {machines} host setup\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n",
        persist = quote(&sandboxes_dir.join("persist")),
        sandboxes = quote(sandboxes_dir),
        machines = quote(machines_dir),
        exe = quote(exe),
    )
}

/// systemd's quoting for one word of `ExecStart=`.
fn quote(p: &Path) -> String {
    let s = p.display().to_string();
    if s.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        s
    }
}

/// `path` as the host sees it when everything is taken under `root`.
pub fn host_view(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(root) {
        Ok(rel) => Path::new("/").join(rel),
        Err(_) => path.to_path_buf(),
    }
}

/// The steps that bring the host to the set-up state (pure). Empty when all is in place.
pub fn plan_setup(state: &HostState) -> Vec<Action> {
    let mut actions = Vec::new();
    for s in &state.items {
        if s.bound {
            continue;
        }
        // Machines are kept 0700, as systemd makes /var/lib/machines: a rootfs holds setuid
        // binaries that no other user on the host should reach.
        let mode = if s.item.label == PERSIST_MACHINES {
            0o700
        } else {
            0o755
        };
        if !s.persisted {
            actions.push(Action::Mkdir {
                path: s.item.persist.clone(),
                mode,
            });
        }
        if !s.target_exists {
            actions.push(Action::Mkdir {
                path: s.item.target.clone(),
                mode,
            });
        }
        for entry in &s.to_move {
            actions.push(Action::Move {
                from: s.item.target.join(entry),
                to: s.item.persist.join(entry),
            });
        }
        actions.push(Action::BindMount {
            from: s.item.persist.clone(),
            to: s.item.target.clone(),
        });
    }
    for n in &state.network_files {
        if n.shipped && !n.present {
            actions.push(Action::Symlink {
                link: n.path.clone(),
                target: Path::new(NETWORK_LIB).join(&n.name),
            });
        }
    }
    if state.networkd_enabled == Some(false) {
        actions.push(Action::EnableNetworkd {
            root: state.root.clone(),
        });
    }
    let u = &state.unit;
    if !u.persisted || !u.installed {
        for (path, done) in [(&u.persisted_path, u.persisted), (&u.path, u.installed)] {
            if !done {
                actions.push(Action::WriteFile {
                    path: path.clone(),
                    contents: state.unit_text.clone(),
                });
            }
        }
    }
    if !u.enabled {
        actions.push(Action::Symlink {
            link: u.wants_link.clone(),
            target: Path::new(SYSTEM_ETC).join(UNIT_NAME),
        });
    }
    let bound_something = actions
        .iter()
        .any(|a| matches!(a, Action::BindMount { .. }));
    if bound_something && state.root.is_none() {
        actions.push(Action::StartMachines);
    }
    actions
}

/// The steps that take back what `setup` added (pure). The persisted data stays where it is;
/// systemd-networkd stays enabled (it may have been enabled before, and it harms nothing).
pub fn plan_undo(state: &HostState) -> Vec<Action> {
    let mut actions = Vec::new();
    // Drop-ins first, the machines dir last: the reverse of the order they were bound in.
    for s in state.items.iter().rev() {
        if s.bound {
            actions.push(Action::Unmount {
                path: s.item.target.clone(),
            });
        }
    }
    for n in &state.network_files {
        if n.linked_by_us {
            actions.push(Action::RemoveFile {
                path: n.path.clone(),
            });
        }
    }
    if state.unit.enabled {
        actions.push(Action::RemoveFile {
            path: state.unit.wants_link.clone(),
        });
    }
    if state.unit.present {
        actions.push(Action::RemoveFile {
            path: state.unit.path.clone(),
        });
    }
    actions
}

mod execute;
mod inspect;

pub use execute::execute;
pub use inspect::inspect;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::PathInputs;

    fn paths() -> HostPaths {
        HostPaths::resolve(&PathInputs {
            root: Some("/r".into()),
            sandboxes_dir: Some("/r/mnt/tank/sandboxes".into()),
            ..Default::default()
        })
    }

    fn fresh(paths: &HostPaths) -> HostState {
        let items = persist_items(paths, &[TEMPLATE_DROPIN.into(), "unrelated.d".into()])
            .into_iter()
            .map(|item| ItemState {
                item,
                persisted: false,
                bound: false,
                target_exists: true,
                to_move: vec!["a".into()],
                conflicts: vec![],
            })
            .collect();
        let unit_path = paths.host("/etc/systemd/system").join(UNIT_NAME);
        HostState {
            persist_dir: persist_dir(paths),
            items,
            network_files: vec![NetworkFileState {
                name: NETWORK_FILES[0].into(),
                path: paths.host(NETWORK_ETC).join(NETWORK_FILES[0]),
                shipped: true,
                present: false,
                linked_by_us: false,
            }],
            networkd_enabled: Some(false),
            unit: UnitState {
                path: unit_path.clone(),
                persisted_path: persist_dir(paths).join(UNIT_NAME),
                wants_link: paths.host("/etc/systemd/system/multi-user.target.wants/x"),
                installed: false,
                persisted: false,
                enabled: false,
                present: false,
            },
            root: Some("/r".into()),
            unit_text: "unit".into(),
        }
    }

    #[test]
    fn items_cover_the_nspawn_directories_and_only_dropins() {
        let p = paths();
        let labels: Vec<String> = persist_items(&p, &["x".into(), TEMPLATE_DROPIN.into()])
            .into_iter()
            .map(|i| format!("{} {} {}", i.label, i.target.display(), i.persist.display()))
            .collect();
        assert_eq!(
            labels,
            [
                "machines /r/var/lib/machines /r/mnt/tank/sandboxes/persist/machines",
                "nspawn /r/etc/systemd/nspawn /r/mnt/tank/sandboxes/persist/nspawn",
                "machines.target.wants /r/etc/systemd/system/machines.target.wants \
                 /r/mnt/tank/sandboxes/persist/machines.target.wants",
                "systemd-nspawn@.service.d /r/etc/systemd/system/systemd-nspawn@.service.d \
                 /r/mnt/tank/sandboxes/persist/dropins/systemd-nspawn@.service.d",
            ]
        );
        // A machines dir already on the data pool is not bound.
        let mut on_pool = p.clone();
        on_pool.machines_dir = p.sandboxes_dir.join("machines");
        assert!(
            persist_items(&on_pool, &[])
                .iter()
                .all(|i| i.label != "machines")
        );
    }

    #[test]
    fn a_fresh_host_gets_every_step_and_a_set_up_one_none() {
        let p = paths();
        let mut state = fresh(&p);
        let plan = plan_setup(&state);
        let binds = plan
            .iter()
            .filter(|a| matches!(a, Action::BindMount { .. }))
            .count();
        assert_eq!(binds, 4, "{plan:#?}");
        assert!(plan.contains(&Action::Move {
            from: p.machines_dir.join("a"),
            to: persist_dir(&p).join("machines/a"),
        }));
        assert!(plan.contains(&Action::EnableNetworkd {
            root: Some("/r".into())
        }));
        // Under --root nothing is started; on the running host the machines are.
        assert!(!plan.contains(&Action::StartMachines));
        let live = HostState {
            root: None,
            ..state.clone()
        };
        assert_eq!(plan_setup(&live).last(), Some(&Action::StartMachines));
        // Every move comes before the bind that would hide its source.
        let first_bind = plan
            .iter()
            .position(|a| matches!(a, Action::BindMount { .. }));
        let first_move = plan.iter().position(|a| matches!(a, Action::Move { .. }));
        assert!(first_move < first_bind);

        for s in &mut state.items {
            s.bound = true;
            s.persisted = true;
        }
        state.network_files[0].present = true;
        state.networkd_enabled = Some(true);
        state.unit.installed = true;
        state.unit.persisted = true;
        state.unit.enabled = true;
        assert_eq!(plan_setup(&state), Vec::<Action>::new());
        // Undo unmounts in reverse order and leaves a file it did not link alone.
        let undo = plan_undo(&state);
        assert_eq!(
            undo.first(),
            Some(&Action::Unmount {
                path: p.host("/etc/systemd/system/systemd-nspawn@.service.d")
            })
        );
        assert!(
            !undo.iter().any(
                |a| matches!(a, Action::RemoveFile { path } if path.ends_with(NETWORK_FILES[0]))
            )
        );
    }

    #[test]
    fn unit_runs_setup_with_the_host_paths() {
        let text = render_unit(
            Path::new("/mnt/tank/bin/sandbox"),
            Path::new("/mnt/tank/sand boxes"),
            Path::new("/var/lib/machines"),
        );
        assert!(
            text.contains(
                "ExecStart=/mnt/tank/bin/sandbox --sandboxes-dir \"/mnt/tank/sand boxes\" \
             --machines-dir /var/lib/machines host setup\n"
            ),
            "{text}"
        );
        assert!(text.contains("Before=machines.target"));
        assert_eq!(
            host_view(Path::new("/r"), Path::new("/r/var/lib/x")),
            PathBuf::from("/var/lib/x")
        );
    }
}
