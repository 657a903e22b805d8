//! `sandbox host setup|undo|status`: keep sandboxes across TrueNAS SCALE upgrades
//! (see `machine::hostsetup` for what is persisted and why).

use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use super::Settings;
use crate::machine::host::SystemHost;
use crate::machine::hostsetup::{self, Action, HostState};

#[derive(Subcommand, Debug)]
pub enum HostCommand {
    /// Persist the machines dir, .nspawn files, machines.target.wants and nspawn drop-ins under
    /// <sandboxes_dir>/persist and bind them into place; link systemd-networkd's container
    /// network files; install the boot unit. Safe to run again.
    Setup {
        /// Print the steps without carrying them out.
        #[arg(long)]
        dry_run: bool,
    },
    /// Unmount what setup bound and remove what it added; the persisted data stays.
    Undo {
        /// Print the steps without carrying them out.
        #[arg(long)]
        dry_run: bool,
    },
    /// What is in place.
    Status,
}

#[derive(Serialize)]
struct Report<'a> {
    actions: &'a [Action],
    dry_run: bool,
    state: &'a HostState,
}

pub fn run(settings: &Settings, cmd: HostCommand) -> Result<ExitCode> {
    let host = SystemHost::for_paths(&settings.paths);
    let exe = std::env::current_exe().context("finding this program's path for the boot unit")?;
    let exe = hostsetup::host_view(&settings.paths.root, &exe);
    let state = hostsetup::inspect(&settings.paths, &host, &exe)?;
    let (plan, dry_run) = match cmd {
        HostCommand::Status => {
            if settings.json {
                super::print_json(&state)?;
            } else {
                print!("{}", render_status(&state));
            }
            return Ok(ExitCode::SUCCESS);
        }
        HostCommand::Setup { dry_run } => {
            for s in &state.items {
                for c in &s.conflicts {
                    tracing::warn!(
                        "{} exists in {} and {}: the persisted one is kept, the other is \
                         hidden once bound",
                        c,
                        s.item.target.display(),
                        s.item.persist.display()
                    );
                }
            }
            for n in state
                .network_files
                .iter()
                .filter(|n| !n.shipped && !n.present)
            {
                tracing::warn!(
                    "{} is not shipped by this host's systemd; its kind of container \
                     networking will not be configured",
                    n.name
                );
            }
            (hostsetup::plan_setup(&state), dry_run)
        }
        HostCommand::Undo { dry_run } => (hostsetup::plan_undo(&state), dry_run),
    };
    if !dry_run {
        hostsetup::execute(&host, &plan)?;
    }
    if settings.json {
        super::print_json(&Report {
            actions: &plan,
            dry_run,
            state: &state,
        })?;
    } else if plan.is_empty() {
        settings.say("nothing to do: everything is already in place");
    } else {
        let prefix = if dry_run { "would " } else { "" };
        for a in &plan {
            settings.say(format!("{prefix}{a}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The status table (pure).
pub fn render_status(state: &HostState) -> String {
    let mut out = format!("persisted under {}\n", state.persist_dir.display());
    let width = state
        .items
        .iter()
        .map(|s| s.item.label.len())
        .max()
        .unwrap_or(0)
        .max(4);
    out.push_str(&format!("{:<width$}  PERSISTED  BOUND  TARGET\n", "ITEM"));
    for s in &state.items {
        out.push_str(&format!(
            "{:<width$}  {:<9}  {:<5}  {}\n",
            s.item.label,
            yes_no(s.persisted),
            yes_no(s.bound),
            s.item.target.display()
        ));
    }
    for n in &state.network_files {
        let what = match (n.present, n.linked_by_us, n.shipped) {
            (true, true, _) => "linked",
            (true, false, _) => "present (not ours)",
            (false, _, true) => "missing",
            (false, _, false) => "missing (not shipped by systemd here)",
        };
        out.push_str(&format!("network {:<24} {what}\n", n.name));
    }
    let networkd = match state.networkd_enabled {
        Some(true) => "enabled",
        Some(false) => "not enabled",
        None => "unknown (no systemctl)",
    };
    out.push_str(&format!("systemd-networkd: {networkd}\n"));
    let u = &state.unit;
    out.push_str(&format!(
        "{}: installed {}, enabled {}, persisted copy {}\n",
        hostsetup::UNIT_NAME,
        yes_no(u.installed),
        yes_no(u.enabled),
        yes_no(u.persisted)
    ));
    out
}
