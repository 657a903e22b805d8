//! Layering a `BuildPlan` onto an unpacked rootfs, and the fix-ups a booting systemd-nspawn
//! guest needs that images do not always ship. Every write goes through `unpack::Root`, so a
//! hostile image cannot make the build write outside its rootfs (a planted
//! `etc/machine-id -> /etc/shadow` symlink is replaced, never written through).
//!
//! The fix-ups, in order, each only when needed (the decisions are pure, below):
//! - `/etc/machine-id` empty: systemd then takes the id systemd-nspawn passes in (the
//!   machine's UUID), so two sandboxes from one image never share an id;
//! - `/etc/hostname` holds the machine name: systemd in the guest sets the hostname from it at
//!   boot, over the one systemd-nspawn gives (`--machine=NAME`), and debootstrap copies the
//!   build host's name into the images it makes;
//! - `/etc/resolv.conf` not a dangling symlink: systemd-nspawn (`--resolv-conf=auto`) leaves
//!   the file alone when the network is private, so the guest must own a writable file. A
//!   symlink into `/run/systemd/resolve/` is kept when the image has systemd-resolved (which
//!   creates the target at boot); any other dangling symlink becomes an empty regular file,
//!   which DHCP clients and cloud-init fill in;
//! - `/etc/securetty`, when present, lists `pts/0`…`pts/9`: `machinectl login` comes in on a
//!   pseudo-terminal, which `pam_securetty` would refuse for root;
//! - `systemd-networkd` enabled when the sandbox has a virtual Ethernet link (the default
//!   `--network-veth`, `Bridge=` or `Zone=`) and the image has the unit: the guest then
//!   configures `host0` with the unit's own `80-container-host0.network` (DHCP).
//!
//! The templates' files are written after the fix-ups, so a template's own
//! `files/etc/resolv.conf` wins.

use std::path::Path;

use anyhow::{Context, Result};

use crate::template::ini;
use crate::template::library::Content;
use crate::template::plan::{Base, BuildPlan};
use crate::unpack::Root;
use crate::unpack::root::Existing;

/// Where an image keeps systemd's units; `lib` is often a symlink to `usr/lib`.
const UNIT_DIRS: [&str; 2] = ["usr/lib/systemd/system", "lib/systemd/system"];
const SECURETTY: &str = "etc/securetty";
const RESOLV_CONF: &str = "etc/resolv.conf";
const MACHINE_ID: &str = "etc/machine-id";
const HOSTNAME: &str = "etc/hostname";
const NETWORKD_WANTS: &str = "etc/systemd/system/multi-user.target.wants/systemd-networkd.service";
const NETWORKD_SOCKET_WANTS: &str =
    "etc/systemd/system/sockets.target.wants/systemd-networkd.socket";

/// What layering did to the rootfs beyond the plan's files, for the build's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixupReport {
    pub notes: Vec<String>,
}

/// Removes the plan's paths, applies the fix-ups, then writes the plan's rootfs files.
pub fn layer(root: &Root, plan: &BuildPlan) -> Result<FixupReport> {
    // Absolute symlinks in parents (`var/run -> /run`) resolve inside the root, as the guest
    // sees them; never outside it.
    root.set_absolute_symlinks_in_root(true);
    for path in &plan.remove {
        root.remove_all(Path::new(path))
            .with_context(|| format!("removing /{path} from the rootfs"))?;
    }
    let mut report = FixupReport::default();
    fix_machine_id(root, &mut report)?;
    fix_hostname(root, &plan.machine, &mut report)?;
    fix_resolv_conf(root, &mut report)?;
    fix_securetty(root, &mut report)?;
    let nspawn = plan
        .files
        .iter()
        .find(|f| f.base == Base::Host && f.path.ends_with(".nspawn"))
        .and_then(|f| match &f.content {
            Content::Bytes(b) => std::str::from_utf8(b).ok(),
            Content::Symlink(_) => None,
        })
        .unwrap_or("");
    if has_veth(nspawn) {
        enable_networkd(root, &mut report)?;
    }
    for f in plan.files.iter().filter(|f| f.base == Base::Rootfs) {
        let rel = Path::new(&f.path);
        match &f.content {
            Content::Bytes(bytes) => root.write_file(rel, f.mode, bytes),
            Content::Symlink(target) => root.write_symlink(rel, target.as_bytes()),
        }
        .with_context(|| format!("writing /{} into the rootfs", f.path))?;
    }
    Ok(report)
}

fn fix_machine_id(root: &Root, report: &mut FixupReport) -> Result<()> {
    let rel = Path::new(MACHINE_ID);
    if root.read_file(rel, 1)?.is_some_and(|b| b.is_empty()) {
        return Ok(());
    }
    root.write_file(rel, 0o444, b"")
        .context("emptying /etc/machine-id")?;
    report.notes.push("/etc/machine-id emptied".into());
    Ok(())
}

fn fix_hostname(root: &Root, name: &str, report: &mut FixupReport) -> Result<()> {
    let rel = Path::new(HOSTNAME);
    let current = root.read_file(rel, 4096)?;
    if current
        .as_deref()
        .is_some_and(|b| String::from_utf8_lossy(b).trim() == name)
    {
        return Ok(());
    }
    root.write_file(rel, 0o644, format!("{name}\n").as_bytes())
        .context("writing /etc/hostname")?;
    report.notes.push(format!("/etc/hostname set to {name}"));
    Ok(())
}

fn unit_exists(root: &Root, unit: &str) -> Result<Option<String>> {
    for dir in UNIT_DIRS {
        let path = format!("{dir}/{unit}");
        if root
            .lookup_in_root(Path::new(&path))?
            .is_some_and(|m| m.is_file())
        {
            return Ok(Some(format!("/{path}")));
        }
    }
    Ok(None)
}

/// What to do about `/etc/resolv.conf`, given what is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvAction {
    Keep,
    /// Write an empty regular file (missing, or a symlink leading nowhere).
    EmptyFile,
}

/// Pure: `existing` is what is at the path, `target_exists` whether a symlink's target
/// resolves inside the root, `has_resolved` whether the image ships systemd-resolved.
pub fn resolv_action(existing: &Existing, target_exists: bool, has_resolved: bool) -> ResolvAction {
    match existing {
        Existing::Missing => ResolvAction::EmptyFile,
        Existing::Symlink(_) if target_exists => ResolvAction::Keep,
        Existing::Symlink(target)
            if has_resolved
                && String::from_utf8_lossy(target)
                    .trim_start_matches("../")
                    .trim_start_matches('/')
                    .starts_with("run/systemd/resolve/") =>
        {
            ResolvAction::Keep
        }
        Existing::Symlink(_) => ResolvAction::EmptyFile,
        Existing::File | Existing::Dir | Existing::Other => ResolvAction::Keep,
    }
}

fn fix_resolv_conf(root: &Root, report: &mut FixupReport) -> Result<()> {
    let rel = Path::new(RESOLV_CONF);
    let existing = root.inspect(rel)?;
    let target_exists = root.lookup_in_root(rel)?.is_some();
    let has_resolved = unit_exists(root, "systemd-resolved.service")?.is_some();
    if resolv_action(&existing, target_exists, has_resolved) == ResolvAction::EmptyFile {
        root.write_file(rel, 0o644, b"")
            .context("replacing /etc/resolv.conf")?;
        report.notes.push(match existing {
            Existing::Symlink(t) => format!(
                "/etc/resolv.conf was a dangling symlink to {}; now an empty file",
                String::from_utf8_lossy(&t)
            ),
            _ => "/etc/resolv.conf created (empty)".into(),
        });
    }
    Ok(())
}

/// Pure: `text` with `pts/0`…`pts/9` appended where missing; `None` when nothing is missing.
pub fn securetty_with_pts(text: &str) -> Option<String> {
    let have: std::collections::BTreeSet<&str> = text.lines().map(str::trim).collect();
    let missing: Vec<String> = (0..10)
        .map(|i| format!("pts/{i}"))
        .filter(|p| !have.contains(p.as_str()))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str("# sandbox build: machinectl login comes in on a pseudo-terminal\n");
    for p in missing {
        out.push_str(&p);
        out.push('\n');
    }
    Some(out)
}

fn fix_securetty(root: &Root, report: &mut FixupReport) -> Result<()> {
    let rel = Path::new(SECURETTY);
    let Some(bytes) = root.read_file(rel, 1 << 20)? else {
        return Ok(());
    };
    if let Some(text) = securetty_with_pts(&String::from_utf8_lossy(&bytes)) {
        root.write_file(rel, 0o644, text.as_bytes())
            .context("adding pts/0…pts/9 to /etc/securetty")?;
        report
            .notes
            .push("/etc/securetty: pts/0…pts/9 added".into());
    }
    Ok(())
}

/// Pure: whether the sandbox gets a virtual Ethernet link, from its rendered `.nspawn`. The
/// default drop-in passes `--network-veth`; `--settings=override` lets the file turn it off
/// (`VirtualEthernet=no`), and `Bridge=` or `Zone=` imply a link whatever it says.
pub fn has_veth(nspawn: &str) -> bool {
    let Ok(assignments) = ini::parse(nspawn, "NAME.nspawn") else {
        return true;
    };
    let last = |key: &str| {
        assignments
            .iter()
            .rev()
            .find(|a| a.section == "Network" && a.key == key)
            .map(|a| a.value.trim().to_ascii_lowercase())
    };
    if last("Bridge").is_some_and(|v| !v.is_empty()) || last("Zone").is_some_and(|v| !v.is_empty())
    {
        return true;
    }
    !matches!(
        last("VirtualEthernet").as_deref(),
        Some("no" | "false" | "off" | "0")
    )
}

fn enable_networkd(root: &Root, report: &mut FixupReport) -> Result<()> {
    let Some(unit) = unit_exists(root, "systemd-networkd.service")? else {
        return Ok(());
    };
    let mut enabled = false;
    if root.inspect(Path::new(NETWORKD_WANTS))? == Existing::Missing {
        root.write_symlink(Path::new(NETWORKD_WANTS), unit.as_bytes())
            .context("enabling systemd-networkd")?;
        enabled = true;
    }
    // The unit's [Install] has Also=systemd-networkd.socket.
    if let Some(socket) = unit_exists(root, "systemd-networkd.socket")?
        && root.inspect(Path::new(NETWORKD_SOCKET_WANTS))? == Existing::Missing
    {
        root.write_symlink(Path::new(NETWORKD_SOCKET_WANTS), socket.as_bytes())
            .context("enabling systemd-networkd.socket")?;
    }
    if enabled {
        report.notes.push("systemd-networkd enabled".into());
    }
    Ok(())
}

/// Where cloud-init's entry point is looked for, inside the rootfs (symlinks followed there).
pub const CLOUD_INIT_PATHS: [&str; 2] = ["/usr/bin/cloud-init", "/bin/cloud-init"];

/// Whether the rootfs has cloud-init, so that a NoCloud seed can take effect.
pub fn has_cloud_init(root: &Root) -> Result<bool> {
    for path in CLOUD_INIT_PATHS {
        if root
            .lookup_in_root(Path::new(path))
            .with_context(|| format!("looking for {path} in the rootfs"))?
            .is_some_and(|m| m.is_file())
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_decisions() {
        let stub = Existing::Symlink(b"../run/systemd/resolve/stub-resolv.conf".to_vec());
        let other = Existing::Symlink(b"/run/resolvconf/resolv.conf".to_vec());
        let cases = [
            (Existing::Missing, false, false, ResolvAction::EmptyFile),
            (Existing::File, true, false, ResolvAction::Keep),
            (stub.clone(), false, true, ResolvAction::Keep),
            (stub.clone(), false, false, ResolvAction::EmptyFile),
            (other.clone(), false, true, ResolvAction::EmptyFile),
            (other, true, false, ResolvAction::Keep),
        ];
        for (existing, target, resolved, want) in cases {
            assert_eq!(
                resolv_action(&existing, target, resolved),
                want,
                "{existing:?} target_exists={target} resolved={resolved}"
            );
        }
    }

    #[test]
    fn securetty_gets_the_missing_pts_only() {
        let full: String = (0..10).map(|i| format!("pts/{i}\n")).collect();
        assert_eq!(securetty_with_pts(&format!("console\n{full}")), None);
        let out = securetty_with_pts("console\ntty1\npts/3").unwrap();
        assert!(out.starts_with("console\ntty1\npts/3\n"), "{out}");
        for i in 0..10 {
            assert_eq!(
                out.lines().filter(|l| *l == format!("pts/{i}")).count(),
                1,
                "{out}"
            );
        }
    }

    #[test]
    fn veth_unless_the_settings_turn_it_off() {
        assert!(has_veth(""));
        assert!(has_veth("[Network]\nPort=80\n"));
        assert!(!has_veth("[Network]\nVirtualEthernet=no\n"));
        assert!(has_veth("[Network]\nVirtualEthernet=no\nBridge=br0\n"));
        assert!(has_veth("[Network]\nZone=lab\n"));
        assert!(has_veth(
            "[Network]\nVirtualEthernet=no\nVirtualEthernet=yes\n"
        ));
    }
}
