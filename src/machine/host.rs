//! Changes to the host that cannot be made by writing files: `machinectl`, `zfs`, `mount`,
//! `systemctl` (and `mountpoint`, which only looks). They all go through the small `Host` trait, so tests (where there is no systemd
//! as PID 1 and no ZFS module) point the programs at recording stand-ins and assert the exact
//! commands.
//!
//! Programs are found on `PATH`, or named by `$SANDBOX_MACHINECTL`, `$SANDBOX_ZFS`,
//! `$SANDBOX_MOUNT`, `$SANDBOX_UMOUNT`, `$SANDBOX_SYSTEMCTL`, `$SANDBOX_MOUNTPOINT`.
//!
//! Under `--root DIR` nothing may act on the running host (as with `systemctl --root`): no
//! program is looked up on `PATH`, so no `machinectl` reaches the live machines and no `zfs`
//! the host's pools. Only a program named explicitly by its variable runs (a stand-in, or a
//! wrapper the admin chose); everything skipped is said by the caller
//! ([`Host::unavailable`]). Whether a path is a mount point is then read from
//! `/proc/self/mountinfo`, which only looks.

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
    /// btrfs-progs: subvolumes and snapshots of the unpacked-image store.
    Btrfs,
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
            Program::Btrfs => "btrfs",
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
            Program::Btrfs => "SANDBOX_BTRFS",
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
    /// Why `program` is not run, for the message that says what was skipped.
    fn unavailable(&self, program: Program) -> String {
        not_found(program)
    }
    /// Runs it; a non-zero exit is an error that names the command and quotes its stderr.
    fn run(&self, program: Program, args: &[&OsStr]) -> Result<CommandOutput>;
}

/// `program` is neither on PATH nor named by its variable.
fn not_found(program: Program) -> String {
    format!(
        "{} is not available (not on PATH, ${} unset)",
        program.name(),
        program.env_var()
    )
}

/// The real host: programs from `$SANDBOX_<NAME>` or `PATH`; under `--root` only from
/// `$SANDBOX_<NAME>`.
#[derive(Debug, Default, Clone)]
pub struct SystemHost {
    rooted: bool,
}

impl SystemHost {
    /// The host for these paths: rooted when `--root` names anything but `/`.
    pub fn for_paths(paths: &crate::paths::HostPaths) -> SystemHost {
        SystemHost {
            rooted: paths.root != std::path::Path::new("/"),
        }
    }

    fn path_of(&self, program: Program) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os(program.env_var()).filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        if self.rooted {
            return None;
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join(program.name()))
            .find(|p| p.is_file())
    }
}

impl Host for SystemHost {
    fn available(&self, program: Program) -> bool {
        self.path_of(program).is_some()
    }

    fn unavailable(&self, program: Program) -> String {
        if self.rooted {
            format!(
                "{} is not available under --root (nothing acts on the running host; ${} names a \
                 program to run anyway)",
                program.name(),
                program.env_var()
            )
        } else {
            not_found(program)
        }
    }

    fn run(&self, program: Program, args: &[&OsStr]) -> Result<CommandOutput> {
        let path = self.path_of(program).with_context(|| {
            format!(
                "not running `{}`: {}",
                program.name(),
                self.unavailable(program)
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

/// Whether `path` is a mount point, by `mountpoint -q`, or, when that program is not run (under
/// `--root`), by `/proc/self/mountinfo`. When neither can tell, the answer is no: callers then
/// plan a mount, which fails loudly if the path was in fact busy.
pub fn is_mountpoint(host: &dyn Host, path: &std::path::Path) -> bool {
    if host.available(Program::Mountpoint) {
        return host
            .run(Program::Mountpoint, &[OsStr::new("-q"), path.as_os_str()])
            .is_ok();
    }
    let Ok(info) = fs_err::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let Ok(real) = fs_err::canonicalize(path) else {
        return false;
    };
    mount_points(&info).contains(&real)
}

/// The mount points listed in `/proc/self/mountinfo` (field 5, octal escapes decoded). Pure.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt as _;
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsString::from_vec(unescape_octal(field))))
        .collect()
}

/// `\040` → space, as the kernel escapes space, tab, newline and backslash in mountinfo.
pub(crate) fn unescape_octal(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let v = d.iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
                out.push(u8::try_from(v).unwrap_or(b'?'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
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
        let host = SystemHost::default();
        assert!(host.available(Program::Machinectl));
        let err = run_str(&host, Program::Machinectl, &["start", "x"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("machinectl start x"), "{err}");
        unsafe { std::env::set_var("SANDBOX_MACHINECTL", "/bin/echo") };
        let out = run_str(&host, Program::Machinectl, &["list"]).unwrap();
        assert_eq!(out.stdout.trim(), "list");
        // Under --root only the named program runs: PATH is not searched.
        let rooted = SystemHost { rooted: true };
        assert!(rooted.available(Program::Machinectl));
        unsafe { std::env::remove_var("SANDBOX_MACHINECTL") };
        assert!(!rooted.available(Program::Machinectl));
        assert!(!rooted.available(Program::Systemctl));
        let err = run_str(&rooted, Program::Machinectl, &["start", "x"]).unwrap_err();
        assert!(
            err.to_string().contains("not available under --root"),
            "{err}"
        );
    }

    #[test]
    fn mountinfo_gives_the_mount_points_with_escapes_undone() {
        let text = "22 1 0:21 / /proc rw - proc proc rw\n\
                    30 22 8:1 / /srv/with\\040space rw - ext4 /dev/sda1 rw\n";
        assert_eq!(
            mount_points(text),
            [PathBuf::from("/proc"), PathBuf::from("/srv/with space")]
        );
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
