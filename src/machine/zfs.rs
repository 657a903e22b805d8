//! One ZFS dataset per sandbox when the machines dir is on ZFS, so each sandbox can be
//! snapshotted, sent and destroyed on its own (as TrueNAS users expect).
//!
//! The dataset is `<parent>/NAME`, where `<parent>` is the dataset holding the machines dir
//! (`zfs list -H -o name <machines_dir>`), with its mountpoint set explicitly to
//! `<machines_dir>/NAME` (the machines dir need not be the parent's own mountpoint). The
//! image is unpacked into the mounted, empty dataset; on any failure the dataset is destroyed.
//! Tests set `SANDBOX_ASSUME_ZFS=1` and a recording `$SANDBOX_ZFS`.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::machine::host::{Host, Program, run_str};

/// `statfs(2)` `f_type` of ZFS.
pub const ZFS_SUPER_MAGIC: i64 = 0x2fc1_2fc1;
/// Set to `1` to treat the machines dir as ZFS (tests, with a recording `$SANDBOX_ZFS`).
pub const ASSUME_ZFS_VAR: &str = "SANDBOX_ASSUME_ZFS";

/// Whether `dir` is on ZFS.
pub fn on_zfs(dir: &Path) -> Result<bool> {
    if std::env::var_os(ASSUME_ZFS_VAR).is_some_and(|v| v == "1") {
        return Ok(true);
    }
    let st = rustix::fs::statfs(dir).with_context(|| format!("statfs {}", dir.display()))?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as i64 == ZFS_SUPER_MAGIC)
}

/// The command lines (without `zfs`) that make and remove a sandbox's dataset. Pure.
pub fn create_args(dataset: &str, mountpoint: &Path) -> Vec<String> {
    vec![
        "create".into(),
        "-o".into(),
        format!("mountpoint={}", mountpoint.display()),
        dataset.into(),
    ]
}

pub fn destroy_args(dataset: &str) -> Vec<String> {
    vec!["destroy".into(), "-r".into(), dataset.into()]
}

/// The dataset that holds `machines_dir`.
pub fn parent_dataset(host: &dyn Host, machines_dir: &Path) -> Result<String> {
    let shown = machines_dir.display().to_string();
    let out = run_str(host, Program::Zfs, &["list", "-H", "-o", "name", &shown])
        .with_context(|| format!("finding the ZFS dataset of {shown}"))?;
    let name = out.stdout.lines().next().unwrap_or("").trim().to_string();
    if name.is_empty() || name.contains(char::is_whitespace) {
        bail!(
            "`zfs list -H -o name {shown}` printed no dataset name: {:?}",
            out.stdout
        );
    }
    Ok(name)
}

pub fn create(host: &dyn Host, dataset: &str, mountpoint: &Path) -> Result<()> {
    let args = create_args(dataset, mountpoint);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_str(host, Program::Zfs, &args).map(|_| ())
}

pub fn destroy(host: &dyn Host, dataset: &str) -> Result<()> {
    let args = destroy_args(dataset);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_str(host, Program::Zfs, &args).map(|_| ())
}
