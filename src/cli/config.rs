//! `sandbox config NAME [Section.Key=VALUE…] [--unset Section.Key]… [--dry-run]`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;

use super::Settings;
use crate::config::{self, EditRequest};
use crate::machine::host::SystemHost;

#[derive(Args, Debug)]
pub struct ConfigArgs {
    /// Remove a setting (repeatable): `--unset Network.Zone`.
    #[arg(long, value_name = "SECTION.KEY")]
    pub unset: Vec<String>,
    /// Take a setting back to what the templates give and forget that it was changed
    /// (repeatable); `build --force` then follows the templates again.
    #[arg(long, value_name = "SECTION.KEY")]
    pub reset: Vec<String>,
    /// Print the changes as a unified diff; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The sandbox.
    pub name: String,
    /// Settings to change: `Section.Key=VALUE` (repeat a list key for several values),
    /// `Section.Key+=VALUE` (add one), `Section.Key-=VALUE` (remove one). [Exec], [Files] and
    /// [Network] go into /etc/systemd/nspawn/NAME.nspawn; [Unit] and [Service] into the
    /// drop-in systemd-nspawn@NAME.service.d/30-sandbox-config.conf. Without any, the
    /// effective settings are printed.
    #[arg(value_name = "SECTION.KEY=VALUE")]
    pub settings: Vec<String>,
}

pub fn run(settings: &Settings, args: ConfigArgs) -> Result<ExitCode> {
    if args.settings.is_empty() && args.unset.is_empty() && args.reset.is_empty() {
        if args.dry_run {
            anyhow::bail!(
                "--dry-run shows the diff of a change: give Section.Key=VALUE or --unset Section.Key"
            );
        }
        let view = config::show(&settings.paths, &args.name)?;
        if settings.json {
            super::print_json(&view)?;
        } else {
            print!("{}", view.text());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let req = EditRequest {
        assignments: args.settings,
        unset: args.unset,
        reset: args.reset,
        dry_run: args.dry_run,
    };
    let report = config::edit(
        &settings.paths,
        &SystemHost::for_paths(&settings.paths),
        &args.name,
        &req,
    )?;
    if settings.json {
        super::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    if report.dry_run {
        for f in &report.files {
            print!("{}", f.diff);
        }
        if report.files.is_empty() {
            settings.say("No change: every setting already has that value");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if report.files.is_empty() {
        settings.say("No change: every setting already has that value");
    }
    for k in report.keys.iter().filter(|k| k.before != k.after) {
        if k.after.is_empty() {
            settings.say(format!("Removed {}", k.key));
        } else {
            let values: Vec<String> = k.after.iter().map(|v| format!("{}={v}", k.key)).collect();
            settings.say(format!("Set {}", values.join(", ")));
        }
    }
    for f in &report.files {
        settings.say(format!(
            "{} {}",
            if f.created { "Created" } else { "Changed" },
            f.path.display()
        ));
        if let Some(copy) = &f.persisted_copy {
            settings.say(format!("  and its persisted copy {}", copy.display()));
        }
    }
    for cmd in &report.ran {
        settings.say(format!("Ran {cmd}"));
    }
    for why in &report.skipped {
        settings.say(format!("Skipped {why}"));
    }
    for note in &report.notes {
        settings.say(format!("Note: {note}"));
    }
    Ok(ExitCode::SUCCESS)
}
