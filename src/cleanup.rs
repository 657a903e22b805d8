//! What a process must undo if it is interrupted: staging trees being written, host files a
//! build wrote but has not committed. Each is registered while it is pending ([`register`]) and
//! unregistered when it is done (the [`Pending`] is dropped). On SIGINT, SIGTERM or SIGHUP
//! ([`on_signals`]) every pending undo runs, newest first, the process says what it removed
//! and exits with 128 + the signal number, as a shell reports it. (SIGKILL cannot be caught:
//! what a killed process left is swept by the next command that takes the machine's lock.)
//! The same undo code serves the ordinary error path ([`Undo::apply`]), so there is one way of
//! taking a thing back.

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::Result;

/// One thing to take back (also written to a build's journal, `assemble::hostfiles`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Undo {
    /// A tree being made (a staging directory): removed.
    RemoveTree(PathBuf),
    /// A file written over `previous` (or new, when `None`): restored, or removed.
    Restore {
        path: PathBuf,
        previous: Option<Vec<u8>>,
    },
    /// A directory made for such a file: removed if empty.
    RemoveDir(PathBuf),
}

/// Set when a signal asked the process to stop: long loops that write into a pending tree
/// (the unpacker's entry and copy loops) check it and stop, so the undo can remove the tree.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// Whether a signal asked the process to stop (see [`on_signals`]).
pub fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

/// When a signal is being handled, waits for its thread to end the process (it undoes, says
/// so and exits 128 + the signal): the main thread, stopped by [`stopping`], must not exit
/// first with an error of its own.
pub fn wait_if_stopping() {
    while stopping() {
        std::thread::park();
    }
}

/// How long an undo after a signal waits for a writer that is still finishing its current
/// file (it checks [`stopping`] after every buffer): 200 tries, 10 ms apart.
const REMOVE_TRIES: u32 = 200;

impl Undo {
    /// Takes it back. A path that is already gone is no error.
    pub fn apply(&self) -> Result<()> {
        let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        match self {
            Undo::RemoveTree(path) => {
                // After a signal another thread may still be writing into the tree until it
                // sees `stopping()`: a removal that meets a new entry (ENOTEMPTY) tries again.
                let mut tries = 0;
                loop {
                    match fs_err::remove_dir_all(path) {
                        Err(e) if gone(&e) => return Ok(()),
                        Err(_) if stopping() && tries < REMOVE_TRIES => {
                            tries += 1;
                            std::thread::sleep(std::time::Duration::from_millis(10));
                        }
                        Err(e) => return Err(e.into()),
                        Ok(()) => return Ok(()),
                    }
                }
            }
            Undo::Restore {
                path,
                previous: Some(bytes),
            } => crate::atomic::write_file(path, bytes),
            Undo::Restore {
                path,
                previous: None,
            } => match fs_err::remove_file(path) {
                Err(e) if !gone(&e) => Err(e.into()),
                _ => Ok(()),
            },
            Undo::RemoveDir(path) => {
                let _ = fs_err::remove_dir(path);
                Ok(())
            }
        }
    }

    /// What applying it did, for a message (`restored /etc/…`).
    pub fn shown(&self) -> String {
        match self {
            Undo::RemoveTree(p) => format!("removed the unfinished {}", p.display()),
            Undo::Restore {
                path,
                previous: Some(_),
            } => format!("restored {}", path.display()),
            Undo::Restore {
                path,
                previous: None,
            } => format!("removed {}", path.display()),
            Undo::RemoveDir(p) => format!("removed {}", p.display()),
        }
    }
}

static PENDING: Mutex<Vec<(u64, Undo)>> = Mutex::new(Vec::new());
static NEXT: AtomicU64 = AtomicU64::new(1);

/// A registered undo; dropping it unregisters it (the thing is done, or was taken back).
#[derive(Debug)]
pub struct Pending {
    id: u64,
}

/// Registers `undo` until the returned [`Pending`] is dropped.
pub fn register(undo: Undo) -> Pending {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock().push((id, undo));
    Pending { id }
}

impl Drop for Pending {
    fn drop(&mut self) {
        lock().retain(|(id, _)| *id != self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Undo)>> {
    PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs every pending undo, newest first, and forgets them; says what each did.
fn undo_all() -> Vec<String> {
    let pending = std::mem::take(&mut *lock());
    pending
        .iter()
        .rev()
        .map(|(_, u)| match u.apply() {
            Ok(()) => u.shown(),
            Err(e) => format!("could not undo ({}): {e:#}", u.shown()),
        })
        .collect()
}

/// Handles SIGINT, SIGTERM and SIGHUP on a thread of their own: undo, say so, exit.
pub fn on_signals() -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                let name = match sig {
                    SIGINT => "SIGINT",
                    SIGTERM => "SIGTERM",
                    _ => "SIGHUP",
                };
                STOPPING.store(true, Ordering::Relaxed);
                let done = undo_all();
                // Straight to stderr: this thread must not wait for a lock the main one holds.
                let mut text = format!("interrupted by {name}");
                if done.is_empty() {
                    text.push_str("; nothing to undo");
                }
                for d in &done {
                    text.push_str(&format!("\n  {d}"));
                }
                eprintln!("{text}");
                std::process::exit(128 + sig);
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_takes_back_what_is_pending_and_not_what_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        let file = dir.path().join("f.conf");
        std::fs::write(&file, b"new").unwrap();
        let done_tree = dir.path().join("kept");
        std::fs::create_dir(&done_tree).unwrap();
        let _t = register(Undo::RemoveTree(tree.clone()));
        let _f = register(Undo::Restore {
            path: file.clone(),
            previous: Some(b"old".to_vec()),
        });
        drop(register(Undo::RemoveTree(done_tree.clone())));
        let said = undo_all();
        assert!(!tree.exists());
        assert_eq!(std::fs::read(&file).unwrap(), b"old");
        assert!(done_tree.is_dir(), "an unregistered undo ran");
        assert!(said.iter().any(|s| s.starts_with("restored")), "{said:?}");
        assert!(undo_all().is_empty());
    }
}
