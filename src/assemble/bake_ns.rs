//! The namespace side of a bake step: `/bin/sh -c STEP` started as PID 1 of a new PID
//! namespace, in new mount and UTS namespaces, chrooted into the rootfs, with `/proc`, a
//! minimal `/dev` and the host's resolver configuration mounted for it. Everything here that
//! runs between `fork` and `exec` is a raw syscall through rustix (async-signal-safe: the
//! forked child of a multi-threaded process may not allocate or take a lock), with every path
//! and string prepared before the fork.
//!
//! How the namespaces come about:
//! - PID: the calling thread (a thread of its own, see [`run`]) unshares its PID namespace
//!   for children, so the process std forks is PID 1 of a new namespace. When it exits, the
//!   kernel kills everything else in the namespace (a `sleep 1000 &` left behind) and waits
//!   for it, so the step's output pipe closes and nothing outlives the step.
//! - Mount and UTS: unshared in the child before anything is mounted, and `/` made private
//!   recursively first, so no mount propagates back to the host. The mounts disappear with the
//!   namespace, when its last process exits.
//! - `PR_SET_PDEATHSIG`: if the thread that started the step dies (the build is killed), the
//!   step's PID 1 is killed, and with it the whole namespace.
//!
//! Paths inside the rootfs are only ever used after `chroot`, so the kernel resolves them
//! inside it (a hostile `/etc/resolv.conf -> /etc/shadow` symlink leads to the rootfs's own
//! `/etc/shadow`, never the host's). The host's resolver file is opened in the new namespace
//! before the chroot and bind-mounted read-only through `/proc/self/fd/N` after it, so the
//! step can read it but not change the host's copy.

use std::ffi::CStr;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};

use rustix::fs::{self as rfs, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{self, MountFlags, MountPropagationFlags};
use rustix::thread::UnshareFlags;

/// What the step's namespace is made of; every fd is held open by the caller until the step
/// has started.
pub(super) struct StepRoot<'a> {
    /// The rootfs, `O_PATH|O_DIRECTORY`.
    pub rootfs: BorrowedFd<'a>,
    /// The sandbox name, set as the hostname.
    pub hostname: &'a str,
    /// Bind the host's `/etc/resolv.conf` (read-only) over the rootfs's.
    pub bind_resolv_conf: bool,
    /// Whether `/proc` and `/dev` must be created first (the rootfs has none); the caller
    /// removes them again afterwards.
    pub make_proc: bool,
    pub make_dev: bool,
}

/// Device nodes of the minimal `/dev`: name, major, minor (all mode 0666, as on any host).
const DEVICES: [(&CStr, u32, u32); 6] = [
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
    (c"/dev/tty", 5, 0),
];
const DEV_LINKS: [(&CStr, &CStr); 4] = [
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
];

/// Runs `/bin/sh -c command` in the step's namespaces with exactly `env`, its stdout and
/// stderr into one pipe whose data goes to `on_output` as it arrives; returns its status.
/// Starts a thread of its own: unsharing the PID namespace changes the calling thread's
/// children for good, which must not happen to the caller's.
pub(super) fn run(
    root: &StepRoot<'_>,
    command: &str,
    env: &[(&str, String)],
    on_output: &mut dyn FnMut(&[u8]),
) -> io::Result<ExitStatus> {
    let (reader, writer) = pipe()?;
    // Setup failures in the child are reported through a pipe of their own: std passes only
    // the errno of a failed `pre_exec` back, not which of a dozen syscalls failed.
    let (why_reader, why_writer) = pipe()?;
    let (reader, mut why_reader) = (File::from(reader), File::from(why_reader));
    let fds = ChildFds {
        rootfs: above_stdio(root.rootfs)?,
        why: above_stdio(why_writer.as_fd())?,
    };
    drop(why_writer);
    let setup = ChildSetup {
        rootfs: fds.rootfs.as_raw_fd(),
        hostname: root.hostname.as_bytes().to_vec(),
        bind_resolv_conf: root.bind_resolv_conf,
        make_proc: root.make_proc,
        make_dev: root.make_dev,
        why: fds.why.as_raw_fd(),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(writer.try_clone()?)
        .stderr(writer);
    // SAFETY: the closure runs between fork and exec and makes raw syscalls only (rustix's
    // linux_raw backend: no libc, no allocation, no lock); every string it uses was built above.
    unsafe {
        cmd.pre_exec(move || setup.apply());
    }

    let status = std::thread::scope(|scope| {
        let starter = scope.spawn(move || -> io::Result<ExitStatus> {
            // SAFETY: NEWPID does not touch the fd table or memory other threads see; it only
            // decides the namespace of this thread's future children.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWPID) }
                .map_err(|e| io::Error::other(format!("creating a PID namespace: {e}")))?;
            let spawned = cmd.spawn();
            // Our copies of the pipes' write ends must go, or the reads below never end.
            drop(cmd);
            drop(fds);
            // The thread waits too: the child's parent-death signal fires when it exits.
            spawned?.wait()
        });
        // Owned here, so that an early return closes it before the scope joins the thread:
        // a step writing into a pipe nobody reads would never end.
        let mut reader = reader;
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => on_output(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        starter
            .join()
            .map_err(|_| io::Error::other("the thread running the bake step panicked"))?
    });
    status.map_err(|e| {
        let mut why = String::new();
        // The write end is closed (the child exec'd or exited): this read ends.
        let _ = why_reader.read_to_string(&mut why);
        match why.trim() {
            // The setup got through: exec failed (or the thread above said why).
            "" if e.kind() == io::ErrorKind::NotFound => io::Error::new(
                e.kind(),
                format!("running /bin/sh in the rootfs (a bake step needs a shell there): {e}"),
            ),
            "" => e,
            what => io::Error::new(e.kind(), format!("{what}: {e}")),
        }
    })
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// The fds the child uses, held open (here, in the parent) until it has started.
struct ChildFds {
    rootfs: OwnedFd,
    why: OwnedFd,
}

/// A close-on-exec duplicate numbered 3 or more: std moves the child's stdio onto 0, 1 and
/// 2 before `pre_exec`, which would replace an fd of ours that happened to have one of those
/// numbers (when this process was started with stdin closed, say).
fn above_stdio(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 3)?)
}

/// Everything the child needs, owned, so that the `pre_exec` closure is `'static`.
struct ChildSetup {
    rootfs: RawFd,
    hostname: Vec<u8>,
    bind_resolv_conf: bool,
    make_proc: bool,
    make_dev: bool,
    why: RawFd,
}

impl ChildSetup {
    /// In the forked child: namespaces, chroot, mounts. Raw syscalls only.
    fn apply(&self) -> io::Result<()> {
        let fail = |what: &'static str| {
            let why = self.why;
            move |e: Errno| {
                // SAFETY: `why` is open until exec (close-on-exec), owned by the parent's copy.
                let fd = unsafe { BorrowedFd::borrow_raw(why) };
                let _ = rustix::io::write(fd, what.as_bytes());
                io::Error::from_raw_os_error(e.raw_os_error())
            }
        };
        // SAFETY: `rootfs` is open until exec, held by the parent's `ChildFds`.
        let rootfs = unsafe { BorrowedFd::borrow_raw(self.rootfs) };
        // Into the rootfs before the mount namespace is new: the fd (opened before the fork)
        // refers to the old namespace's mounts, where nothing may be mounted from the new
        // one (EINVAL); unsharing moves the working directory (and root) over to the copy.
        rustix::process::fchdir(rootfs).map_err(fail("entering the rootfs"))?;
        // SAFETY: the child is single-threaded; nothing shares its fd table.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::NEWUTS) }
            .map_err(fail("creating the mount and UTS namespaces"))?;
        mount::mount_change(
            c"/",
            MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
        )
        .map_err(fail("making the mounts private"))?;
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(fail("setting the parent-death signal"))?;
        rustix::system::sethostname(&self.hostname).map_err(fail("setting the hostname"))?;
        // Opened in the new namespace, before the chroot: only a mount of the caller's own
        // namespace can be bind-mounted (one opened before the fork cannot, EINVAL).
        let resolv_conf = if self.bind_resolv_conf {
            let flags = OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC;
            Some(
                rfs::open(c"/etc/resolv.conf", flags, Mode::empty())
                    .map_err(fail("opening the host's /etc/resolv.conf"))?,
            )
        } else {
            None
        };
        rustix::process::chroot(c".").map_err(fail("chroot into the rootfs"))?;
        rustix::process::chdir(c"/").map_err(fail("chdir / in the rootfs"))?;
        // Device nodes and directories get exactly the modes given.
        let umask = rustix::process::umask(Mode::empty());
        if self.make_proc {
            mkdir(c"/proc", 0o555).map_err(fail("creating /proc in the rootfs"))?;
        }
        let nosuid_nodev_noexec = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
        mount::mount(c"proc", c"/proc", c"proc", nosuid_nodev_noexec, None)
            .map_err(fail("mounting /proc in the rootfs"))?;
        if self.make_dev {
            mkdir(c"/dev", 0o755).map_err(fail("creating /dev in the rootfs"))?;
        }
        mount::mount(
            c"tmpfs",
            c"/dev",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            Some(c"mode=755,size=4m"),
        )
        .map_err(fail("mounting a tmpfs on /dev in the rootfs"))?;
        for (path, major, minor) in DEVICES {
            let dev = rfs::makedev(major, minor);
            rfs::mknodat(CWD, path, FileType::CharacterDevice, mode(0o666), dev)
                .map_err(fail("creating the device nodes in /dev"))?;
        }
        for (target, link) in DEV_LINKS {
            rfs::symlinkat(target, CWD, link).map_err(fail("creating the links in /dev"))?;
        }
        rfs::mkdirat(CWD, c"/dev/pts", mode(0o755)).map_err(fail("creating /dev/pts"))?;
        rfs::mkdirat(CWD, c"/dev/shm", mode(0o1777)).map_err(fail("creating /dev/shm"))?;
        if let Some(fd) = &resolv_conf {
            let mut buf = [0u8; 32];
            mount::mount_bind(fd_path(&mut buf, fd.as_raw_fd()), c"/etc/resolv.conf")
                .map_err(fail("mounting the host's /etc/resolv.conf in the rootfs"))?;
            mount::mount_remount(
                c"/etc/resolv.conf",
                MountFlags::BIND | MountFlags::RDONLY,
                c"",
            )
            .map_err(fail("making /etc/resolv.conf read-only"))?;
        }
        rustix::process::umask(umask);
        Ok(())
    }
}

/// `/proc/self/fd/N` as a C string in `buf`, without allocating.
fn fd_path(buf: &mut [u8; 32], fd: RawFd) -> &CStr {
    const PREFIX: &[u8] = b"/proc/self/fd/";
    buf[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut digits = [0u8; 10];
    let (mut n, mut len) = (fd.unsigned_abs(), 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for (i, d) in digits[..len].iter().rev().enumerate() {
        buf[PREFIX.len() + i] = *d;
    }
    buf[PREFIX.len() + len] = 0;
    CStr::from_bytes_until_nul(&buf[..]).unwrap_or(c"/proc/self/fd/")
}

fn mode(bits: u32) -> Mode {
    Mode::from_raw_mode(bits)
}

/// `mkdir`, an existing entry being fine (the caller decided it was missing; a race with
/// nothing else running cannot make it something else).
fn mkdir(path: &CStr, bits: u32) -> Result<(), Errno> {
    match rfs::mkdirat(CWD, path, mode(bits)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths_are_written_without_allocating() {
        let mut buf = [0u8; 32];
        assert_eq!(fd_path(&mut buf, 3), c"/proc/self/fd/3");
        assert_eq!(fd_path(&mut buf, 1024), c"/proc/self/fd/1024");
        assert_eq!(fd_path(&mut buf, i32::MAX), c"/proc/self/fd/2147483647");
    }
}
