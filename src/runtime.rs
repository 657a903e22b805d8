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
    }
}
