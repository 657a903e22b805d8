//! The one async runtime: a current-thread tokio runtime, built in this one place on first use,
//! for everything that speaks HTTP (tarballs, simplestreams, registries). Network I/O is async;
//! the rest of the tool (hashing, unpacking, the host side) is plain threads and blocking
//! calls, so only the fetch side enters the runtime, through [`block_on`].
//!
//! When a fetch is done, [`release`] shuts the runtime down: its blocking-pool threads, idle
//! connections and their buffers would otherwise live through the unpack that follows and add
//! to its peak memory. A later fetch builds it again.

use std::future::Future;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::runtime::Runtime;

static RUNTIME: Mutex<Option<Arc<Runtime>>> = Mutex::new(None);

/// The runtime, built on first use (or first use after [`release`]).
pub fn get() -> Result<Arc<Runtime>> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = slot.as_ref() {
        return Ok(rt.clone());
    }
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?,
    );
    *slot = Some(rt.clone());
    Ok(rt)
}

/// Runs `future` to completion on the runtime. Not to be called from inside it.
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    let rt = get()?;
    Ok(rt.block_on(future))
}

/// Shuts the runtime down once nobody is inside it: what its tasks and threads hold is freed.
pub fn release() {
    let taken = RUNTIME.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(rt) = taken
        && let Ok(rt) = Arc::try_unwrap(rt)
    {
        rt.shutdown_background();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runtime_serves_every_caller_until_released() {
        let a = Arc::as_ptr(&get().unwrap());
        let b = Arc::as_ptr(&get().unwrap());
        assert_eq!(a, b);
        assert_eq!(block_on(async { 40 + 2 }).unwrap(), 42);
        let from_thread = std::thread::spawn(|| block_on(async { 7 }).unwrap())
            .join()
            .unwrap();
        assert_eq!(from_thread, 7);
        release();
        assert_eq!(
            block_on(async { 1 }).unwrap(),
            1,
            "built again after release"
        );
    }
}
