//! Global settings, resolved once before any command runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use super::GlobalArgs;
use crate::paths::{HostPaths, PathInputs, ZFS_DATASET, ZFS_PROPERTY};
use crate::progress::ProgressMode;

pub struct Settings {
    pub paths: HostPaths,
    pub json: bool,
    pub quiet: bool,
    pub progress: ProgressMode,
}

impl Settings {
    pub fn resolve(g: &GlobalArgs) -> Result<Settings> {
        let env_sandboxes_dir = std::env::var_os("SANDBOXES_DIR").map(PathBuf::from);
        // The ZFS property is only read when it could matter: no --root, no explicit dir.
        let zfs_property =
            if g.root.is_none() && g.sandboxes_dir.is_none() && env_sandboxes_dir.is_none() {
                read_zfs_property()
            } else {
                None
            };
        let inputs = PathInputs {
            root: g.root.clone(),
            sandboxes_dir: g.sandboxes_dir.clone(),
            machines_dir: g.machines_dir.clone(),
            env_sandboxes_dir,
            zfs_property,
        };
        Ok(Settings {
            paths: HostPaths::resolve(&inputs),
            json: g.json,
            quiet: g.quiet,
            progress: ProgressMode::new(g.quiet, g.json),
        })
    }

    /// A line for people on stderr, unless -q or --json.
    pub fn say(&self, msg: impl AsRef<str>) {
        if !self.quiet && !self.json {
            eprintln!("{}", msg.as_ref());
        }
    }
}

/// `zfs get -H -o value jip-hop:sandboxes_dir boot-pool`, when a `zfs` command exists.
fn read_zfs_property() -> Option<String> {
    let zfs = find_in_path("zfs")?;
    let out = Command::new(zfs)
        .args(["get", "-H", "-o", "value", ZFS_PROPERTY, ZFS_DATASET])
        .output()
        .ok()?;
    if !out.status.success() {
        tracing::debug!(
            "zfs get {ZFS_PROPERTY} {ZFS_DATASET} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn find_in_path(cmd: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(cmd))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

pub fn init_logging(g: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = match (g.quiet, g.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
