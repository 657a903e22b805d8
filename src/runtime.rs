//! The one async runtime: a current-thread tokio runtime, built once, on first use, for
//! everything that speaks HTTP (tarballs, simplestreams, registries). Network I/O is async;
//! the rest of the tool (hashing, unpacking, the host side) is plain threads and blocking
//! calls, so only the fetch side enters the runtime, through [`block_on`].

use std::future::Future;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, built on first use.
pub fn get() -> Result<&'static Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // Another thread may have won the race: then this one is dropped unused.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs `future` to completion on the runtime. Not to be called from inside it.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(get()?.block_on(future))
}

/// Lets the tasks that are ready run to their end. A fetch's HTTP clients are dropped when it
/// returns, but their pooled connections live in tasks of this runtime (each with its read and
/// write buffers) that end only when the runtime runs them again; the rest of a command (the
/// unpack) is synchronous and would carry them, and their memory, to exit.
pub fn settle() {
    if let Some(rt) = RUNTIME.get() {
        rt.block_on(async {
            for _ in 0..8 {
                tokio::task::yield_now().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runtime_serves_every_caller() {
        let a = get().unwrap() as *const Runtime;
        let b = get().unwrap() as *const Runtime;
        assert_eq!(a, b);
        assert_eq!(block_on(async { 40 + 2 }).unwrap(), 42);
        let from_thread = std::thread::spawn(|| block_on(async { 7 }).unwrap())
            .join()
            .unwrap();
        assert_eq!(from_thread, 7);
        // A spawned task that is ready finishes when the runtime settles.
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        get().unwrap().spawn(async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        settle();
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
    }
}
