//! Advisory file locks (flock) with a wait that tells the person what it waits for.
//!
//! Every process that uses the cache holds the cache's lock shared; `cache gc` takes it
//! exclusive. Downloads and machine names have their own exclusive locks so that two pulls of
//! one image download it once: the second waits, then finds the blob or gets a 304.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::fs::{FlockOperation, flock};

/// A held lock; released when dropped (the kernel also releases it if the process dies).
#[derive(Debug)]
pub struct LockGuard {
    _file: File,
    path: PathBuf,
}

impl LockGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// How long to wait for a lock before giving up: `$SANDBOX_LOCK_TIMEOUT` seconds, default 1 hour
/// (a large image on a slow link can hold a download lock for a long time).
pub fn default_timeout() -> Duration {
    std::env::var("SANDBOX_LOCK_TIMEOUT")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(3600))
}

/// Takes the lock at `path` (created if missing). If another process holds it, says once on
/// stderr what it is waiting for (`what`), then waits up to `timeout`.
pub fn acquire(path: &Path, mode: LockMode, what: &str, timeout: Duration) -> Result<LockGuard> {
    let file = open_lock_file(path)?;
    let (try_op, _) = match mode {
        LockMode::Shared => (
            FlockOperation::NonBlockingLockShared,
            FlockOperation::LockShared,
        ),
        LockMode::Exclusive => (
            FlockOperation::NonBlockingLockExclusive,
            FlockOperation::LockExclusive,
        ),
    };
    let start = Instant::now();
    let mut told = false;
    loop {
        match flock(&file, try_op) {
            Ok(()) => {
                return Ok(LockGuard {
                    _file: file,
                    path: path.to_path_buf(),
                });
            }
            Err(rustix::io::Errno::WOULDBLOCK) => {
                if !told {
                    tracing::warn!(
                        "waiting for {what} (held by another sandbox process; lock {})",
                        path.display()
                    );
                    told = true;
                }
                if start.elapsed() >= timeout {
                    bail!(
                        "timed out after {}s waiting for {what} (lock {}); another sandbox process is using it — \
                         wait for it to finish or raise SANDBOX_LOCK_TIMEOUT",
                        timeout.as_secs(),
                        path.display()
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

/// The lock file at `path`, created if missing (its content is never used).
fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening lock file {}", path.display()))
}

/// Takes the lock at `path` if nobody holds it; `None` when another process does.
pub fn try_acquire(path: &Path, mode: LockMode) -> Result<Option<LockGuard>> {
    let file = open_lock_file(path)?;
    let op = match mode {
        LockMode::Shared => FlockOperation::NonBlockingLockShared,
        LockMode::Exclusive => FlockOperation::NonBlockingLockExclusive,
    };
    loop {
        match flock(&file, op) {
            Ok(()) => {
                return Ok(Some(LockGuard {
                    _file: file,
                    path: path.to_path_buf(),
                }));
            }
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("locking {}", path.display()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn try_acquire_says_none_while_another_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.lock");
        let held = try_acquire(&p, LockMode::Exclusive).unwrap().expect("free");
        assert!(try_acquire(&p, LockMode::Exclusive).unwrap().is_none());
        drop(held);
        assert!(try_acquire(&p, LockMode::Exclusive).unwrap().is_some());
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("l.lock");
        let a = acquire(&p, LockMode::Shared, "test", Duration::from_secs(1)).unwrap();
        let _b = acquire(&p, LockMode::Shared, "test", Duration::from_secs(1)).unwrap();
        let err = acquire(
            &p,
            LockMode::Exclusive,
            "the test lock",
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(err.to_string().contains("the test lock"), "{err}");
        drop(a);
        drop(_b);
        let _c = acquire(&p, LockMode::Exclusive, "test", Duration::from_secs(1)).unwrap();
    }
}
