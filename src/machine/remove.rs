//! Removing a sandbox: stop and disable it, destroy its ZFS dataset, remove every file the
//! tool or systemd made for it, and its provenance record.
//!
//! The paths come from the name alone (validated first, so nothing can point outside the
//! machines dir), never from the state record: a record edited by hand must not make `rm`
//! delete some other tree. A path is removed only when it has the shape of what it is for
//! (`artifacts`): machine `x`'s settings path `x.nspawn` is never taken for the root of
//! machine `x.nspawn`. The only thing taken from the record is the ZFS dataset, and only
//! when its last component is the sandbox's name.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::artifacts::{self, Artifact, Shape};
use super::host::{self, Host, Program, run_str};
use super::materialise::remove_tree;
use super::name;
use super::state::{self, RecordView};
use crate::paths::HostPaths;

/// The ZFS dataset a record names for `name`, when it names one. Refused unless it looks
/// like a dataset (`pool/…`, no snapshot `@` or bookmark `#`) and ends in `/NAME`, so a
/// tampered record cannot turn `rm NAME` into `zfs destroy -r` of something else.
pub fn zfs_dataset(record: &RecordView, name: &str) -> Result<Option<String>> {
    let Some(ds) = record.zfs_dataset.as_deref() else {
        return Ok(None);
    };
    let ds = ds.trim();
    if ds.is_empty() {
        return Ok(None);
    }
    let ok = !ds.starts_with('/')
        && !ds.contains(['@', '#', ' '])
        && ds
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && ds.rsplit_once('/').is_some_and(|(_, last)| last == name);
    if !ok {
        bail!(
            "the state record of `{name}` names the ZFS dataset `{ds}`, which is not a dataset \
             ending in `/{name}`; refusing to destroy it (remove it with `zfs destroy` yourself)"
        );
    }
    Ok(Some(ds.to_string()))
}

/// What `remove` did.
#[derive(Debug, Clone, Serialize)]
pub struct Removal {
    pub name: String,
    /// `machinectl stop` was run (it was running).
    pub stopped: bool,
    pub zfs_dataset: Option<String>,
    pub removed: Vec<PathBuf>,
    /// Paths derived from the name that hold something else (another machine's root at
    /// `NAME.nspawn`, say): left alone, each with the reason.
    pub kept: Vec<Kept>,
    /// What was not run on the host, and why (no machinectl; under `--root`, nothing that
    /// acts on the running host).
    pub skipped: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Kept {
    pub path: PathBuf,
    pub reason: String,
}

/// What is at `artifact`'s path: `None` when nothing is, else whether it is the sandbox's
/// (`Ok`) or something else's (`Err` with the reason).
fn inspect(artifact: &Artifact) -> Option<Result<(), String>> {
    let shape = Shape::at(&artifact.path)?;
    Some(match artifacts::refusal(artifact, shape) {
        None => Ok(()),
        Some(why) => Err(why),
    })
}

/// Whether anything of sandbox `name` exists; the error names where it looked, and what it
/// found there that is not the sandbox's.
pub fn ensure_exists(paths: &HostPaths, name: &str) -> Result<()> {
    name::validate(name)?;
    let mut others = Vec::new();
    for artifact in artifacts::artifacts(paths, name) {
        match inspect(&artifact) {
            Some(Ok(())) => return Ok(()),
            Some(Err(why)) => others.push(why),
            None => {}
        }
    }
    let mut message = format!(
        "there is no sandbox named `{name}` (nothing at {}, no .nspawn file and no state \
         record in {})",
        paths.machines_dir.join(name).display(),
        state::state_dir(&paths.sandboxes_dir).display()
    );
    for why in others {
        message.push_str(&format!("; {why}"));
    }
    bail!(message)
}

/// Stops, disables and removes sandbox `name`. The caller has asked for confirmation.
pub fn remove(paths: &HostPaths, host: &dyn Host, name: &str) -> Result<Removal> {
    ensure_exists(paths, name)?;
    // A damaged record must not keep a sandbox from being removed: it goes with the rest.
    let record = state::read_view(&paths.sandboxes_dir, name).unwrap_or_else(|e| {
        tracing::warn!("{e:#}; removing it anyway");
        None
    });
    let dataset = match &record {
        Some(r) => zfs_dataset(r, name)?,
        None => None,
    };

    let mut stopped = false;
    let mut skipped = Vec::new();
    if !host.available(Program::Machinectl) {
        skipped.push(format!(
            "machinectl stop/disable {name}: {}",
            host.unavailable(Program::Machinectl)
        ));
    }
    if host::running_machines(host).is_some_and(|running| running.contains(name)) {
        match run_str(host, Program::Machinectl, &["stop", name]) {
            Ok(_) => stopped = true,
            // It may have stopped between `list` and `stop`.
            Err(e) if is_not_running(&format!("{e:#}")) => {
                tracing::info!("{name} was not running any more: {e:#}")
            }
            Err(e) => return Err(e).context(format!("stopping {name} before removing it")),
        }
    }
    if host.available(Program::Machinectl)
        && let Err(e) = run_str(host, Program::Machinectl, &["disable", name])
    {
        // Nothing depends on it: the wants link it would remove is removed below anyway.
        tracing::warn!("could not disable {name} (continuing): {e:#}");
    }
    match &dataset {
        Some(ds) if !host.available(Program::Zfs) => skipped.push(format!(
            "zfs destroy -r {ds}: {} (the dataset stays)",
            host.unavailable(Program::Zfs)
        )),
        Some(ds) => {
            run_str(host, Program::Zfs, &["destroy", "-r", ds])
                .with_context(|| format!("destroying the ZFS dataset of {name}"))?;
        }
        None => {}
    }
    for why in &skipped {
        tracing::warn!("skipped {why}");
    }

    let mut removed = Vec::new();
    let mut kept = Vec::new();
    for artifact in artifacts::artifacts(paths, name) {
        match inspect(&artifact) {
            None => continue,
            Some(Err(reason)) => {
                tracing::warn!("leaving {}: {reason}", artifact.path.display());
                kept.push(Kept {
                    path: artifact.path,
                    reason,
                });
                continue;
            }
            Some(Ok(())) => {}
        }
        let path = artifact.path;
        // A drop-in dir bound into place by `host setup` is a mount point: unmount it first,
        // or removing it fails with EBUSY after emptying the persisted copy.
        if path.is_dir() && host::is_mountpoint(host, &path) {
            let arg = path.display().to_string();
            run_str(host, Program::Umount, &[&arg])
                .with_context(|| format!("unmounting {arg} before removing it"))?;
        }
        let in_machines_dir = path.parent() == Some(paths.machines_dir.as_path());
        let real_dir = fs_err::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        if artifact.kind == artifacts::Kind::Root
            && in_machines_dir
            && real_dir
            && !host::is_mountpoint(host, &path)
        {
            // Out of its name first (one rename), then removed: a kill half-way leaves a
            // staging tree that the next command under the machine's lock sweeps, never a
            // half-removed tree under the name.
            let doomed = staging_name(&paths.machines_dir, name);
            super::materialise::unset_immutable(&path)?;
            fs_err::rename(&path, &doomed)
                .with_context(|| format!("moving {} out of its name", path.display()))?;
            remove_tree(&doomed)?;
        } else {
            remove_tree(&path)?;
        }
        crate::faultpoint::reached("rm.removed");
        removed.push(path);
    }
    Ok(Removal {
        name: name.to_string(),
        stopped,
        zfs_dataset: dataset,
        removed,
        kept,
        skipped,
    })
}

/// A staging name in `machines_dir` for machine `name` (`.#NAME<random>`, as a pull's).
fn staging_name(machines_dir: &std::path::Path, name: &str) -> PathBuf {
    machines_dir.join(format!(".#{name}{:08x}", rand::random::<u32>()))
}

/// machinectl's wording when the machine is already gone.
fn is_not_running(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("not running") || m.contains("no machine") || m.contains("not loaded")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(v: serde_json::Value) -> RecordView {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn only_a_dataset_named_after_the_sandbox_is_destroyed() {
        let ok = json!({"zfs_dataset": "tank/sandboxes/web"});
        assert_eq!(
            zfs_dataset(&view(ok.clone()), "web").unwrap().as_deref(),
            Some("tank/sandboxes/web")
        );
        assert_eq!(zfs_dataset(&view(json!({})), "web").unwrap(), None);
        assert_eq!(
            zfs_dataset(&view(json!({"zfs_dataset": null})), "web").unwrap(),
            None
        );
        for bad in [
            "tank",
            "tank/other",
            "/tank/web",
            "tank/web@snap",
            "tank//web",
            "tank/../web",
            "tank/x web",
        ] {
            let err = zfs_dataset(&view(json!({ "zfs_dataset": bad })), "web").unwrap_err();
            assert!(err.to_string().contains("refusing"), "{bad}: {err}");
        }
    }

    #[test]
    fn not_running_wording() {
        assert!(is_not_running("Machine web not running."));
        assert!(is_not_running("No machine 'web' known"));
        assert!(!is_not_running("Access denied"));
    }
}
