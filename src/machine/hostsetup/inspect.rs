//! Reading what is in place: directories, mount points (`mountpoint -q`), links, the unit,
//! and whether systemd-networkd is enabled. The only reads `setup`, `undo` and `status` make.

use std::ffi::OsStr;
use std::path::Path;

use anyhow::Result;

use super::{
    HostState, ItemState, NETWORK_ETC, NETWORK_FILES, NETWORK_LIB, NetworkFileState,
    PERSIST_DROPINS, PersistItem, SYSTEM_ETC, TEMPLATE_DROPIN, UNIT_NAME, UnitState, host_view,
    persist_dir, persist_items, render_unit,
};
use crate::machine::host::{self, Host, Program};
use crate::paths::HostPaths;

/// Reads what is in place. `exe` is this program as the host sees it (for the unit's text).
pub fn inspect(paths: &HostPaths, host: &dyn Host, exe: &Path) -> Result<HostState> {
    let persist = persist_dir(paths);
    let mut dropins = list_names(&persist.join(PERSIST_DROPINS))?;
    dropins.extend(list_names(&paths.host(SYSTEM_ETC))?);
    dropins.push(TEMPLATE_DROPIN.to_string());
    let mut items = Vec::new();
    for item in persist_items(paths, &dropins) {
        items.push(inspect_item(host, item)?);
    }
    let network_files = NETWORK_FILES
        .iter()
        .map(|name| {
            let path = paths.host(NETWORK_ETC).join(name);
            let lib = Path::new(NETWORK_LIB).join(name);
            NetworkFileState {
                name: name.to_string(),
                shipped: paths.host(NETWORK_LIB).join(name).exists(),
                present: fs_err::symlink_metadata(&path).is_ok(),
                linked_by_us: fs_err::read_link(&path).is_ok_and(|t| t == lib),
                path,
            }
        })
        .collect();
    let root = (paths.root != Path::new("/")).then(|| paths.root.clone());
    let networkd_enabled = networkd_enabled(host, root.as_deref());
    let unit_text = render_unit(
        exe,
        &host_view(&paths.root, &paths.sandboxes_dir),
        &host_view(&paths.root, &paths.machines_dir),
    );
    let unit_path = paths.host(SYSTEM_ETC).join(UNIT_NAME);
    let persisted_path = persist.join(UNIT_NAME);
    let wants_link = paths
        .host(SYSTEM_ETC)
        .join("multi-user.target.wants")
        .join(UNIT_NAME);
    let has_text = |p: &Path| fs_err::read_to_string(p).is_ok_and(|t| t == unit_text);
    let unit = UnitState {
        installed: has_text(&unit_path),
        persisted: has_text(&persisted_path),
        enabled: fs_err::symlink_metadata(&wants_link).is_ok(),
        present: fs_err::symlink_metadata(&unit_path).is_ok(),
        path: unit_path,
        persisted_path,
        wants_link,
    };
    Ok(HostState {
        persist_dir: persist,
        items,
        network_files,
        networkd_enabled,
        unit,
        root,
        unit_text,
    })
}

fn inspect_item(host: &dyn Host, item: PersistItem) -> Result<ItemState> {
    let target_exists = item.target.is_dir();
    let persisted = item.persist.is_dir();
    let bound = target_exists && host::is_mountpoint(host, &item.target);
    let (mut to_move, mut conflicts) = (Vec::new(), Vec::new());
    if !bound {
        let persisted_names = list_names(&item.persist)?;
        for name in list_names(&item.target)? {
            if persisted_names.contains(&name) {
                conflicts.push(name);
            } else {
                to_move.push(name);
            }
        }
    }
    Ok(ItemState {
        item,
        persisted,
        bound,
        target_exists,
        to_move,
        conflicts,
    })
}

/// `systemctl is-enabled systemd-networkd`: "enabled" (or "static"/"alias"/"linked") means
/// yes; a non-zero exit (disabled, masked, not found) means no.
fn networkd_enabled(host: &dyn Host, root: Option<&Path>) -> Option<bool> {
    if !host.available(Program::Systemctl) {
        return None;
    }
    let mut args = systemctl_root(root);
    args.extend(["is-enabled".into(), "systemd-networkd.service".into()]);
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    match host.run(Program::Systemctl, &args) {
        Ok(out) => Some(matches!(
            out.stdout.trim(),
            "enabled" | "enabled-runtime" | "static" | "alias" | "linked" | "indirect"
        )),
        Err(e) => {
            tracing::debug!("{e:#}");
            Some(false)
        }
    }
}

pub(super) fn systemctl_root(root: Option<&Path>) -> Vec<std::ffi::OsString> {
    match root {
        Some(r) => {
            let mut arg = std::ffi::OsString::from("--root=");
            arg.push(r);
            vec![arg]
        }
        None => Vec::new(),
    }
}

/// Sorted entry names of `dir`; empty when it does not exist.
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs_err::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
