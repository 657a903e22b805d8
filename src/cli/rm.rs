//! `sandbox rm [--yes] NAME`.

use crate::machine::materialise;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;

use super::Settings;
use crate::machine::host::SystemHost;
use crate::machine::remove;

#[derive(Args, Debug)]
pub struct RmArgs {
    /// Do not ask for confirmation (needed when stdin is not a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// The sandbox to stop, disable and remove with its files and state record.
    pub name: String,
}

pub fn run(settings: &Settings, args: RmArgs) -> Result<ExitCode> {
    let name = &args.name;
    // Validated and looked up before asking, so nobody confirms the removal of nothing.
    remove::ensure_exists(&settings.paths, name)?;
    if !args.yes {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            bail!(
                "not removing sandbox `{name}` without confirmation: stdin is not a terminal; \
                 pass --yes to remove it"
            );
        }
        eprint!(
            "Remove sandbox `{name}` (its rootfs, .nspawn files, drop-ins and state record)? [y/N] "
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        stdin
            .lock()
            .read_line(&mut answer)
            .context("reading the confirmation from stdin")?;
        if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
            bail!("not removing sandbox `{name}`: not confirmed");
        }
    }
    // Under the machine's lock: no pull or build of it is half-way, and the unfinished trees a
    // dead one left go too.
    let cache = crate::cache::Cache::open(&settings.paths.cache_dir())?;
    let machines_dir = &settings.paths.machines_dir;
    let _lock = cache.lock(
        &materialise::machine_lock_name(machines_dir, name),
        &format!("a pull or build of machine `{name}`"),
    )?;
    let swept = materialise::sweep_staging(machines_dir, name)?;
    crate::assemble::hostfiles::recover_dead_build(&settings.paths.sandboxes_dir, name)?;
    let mut removal = remove::remove(
        &settings.paths,
        &SystemHost::for_paths(&settings.paths),
        name,
    )?;
    removal.removed.extend(swept);
    if settings.json {
        super::print_json(&removal)?;
    } else {
        if removal.stopped {
            settings.say(format!("stopped {name}"));
        }
        if let Some(ds) = &removal.zfs_dataset {
            settings.say(format!("destroyed ZFS dataset {ds}"));
        }
        for p in &removal.removed {
            settings.say(format!("removed {}", p.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
