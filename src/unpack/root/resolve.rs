//! Resolving a directory inside the root: the cached chain, the `openat2` fast path and the
//! authoritative component-by-component walk (see the `root` module documentation).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rustix::fs::{self as rfs, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::{
    CachedDir, MAX_CACHED_DIRS, MAX_SYMLINKS, Resolved, Root, join, open_dir_path, open_dir_read,
};
use crate::unpack::error::{UnpackError, Violation, show_bytes};
use crate::unpack::path::{EntryPath, is_component_prefix};

/// Why a parent could not be resolved; turned into an [`UnpackError`] by the caller, who knows
/// which entry (and which role: the entry itself or a hardlink target) it was for.
pub(super) enum ResolveError {
    Escape {
        link: Vec<u8>,
        target: Vec<u8>,
    },
    Missing {
        path: Vec<u8>,
        link: Option<Rc<(Vec<u8>, Vec<u8>)>>,
    },
    NotDir {
        path: Vec<u8>,
    },
    Loop {
        path: Vec<u8>,
    },
    Io {
        action: &'static str,
        path: Vec<u8>,
        err: Errno,
    },
}

impl ResolveError {
    pub(super) fn for_entry(self, entry: &EntryPath) -> UnpackError {
        let e = &entry.show();
        match self {
            ResolveError::Escape { link, target } => UnpackError::Unsafe {
                entry: entry.show(),
                violation: Violation::SymlinkParent {
                    link: show_bytes(&link),
                    target: show_bytes(&target),
                },
            },
            ResolveError::Missing { path, link: None } => {
                UnpackError::invalid(e, format!("parent `{}` does not exist", show_bytes(&path)))
            }
            ResolveError::Missing {
                link: Some(link), ..
            } => UnpackError::invalid(
                e,
                format!(
                    "parent `{}` is a symlink to `{}`, which does not exist",
                    show_bytes(&link.0),
                    show_bytes(&link.1)
                ),
            ),
            ResolveError::NotDir { path } => UnpackError::invalid(
                e,
                format!("parent `{}` is not a directory", show_bytes(&path)),
            ),
            ResolveError::Loop { path } => UnpackError::invalid(
                e,
                format!(
                    "too many levels of symbolic links at `{}`",
                    show_bytes(&path)
                ),
            ),
            ResolveError::Io { action, path, err } => {
                UnpackError::io(e, format!("{action} `{}`", show_bytes(&path)), err)
            }
        }
    }

    pub(super) fn for_hardlink(self, entry: &EntryPath, target: &EntryPath) -> UnpackError {
        match self {
            ResolveError::Escape {
                link,
                target: link_target,
            } => UnpackError::Unsafe {
                entry: entry.show(),
                violation: Violation::HardlinkViaSymlink {
                    target: target.show(),
                    link: show_bytes(&link),
                    link_target: show_bytes(&link_target),
                },
            },
            ResolveError::Missing { .. } | ResolveError::NotDir { .. } => UnpackError::invalid(
                &entry.show(),
                format!("hardlink target `{}` does not exist", target.show()),
            ),
            other => other.for_entry(entry),
        }
    }
}

impl Root {
    /// Resolves the directory at the normalised path `rel` (see the module documentation).
    pub(super) fn dir_of(&self, rel: &[u8], create: bool) -> Result<Resolved, ResolveError> {
        let mut chain = self.lock_chain();
        let keep = chain
            .iter()
            .take_while(|c| is_component_prefix(&c.rel, rel))
            .count();
        chain.truncate(keep);
        let (base_len, base) = match chain.last() {
            Some(c) => (c.rel.len(), c.dir.clone()),
            None => (0, self.root_resolved()),
        };
        if base_len == rel.len() {
            return Ok(base);
        }
        let rest = if base_len == 0 {
            rel
        } else {
            &rel[base_len + 1..]
        };
        let resolved = match self.open_beneath(&base, rest) {
            Some(dir) => dir,
            None => self.walk(&base, rest, create)?,
        };
        if chain.len() < MAX_CACHED_DIRS {
            chain.push(CachedDir {
                rel: rel.to_vec(),
                dir: resolved.clone(),
            });
        }
        Ok(resolved)
    }

    /// The fast path: one `openat2` that refuses every symlink and never leaves `base`.
    fn open_beneath(&self, base: &Resolved, rest: &[u8]) -> Option<Resolved> {
        if !self.openat2_works.load(Ordering::Relaxed) {
            return None;
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let resolve =
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        match rfs::openat2(base.fd.as_fd(), rest, flags, Mode::empty(), resolve) {
            Ok(fd) => Some(Resolved {
                fd: Arc::new(fd),
                real: join(&base.real, rest),
            }),
            Err(Errno::NOSYS) => {
                self.openat2_works.store(false, Ordering::Relaxed);
                None
            }
            Err(_) => None,
        }
    }

    /// The authoritative walk, one component at a time from `base`, following symlinks only
    /// while they stay inside the root.
    fn walk(&self, base: &Resolved, rest: &[u8], create: bool) -> Result<Resolved, ResolveError> {
        // Each pending component remembers the symlink whose target it came from (for messages
        // and to refuse creating directories at a symlink's target).
        type Link = Rc<(Vec<u8>, Vec<u8>)>;
        let mut queue: VecDeque<(Vec<u8>, Option<Link>)> = rest
            .split(|&b| b == b'/')
            .map(|c| (c.to_vec(), None))
            .collect();
        let mut fd = base.fd.clone();
        let mut real = base.real.clone();
        let mut budget = MAX_SYMLINKS;
        while let Some((comp, link)) = queue.pop_front() {
            match comp.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    if real.is_empty() {
                        let (link, target) = match &link {
                            Some(l) => (l.0.clone(), l.1.clone()),
                            None => (b"..".to_vec(), b"..".to_vec()),
                        };
                        return Err(ResolveError::Escape { link, target });
                    }
                    let up = open_dir_path(fd.as_fd(), b"..").map_err(|err| ResolveError::Io {
                        action: "opening the parent of",
                        path: real.clone(),
                        err,
                    })?;
                    fd = Arc::new(up);
                    let cut = real.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    real.truncate(cut);
                    continue;
                }
                _ => {}
            }
            let child = join(&real, &comp);
            match open_dir_path(fd.as_fd(), &comp) {
                Ok(next) => fd = Arc::new(next),
                Err(Errno::NOENT) if create && link.is_none() => {
                    let made =
                        make_implicit_dir(fd.as_fd(), &comp).map_err(|err| ResolveError::Io {
                            action: "creating directory",
                            path: child.clone(),
                            err,
                        })?;
                    fd = Arc::new(made);
                }
                Err(Errno::NOENT) => return Err(ResolveError::Missing { path: child, link }),
                Err(Errno::NOTDIR) => {
                    let target = match rfs::readlinkat(fd.as_fd(), comp.as_slice(), Vec::new()) {
                        Ok(target) => target.into_bytes(),
                        Err(Errno::INVAL) => return Err(ResolveError::NotDir { path: child }),
                        Err(err) => {
                            return Err(ResolveError::Io {
                                action: "reading symlink",
                                path: child,
                                err,
                            });
                        }
                    };
                    if budget == 0 {
                        return Err(ResolveError::Loop { path: child });
                    }
                    budget -= 1;
                    if target.first() == Some(&b'/') {
                        if !self.absolute_in_root.load(Ordering::Relaxed) {
                            return Err(ResolveError::Escape {
                                link: child,
                                target,
                            });
                        }
                        // Image layers: `/run` means the root's `run`. Restart from the root's
                        // own fd; the components of the target follow, `..` at the top is
                        // still an escape.
                        fd = self.fd.clone();
                        real = Vec::new();
                    }
                    let info: Link = Rc::new((child, target));
                    if info.1.is_empty() {
                        return Err(ResolveError::Missing {
                            path: info.0.clone(),
                            link: Some(info),
                        });
                    }
                    for comp in info.1.split(|&b| b == b'/').rev() {
                        queue.push_front((comp.to_vec(), Some(info.clone())));
                    }
                    continue;
                }
                Err(err) => {
                    return Err(ResolveError::Io {
                        action: "opening directory",
                        path: child,
                        err,
                    });
                }
            }
            real = child;
        }
        Ok(Resolved { fd, real })
    }
}

/// Creates a directory the archive implies but does not list, with GNU tar's usual 0755 (set
/// explicitly so the process umask does not matter).
fn make_implicit_dir(parent: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    let created = match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(e),
    };
    let fd = open_dir_read(parent, name)?;
    if created {
        rfs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    }
    Ok(fd)
}
