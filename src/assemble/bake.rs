//! Bake steps: the `[build] run` commands of the composed templates, run in composition order
//! inside the finished rootfs (after the plan's files and the fix-ups are layered), before it
//! is published or exported. This file holds the pure parts (labels, the environment, status
//! and failure messages, output lines, `mountinfo`) and the orchestration around each step:
//! what the rootfs needs for the step's mounts and how it is put back, and the checks that
//! nothing stays behind. `bake_ns` starts the step in its namespaces.
//!
//! A step runs as `/bin/sh -c STEP`, as root, chrooted into the rootfs, as PID 1 of its own PID
//! namespace, with its own mount and UTS namespaces (the hostname is the sandbox name), `/proc`
//! and a minimal `/dev` mounted, the host's `/etc/resolv.conf` bound read-only over the
//! rootfs's, and a fixed environment ([`step_env`]). It shares the host's network, users and
//! capabilities: a step is the template author's code, trusted like the template itself, and
//! this is not a security boundary (root in a chroot can leave it).
//!
//! Nothing outlives a step: its processes die with its PID namespace, its mounts with its mount
//! namespace. What the rootfs needed for the mounts (an empty `/proc` or `/dev` where it had
//! none, an empty `/etc/resolv.conf` where it had none or a dangling symlink) is made inside
//! the root through `Root` and removed or restored after the step. After every step the build
//! checks that no new mount is left under the rootfs and that the rootfs's own `/dev` is as it
//! was.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Context, Result, bail};

use super::bake_ns::{self, StepRoot};
use crate::machine::host::mount_points;
use crate::progress::ProgressMode;
use crate::template::plan::{BakeStep, BuildPlan, label};
use crate::unpack::Root;
use crate::unpack::root::Existing;

/// The resolver configuration steps get: the host's, even with `--root`, since a step uses
/// the host's network.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
const RESOLV_CONF: &str = "etc/resolv.conf";
/// A longer line is passed on in pieces, so a step printing without newlines cannot make the
/// build hold its output in memory.
const MAX_LINE: usize = 16 * 1024;

/// The whole environment of a step: nothing of the build's own leaks in. Pure.
pub fn step_env(name: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("HOME", "/root".to_string()),
        ("LANG", "C.UTF-8".to_string()),
        ("DEBIAN_FRONTEND", "noninteractive".to_string()),
        ("SANDBOX_NAME", name.to_string()),
    ]
}

/// `exit status 3` or `killed by signal 9`. Pure.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// Why the build stops after a failed step. Pure.
pub fn failure_message(step: &BakeStep, index: usize, count: usize, status: &str) -> String {
    format!(
        "{}: bake step {}/{count} of template `{}` failed ({status}): {}",
        step.place,
        index + 1,
        step.template,
        step.command
    )
}

/// Splits a byte stream into lines (without `\n` or a trailing `\r`); a line longer than
/// `MAX_LINE` comes out in pieces. Not UTF-8 is shown lossily.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// The lines `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                out.push(self.take());
            } else {
                self.pending.push(b);
                if self.pending.len() >= MAX_LINE {
                    out.push(self.take());
                }
            }
        }
        out
    }

    /// What is left after the last newline, if anything.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| self.take())
    }

    fn take(&mut self) -> String {
        let mut line = std::mem::take(&mut self.pending);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        String::from_utf8_lossy(&line).into_owned()
    }
}

/// The mount points strictly below `root` (the rootfs itself may be a mount: a ZFS dataset).
pub fn mounts_below(points: &[PathBuf], root: &Path) -> BTreeSet<PathBuf> {
    points
        .iter()
        .filter(|p| p.starts_with(root) && p.as_path() != root)
        .cloned()
        .collect()
}

/// Runs the plan's bake steps in the rootfs at `rootfs`, in order; the first failure stops
/// the build (the caller removes the tree). Prints every line of output to stderr as
/// `[bake 2/3] …`; bars are finished by now, so nothing draws over it.
pub fn run(rootfs: &Path, plan: &BuildPlan, out: ProgressMode) -> Result<()> {
    let steps = &plan.bake;
    if steps.is_empty() {
        return Ok(());
    }
    out.phase(&format!("Running {} bake step(s)", steps.len()));
    if !rustix::process::geteuid().is_root() {
        bail!(
            "the templates have {} bake step(s) ({}: {}), which run as root inside the rootfs: run sandbox build as root",
            steps.len(),
            steps[0].place,
            steps[0].command
        );
    }
    let root = Root::open(rootfs)?;
    // As the chrooted step sees them: `/etc -> /usr/etc` leads to the rootfs's own.
    root.set_absolute_symlinks_in_root(true);
    let real = fs_err::canonicalize(rootfs)?;
    let rootfs_fd = rustix::fs::open(
        rootfs,
        rustix::fs::OFlags::PATH
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .with_context(|| format!("opening {}", rootfs.display()))?;
    for (i, step) in steps.iter().enumerate() {
        let tag = label(i, steps.len());
        let what = || format!("bake step {}/{} ({})", i + 1, steps.len(), step.place);
        for (n, line) in step.command.lines().enumerate() {
            out.line(&format!(
                "[{tag}] {} {line}",
                if n == 0 { '$' } else { '>' }
            ));
        }
        let dev_before = dev_listing(&root, rootfs)?;
        let mounts_before = host_mounts_below(&real)?;
        let prepared = Prepared::new(&root).with_context(|| format!("preparing {}", what()))?;
        let ns = StepRoot {
            rootfs: rootfs_fd.as_fd(),
            hostname: &plan.machine,
            bind_resolv_conf: prepared.bind_resolv_conf,
            make_proc: prepared.made_proc,
            make_dev: prepared.made_dev,
        };
        let mut lines = LineSplitter::default();
        let mut print = |bytes: &[u8]| {
            for line in lines.push(bytes) {
                out.line(&format!("[{tag}] {line}"));
            }
        };
        let status = bake_ns::run(&ns, &step.command, &step_env(&plan.machine), &mut print)
            .with_context(|| format!("starting {}", what()));
        if let Some(rest) = lines.finish() {
            out.line(&format!("[{tag}] {rest}"));
        }
        prepared
            .restore()
            .with_context(|| format!("cleaning up after {}", what()))?;
        let status = status?;
        crate::faultpoint::reached("bake.step");
        let left: Vec<PathBuf> = host_mounts_below(&real)?
            .difference(&mounts_before)
            .cloned()
            .collect();
        if !left.is_empty() {
            bail!("after {}: still mounted: {left:?}", what());
        }
        if dev_listing(&root, rootfs)? != dev_before {
            bail!("after {}: the rootfs's own /dev changed", what());
        }
        if !status.success() {
            bail!(failure_message(
                step,
                i,
                steps.len(),
                &describe_status(status)
            ));
        }
    }
    Ok(())
}

fn host_mounts_below(root: &Path) -> Result<BTreeSet<PathBuf>> {
    let text =
        fs_err::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    Ok(mounts_below(&mount_points(&text), root))
}

/// What the rootfs's own `/dev` holds (a step must not change it: its `/dev` is a tmpfs).
#[derive(Debug, PartialEq, Eq)]
enum DevListing {
    Missing,
    Symlink(Vec<u8>),
    Dir(Vec<DevEntry>),
    Other,
}

/// name, mode, rdev, size, uid, gid
type DevEntry = (OsString, u32, u64, u64, u32, u32);

fn dev_listing(root: &Root, rootfs: &Path) -> Result<DevListing> {
    Ok(match root.inspect(Path::new("dev"))? {
        Existing::Missing => DevListing::Missing,
        Existing::Symlink(t) => DevListing::Symlink(t),
        Existing::File | Existing::Other => DevListing::Other,
        Existing::Dir => {
            // `dev` is a real directory of a tree this build owns (inspected without
            // following): listing it by path stays inside.
            let dir = rootfs.join("dev");
            let mut names = Vec::new();
            for entry in fs_err::read_dir(&dir)? {
                let entry = entry?;
                let m = fs_err::symlink_metadata(entry.path())?;
                names.push((
                    entry.file_name(),
                    m.mode(),
                    m.rdev(),
                    m.size(),
                    m.uid(),
                    m.gid(),
                ));
            }
            names.sort();
            DevListing::Dir(names)
        }
    })
}

/// What the rootfs was given so the step's mounts have somewhere to go; undone by
/// `restore`, or on drop when the step could not even start.
struct Prepared<'r> {
    root: &'r Root,
    bind_resolv_conf: bool,
    made_proc: bool,
    made_dev: bool,
    resolv_fix: ResolvFix,
    restored: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ResolvFix {
    /// The rootfs had a file (or a symlink to one) to mount over.
    Nothing,
    /// An empty file was created where there was none.
    Created,
    /// A dangling symlink was replaced by an empty file; this is its target.
    ReplacedSymlink(Vec<u8>),
}

impl<'r> Prepared<'r> {
    fn new(root: &'r Root) -> Result<Prepared<'r>> {
        let missing =
            |rel: &str| -> Result<bool> { Ok(root.inspect(Path::new(rel))? == Existing::Missing) };
        let mut prepared = Prepared {
            root,
            bind_resolv_conf: false,
            made_proc: missing("proc")?,
            made_dev: missing("dev")?,
            resolv_fix: ResolvFix::Nothing,
            restored: false,
        };
        match fs_err::metadata(HOST_RESOLV_CONF) {
            Ok(m) if m.is_file() => {}
            Ok(_) => bail!("{HOST_RESOLV_CONF} on this host is not a file"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                tracing::info!("{HOST_RESOLV_CONF} does not exist: bake steps keep the rootfs's");
                return Ok(prepared);
            }
            Err(e) => return Err(e).with_context(|| format!("inspecting {HOST_RESOLV_CONF}")),
        }
        let rel = Path::new(RESOLV_CONF);
        let fix = match root.lookup_in_root(rel)? {
            Some(m) if m.is_file() => ResolvFix::Nothing,
            Some(_) => bail!(
                "the rootfs's /etc/resolv.conf is not a file: the host's cannot be mounted over it"
            ),
            None => match root.inspect(rel)? {
                Existing::Missing => {
                    let etc = root.lookup_in_root(Path::new("etc"))?;
                    if !etc.is_some_and(|m| m.is_dir()) {
                        tracing::info!("the rootfs has no /etc: bake steps get no resolv.conf");
                        return Ok(prepared);
                    }
                    ResolvFix::Created
                }
                Existing::Symlink(target) => ResolvFix::ReplacedSymlink(target),
                other => bail!("the rootfs's /etc/resolv.conf is {other:?}, not a file"),
            },
        };
        if fix != ResolvFix::Nothing {
            // Never written through: `write_file` replaces a symlink, it does not follow it.
            root.write_file(rel, 0o644, b"")
                .context("making a mount point at /etc/resolv.conf in the rootfs")?;
        }
        prepared.resolv_fix = fix;
        prepared.bind_resolv_conf = true;
        Ok(prepared)
    }

    /// Removes what `new` made and puts back the symlink it replaced.
    fn restore(mut self) -> Result<()> {
        self.restored = true;
        self.undo()
    }

    fn undo(&self) -> Result<()> {
        let root = self.root;
        let rel = Path::new(RESOLV_CONF);
        match &self.resolv_fix {
            ResolvFix::Nothing => {}
            ResolvFix::Created => root.remove_all(rel)?,
            ResolvFix::ReplacedSymlink(target) => root.write_symlink(rel, target)?,
        }
        for (made, dir) in [(self.made_proc, "proc"), (self.made_dev, "dev")] {
            if made && root.inspect(Path::new(dir))? == Existing::Dir {
                root.remove_all(Path::new(dir))?;
            }
        }
        Ok(())
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if !self.restored
            && let Err(e) = self.undo()
        {
            tracing::warn!("cleaning up after a bake step: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::host::unescape_octal;

    #[test]
    fn labels_and_messages_name_the_step() {
        assert_eq!(label(1, 3), "bake 2/3");
        let step = BakeStep {
            command: "exit 3".into(),
            template: "web".into(),
            place: "/t/web/template.toml:4".into(),
        };
        assert_eq!(
            failure_message(&step, 1, 3, "exit status 3"),
            "/t/web/template.toml:4: bake step 2/3 of template `web` failed (exit status 3): exit 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(3 << 8)),
            "exit status 3"
        );
        assert_eq!(
            describe_status(ExitStatus::from_raw(9)),
            "killed by signal 9"
        );
    }

    #[test]
    fn the_environment_is_fixed() {
        let env = step_env("web");
        let names: Vec<&str> = env.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            names,
            ["PATH", "HOME", "LANG", "DEBIAN_FRONTEND", "SANDBOX_NAME"]
        );
        assert_eq!(env[4].1, "web");
        assert!(env[0].1.split(':').all(|d| d.starts_with('/')));
    }

    #[test]
    fn lines_split_on_newlines_and_at_the_limit() {
        let mut s = LineSplitter::default();
        assert_eq!(s.push(b"one\r\ntw"), ["one"]);
        assert_eq!(s.push(b"o\n\nthr"), ["two", ""]);
        assert_eq!(s.finish().as_deref(), Some("thr"));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 5];
        let out = s.push(&long);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_LINE);
        assert_eq!(s.finish().map(|l| l.len()), Some(5));
        assert_eq!(s.push(b"\xff\n"), ["\u{fffd}"]);
    }

    #[test]
    fn mountinfo_points_are_decoded_and_filtered() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    40 22 0:50 / /var/lib/machines/web rw - zfs tank/web rw\n\
                    41 40 0:51 / /var/lib/machines/web/a\\040b rw - tmpfs tmpfs rw\n\
                    42 40 0:52 / /var/lib/machines/web2/dev rw - tmpfs tmpfs rw\n";
        let points = mount_points(text);
        assert_eq!(points[2], Path::new("/var/lib/machines/web/a b"));
        let below: Vec<PathBuf> = mounts_below(&points, Path::new("/var/lib/machines/web"))
            .into_iter()
            .collect();
        assert_eq!(below, [PathBuf::from("/var/lib/machines/web/a b")]);
        assert_eq!(unescape_octal("a\\134b\\01"), b"a\\b\\01");
    }
}
