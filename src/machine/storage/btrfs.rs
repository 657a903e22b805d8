//! btrfs subvolumes and snapshots for the unpacked-image store, through `btrfs` (btrfs-progs):
//! a stored image is a read-only subvolume, a sandbox a writable snapshot of it.

use std::path::Path;

use anyhow::Result;

use crate::machine::host::{Host, Program, run_str};

/// The command lines (without `btrfs`). Pure.
pub fn create_args(path: &Path) -> Vec<String> {
    vec!["subvolume".into(), "create".into(), shown(path)]
}

pub fn snapshot_args(from: &Path, to: &Path) -> Vec<String> {
    vec![
        "subvolume".into(),
        "snapshot".into(),
        shown(from),
        shown(to),
    ]
}

pub fn readonly_args(path: &Path, on: bool) -> Vec<String> {
    vec![
        "property".into(),
        "set".into(),
        "-ts".into(),
        shown(path),
        "ro".into(),
        on.to_string(),
    ]
}

pub fn delete_args(path: &Path) -> Vec<String> {
    vec!["subvolume".into(), "delete".into(), shown(path)]
}

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn run(host: &dyn Host, args: Vec<String>) -> Result<()> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_str(host, Program::Btrfs, &args).map(|_| ())
}

pub fn create(host: &dyn Host, path: &Path) -> Result<()> {
    run(host, create_args(path))
}

/// A writable snapshot of `from` at `to`.
pub fn snapshot(host: &dyn Host, from: &Path, to: &Path) -> Result<()> {
    run(host, snapshot_args(from, to))
}

pub fn set_readonly(host: &dyn Host, path: &Path, on: bool) -> Result<()> {
    run(host, readonly_args(path, on))
}

/// Deletes a (read-only) subvolume.
pub fn delete(host: &dyn Host, path: &Path) -> Result<()> {
    set_readonly(host, path, false)?;
    run(host, delete_args(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_btrfs_progs_spelling() {
        let (a, b) = (Path::new("/s/img"), Path::new("/m/.#web1"));
        assert_eq!(create_args(a).join(" "), "subvolume create /s/img");
        assert_eq!(
            snapshot_args(a, b).join(" "),
            "subvolume snapshot /s/img /m/.#web1"
        );
        assert_eq!(
            readonly_args(a, true).join(" "),
            "property set -ts /s/img ro true"
        );
        assert_eq!(delete_args(a).join(" "), "subvolume delete /s/img");
    }
}
