//! Changes to the host that cannot be made by writing files: `machinectl`, `zfs`, `mount`,
//! `systemctl` (and `mountpoint`, which only looks). They all go through the small `Host` trait, so tests (where there is no systemd
//! as PID 1 and no ZFS module) point the programs at recording stand-ins and assert the exact
//! commands.
//!
//! Programs are found on `PATH`, or named by `$SANDBOX_MACHINECTL`, `$SANDBOX_ZFS`,
//! `$SANDBOX_MOUNT`, `$SANDBOX_UMOUNT`, `$SANDBOX_SYSTEMCTL`, `$SANDBOX_MOUNTPOINT`.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The host-changing programs the tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Program {
    Machinectl,
    Zfs,
    Mount,
    Umount,
    Systemctl,
    /// `mountpoint -q PATH`: whether a bind mount is in place (exit status only).
    Mountpoint,
}

impl Program {
    pub fn name(self) -> &'static str {
        match self {
            Program::Machinectl => "machinectl",
            Program::Zfs => "zfs",
            Program::Mount => "mount",
            Program::Umount => "umount",
            Program::Systemctl => "systemctl",
            Program::Mountpoint => "mountpoint",
        }
    }

    fn env_var(self) -> &'static str {
        match self {
            Program::Machinectl => "SANDBOX_MACHINECTL",
            Program::Zfs => "SANDBOX_ZFS",
            Program::Mount => "SANDBOX_MOUNT",
            Program::Umount => "SANDBOX_UMOUNT",
            Program::Systemctl => "SANDBOX_SYSTEMCTL",
            Program::Mountpoint => "SANDBOX_MOUNTPOINT",
        }
    }
}

/// What a command printed.
#[derive(Debug, Clone, Default)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs host-changing programs.
pub trait Host {
    /// Whether the program can be run here at all (found on PATH or named by its variable).
    fn available(&self, program: Program) -> bool;
    /// Runs it; a non-zero exit is an error that names the command and quotes its stderr.
    fn run(&self, program: Program, args: &[&OsStr]) -> Result<CommandOutput>;
}

/// The real host: programs from `$SANDBOX_<NAME>` or `PATH`.
#[derive(Debug, Default, Clone)]
pub struct SystemHost;

impl SystemHost {
    fn path_of(program: Program) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(program.env_var()).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(program.name()))
            .find(|p| p.is_file())
    }
}

impl Host for SystemHost {
    fn available(&self, program: Program) -> bool {
        Self::path_of(program).is_some()
    }

    fn run(&self, program: Program, args: &[&OsStr]) -> Result<CommandOutput> {
        let path = Self::path_of(program).with_context(|| {
            format!(
                "`{}` was not found on PATH (or in ${})",
                program.name(),
                program.env_var()
            )
        })?;
        let shown = std::iter::once(program.name().to_string())
            .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
            .collect::<Vec<_>>()
            .join(" ");
        tracing::info!("running {shown}");
        let out = Command::new(&path)
            .args(args)
            .output()
            .with_context(|| format!("running {shown}"))?;
        let result = CommandOutput {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if !out.status.success() {
            bail!(
                "`{shown}` failed ({}): {}",
                out.status,
                result.stderr.trim()
            );
        }
        Ok(result)
    }
}

/// Convenience: run with `&str` arguments.
pub fn run_str(host: &dyn Host, program: Program, args: &[&str]) -> Result<CommandOutput> {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    host.run(program, &args)
}

/// Whether `path` is a mount point, by `mountpoint -q`. Without the program, or when it fails
/// for any reason (not a mount point, no such path), the answer is no: callers then plan a
/// mount, which fails loudly if the path was in fact busy.
pub fn is_mountpoint(host: &dyn Host, path: &std::path::Path) -> bool {
    host.available(Program::Mountpoint)
        && host
            .run(Program::Mountpoint, &[OsStr::new("-q"), path.as_os_str()])
            .is_ok()
}

/// The machines `machinectl list` reports as running, or `None` when machinectl is missing or
/// fails (no systemd as PID 1, machined not running): "unknown" is not "stopped".
pub fn running_machines(host: &dyn Host) -> Option<std::collections::BTreeSet<String>> {
    if !host.available(Program::Machinectl) {
        return None;
    }
    match run_str(
        host,
        Program::Machinectl,
        &["list", "--no-legend", "--no-pager"],
    ) {
        Ok(out) => Some(parse_machinectl_list(&out.stdout)),
        Err(e) => {
            tracing::debug!("machinectl list: {e:#}");
            None
        }
    }
}

/// Names from `machinectl list --no-legend` lines: `NAME CLASS SERVICE OS VERSION ADDRESSES`.
/// A line with fewer than three columns is no machine (older versions print `No machines.`
/// even without the legend).
pub fn parse_machinectl_list(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols.len() >= 3).then(|| cols[0].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_come_from_their_variable_and_failures_name_the_command() {
        // `false` stands in for machinectl: it exists and fails.
        // SAFETY: tests in this module are the only ones that touch this variable.
        unsafe { std::env::set_var("SANDBOX_MACHINECTL", "/bin/false") };
        let host = SystemHost;
        assert!(host.available(Program::Machinectl));
        let err = run_str(&host, Program::Machinectl, &["start", "x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("machinectl start x"), "{err}");
        unsafe { std::env::set_var("SANDBOX_MACHINECTL", "/bin/echo") };
        let out = run_str(&host, Program::Machinectl, &["list"]).unwrap();
        assert_eq!(out.stdout.trim(), "list");
        unsafe { std::env::remove_var("SANDBOX_MACHINECTL") };
    }

    #[test]
    fn machinectl_list_lines_name_the_running_machines() {
        let text = "debian container systemd-nspawn debian 12 10.0.0.2…\n\
                    web.example container systemd-nspawn ubuntu 24.04 -\n\
                    \n\
                    No machines.\n";
        let names: Vec<String> = parse_machinectl_list(text).into_iter().collect();
        assert_eq!(names, ["debian", "web.example"]);
        assert!(parse_machinectl_list("").is_empty());
    }
}
