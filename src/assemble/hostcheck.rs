//! What the rendered `.nspawn` asks of this host, checked before anything is pulled: the pure
//! rules (`template::nspawn_rules`) say whether a value is well-formed, this says whether the
//! host can serve it.
//!
//! - `Bridge=NAME` must name a bridge on the host (`/sys/class/net/NAME/bridge`): without it
//!   systemd-nspawn fails at every start. The build stops and names the bridge.
//! - `Inaccessible=PATH` where PATH lies in a host directory bound into the container at the
//!   same place (`BindReadOnly=/sys/module` with `Inaccessible=/sys/module/apparmor`, as the
//!   docker and podman snippets do): systemd-nspawn refuses to start when PATH does not exist,
//!   and on a host without AppArmor `/sys/module/apparmor` does not. There is then nothing to
//!   hide, so the entry is left out of `NAME.nspawn`, with a comment there and a warning: the
//!   sandbox starts as it would on a host with AppArmor, which is what a machinectl user wants
//!   from `machinectl start`. A host that gains AppArmor later needs a rebuild to hide it.
//!
//! With `--root DIR` the host is the tree under DIR (as for every host path): the checks read
//! `DIR/sys/…` when DIR has that directory (a root with a sysfs view) and are skipped, with a
//! warning saying so, when it has not; a root that is not a running system has no interfaces
//! to look at.

use std::path::Path;

use anyhow::{Result, bail};

use crate::paths::HostPaths;
use crate::template::ini;
use crate::template::nspawn_rules::split_colons;
use crate::template::plan::{Base, BuildPlan, Omission};

/// What the check found: values to leave out, and checks that could not be made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCheck {
    pub omit: Vec<Omission>,
    /// Said to people (as warnings, and in `--dry-run`).
    pub skipped: Vec<String>,
}

impl HostCheck {
    /// Warns about everything left out or not checked.
    pub fn warn(&self) {
        for o in &self.omit {
            tracing::warn!(
                "leaving {}={} out of the .nspawn file: {}",
                o.key,
                o.value,
                o.why
            );
        }
        for s in &self.skipped {
            tracing::warn!("{s}");
        }
    }

    /// `--dry-run` comment lines.
    pub fn dry_run_text(&self) -> String {
        let mut out = String::new();
        for o in &self.omit {
            out.push_str(&format!(
                "# host: {}={} left out: {}\n",
                o.key, o.value, o.why
            ));
        }
        for s in &self.skipped {
            out.push_str(&format!("# host: {s}\n"));
        }
        out
    }
}

/// Checks `plan`'s `.nspawn` against the host `paths` describe.
pub fn check(paths: &HostPaths, plan: &BuildPlan) -> Result<HostCheck> {
    let rel = format!("etc/systemd/nspawn/{}.nspawn", plan.machine);
    let text = plan.text(Base::Host, &rel).unwrap_or_default();
    let settings = ini::parse(text, &rel)?;
    let values = |section: &str, key: &str| -> Vec<&str> {
        settings
            .iter()
            .filter(|a| a.section == section && a.key == key && !a.value.is_empty())
            .map(|a| a.value.as_str())
            .collect()
    };
    let rooted = paths.root != Path::new("/");
    let templates = plan.spec.templates.join(", ");
    let mut out = HostCheck::default();

    for bridge in values("Network", "Bridge") {
        if rooted && !paths.host("/sys/class/net").is_dir() {
            out.skipped.push(format!(
                "Bridge={bridge} not checked: {} has no /sys/class/net (--root)",
                paths.root.display()
            ));
            continue;
        }
        let dir = paths.host(&format!("/sys/class/net/{bridge}"));
        if !dir.exists() {
            bail!(
                "the templates {templates} set Bridge={bridge}, and this host has no interface `{bridge}` ({} is missing): create the bridge, or name another with --set bridge=NAME",
                dir.display()
            );
        }
        if !dir.join("bridge").is_dir() {
            bail!(
                "the templates {templates} set Bridge={bridge}, and `{bridge}` on this host is not a bridge ({} is missing)",
                dir.join("bridge").display()
            );
        }
    }

    let mut binds: Vec<(String, String)> = Vec::new();
    for value in values("Files", "Bind")
        .into_iter()
        .chain(values("Files", "BindReadOnly"))
    {
        let parts = split_colons(value);
        let src = parts[0].clone();
        // `+SRC` is inside the image and an empty source a temporary directory: not the host's.
        if !src.starts_with('/') {
            continue;
        }
        let dest = parts.get(1).cloned().unwrap_or_else(|| src.clone());
        binds.push((src, dest));
    }
    for path in values("Files", "Inaccessible") {
        let Some((src, rest)) = binds.iter().find_map(|(src, dest)| {
            let rest = path.strip_prefix(dest.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((src, rest))
        }) else {
            continue;
        };
        let base = paths.host(src);
        if !base.exists() {
            if rooted {
                out.skipped.push(format!(
                    "Inaccessible={path} not checked: {} does not exist (--root)",
                    base.display()
                ));
            }
            continue;
        }
        let host_path = format!("{src}{rest}");
        if !paths.host(&host_path).exists() {
            let apparmor = if host_path == "/sys/module/apparmor" {
                " (no AppArmor)"
            } else {
                ""
            };
            out.omit.push(Omission {
                section: "Files".into(),
                key: "Inaccessible".into(),
                value: path.to_string(),
                why: format!(
                    "{host_path} does not exist on this host{apparmor}: nothing to hide, and systemd-nspawn would refuse to start (templates {templates})"
                ),
            });
        }
    }
    Ok(out)
}
