//! Every host path the tool touches, derived in one place from the global options.
//!
//! Pure: the inputs (options, environment, the ZFS property value) are passed in, so the rules
//! are table-tested without touching the host. `Settings::resolve` in `cli` gathers the inputs.

use std::path::{Path, PathBuf};

/// The inputs that decide where things live.
#[derive(Debug, Clone, Default)]
pub struct PathInputs {
    /// `--root DIR`: every host path below is taken under DIR, as `systemctl --root` does.
    pub root: Option<PathBuf>,
    /// `--sandboxes-dir DIR`.
    pub sandboxes_dir: Option<PathBuf>,
    /// `--machines-dir DIR`.
    pub machines_dir: Option<PathBuf>,
    /// `$SANDBOXES_DIR`.
    pub env_sandboxes_dir: Option<PathBuf>,
    /// The ZFS user property `jip-hop:sandboxes_dir` of `boot-pool`, when it was read
    /// (only without `--root` and when a `zfs` command exists). `-` means unset.
    pub zfs_property: Option<String>,
}

/// Where every host path lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPaths {
    pub root: PathBuf,
    pub sandboxes_dir: PathBuf,
    pub machines_dir: PathBuf,
}

/// The ZFS user property that names the sandboxes dir on TrueNAS SCALE.
pub const ZFS_PROPERTY: &str = "jip-hop:sandboxes_dir";
/// The dataset the property is read from.
pub const ZFS_DATASET: &str = "boot-pool";

impl HostPaths {
    pub fn resolve(inputs: &PathInputs) -> HostPaths {
        let root = inputs.root.clone().unwrap_or_else(|| PathBuf::from("/"));
        let zfs = inputs
            .zfs_property
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty() && *v != "-")
            .map(PathBuf::from);
        let sandboxes_dir = inputs
            .sandboxes_dir
            .clone()
            .or_else(|| {
                inputs
                    .env_sandboxes_dir
                    .clone()
                    .filter(|p| !p.as_os_str().is_empty())
            })
            .or_else(|| if inputs.root.is_none() { zfs } else { None })
            .unwrap_or_else(|| under(&root, "var/lib/sandboxes"));
        let machines_dir = inputs
            .machines_dir
            .clone()
            .unwrap_or_else(|| under(&root, "var/lib/machines"));
        HostPaths {
            root,
            sandboxes_dir,
            machines_dir,
        }
    }

    /// A host path such as `/etc/systemd/nspawn`, taken under `--root`.
    pub fn host(&self, absolute: &str) -> PathBuf {
        under(&self.root, absolute)
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.sandboxes_dir.join("cache")
    }

    pub fn keys_dir(&self) -> PathBuf {
        self.sandboxes_dir.join("keys")
    }

    /// importd's keyrings, in the order systemd reads them.
    pub fn importd_keyrings(&self) -> Vec<PathBuf> {
        [
            "/etc/systemd/import-pubring.pgp",
            "/etc/systemd/import-pubring.gpg",
            "/usr/lib/systemd/import-pubring.pgp",
            "/usr/lib/systemd/import-pubring.gpg",
        ]
        .iter()
        .map(|p| self.host(p))
        .collect()
    }
}

/// `root` joined with `path` taken as relative (a leading `/` does not replace the root).
pub fn under(root: &Path, path: &str) -> PathBuf {
    root.join(path.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Option<PathBuf> {
        Some(PathBuf::from(s))
    }

    #[test]
    fn precedence_of_the_sandboxes_dir() {
        let cases: &[(PathInputs, &str, &str)] = &[
            (
                PathInputs::default(),
                "/var/lib/sandboxes",
                "/var/lib/machines",
            ),
            (
                PathInputs {
                    root: p("/r"),
                    ..Default::default()
                },
                "/r/var/lib/sandboxes",
                "/r/var/lib/machines",
            ),
            (
                PathInputs {
                    zfs_property: Some("/mnt/tank/sandboxes".into()),
                    ..Default::default()
                },
                "/mnt/tank/sandboxes",
                "/var/lib/machines",
            ),
            (
                PathInputs {
                    zfs_property: Some("-".into()),
                    ..Default::default()
                },
                "/var/lib/sandboxes",
                "/var/lib/machines",
            ),
            (
                // With --root the ZFS property of the running host does not apply.
                PathInputs {
                    root: p("/r"),
                    zfs_property: Some("/mnt/x".into()),
                    ..Default::default()
                },
                "/r/var/lib/sandboxes",
                "/r/var/lib/machines",
            ),
            (
                PathInputs {
                    env_sandboxes_dir: p("/env"),
                    zfs_property: Some("/mnt/x".into()),
                    ..Default::default()
                },
                "/env",
                "/var/lib/machines",
            ),
            (
                PathInputs {
                    sandboxes_dir: p("/opt"),
                    env_sandboxes_dir: p("/env"),
                    machines_dir: p("/m"),
                    ..Default::default()
                },
                "/opt",
                "/m",
            ),
        ];
        for (inputs, sandboxes, machines) in cases {
            let paths = HostPaths::resolve(inputs);
            assert_eq!(paths.sandboxes_dir, PathBuf::from(sandboxes), "{inputs:?}");
            assert_eq!(paths.machines_dir, PathBuf::from(machines), "{inputs:?}");
        }
    }

    #[test]
    fn host_paths_stay_under_root() {
        let paths = HostPaths::resolve(&PathInputs {
            root: p("/r"),
            ..Default::default()
        });
        assert_eq!(
            paths.host("/etc/systemd/nspawn"),
            PathBuf::from("/r/etc/systemd/nspawn")
        );
        assert_eq!(
            paths.importd_keyrings()[0],
            PathBuf::from("/r/etc/systemd/import-pubring.pgp")
        );
        assert_eq!(paths.keys_dir(), PathBuf::from("/r/var/lib/sandboxes/keys"));
    }
}
