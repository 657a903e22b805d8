//! Carrying out a plan: the only place `setup` and `undo` change the host.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::Action;
use super::inspect::systemctl_root;
use crate::machine::host::{Host, Program};

/// Carries out `actions` in order; stops at the first failure (the next `setup` or `undo`
/// plans from whatever was reached).
pub fn execute(host: &dyn Host, actions: &[Action]) -> Result<()> {
    for action in actions {
        tracing::info!("{action}");
        execute_one(host, action).with_context(|| format!("host setup: {action}"))?;
    }
    Ok(())
}

fn execute_one(host: &dyn Host, action: &Action) -> Result<()> {
    match action {
        Action::Mkdir { path, mode } => fs::DirBuilder::new()
            .recursive(true)
            .mode(*mode)
            .create(path)
            .with_context(|| format!("creating {}", path.display())),
        Action::Move { from, to } => move_entry(from, to),
        Action::BindMount { from, to } => {
            host.run(
                Program::Mount,
                &[OsStr::new("--bind"), from.as_os_str(), to.as_os_str()],
            )?;
            Ok(())
        }
        Action::Unmount { path } => {
            host.run(Program::Umount, &[path.as_os_str()])?;
            Ok(())
        }
        Action::Symlink { link, target } => {
            if let Some(parent) = link.parent() {
                fs_err::create_dir_all(parent)?;
            }
            std::os::unix::fs::symlink(target, link)
                .with_context(|| format!("linking {} to {}", link.display(), target.display()))
        }
        Action::WriteFile { path, contents } => {
            if let Some(parent) = path.parent() {
                fs_err::create_dir_all(parent)?;
            }
            crate::atomic::write_file(path, contents.as_bytes())
        }
        Action::RemoveFile { path } => match fs_err::remove_file(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            r => Ok(r?),
        },
        Action::EnableNetworkd { root } => {
            let mut args = systemctl_root(root.as_deref());
            args.push("enable".into());
            // `--now` would start it on the running host, which `--root` is not.
            if root.is_none() {
                args.push("--now".into());
            }
            args.push("systemd-networkd.service".into());
            let args: Vec<&OsStr> = args.iter().map(|a| a.as_os_str()).collect();
            host.run(Program::Systemctl, &args)?;
            Ok(())
        }
        Action::StartMachines => {
            host.run(Program::Systemctl, &[OsStr::new("daemon-reload")])?;
            host.run(
                Program::Systemctl,
                &[
                    OsStr::new("start"),
                    OsStr::new("--no-block"),
                    OsStr::new("machines.target"),
                ],
            )?;
            Ok(())
        }
    }
}

/// Renames one entry into the persisted directory. An immutable rootfs (`pull --read-only`)
/// cannot be renamed, so its flag is lifted for the move and set again. Moving between
/// filesystems (boot pool → data pool) is a copy that could lose owners, xattrs and ACLs of a
/// whole rootfs, so it is refused with what to do instead.
fn move_entry(from: &Path, to: &Path) -> Result<()> {
    if fs_err::symlink_metadata(to).is_ok() {
        bail!("{} already exists; not replacing it", to.display());
    }
    let immutable = fs_err::symlink_metadata(from).is_ok_and(|m| m.is_dir()) && is_immutable(from);
    if immutable {
        crate::machine::materialise::unset_immutable(from)?;
    }
    let renamed = fs_err::rename(from, to);
    let flag_target = if renamed.is_ok() { to } else { from };
    if immutable {
        crate::machine::materialise::set_immutable(flag_target)?;
    }
    match renamed {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => bail!(
            "{} is on another filesystem than {}; move it there yourself (`cp -a` keeps owners \
             and attributes), then run `sandbox host setup` again",
            from.display(),
            to.display()
        ),
        Err(e) => Err(e).with_context(|| format!("moving {} to {}", from.display(), to.display())),
    }
}

fn is_immutable(dir: &Path) -> bool {
    let Ok(fd) = fs::File::open(dir) else {
        return false;
    };
    rustix::fs::ioctl_getflags(&fd).is_ok_and(|f| f.contains(rustix::fs::IFlags::IMMUTABLE))
}
